"""Call runners: how a worker runs one claimed call's session, here on the local text transport."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.contracts import CallJob, CallOutcome
from orchestrator.queue import ClaimedCall
from orchestrator.redact import redact_text
from orchestrator.results import CallResult, outcome_of
from orchestrator.runtime import Services
from orchestrator.session.text import TextCall
from orchestrator.store.records import CallView
from orchestrator.telemetry.service import Telemetry
from orchestrator.worker.tracking import CallTicket, CallTracker, TurnHook

if TYPE_CHECKING:
    from orchestrator.live import LiveFeed

__all__ = [
    "TURN_GAP_KEY",
    "CallDeferred",
    "CallRunner",
    "TextCallRunner",
    "TurnHook",
    "checkpoint_state",
    "run_traced_text_call",
    "outcome_from_state",
]

# Simulated callers may pause between turns (room metadata ``turn_gap_ms``) so that calls last as long
# as real ones would; the worker sleeps that long before feeding each scripted turn.
TURN_GAP_KEY = "turn_gap_ms"
MAX_TURN_GAP_S = 30.0


class CallDeferred(Exception):
    """Nothing could take the call on now (no agent worker has room for it): the worker hands it back to the queue,
    where it keeps its place, without counting a failed attempt; a call waits for capacity rather than dead-letter."""


class CallRunner(Protocol):
    """Runs one claimed call to its end and says how it went.

    A runner resumes a call whose graph checkpoint already holds turns (a crashed worker's call), and
    must stop promptly when its task is cancelled (drain deadline, or the call was taken over).
    """

    async def run(self, claimed: ClaimedCall) -> CallOutcome:
        """Run the call's session to its end.

        Returns:
            The outcome; the worker fills in ``worker``, ``attempt`` and ``queue_wait_ms``.
        """
        ...


class TextCallRunner:
    """Runs calls on the local text transport (``TextCall``), feeding simulated callers' scripts.

    A resumed call continues at ``script[state.turn:]``: turns already in the checkpoint are not said
    again. A call without a script has no caller on this transport and ends at once; real callers
    arrive through ``LiveKitDispatchRunner`` (``orchestrator.worker.dispatch``).
    """

    def __init__(
        self,
        services: Services,
        *,
        on_start: TurnHook | None = None,
        on_turn: TurnHook | None = None,
        telemetry: Telemetry | None = None,
        worker_name: str = "",
        live: LiveFeed | None = None,
    ) -> None:
        """Build a runner.

        Args:
            services: The process's graph, store and tenant.
            on_start: Called with ``(call_id, turns_already_done)`` when a call (re)starts.
            on_turn: Called with ``(call_id, turns_done)`` after each caller turn (progress, tests).
            telemetry: Traces, meters and records each call (the call's span continues the job's trace).
            worker_name: Recorded with each call.
            live: Publishes each turn to the console's live feed and applies its commands between turns.
        """
        self.services = services
        self.on_start = on_start
        self.on_turn = on_turn
        self.telemetry = telemetry
        self.worker_name = worker_name
        self.live = live

    async def warm_up(self) -> None:
        """Start and close one throwaway session, so the first real (or reclaimed) call does not pay for it.

        The first ``AgentSession`` of a process sets up the framework's machinery (about a second under
        load); a call taken over from a dead worker must not wait for that on top of the reclaim time.
        No caller turn is run, so no checkpoint is written.
        """
        call = TextCall(self.services, call_id=f"warm-up-{uuid.uuid4().hex}")
        try:
            await call.start()
            await call.state()
        finally:
            await call.aclose()

    async def run(self, claimed: ClaimedCall) -> CallOutcome:
        """Run (or resume) the call and return its outcome."""
        job = claimed.job
        tracker = CallTracker(
            CallTicket.claimed(claimed, worker=self.worker_name),
            telemetry=self.telemetry,
            live=self.live,
            on_start=self.on_start,
            on_turn=self.on_turn,
        )
        call = TextCall(
            self.services, call_id=job.call_id, caller_id=job.caller_id or None, callbacks=tracker.callbacks
        )
        latencies: list[float] = []

        async def conversation(resumed_at: int) -> None:
            gap_s = _turn_gap_s(job.metadata)
            for utterance in (job.script or [])[resumed_at:]:
                if gap_s:
                    await asyncio.sleep(gap_s)
                await tracker.before_turn(call)
                record = await call.say(utterance)
                await tracker.turn_done(call, utterance, record)
                latencies.append(record.latency_ms)
                if await call.ended():
                    break

        final, resumed_at = await tracker.run(call, conversation)
        return outcome_from_state(job.call_id, final, resumed_at=resumed_at, turn_latency_ms=latencies)


async def checkpoint_state(services: Services, call_id: str) -> dict[str, Any]:
    """The call's graph state from its checkpoint (``thread_id = call_id``); empty before its first turn."""
    snapshot = await services.graph.aget_state({"configurable": {"thread_id": call_id}})
    return dict(snapshot.values or {})


