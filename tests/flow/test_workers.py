"""Workers on real Redis: burst drain, SIGKILL recovery from the checkpoint, SIGTERM drain, and a 10x spike."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.contracts import CallJob, CallOutcome
from orchestrator.queue import CallQueue
from orchestrator.queue.hold import HoldAnnouncer, read_hold_messages
from orchestrator.queue.outcomes import read_outcomes
from orchestrator.runtime import Services
from orchestrator.scenarios import SCENARIOS
from orchestrator.worker.runner import TURN_GAP_KEY, TextCallRunner
from orchestrator.worker.worker import Worker
from tests.conftest import REDIS_TEST_URL

pytestmark = pytest.mark.flow

REPO = Path(__file__).resolve().parents[2]
WORKER_PROC = Path(__file__).with_name("workers_support") / "worker_proc.py"
# Short timers for in-process workers; the subprocess tests keep the production defaults.
FAST = {
    "reclaim_idle_ms": 600,
    "heartbeat_ms": 200,
    "backoff_base_s": 0.05,
    "backoff_max_s": 0.2,
    # no worker is registered while tests admit: the default 180 s handle time would refuse the 4th call
    "max_expected_wait_s": 1e6,
}
BY_NAME = {s.name: s for s in SCENARIOS}
# A long call that never ends early (after an escalation the agent keeps answering until the script ends).
LONG_SCRIPT = ["How much do I owe?", "10453"] + ["When is my next bill due?", "What was my last payment?"] * 6


@pytest.fixture
async def queue() -> AsyncIterator[CallQueue]:
    q = CallQueue.from_url(REDIS_TEST_URL, prefix=f"wk-{uuid.uuid4().hex[:10]}", **FAST)  # type: ignore[arg-type]
    try:
        yield q
    finally:
        keys = [k async for k in q.redis.scan_iter(f"{q.keys.prefix}:*")]
        if keys:
            await q.redis.delete(*keys)
        await q.aclose()


def scenario_job(name: str, call_id: str, **extra: Any) -> CallJob:
    s = BY_NAME[name]
    return CallJob(call_id=call_id, source="simulate", caller_id=s.caller_id or "", script=list(s.turns), **extra)


async def outcomes_of(queue: CallQueue) -> dict[str, CallOutcome]:
    found, _ = await read_outcomes(queue.redis, queue.keys.prefix)
    return {o.call_id: o for o in found}


async def test_burst_worker_drains_the_queue_with_expected_outcomes(queue: CallQueue, services: Services) -> None:
    names = ["pay the balance", "outage check", "asks for a human", "legal threat", "dispute a charge"]
    for i, name in enumerate(names):
        await queue.admit(scenario_job(name, f"burst-{i}"))
    worker = Worker(queue, TextCallRunner(services), slots=2, hold_interval_s=None)
    await asyncio.wait_for(worker.run(burst=True), 60)
    outcomes = await outcomes_of(queue)
    assert sorted(outcomes) == [f"burst-{i}" for i in range(len(names))]
    for i, name in enumerate(names):
        o = outcomes[f"burst-{i}"]
        assert (o.status, o.outcome) == ("completed", BY_NAME[name].expect_outcome), (name, o)
        assert o.turns == len(o.turn_latency_ms) > 0
        assert o.worker == worker.name
        assert o.attempt == 1
    stats = await queue.stats()
    assert (stats.waiting, stats.in_flight, stats.completed, stats.dead_letters) == (0, 0, len(names), 0)


async def test_failing_call_is_retried_then_dead_lettered(queue: CallQueue) -> None:
    class Exploding:
        runs = 0

        async def run(self, claimed: Any) -> CallOutcome:
            Exploding.runs += 1
            raise RuntimeError("session crashed")

    await queue.admit(CallJob(call_id="boom", source="simulate"))
    worker = Worker(queue, Exploding(), slots=1, hold_interval_s=None)
    await asyncio.wait_for(worker.run(burst=True), 30)
    assert Exploding.runs == queue.max_attempts
    [dead] = await queue.dead_letters()
    assert dead.job.call_id == "boom"
    assert "session crashed" in dead.error
    outcome = (await outcomes_of(queue))["boom"]
    assert (outcome.status, outcome.attempt) == ("dead_lettered", queue.max_attempts)


async def test_spike_of_10x_the_slots_is_queued_in_order_and_all_complete(queue: CallQueue, services: Services) -> None:
    slots = 2
    await queue.register_worker("spike-warmup", slots)
    admissions = [
        await queue.admit(scenario_job("asks for a human" if i % 2 else "legal threat", f"spike-{i:02d}"))
        for i in range(10 * slots)
    ]
    await queue.unregister_worker("spike-warmup")
    assert [a.position for a in admissions] == list(range(1, 10 * slots + 1))
    waits = [a.expected_wait_s for a in admissions]
    assert waits == sorted(waits)
    assert waits[:slots] == [0.0] * slots
    assert await HoldAnnouncer(queue).announce() == 10 * slots
    last_hold = await read_hold_messages(queue.redis, queue.keys.prefix, "spike-19")
    assert last_hold[0]["position"] == 20
    assert last_hold[0]["text"].startswith("You're number 20 in the queue")

    workers = [Worker(queue, TextCallRunner(services), slots=1, hold_interval_s=None) for _ in range(slots)]
    await asyncio.wait_for(asyncio.gather(*(w.run(burst=True) for w in workers)), 60)
    outcomes = await outcomes_of(queue)
    assert len(outcomes) == 10 * slots
    assert all(o.status == "completed" and o.outcome == "escalated" for o in outcomes.values())
    assert sum(w.failed for w in workers) == 0
    stats = await queue.stats()
    assert (stats.completed, stats.dead_letters, stats.retries_scheduled, stats.in_flight) == (20, 0, 0, 0)


async def test_drain_deadline_hands_the_call_back_and_another_worker_resumes_it(
    queue: CallQueue, services: Services
) -> None:
    await queue.admit(CallJob(call_id="handback", source="simulate", script=LONG_SCRIPT, metadata={TURN_GAP_KEY: "50"}))
    started = asyncio.Event()
    done_turns: list[int] = []

    def on_turn(_: str, n: int) -> None:
        done_turns.append(n)
        if n >= 2:
            started.set()

    first = Worker(queue, TextCallRunner(services, on_turn=on_turn), slots=1, hold_interval_s=None, drain_timeout_s=0.1)
    run = asyncio.create_task(first.run())
    try:
        await asyncio.wait_for(started.wait(), 30)
        first.drain()
        await asyncio.wait_for(run, 30)
    finally:
        run.cancel()
    stats = await queue.stats()
    assert (stats.waiting, stats.in_flight) == (1, 0)
    assert await queue.position("handback") == 1

    second = Worker(queue, TextCallRunner(services), slots=1, hold_interval_s=None)
    await asyncio.wait_for(second.run(burst=True), 60)
    outcome = (await outcomes_of(queue))["handback"]
    assert outcome.turns == len(LONG_SCRIPT)
    assert outcome.resumed_at_turn == max(done_turns)
    state = await services.graph.aget_state({"configurable": {"thread_id": "handback"}})
    callers = [t["text"] for t in state.values["transcript"] if t["role"] == "caller"]
    assert callers == LONG_SCRIPT


# ---------------------------------------------------------------- worker OS processes


class WorkerProcess:
    """A `worker_proc.py` child whose JSON-line events are collected as they arrive."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            try:
                self.events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
            self._changed.set()
        self._changed.set()

    async def wait_for(self, pred: Callable[[dict[str, Any]], bool], within: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            for e in self.events:
                if pred(e):
                    return e
            if self.proc.returncode is not None and self._reader.done():
                raise AssertionError(f"worker exited ({self.proc.returncode}) without the event; saw {self.events}")
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"event not seen; saw {self.events}")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def aclose(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await self._reader


@pytest.fixture
async def spawn(queue: CallQueue, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    procs: list[WorkerProcess] = []
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "REDIS_URL": REDIS_TEST_URL,
        # the flow conftest's services fixture uses the same folder: the test reads the checkpoints
        "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
        "PYTHONWARNINGS": "ignore",
    }

    async def start(slots: int = 1, drain_timeout_s: float = 30.0) -> WorkerProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER_PROC), queue.keys.prefix, str(slots), str(drain_timeout_s),
            stdout=asyncio.subprocess.PIPE, env=env, start_new_session=True,
        )  # fmt: skip
        wp = WorkerProcess(proc)
        procs.append(wp)
        await wp.wait_for(lambda e: e["event"] == "ready", 60)
        return wp

    try:
        yield start
    finally:
        for wp in procs:
            await wp.aclose()


