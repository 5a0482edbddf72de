"""A Redis that comes back after an outage: every held call looks idle then, and none is taken from a living holder."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.contracts import CallJob
from orchestrator.queue import CallQueue, ClaimedCall, Reclaimer
from orchestrator.queue.outage import UNREACHABLE
from tests.redis_set import RedisProc, require_redis

pytestmark = pytest.mark.contract

IDLE_MS = 300


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisProc]:
    require_redis()
    # Every write on disk before its reply, so a SIGKILLed server comes back with the calls it held.
    proc = RedisProc(tmp_path / "redis", ["--appendonly", "yes", "--appendfsync", "always"])
    try:
        proc.start()
        yield proc
    finally:
        proc.kill9()


async def test_after_an_outage_no_call_is_taken_over_before_its_holder_could_renew_it(server: RedisProc) -> None:
    queue = CallQueue.from_url(
        server.url, prefix=f"rs-{uuid.uuid4().hex[:8]}", reclaim_idle_ms=IDLE_MS, heartbeat_ms=IDLE_MS // 3
    )
    try:
        await queue.admit(CallJob(call_id="held", source="sip"))
        held = await queue.claim("holder", block_ms=0)
        assert [c.call_id for c in held] == ["held"]
        taken: list[ClaimedCall] = []
        holder = Reclaimer(queue, "holder", slots=1, held=lambda: held, free_slots=lambda: 0, on_claimed=held.extend)
        thief = Reclaimer(queue, "thief", slots=1, held=lambda: taken, free_slots=lambda: 1 - len(taken),
                          on_claimed=taken.extend)  # fmt: skip
        await holder.tick()
        await thief.tick()

        server.kill9()
        for keeper in (holder, thief):
            with pytest.raises(UNREACHABLE):
                await keeper.tick()
        await asyncio.sleep(2 * IDLE_MS / 1000)  # the outage outlasts the idle time: nobody could renew
        server.start()

        # The thief's first tick after the outage comes before the holder's: the call is idle past the limit,
        # yet it stays with its holder, whose tick then renews it.
        await thief.tick()
        await holder.tick()
        await thief.tick()
        assert taken == []
        assert await queue.heartbeat(held) == []

        # A holder that really stopped (no more ticks) loses the call once the idle time has passed.
        async def thief_takes_it() -> None:
            while not taken:
                await thief.tick()
                await asyncio.sleep(IDLE_MS / 3000)

        await asyncio.wait_for(thief_takes_it(), 30)
        assert [(c.call_id, c.consumer, c.deliveries) for c in taken] == [("held", "thief", 2)]
    finally:
        await queue.aclose()
