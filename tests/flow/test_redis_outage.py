"""Worker processes ride out a Redis restart mid-batch: every accepted call completes once, no worker exits."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.contracts import CallJob
from orchestrator.queue import CallQueue
from orchestrator.runtime import Services
from orchestrator.worker.runner import TURN_GAP_KEY
from tests.flow.private_redis import REDIS_SERVER, PrivateRedis
from tests.flow.test_workers import WorkerProcess

pytestmark = pytest.mark.flow

REPO = Path(__file__).resolve().parents[2]
WORKER_PROC = Path(__file__).with_name("workers_support") / "worker_proc.py"
SCRIPT = ["How much do I owe?", "10453", "When is my next bill due?", "What was my last payment?", "no"]
CALLS = 12
PREFIX = "outage"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    if not os.path.exists(REDIS_SERVER):
        pytest.fail(f"{REDIS_SERVER} is required (apt-get install redis-server)")
    folder = tmp_path / "redis"
    folder.mkdir()
    server = PrivateRedis(folder)
    server.start()
    try:
        yield server
    finally:
        server.kill9()


@pytest.fixture
async def spawn(redis_server: PrivateRedis, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    procs: list[tuple[WorkerProcess, Any]] = []
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "REDIS_URL": redis_server.url,
        "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
        "PYTHONWARNINGS": "ignore",
    }

    names = iter(range(100))

    async def start(slots: int) -> tuple[WorkerProcess, Path]:
        log = tmp_path / f"worker-{next(names)}.log"
        stderr = log.open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER_PROC), PREFIX, str(slots),
            stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env, start_new_session=True,
        )  # fmt: skip
        wp = WorkerProcess(proc)
        procs.append((wp, stderr))
        await wp.wait_for(lambda e: e["event"] == "ready", 90)
        return wp, log

    try:
        yield start
    finally:
        for wp, stderr in procs:
            await wp.aclose()
            stderr.close()


def turns_seen(workers: list[WorkerProcess]) -> int:
    return sum(1 for w in workers for e in w.events if e["event"] == "turn")


async def wait_until(pred: Callable[[], bool], within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {within} s: {what}")
        await asyncio.sleep(0.05)


@pytest.mark.timeout(300)  # two worker processes start (models, graph) on a shared 2-core machine
async def test_workers_ride_out_a_redis_restart_and_every_call_completes_once(
    redis_server: PrivateRedis, spawn: Callable[..., Any], open_services: Callable[..., Any]
) -> None:
    (a, a_log), (b, b_log) = await asyncio.gather(spawn(2), spawn(2))
    workers = [a, b]
    queue = CallQueue.from_url(redis_server.url, prefix=PREFIX, max_expected_wait_s=1e9)
    try:
        for i in range(CALLS):
            job = CallJob(
                call_id=f"out-{i:02d}",
                source="simulate",
                caller_id="+15550100002",
                script=SCRIPT,
                metadata={TURN_GAP_KEY: "150"},
            )
            await queue.admit(job)
    finally:
        await queue.aclose()

    # Mid-batch: some calls done, others running or waiting.
    await wait_until(lambda: sum(1 for w in workers for e in w.events if e["event"] == "outcome") >= 2, 120, "2 calls")
    redis_server.stop()
    # Redis stays down until both workers have given up on the client's own retries and noticed the outage
    # (or one has died of it), and the running calls have taken more turns meanwhile.
    during = turns_seen(workers)

    def outage_seen() -> bool:
        died = any(w.proc.returncode is not None for w in workers)
        return died or all("Redis unreachable" in log.read_text() for log in (a_log, b_log))

    await wait_until(outage_seen, 60, "both workers noticing the outage")
    await wait_until(lambda: turns_seen(workers) >= during + 2, 60, "turns during the outage")
    redis_server.start()

    def finished() -> Counter[str]:
        return Counter(e["call_id"] for w in workers for e in w.events if e["event"] == "outcome")

    def exited() -> bool:
        return any(w.proc.returncode is not None for w in workers)

    await wait_until(lambda: len(finished()) == CALLS or exited(), 120, "every call's outcome")
    assert not exited(), f"a worker exited: {[w.proc.returncode for w in workers]}"
    assert finished() == Counter({f"out-{i:02d}": 1 for i in range(CALLS)}), "each call is recorded once"

    queue = CallQueue.from_url(redis_server.url, prefix=PREFIX)
    try:
        stats = await queue.stats()
    finally:
        await queue.aclose()
    assert (stats.waiting, stats.in_flight, stats.dead_letters, stats.completed) == (0, 0, 0, CALLS)

    svc: Services = await open_services(seed=False)
    try:
        for i in range(CALLS):
            state = await svc.graph.aget_state({"configurable": {"thread_id": f"out-{i:02d}"}})
            callers = [t["text"] for t in state.values["transcript"] if t["role"] == "caller"]
            assert callers == SCRIPT, f"out-{i:02d}: every scripted turn exactly once, in order"
    finally:
        await svc.aclose()

    for log in (a_log, b_log):
        text = log.read_text()
        assert "Traceback" not in text, text[-3000:]
        assert text.count("Redis unreachable") <= 1, text[-3000:]
    assert sum(log.read_text().count("Redis unreachable") for log in (a_log, b_log)) >= 1
