"""The outcome stream: one record per finished (or dead-lettered) call, for the simulator and dashboards.

Stream ``<prefix>:outcomes``; each entry has one field ``o``, the :class:`CallOutcome` as JSON. Delivery
is at least once (a worker that dies between publishing and acking re-runs the call's last step), so
readers keep the last record per ``call_id``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

OUTCOME_FIELD = "o"
DEFAULT_MAXLEN = 100_000


def _utcnow() -> datetime:
    return datetime.now(UTC)


def outcomes_key(prefix: str) -> str:
    """The outcome stream of a queue prefix."""
    return f"{prefix}:outcomes"


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


async def publish_outcome(
    redis: aioredis.Redis, prefix: str, outcome: CallOutcome, *, maxlen: int = DEFAULT_MAXLEN
) -> str:
    """Append an outcome to the stream; returns its entry id."""
    entry: Any = await redis.xadd(
        outcomes_key(prefix), {OUTCOME_FIELD: outcome.model_dump_json()}, maxlen=maxlen, approximate=True
    )
    return entry.decode() if isinstance(entry, bytes) else str(entry)


async def read_outcomes(
    redis: aioredis.Redis, prefix: str, *, after: str = "0-0", count: int = 500, block_ms: int | None = None
) -> tuple[list[CallOutcome], str]:
    """Outcomes after the entry id ``after`` (oldest first), and the id to read on from.

    Args:
        redis: Client.
        prefix: Queue prefix.
        after: Exclusive start id (``"0-0"`` = from the beginning).
        count: At most this many.
        block_ms: Wait this long for new entries when there are none (None = do not wait).
    """
    resp: Any = await redis.xread({outcomes_key(prefix): after}, count=count, block=block_ms)
    out: list[CallOutcome] = []
    last = after
    for _stream, items in resp or []:
        for entry_id, fields in items:
            last = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            raw = fields.get(OUTCOME_FIELD.encode(), fields.get(OUTCOME_FIELD))
            if raw is not None:
                out.append(CallOutcome.model_validate_json(raw))
    return out, last
