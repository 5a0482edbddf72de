"""A worker SIGKILLed at any point of a paying turn: the call resumes elsewhere and the card is charged once."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.contracts import CallJob
from orchestrator.queue import CallQueue
from orchestrator.queue.outcomes import read_outcomes
from tests.conftest import REDIS_TEST_URL
from tests.flow.test_workers import WorkerProcess

pytestmark = pytest.mark.flow

REPO = Path(__file__).resolve().parents[2]
WORKER_PROC = Path(__file__).with_name("workers_support") / "worker_proc.py"
JAMES = "+15550100002"
# Turn 3's "yes" confirms a part payment (a second one would still fit the balance): one decision, one charge.
PAYING_SCRIPT = ["I want to pay 50 dollars on my bill", "10453", "yes"]
CRASH_POINTS = ["payment:before", "payment:flushed", "payment:committed", "turn:3"]


@pytest.fixture
async def queue() -> AsyncIterator[CallQueue]:
    q = CallQueue.from_url(REDIS_TEST_URL, prefix=f"once-{uuid.uuid4().hex[:10]}")
    try:
        yield q
    finally:
        keys = [k async for k in q.redis.scan_iter(f"{q.keys.prefix}:*")]
        if keys:
            await q.redis.delete(*keys)
        await q.aclose()


@pytest.fixture
async def spawn(queue: CallQueue, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    workers: list[WorkerProcess] = []

    async def start(crash_at: str = "") -> WorkerProcess:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "REDIS_URL": REDIS_TEST_URL,
            "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
            "PYTHONWARNINGS": "ignore",
            "CRASH_AT": crash_at,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER_PROC), queue.keys.prefix, "1", "30",
            stdout=asyncio.subprocess.PIPE, env=env, start_new_session=True,
        )  # fmt: skip
        worker = WorkerProcess(proc)
        workers.append(worker)
        await worker.wait_for(lambda e: e["event"] == "ready", 60)
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            await worker.aclose()


def payments(data_dir: Path) -> list[tuple[str, int]]:
    """James's payments in the tenant's SQLite file, read by a connection of its own."""
    with sqlite3.connect(data_dir / "switchboard.db") as conn:
        rows = conn.execute("SELECT payment_id, amount_cents FROM nw_payments WHERE account_id = 'NW-1002'")
        return [(str(p), int(c)) for p, c in rows]


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
async def test_a_worker_killed_at_any_point_of_a_paying_turn_charges_the_card_once(
    queue: CallQueue, spawn: Callable[..., Any], tmp_path: Path, crash_at: str
) -> None:
    victim = await spawn(crash_at)
    seeded = payments(tmp_path / "data")
    call_id = f"pay-{crash_at.replace(':', '-')}"
    await queue.admit(CallJob(call_id=call_id, source="simulate", caller_id=JAMES, script=PAYING_SCRIPT))
    crash = await victim.wait_for(lambda e: e["event"] == "crash", 60)
    assert crash["point"] == crash_at
    await victim.proc.wait()

    survivor = await spawn()
    finished = await survivor.wait_for(lambda e: e["event"] == "outcome", 60)
    assert (finished["call_id"], finished["turns"]) == (call_id, 3)
    # The killed turn was not saved (except at turn:3, after its checkpoint): the survivor ran it again.
    assert finished["resumed_at_turn"] == (3 if crash_at == "turn:3" else 2)

    charged = [p for p in payments(tmp_path / "data") if p not in seeded]
    assert [amount for _, amount in charged] == [5000], charged
    outcomes, _ = await read_outcomes(queue.redis, queue.keys.prefix)
    (outcome,) = [o for o in outcomes if o.call_id == call_id]
    assert outcome.outcome == "resolved"
