"""What every call gets around its session, whichever transport runs it: call span, live console, record."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from orchestrator.contracts import CallJob
from orchestrator.results import CallResult, TurnRecord, outcome_of
from orchestrator.session.text import TextCall

if TYPE_CHECKING:
    from langchain_core.callbacks import BaseCallbackHandler
    from opentelemetry.trace import Span

    from orchestrator.live import LiveFeed
    from orchestrator.queue import ClaimedCall
    from orchestrator.store.records import CallView
    from orchestrator.telemetry.service import Telemetry

__all__ = ["CallTicket", "CallTracker", "Conversation", "TurnHook", "earlier_turns", "result_from_state"]

log = logging.getLogger(__name__)

# Progress hooks: called with ``(call_id, turns)``; they may be coroutine functions.
TurnHook = Callable[[str, int], Awaitable[None] | None]
# Runs a call's caller turns, given how many the checkpoint already holds (a resumed call).
Conversation = Callable[[int], Awaitable[None]]

# Bounds the console commands applied when a call ends (each application takes every pending line and
# at most one override), so a console that keeps pushing cannot hold the end of a call.
MAX_FINAL_APPLIES = 50


@dataclass(frozen=True)
class CallTicket:
    """The call a session runs and the circumstances of this attempt, in whichever process runs it.

    Attributes:
        job: The queue's job: call id, caller, source, admission time, the trace it continues.
        attempt: 1-based attempt.
        worker: The queue worker that holds the call (recorded, and shown in the console).
        queue_wait_ms: Enqueue-to-claim wait of this attempt.
    """

    job: CallJob
    attempt: int = 1
    worker: str = ""
    queue_wait_ms: float | None = None

    @classmethod
    def claimed(cls, claimed: ClaimedCall, *, worker: str = "") -> CallTicket:
        """The ticket of a call a worker claimed (``worker`` defaults to the claim's consumer)."""
        return cls(
            claimed.job,
            attempt=claimed.attempt,
            worker=worker or claimed.consumer,
            queue_wait_ms=claimed.waited_s * 1000,
        )


class CallTracker:
    """Tracks one call's session for the process running it: the text runner and the voice agent alike.

    - **Trace.** The call span continues the job's trace and is current while the session runs, so
      livekit's session spans and the graph's node, tool and LLM spans (`callbacks`, given to the call's
      `GraphLLM`) join it.
    - **Console.** The live feed learns that the call (re)started, gets each turn as it happens, applies
      the console's commands to the checkpoint before each caller turn (`before_turn`) and once more when
      the caller's turns are over, then learns that the call ended.
    - **Record.** Once the session ends: price, anomaly flags, the call record, metrics and alerts
      (`Telemetry.finish_call`; `view` holds the stored record).

    Without telemetry or a live feed, those parts are skipped. A transport drives the turns (`run`'s
    ``conversation``) and reports them through `before_turn` and `turn_done`.
    """

    def __init__(
        self,
        ticket: CallTicket,
        *,
        telemetry: Telemetry | None = None,
        live: LiveFeed | None = None,
        on_start: TurnHook | None = None,
        on_turn: TurnHook | None = None,
    ) -> None:
        """Track a call.

        Args:
            ticket: The call and this attempt.
            telemetry: Traces, records and meters the call.
            live: Publishes the call to the console and applies its commands.
            on_start: Called with ``(call_id, turns_already_done)`` when the call (re)starts.
            on_turn: Called with ``(call_id, turns_done)`` after each caller turn.
        """
        self.ticket = ticket
        self.telemetry = telemetry
        self.live = live
        self.on_start = on_start
        self.on_turn = on_turn
        self.handler = telemetry.graph_handler(ticket.job.call_id) if telemetry is not None else None
        self.span: Span | None = None
        self.view: CallView | None = None
        self.turns_done = 0
        self._started_at = datetime.now(UTC)
        self._t0 = time.perf_counter()

    @property
    def call_id(self) -> str:
        return self.ticket.job.call_id

    @property
    def callbacks(self) -> tuple[BaseCallbackHandler, ...]:
        """The LangChain callbacks the call's graph must run with (its node, tool and LLM spans)."""
        return (self.handler,) if self.handler is not None else ()

    async def run(self, call: TextCall, conversation: Conversation) -> tuple[dict[str, Any], int]:
        """Run the call's session from start to record.

        Args:
            call: The session, built with `callbacks`.
            conversation: Runs the caller's turns, given those the checkpoint already holds; not called
                when the checkpoint says the call already ended.

        Returns:
            The final graph state, and the caller turns already done when this attempt started.
        """
        async with self._traced():
            try:
                await call.start()
                state = await call.state()
                resumed_at = int(state.get("turn") or 0)
                if resumed_at and not call.result.turns:
                    # The record is rewritten whole at the end: the turns of the attempts before this one go in it.
                    call.result.turns.extend(earlier_turns(state))
                await self.started(call, resumed_at)
                if not state.get("ended"):
                    await conversation(resumed_at)
                final: dict[str, Any] = await call.state()
                await self.ended(call, final)
            finally:
                await call.aclose()
            await self._finish(call)
        return final, resumed_at

    @asynccontextmanager
    async def _traced(self) -> AsyncIterator[None]:
        if self.telemetry is None:
            yield
            return
        job = self.ticket.job
        self._started_at = datetime.now(UTC)
        self._t0 = time.perf_counter()
        with self.telemetry.call_span(
            call_id=job.call_id,
            traceparent=job.traceparent,
            attempt=self.ticket.attempt,
            worker=self.ticket.worker,
            queue_wait_ms=self.ticket.queue_wait_ms,
            source=job.source,
            caller_id=job.caller_id or None,
        ) as span:
            self.span = span
            yield

    async def _finish(self, call: TextCall) -> None:
        if self.telemetry is None:
            return
        # Records and metrics never fail a call: finish_call swallows and logs its own errors.
        self.view = await self.telemetry.finish_call(
            call.result,
            started_at=self._started_at,
            duration_s=time.perf_counter() - self._t0,
            queue_wait_ms=self.ticket.queue_wait_ms,
            worker=self.ticket.worker,
            attempt=self.ticket.attempt,
            handler=self.handler,
            span=self.span,
        )

    async def started(self, call: TextCall, resumed_at: int) -> None:
        """The session is up; ``resumed_at`` caller turns were already in the checkpoint."""
        self.turns_done = resumed_at
        await _call_hook(self.on_start, self.call_id, resumed_at)
        if self.live is not None:
            await self.live.call_started(self.ticket.job, worker=self.ticket.worker, resumed_at=resumed_at)

    async def before_turn(self, call: TextCall) -> None:
        """The caller finished a turn and the graph is about to run it: apply the console's commands."""
        if self.live is not None:
            await self.live.before_turn(call)

    async def turn_done(self, call: TextCall, utterance: str, record: TurnRecord) -> None:
        """One caller turn was answered: publish it."""
        if self.live is not None:
            await self.live.turn_done(call, utterance, record)
        self.turns_done += 1
        await _call_hook(self.on_turn, self.call_id, self.turns_done)

    async def ended(self, call: TextCall, final: dict[str, Any]) -> None:
        """The caller's turns are over: apply what the console still has for the call, then close it there."""
        if self.live is None:
            return
        await self._apply_remaining(call)
        # Lines a person said after the caller's last turn belong in the record too.
        final = await call.state()
        call.absorb(final)
        await self.live.call_ended(self.call_id, outcome_of(final))

    async def _apply_remaining(self, call: TextCall) -> None:
        # A supervisor's lines typed after the caller's last turn have no next turn to carry them into the
        # checkpoint, and `call_ended` drops the pending list: apply them now, or they reach the console's
        # transcript but never the call's.
        assert self.live is not None
        try:
            pending = len(await self.live.pending_commands(call.call_id))
            for _ in range(MAX_FINAL_APPLIES):
                if not pending:
                    return
                await self.live.before_turn(call)
                left = len(await self.live.pending_commands(call.call_id))
                if left >= pending:
                    # Nothing was applied (Redis trouble): stop here.
                    return
                pending = left
        except (RedisError, ValueError) as exc:
            log.warning("call %s: console commands left unapplied at the end: %s", call.call_id, exc)


async def _call_hook(hook: TurnHook | None, call_id: str, turns: int) -> None:
    if hook is None:
        return
    result = hook(call_id, turns)
    if inspect.isawaitable(result):
        await result


def earlier_turns(state: dict[str, Any]) -> list[TurnRecord]:
    """The caller turns a checkpoint already holds, as records (their latencies were not measured here: 0)."""
    turns: list[TurnRecord] = []
    caller: list[str] = []
    for line in state.get("transcript", []):
        if line.get("role") == "caller":
            caller.append(str(line.get("text") or ""))
        elif line.get("role") == "agent" and caller:
            turns.append(
                TurnRecord(
                    caller=" ".join(caller),
                    agent=str(line.get("text") or ""),
                    agent_name=str(line.get("agent") or ""),
                    intent=None,
                    confidence=None,
                    latency_ms=0.0,
                    graph_ms=0.0,
                )
            )
            caller = []
    return turns


def result_from_state(call_id: str, state: dict[str, Any], *, caller_id: str | None = None) -> CallResult:
    """A call's result from its checkpoint alone, for a call that ends with no session to record it."""
    verification = state.get("verification") or {}
    return CallResult(
        call_id=call_id,
        turns=earlier_turns(state),
        handoffs=[dict(h) for h in state.get("handoffs", [])],
        outcome=outcome_of(state),
        escalation_reason=state.get("escalation_reason"),
        ticket_id=state.get("ticket_id"),
        tool_events=[dict(e) for e in state.get("tool_events", [])],
        interventions=[dict(i) for i in state.get("interventions", [])],
        resolutions=list(state.get("resolutions", [])),
        caller_id=state.get("caller_id") or caller_id,
        account_id=verification.get("account_id") if verification.get("status") == "verified" else None,
    )
