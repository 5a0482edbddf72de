"""The outcome stream: one record per finished (or dead-lettered) call, for the simulator and dashboards.

Stream ``<prefix>:outcomes``; each entry has one field ``o``, the :class:`CallOutcome` as JSON, appended by
:meth:`CallQueue.publish_outcome`, once per queue entry (a marker key guards the append: a worker that dies
between publishing and acking has its call's last step re-run by another, which adds no second record).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from orchestrator.contracts import CallOutcome

OUTCOME_FIELD = "o"
DEFAULT_MAXLEN = 100_000


def outcomes_key(prefix: str) -> str:
    """The outcome stream of a queue prefix."""
    return f"{prefix}:outcomes"


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
            last = entry_id
            raw = fields.get(OUTCOME_FIELD)
            if raw is not None:
                out.append(CallOutcome.model_validate_json(raw))
    return out, last