async def test_sigkilled_worker_call_resumes_on_another_process_with_every_turn(
    queue: CallQueue, spawn: Callable[..., Any], open_services: Callable[..., Any]
) -> None:
    # The worker processes use the production timers (heartbeat 0.5 s, reclaim after 1.5 s idle).
    a, b = await asyncio.gather(spawn(), spawn())
    job = CallJob(
        call_id="killme",
        source="simulate",
        caller_id="+15550100002",
        script=LONG_SCRIPT,
        metadata={TURN_GAP_KEY: "150"},
    )
    await queue.admit(job)
    waiters = [asyncio.create_task(w.wait_for(lambda e: e["event"] == "turn" and e["done"] >= 3)) for w in (a, b)]
    try:
        await asyncio.wait(waiters, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
    victim, survivor = (a, b) if any(e["event"] == "turn" for e in a.events) else (b, a)
    victim.proc.send_signal(signal.SIGKILL)
    killed_at = time.time()
    await victim.proc.wait()
    turns_before = max(e["done"] for e in victim.events if e["event"] == "turn")

    resumed = await survivor.wait_for(lambda e: e["event"] == "start" and e["call_id"] == "killme", 60)
    # Only once its worker was dead (how soon after is the reclaim timer's figure, not this test's).
    assert resumed["t"] >= killed_at
    # the turn in progress at the kill was not checkpointed; every finished one was
    assert resumed["resumed_at"] >= turns_before
    outcome = await survivor.wait_for(lambda e: e["event"] == "outcome", 60)
    assert (outcome["turns"], outcome["attempt"]) == (len(LONG_SCRIPT), 2)

    svc: Services = await open_services(seed=False)
    try:
        state = await svc.graph.aget_state({"configurable": {"thread_id": "killme"}})
    finally:
        await svc.aclose()
    callers = [t["text"] for t in state.values["transcript"] if t["role"] == "caller"]
    assert callers == LONG_SCRIPT, "every scripted turn exactly once, in order"


async def test_sigterm_drains_running_calls_and_leaves_queued_ones_for_others(
    queue: CallQueue, spawn: Callable[..., Any], services: Services
) -> None:
    worker = await spawn(slots=1)
    script = LONG_SCRIPT[:6]
    for i in range(3):
        await queue.admit(
            CallJob(call_id=f"drain-{i}", source="simulate", script=script, metadata={TURN_GAP_KEY: "100"})
        )
    first = await worker.wait_for(lambda e: e["event"] == "turn", 30)
    worker.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(worker.proc.wait(), 30) == 0
    await worker.wait_for(lambda e: e["event"] == "exit", 30)
    finished = [e for e in worker.events if e["event"] == "outcome"]
    assert [(e["call_id"], e["turns"]) for e in finished] == [(first["call_id"], len(script))]
    stats = await queue.stats()
    assert (stats.waiting, stats.in_flight, stats.worker_slots) == (2, 0, 0)
    left = sorted({f"drain-{i}" for i in range(3)} - {first["call_id"]})
    assert [await queue.position(c) for c in left] == [1, 2]

    other = Worker(queue, TextCallRunner(services), slots=2, hold_interval_s=None)
    await asyncio.wait_for(other.run(burst=True), 60)
    outcomes = await outcomes_of(queue)
    assert {c: (outcomes[c].turns, outcomes[c].attempt) for c in left} == {c: (len(script), 1) for c in left}