def outcome_from_state(
    call_id: str, final: dict[str, Any], *, resumed_at: int, turn_latency_ms: list[float] | None = None
) -> CallOutcome:
    """A call's outcome from its final graph state, whichever transport ran the session.

    Args:
        call_id: The call.
        final: The graph state once the session ended.
        resumed_at: Caller turns already in the checkpoint when this attempt started.
        turn_latency_ms: Latencies of the turns this attempt ran, when the runner measured them.
    """
    # The outcome is published to Redis and read by the API: a handoff's note quotes the caller ("said: ...").
    handoffs = [
        {k: redact_text(v, zip_expected=True) if isinstance(v, str) else v for k, v in h.items()}
        for h in final.get("handoffs", [])
    ]
    return CallOutcome(
        call_id=call_id,
        outcome=outcome_of(final),
        escalation_reason=final.get("escalation_reason"),
        turns=int(final.get("turn") or 0),
        turn_latency_ms=list(turn_latency_ms or []),
        routes=[str(h.get("to_agent")) for h in handoffs if h.get("to_agent")],
        handoffs=handoffs,
        resumed_at_turn=resumed_at,
    )


def _turn_gap_s(metadata: dict[str, str]) -> float:
    try:
        gap = float(metadata.get(TURN_GAP_KEY, 0)) / 1000
    except ValueError:
        return 0.0
    return min(max(gap, 0.0), MAX_TURN_GAP_S)


async def run_traced_text_call(
    telemetry: Telemetry,
    services: Services,
    utterances: Sequence[str],
    *,
    call_id: str | None = None,
    caller_id: str | None = None,
    traceparent: str | None = None,
    queue_wait_ms: float | None = None,
    worker: str = "",
    attempt: int = 1,
    source: str = "simulate",
) -> tuple[CallResult, CallView | None]:
    """Run a scripted text call the way a worker does: in its call span, traced, recorded, metered.

    The same `CallTracker` as the workers' runners, without a queue or a console: for reports, tests and
    benchmarks that need telemetry on calls run in process.
    """
    job = CallJob(
        call_id=call_id or f"call-{uuid.uuid4().hex[:12]}",
        source=source,
        caller_id=caller_id or "",
        traceparent=traceparent,
        attempt=attempt,
    )
    tracker = CallTracker(
        CallTicket(job, attempt=attempt, worker=worker, queue_wait_ms=queue_wait_ms), telemetry=telemetry
    )
    call = TextCall(services, call_id=job.call_id, caller_id=caller_id, callbacks=tracker.callbacks)

    async def conversation(_resumed_at: int) -> None:
        for utterance in utterances:
            await call.say(utterance)
            if await call.ended():
                break

    await tracker.run(call, conversation)
    return call.result, tracker.view
