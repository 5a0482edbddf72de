"""A call nothing can take on yet (no agent worker has room) goes back to the queue and waits, on real Redis: it is
not counted as a failed attempt, so it never dead-letters for want of capacity, and it is answered once there is."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from orchestrator.contracts import CallJob, CallOutcome
from orchestrator.queue import CallQueue, ClaimedCall
from orchestrator.worker.dispatch import DispatchNotTaken
from orchestrator.worker.worker import Worker
from tests.conftest import REDIS_TEST_URL

pytestmark = pytest.mark.flow

FAST = {"reclaim_idle_ms": 600, "heartbeat_ms": 200, "backoff_base_s": 0.05, "backoff_max_s": 0.2}


@pytest.fixture
async def queue() -> AsyncIterator[CallQueue]:
    q = CallQueue.from_url(REDIS_TEST_URL, prefix=f"df-{uuid.uuid4().hex[:10]}", **FAST)  # type: ignore[arg-type]  # options as keywords
    try:
        yield q
    finally:
        keys = [k async for k in q.redis.scan_iter(f"{q.keys.prefix}:*")]
        if keys:
            await q.redis.delete(*keys)
        await q.aclose()


class NoRoomYet:
    """No agent worker takes the call's dispatch for its first ``refusals`` claims; after that it is answered."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.claims: list[tuple[str, int]] = []

    async def run(self, claimed: ClaimedCall) -> CallOutcome:
        self.claims.append((claimed.call_id, claimed.attempt))
        if len(self.claims) <= self.refusals:
            raise DispatchNotTaken(f"no agent worker took the dispatch of call {claimed.call_id} within 15 s")
        return CallOutcome(call_id=claimed.call_id, outcome="resolved", turns=1)


async def test_a_call_no_agent_worker_takes_waits_in_the_queue_and_is_answered_once_one_does(
    queue: CallQueue,
) -> None:
    await queue.admit(CallJob(call_id="no-room", source="livekit", room="call-no-room"))
    # More refusals than the queue allows attempts: as failures, they would have dead-lettered the call.
    runner = NoRoomYet(refusals=queue.max_attempts + 1)
    worker = Worker(queue, runner, slots=1, hold_interval_s=None)
    await asyncio.wait_for(worker.run(burst=True), 60)
    # The same call, claimed again each time at its first attempt, and answered at last.
    assert runner.claims == [("no-room", 1)] * (queue.max_attempts + 2)
    stats = await queue.stats()
    assert (stats.completed, stats.dead_letters, stats.waiting, stats.in_flight) == (1, 0, 0, 0)
    assert await queue.dead_letters() == []
