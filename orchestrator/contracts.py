"""Pydantic models that cross a process boundary: queue jobs, admissions, queue statistics, dead letters."""

from __future__ import annotations

from datetime import UTC, datetime

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
