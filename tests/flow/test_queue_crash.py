"""Crash flows of the call queue: a SIGKILLed worker process, and a Redis restart from its AOF."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from orchestrator.contracts import CallJob
from orchestrator.queue import CallQueue, ClaimedCall
from tests.conftest import REDIS_TEST_URL
from tests.flow.private_redis import REDIS_SERVER, PrivateRedis

pytestmark = pytest.mark.flow

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("queue_worker.py")


@pytest.fixture
async def queue() -> AsyncIterator[CallQueue]:
    # production timers: reclaim after 1.5 s idle, heartbeat every 0.5 s
    q = CallQueue.from_url(REDIS_TEST_URL, prefix=f"flow-{uuid.uuid4().hex[:10]}")
    try:
        yield q
    finally:
        keys = [k async for k in q.redis.scan_iter(f"{q.keys.prefix}:*")]
        if keys:
            await q.redis.delete(*keys)
        await q.aclose()


async def test_sigkilled_worker_call_is_taken_over_once_its_heartbeats_stop(queue: CallQueue) -> None:
    await queue.admit(CallJob(call_id="crash-1", source="simulate", room="r1"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), REDIS_TEST_URL, queue.keys.prefix, "doomed",
        stdout=subprocess.PIPE, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert line.decode().split() == ["claimed", "crash-1", "1"]
        # while the worker lives and heartbeats, nobody can take its call (2 x the idle time)
        deadline = time.monotonic() + 2 * queue.reclaim_idle_ms / 1000
        while time.monotonic() < deadline:
            assert await queue.reclaim("survivor", count=1) == []
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

        # How soon is the reclaim timer's figure (reclaim_idle_ms), not this test's: it polls with a generous cap.
        taken: list[ClaimedCall] = []
        cap = time.monotonic() + 60
        while not taken:
            assert time.monotonic() < cap, "the dead worker's call was never taken over"
            taken = await queue.reclaim("survivor", count=1)
            if not taken:
                await asyncio.sleep(queue.heartbeat_ms / 1000 / 5)
        [call] = taken
        assert (call.call_id, call.attempt, call.deliveries) == ("crash-1", 2, 2)
        assert await queue.ack(call)
        assert (await queue.stats()).in_flight == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if not os.path.exists(REDIS_SERVER):
        pytest.fail(f"{REDIS_SERVER} is required (apt-get install redis-server)")
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill9()


async def test_accepted_calls_survive_a_redis_kill_9_with_aof(private_redis: PrivateRedis) -> None:
    q = CallQueue.from_url(private_redis.url, max_expected_wait_s=1e9)
    try:
        for i in range(50):
            await q.admit(CallJob(call_id=f"aof-{i:02d}", source="simulate"))
    finally:
        await q.aclose()
    private_redis.kill9()
    private_redis.start()

    q = CallQueue.from_url(private_redis.url)
    try:
        assert (await q.stats()).waiting == 50
        got: list[str] = []
        while batch := await q.claim("after-restart", count=20, block_ms=0):
            got += [c.call_id for c in batch]
            for c in batch:
                await q.ack(c)
        assert got == [f"aof-{i:02d}" for i in range(50)]
        assert await q.claim("another", count=50, block_ms=0) == []
        assert (await q.admit(CallJob(call_id="aof-07"))).duplicate  # admissions survived too
    finally:
        await q.aclose()
