"""The local text transport: a call whose caller types (or is scripted), run through AgentSession.run."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from livekit.agents import AgentSession
from livekit.agents.voice.run_result import RunResult

from agents.supervisor import speaker_of
from orchestrator.results import CallResult, TurnRecord, human_lines, outcome_of
from orchestrator.runtime import Services
from orchestrator.session.graph_llm import GraphAgent, GraphLLM


class TextCall:
    """A call on the local text transport: the same AgentSession and GraphLLM a voice call uses."""

    def __init__(
        self,
        services: Services,
        *,
        call_id: str | None = None,
        caller_id: str | None = None,
        callbacks: Sequence[BaseCallbackHandler] = (),
    ) -> None:
        self.services = services
        self.call_id = call_id or f"call-{uuid.uuid4().hex[:12]}"
        self.llm = GraphLLM(
            services.graph, services.context, call_id=self.call_id, caller_id=caller_id, callbacks=callbacks
        )
        self.session: AgentSession[None] = AgentSession(llm=self.llm)
        self.result = CallResult(call_id=self.call_id)
        self._started = False

    async def start(self) -> None:
        await self.llm.prepare()
        await self.session.start(GraphAgent())
        self._started = True

    async def state(self) -> dict[str, Any]:
        snapshot = await self.services.graph.aget_state(self.llm.config)
        return dict(snapshot.values or {})

    async def update_state(self, values: dict[str, Any]) -> None:
        """Write ``values`` into the call's graph state (a console's lines and overrides before a turn)."""
        await self.services.graph.aupdate_state(self.llm.config, values)

    async def say(self, utterance: str) -> TurnRecord:
        """One caller turn through `AgentSession.run`; returns what the agent answered."""
        if not self._started:
            await self.start()
        t0 = time.perf_counter()
        run: RunResult[None] = self.session.run(user_input=utterance)
        await run
        latency_ms = (time.perf_counter() - t0) * 1000
        reply = " ".join(
            (ev.item.text_content or "").strip()
            for ev in run.events
            if ev.type == "message" and ev.item.role == "assistant"
        ).strip()
        state = await self.state()
        timing = self.llm.turns.timings[-1] if self.llm.turns.timings else None
        graph_ms = ((timing.finished or t0) - timing.started) * 1000 if timing else 0.0
        record = TurnRecord(
            caller=utterance,
            agent=reply,
            agent_name=speaker_of(state),
            intent=state.get("intent"),
            confidence=state.get("confidence"),
            latency_ms=round(latency_ms, 2),
            graph_ms=round(graph_ms, 2),
        )
        self.result.turns.append(record)
        self._absorb(state)
        return record

    def _absorb(self, state: dict[str, Any]) -> None:
        r = self.result
        r.handoffs = [dict(h) for h in state.get("handoffs", [])]
        r.outcome = outcome_of(state)
        r.escalation_reason = state.get("escalation_reason")
        r.ticket_id = state.get("ticket_id")
        r.tool_events = [dict(e) for e in state.get("tool_events", [])]
        r.interventions = [dict(i) for i in state.get("interventions", [])]
        r.resolutions = list(state.get("resolutions", []))
        r.errors = list(self.llm.turns.errors)
        r.human_lines = human_lines(state)
        r.caller_id = state.get("caller_id") or r.caller_id
        verification = state.get("verification") or {}
        r.account_id = verification.get("account_id") if verification.get("status") == "verified" else None

    def absorb(self, state: dict[str, Any]) -> None:
        """Take the call's outcome and events from ``state`` (after changes made outside a turn)."""
        self._absorb(state)

    async def ended(self) -> bool:
        return bool((await self.state()).get("ended"))

    async def close_session(self) -> None:
        """Close the session (idempotent), then write a reply the caller cut off by hanging up."""
        if self._started:
            await self.session.aclose()
            self._started = False
        await self.llm.apply_cut()

    async def aclose(self) -> None:
        await self.close_session()
        await self.llm.aclose()


async def run_text_call(
    services: Services,
    utterances: Sequence[str],
    *,
    call_id: str | None = None,
    caller_id: str | None = None,
    on_turn: Callable[[TurnRecord], Awaitable[None] | None] | None = None,
) -> CallResult:
    """Run a scripted text call to its end (script exhausted, or the call ended) and return the result."""
    return await play_script(TextCall(services, call_id=call_id, caller_id=caller_id), utterances, on_turn)


async def play_script(
    call: TextCall, utterances: Sequence[str], on_turn: Callable[[Any], Awaitable[None] | None] | None = None
) -> CallResult:
    """Say each scripted turn on `call` (any transport built on TextCall) until the script or the call ends."""
    try:
        await call.start()
        for utterance in utterances:
            record = await call.say(utterance)
            if on_turn is not None:
                maybe = on_turn(record)
                if maybe is not None:
                    await maybe
            if await call.ended():
                break
    finally:
        await call.aclose()
    return call.result
