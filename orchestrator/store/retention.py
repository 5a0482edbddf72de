"""Retention: a call's words leave every store on one schedule, its call record and its graph checkpoints alike."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver

from orchestrator.store.records import CallStore

# 100-ns intervals between the UUID epoch (the Gregorian calendar's start) and the Unix epoch.
_UUID_EPOCH_OFFSET = 0x01B21DD213814000
_PAGE = 200


@dataclass(frozen=True)
class Purged:
    """What one retention pass deleted."""

    records: int
    threads: int


def checkpoint_id_at(when: datetime) -> str:
    """The lowest checkpoint id LangGraph gives a checkpoint written at `when`.

    Checkpoint ids are UUIDv6, which put the time first, so as strings they sort in the order they were
    written; the savers' `before` filter compares them that way.
    """
    ticks = int(when.timestamp() * 10_000_000) + _UUID_EPOCH_OFFSET
    value = (ticks >> 12) << 80 | 0x6 << 76 | (ticks & 0x0FFF) << 64 | 0x8 << 60
    return str(uuid.UUID(int=value))


async def purge_checkpoints(saver: BaseCheckpointSaver[Any], cutoff: datetime) -> int:
    """Delete every call (thread) whose newest checkpoint was written before `cutoff`; returns how many."""
    cutoff_id = checkpoint_id_at(cutoff)
    threads: set[str] = set()
    before: RunnableConfig = {"configurable": {"checkpoint_id": cutoff_id}}
    while True:  # a page at a time, newest first: the saver reads a whole listing into memory
        page = [item async for item in saver.alist(None, before=before, limit=_PAGE)]
        if not page:
            break
        threads.update(str(item.config["configurable"]["thread_id"]) for item in page)
        before = {"configurable": {"checkpoint_id": page[-1].config["configurable"]["checkpoint_id"]}}
    purged = 0
    for thread in sorted(threads):
        latest = await saver.aget_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}})
        if latest is not None and str(latest.config["configurable"]["checkpoint_id"]) >= cutoff_id:
            continue  # the call went on (or resumed) after the cutoff
        await saver.adelete_thread(thread)
        purged += 1
    return purged


async def purge_expired(
    retention_days: int,
    *,
    records: CallStore | None,
    checkpointer: BaseCheckpointSaver[Any] | None,
    now: datetime | None = None,
) -> Purged:
    """Delete the calls older than `retention_days` (0 keeps everything) from the records and the checkpoints.

    The console's live transcripts need no pass: Redis expires them an hour after the call (`LiveFeed`).
    """
    if retention_days <= 0:
        return Purged(records=0, threads=0)
    now = now or datetime.now(UTC)
    threads = await purge_checkpoints(checkpointer, now - timedelta(days=retention_days)) if checkpointer else 0
    calls = await records.purge_expired(retention_days, now=now) if records is not None else 0
    return Purged(records=calls, threads=threads)
