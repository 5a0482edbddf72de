"""Pydantic models that cross a process boundary: queue jobs, admissions, queue statistics, dead letters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CallJob(BaseModel):
    """One inbound call waiting for (or held by) a worker.

    Attributes:
        call_id: Unique id of the call; admission is idempotent on it.
        source: Where the call came from, e.g. ``"livekit"``, ``"sip"`` or ``"simulate"``.
        room: The LiveKit room (or local transport name) the session joins.
        caller_id: The caller's number or identity as given by the source.
        priority: Lower is served first: 0 = VIP or callback, 1 = normal.
        admitted_at: When the webhook accepted the call (UTC).
        attempt: 1-based number of the run a worker is about to start; on a claim it is the
            attempt the job was enqueued with plus earlier deliveries (crash redeliveries count).
        traceparent: W3C trace context, so the worker's spans join the webhook's trace.
        script: Scripted caller turns for simulated calls; the worker feeds them to the session.
        metadata: Free-form string attributes from the source.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    call_id: str = Field(min_length=1, max_length=200)
    source: str = "livekit"
    room: str = ""
    caller_id: str = ""
    priority: int = 1
    admitted_at: datetime = Field(default_factory=_utcnow)
    attempt: int = Field(default=1, ge=1)
    traceparent: str | None = None
    script: list[str] | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class Admission(BaseModel):
    """The queue's answer to an admit: where the call stands and how long it should wait.

    Attributes:
        call_id: The admitted call.
        position: 1-based place among waiting calls (all higher-priority calls count before it).
        expected_wait_s: Estimated seconds until a worker claims it (formula in ``orchestrator.queue``).
        duplicate: True when the call had been admitted before; nothing was enqueued this time and
            ``position``/``expected_wait_s`` are those of the first admission.
    """

    model_config = ConfigDict(frozen=True)

    call_id: str
    position: int
    expected_wait_s: float
    duplicate: bool = False


class WaitHistogram(BaseModel):
    """Enqueue-to-claim wait times, counted at claim time and shared by every process.

    Attributes:
        buckets: Upper bound in seconds (as text, ``"+Inf"`` last) to the count of claims that waited
            at most that long and more than the previous bound (not cumulative).
        count: Number of observations.
        sum_s: Sum of the observed waits in seconds.
    """

    buckets: dict[str, int]
    count: int
    sum_s: float


class QueueStats(BaseModel):
    """A snapshot of the call queue for dashboards, autoscaling and admission decisions.

    Attributes:
        waiting_by_priority: Calls waiting for a worker, per priority level.
        waiting: Sum of ``waiting_by_priority``.
        oldest_wait_s: How long the longest-waiting call has waited (0 when none waits).
        in_flight: Calls held by workers (the consumer groups' pending entries, released ones excluded).
        retries_scheduled: Failed calls waiting for their backoff to end.
        dead_letters: Entries in the dead-letter stream.
        worker_slots: Call slots registered by live workers.
        avg_handle_s: Moving average of handle time (claim to ack) used for expected waits.
        admitted: Calls admitted since the counters were created.
        duplicates: Duplicate admits answered from the first admission.
        refused: Admits refused by admission control.
        completed: Calls acknowledged.
        abandoned: Calls whose caller hung up while they waited (taken out of the queue, never answered).
        wait_histogram: Enqueue-to-claim waits.
    """

    waiting_by_priority: dict[int, int]
    waiting: int
    oldest_wait_s: float
    in_flight: int
    retries_scheduled: int
    dead_letters: int
    worker_slots: int
    avg_handle_s: float
    admitted: int
    duplicates: int
    refused: int
    completed: int
    abandoned: int
    wait_histogram: WaitHistogram


class DeadLetter(BaseModel):
    """A call that failed ``max_attempts`` times (or kept losing its worker) and needs a human look.

    Attributes:
        id: The entry id in the dead-letter stream; pass it to ``replay``.
        job: The job as it was on its last attempt.
        error: The last error.
        attempts: How many attempts were made.
        failed_at: When it was dead-lettered (UTC).
    """

    id: str
    job: CallJob
    error: str
    attempts: int
    failed_at: datetime


class CallOutcome(BaseModel):
    """What happened to one call.

    Attributes:
        call_id: The call.
        status: ``completed`` (the session ended and the call was acked) or ``dead_lettered``.
        outcome: The graph's outcome: ``resolved``, ``escalated`` or ``abandoned``.
        escalation_reason: Why it was escalated, if it was.
        turns: Caller turns in the whole call (all attempts, from the checkpoint).
        turn_latency_ms: Latency of each turn run by the finishing attempt (earlier attempts' turns are
            in the checkpoint's transcript but their timings died with their worker).
        queue_wait_ms: Enqueue-to-claim wait of the finishing attempt (0 for reclaimed calls).
        routes: Specialists the call was handed to, in order.
        handoffs: Handoff events from the checkpoint.
        worker: Consumer name of the worker that finished it.
        attempt: 1-based attempt that finished it.
        resumed_at_turn: Caller turns already in the checkpoint when this attempt started.
        error: The last error of a dead-lettered call.
        finished_at: When the record was written (UTC).
    """

    call_id: str
    status: Literal["completed", "dead_lettered"] = "completed"
    outcome: str = "abandoned"
    escalation_reason: str | None = None
    turns: int = 0
    turn_latency_ms: list[float] = Field(default_factory=list)
    queue_wait_ms: float = 0.0
    routes: list[str] = Field(default_factory=list)
    handoffs: list[dict[str, Any]] = Field(default_factory=list)
    worker: str = ""
    attempt: int = 1
    resumed_at_turn: int = 0
    error: str | None = None
    finished_at: datetime = Field(default_factory=_utcnow)
