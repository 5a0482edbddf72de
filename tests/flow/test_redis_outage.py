"""Worker processes ride out a Redis restart mid-batch: every accepted call completes exactly once, no worker exits."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.contracts import CallJob, CallOutcome
from orchestrator.queue import CallQueue, ClaimedCall, scripts
from orchestrator.runtime import Services
from orchestrator.worker.runner import TURN_GAP_KEY
from orchestrator.worker.worker import Worker
from tests.conftest import REDIS_TEST_URL
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
                metadata={TURN_GAP_KEY: "400"},
            )
            await queue.admit(job)
    finally:
        await queue.aclose()

    # Mid-batch: some calls done, others running or waiting.
    await wait_until(lambda: sum(1 for w in workers for e in w.events if e["event"] == "outcome") >= 2, 120, "2 calls")
    redis_server.stop()
    # Redis stays down until both workers have given up on the client's own retries and noticed the outage
    # (or one has died of it), and every call running at the stop has said its last turn: those calls end
    # while Redis is away and must be recorded once it is back (by their worker or by one that took them).
    running = {e["call_id"] for w in workers for e in w.events if e["event"] == "start"} - {
        e["call_id"] for w in workers for e in w.events if e["event"] == "outcome"
    }
    assert running, "no call was running at the stop"

    def died() -> bool:
        return any(w.proc.returncode is not None for w in workers)

    def outage_seen() -> bool:
        return died() or all("Redis unreachable" in log.read_text() for log in (a_log, b_log))

    def running_calls_ended() -> bool:
        last = {e["call_id"] for w in workers for e in w.events if e["event"] == "turn" and e["done"] == len(SCRIPT)}
        return died() or running <= last

    await wait_until(outage_seen, 60, "both workers noticing the outage")
    await wait_until(running_calls_ended, 60, "the running calls' last turns during the outage")
    redis_server.start()

    def finished() -> Counter[str]:
        return Counter(e["call_id"] for w in workers for e in w.events if e["event"] == "outcome")

    def exited() -> bool:
        return any(w.proc.returncode is not None for w in workers)

    await wait_until(lambda: len(finished()) == CALLS or exited(), 120, "every call's outcome")
    assert not exited(), f"a worker exited: {[w.proc.returncode for w in workers]}"
    # Outcomes are at least once (a worker may repeat one it cannot tell it had acked); acks are exactly once.
    assert set(finished()) == {f"out-{i:02d}" for i in range(CALLS)}

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


class CuttingProxy:
    """A loopback TCP proxy to the test Redis that, once armed, forwards the next command carrying `marker` and
    then drops that client's connection before the reply (a command that landed but whose answer was lost)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.marker: bytes | None = None
        self.cuts = 0
        self.server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def aclose(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self._writers):
            writer.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers |= {writer, up_writer}
        cut = asyncio.Event()

        async def to_redis() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()
                if self.marker is not None and self.marker in data:
                    self.marker = None
                    self.cuts += 1
                    cut.set()

        async def to_client() -> None:
            while data := await up_reader.read(65536):
                if cut.is_set():
                    return  # the reply to the marked command is dropped with the connection
                writer.write(data)
                await writer.drain()

        pipes = [asyncio.create_task(to_redis()), asyncio.create_task(to_client())]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            writer.close()
            up_writer.close()
            self._writers -= {writer, up_writer}
            self._handlers.discard(handler)


class InstantRunner:
    """A session that ends at once (the test is about recording its end)."""

    async def run(self, claimed: ClaimedCall) -> CallOutcome:
        return CallOutcome(call_id=claimed.call_id, outcome="resolved", turns=1)


async def test_a_call_whose_ack_landed_but_whose_reply_was_lost_is_reported_once() -> None:
    upstream = int(REDIS_TEST_URL.rsplit(":", 1)[1].split("/")[0])
    proxy = CuttingProxy(upstream)
    await proxy.start()
    db = REDIS_TEST_URL.rsplit("/", 1)[1]
    queue = CallQueue.from_url(f"redis://127.0.0.1:{proxy.port}/{db}", prefix=f"cut-{uuid.uuid4().hex[:10]}")
    reported: list[str] = []

    async def on_outcome(outcome: CallOutcome) -> None:
        reported.append(outcome.call_id)

    try:
        await queue.admit(CallJob(call_id="cut-1", source="simulate"))
        # The ack script is loaded first, so the marked EVALSHA is the ack itself landing (not a NOSCRIPT).
        sha = await queue.redis.script_load(scripts.ACK)
        proxy.marker = str(sha).encode()
        worker = Worker(queue, InstantRunner(), slots=1, hold_interval_s=None, on_outcome=on_outcome)
        await asyncio.wait_for(worker.run(burst=True), 60)
        assert proxy.cuts == 1
        assert reported == ["cut-1"]
        assert worker.completed == 1
        stats = await queue.stats()
        assert (stats.completed, stats.in_flight, stats.waiting, stats.dead_letters) == (1, 0, 0, 0)
    finally:
        keys = [k async for k in queue.redis.scan_iter(f"{queue.keys.prefix}:*")]
        if keys:
            await queue.redis.delete(*keys)
        await queue.aclose()
        await proxy.aclose()


async def test_a_worker_started_while_redis_is_down_waits_for_it_and_then_runs_calls(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path)  # its port is chosen, nothing listens on it yet
    queue = CallQueue.from_url(server.url, prefix="late", max_expected_wait_s=1e9)
    done = asyncio.Event()

    async def on_outcome(outcome: CallOutcome) -> None:
        done.set()

    worker = Worker(queue, InstantRunner(), slots=1, hold_interval_s=None, on_outcome=on_outcome)
    run = asyncio.create_task(worker.run())
    try:
        await wait_until(lambda: worker.outage.down or run.done(), 60, "the worker noticing Redis is down")
        assert not run.done(), run.exception()
        server.start()
        await queue.admit(CallJob(call_id="late-1", source="simulate"))
        await asyncio.wait_for(done.wait(), 60)
        worker.drain()
        await asyncio.wait_for(run, 60)
        assert (worker.completed, worker.outage.outages) == (1, 1)
        assert (await queue.stats()).completed == 1
    finally:
        run.cancel()
        await queue.aclose()
        server.kill9()
