"""The tenant's store of failed verifications on SQLite and the real PostgreSQL: windows, locks, one alert each."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.domain import (
    Lockout,
    SqlVerificationGuard,
    VerificationLimits,
    build_tenant,
    create_schema,
    open_engine,
    seed_demo,
)
from orchestrator.domain.verification import VerificationFailureRow
from orchestrator.telemetry.alerts import AlertEvaluator
from tests.conftest import POSTGRES_TEST_URL

pytestmark = pytest.mark.contract

NOW = datetime(2025, 3, 3, 14, 0, tzinfo=UTC)
LIMITS = VerificationLimits(max_failures=3, window=timedelta(minutes=10), cooldown=timedelta(minutes=30))
JAMES = "+15550100002"


def _pg(url: str, **query: str) -> str:
    base = "postgresql+psycopg://" + url.split("://", 1)[1]
    return base + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        eng = open_engine(f"sqlite+aiosqlite:///{tmp_path / 'northwind.db'}")
        try:
            yield eng
        finally:
            await eng.dispose()
        return
    schema = f"nw_test_{uuid.uuid4().hex[:12]}"
    admin = open_engine(_pg(POSTGRES_TEST_URL))
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    eng = open_engine(_pg(POSTGRES_TEST_URL, options=f"-csearch_path%3D{schema}"))
    try:
        yield eng
    finally:
        await eng.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def guard(engine: AsyncEngine, clock: Clock) -> SqlVerificationGuard:
    await create_schema(engine)
    await seed_demo(engine, today=NOW.date())
    tenant = build_tenant(engine, clock=clock, verification_limits=LIMITS)
    assert isinstance(tenant.verification, SqlVerificationGuard)
    return tenant.verification


async def test_failures_inside_the_window_lock_and_older_ones_do_not(guard: SqlVerificationGuard, clock: Clock) -> None:
    fail = guard.record_failure
    assert not await fail(call_id="c1", caller_id="+15557770001", phone=JAMES, reason="wrong_zip")
    clock.now += LIMITS.window  # the first failure leaves the window
    assert not await fail(call_id="c2", caller_id="+15557770002", phone=JAMES, reason="wrong_zip")
    assert not await fail(call_id="c3", caller_id="+15557770003", phone="(555) 010-0002", reason="wrong_zip")
    assert not await guard.locked(caller_id=None, phone=JAMES)
    assert await fail(call_id="c4", caller_id="+15557770004", phone=JAMES, reason="wrong_zip")
    assert await guard.locked(caller_id=None, phone="555 010 0002")
    assert await guard.locked(caller_id=JAMES, phone=JAMES)  # James calling from his own line
    assert not await guard.locked(caller_id="+15557770001", phone=None)  # each caller ID failed only once


async def test_failures_are_stored_with_their_reasons(guard: SqlVerificationGuard, engine: AsyncEngine) -> None:
    await guard.record_failure(call_id="c1", caller_id=None, phone="+15559991234", reason="unknown_number")
    await guard.record_failure(call_id="c2", caller_id="+15557770001", phone=JAMES, reason="wrong_zip")
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    VerificationFailureRow.call_id,
                    VerificationFailureRow.caller_key,
                    VerificationFailureRow.account_key,
                    VerificationFailureRow.reason,
                ).order_by(VerificationFailureRow.call_id)
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("c1", None, "phone:+15559991234", "unknown_number"),
        ("c2", "caller:+15557770001", "account:NW-1002", "wrong_zip"),
    ]


async def test_concurrent_failures_past_the_limit_make_one_lock_and_one_alert(
    guard: SqlVerificationGuard, clock: Clock
) -> None:
    alerts = AlertEvaluator()
    seen: list[Lockout] = []

    def hook(lockout: Lockout) -> None:
        seen.append(lockout)
        alerts.observe_verification_lockout(subject=lockout.subject, failures=lockout.failures, call_id=lockout.call_id)

    guard.on_lockout = hook
    results = await asyncio.gather(
        *(
            guard.record_failure(call_id=f"c{i}", caller_id=None, phone=JAMES, reason="wrong_zip")
            for i in range(2 * LIMITS.max_failures)
        )
    )
    assert sum(results) == 1
    assert [lo.key for lo in seen] == ["account:NW-1002"]
    [alert] = alerts.stream.recent()
    assert (alert.rule, alert.severity) == ("verification_lockout", "critical")
    assert "account NW-1002" in alert.message

    clock.now += LIMITS.cooldown
    assert not await guard.locked(caller_id=None, phone=JAMES)
    # A fresh start after the cool-down: the failures counted for the lock do not count again.
    assert not await guard.record_failure(call_id="after", caller_id=None, phone=JAMES, reason="wrong_zip")


async def test_a_caller_id_alert_masks_the_number(guard: SqlVerificationGuard) -> None:
    seen: list[Lockout] = []
    guard.on_lockout = seen.append
    for i in range(LIMITS.max_failures):
        await guard.record_failure(
            call_id=f"c{i}", caller_id="+15557770001", phone=f"+1555999{i:04d}", reason="unknown_number"
        )
    [lockout] = seen
    assert lockout.subject == "caller ***0001"
    assert "7770001" not in lockout.subject


async def test_each_further_lock_within_a_day_lasts_twice_as_long(guard: SqlVerificationGuard, clock: Clock) -> None:
    async def lock() -> None:
        for i in range(LIMITS.max_failures):
            locked = await guard.record_failure(call_id=f"c{i}", caller_id=None, phone=JAMES, reason="wrong_zip")
        assert locked

    async def locked_for() -> timedelta:
        start = clock.now
        step = timedelta(minutes=5)
        while await guard.locked(caller_id=None, phone=JAMES):
            clock.now += step
        return clock.now - start

    await lock()
    assert await locked_for() == LIMITS.cooldown
    await lock()
    assert await locked_for() == 2 * LIMITS.cooldown
    await lock()
    assert await locked_for() == 4 * LIMITS.cooldown
    clock.now += LIMITS.memory  # a day with no lock: back to the first cool-down
    await lock()
    assert await locked_for() == LIMITS.cooldown


async def test_guesses_by_account_number_count_with_guesses_by_phone(guard: SqlVerificationGuard) -> None:
    fail = guard.record_failure
    assert not await fail(call_id="c1", caller_id=None, phone=JAMES, reason="wrong_zip")
    assert not await fail(call_id="c2", caller_id=None, phone="", account_id="nw-1002", reason="no_match")
    assert await fail(call_id="c3", caller_id=None, phone="", account_id="NW-1002", reason="no_match")
    assert await guard.locked(caller_id=None, phone=JAMES)
    assert await guard.locked(caller_id=None, phone=None, account_id="NW-1002")
    # An account number that does not exist is counted the same way: a lock tells nothing about it.
    for i in range(LIMITS.max_failures - 1):
        assert not await fail(call_id=f"n{i}", caller_id=None, phone="", account_id="NW-9999", reason="no_match")
    assert await fail(call_id="n9", caller_id=None, phone="", account_id="NW-9999", reason="no_match")


async def test_guesses_by_name_lock_the_name_not_a_namesakes_account(guard: SqlVerificationGuard) -> None:
    for i in range(LIMITS.max_failures - 1):
        assert not await guard.record_failure(
            call_id=f"c{i}", caller_id=None, phone="", name="James Carter", reason="no_match"
        )
    assert await guard.record_failure(call_id="c9", caller_id=None, phone="", name="james  carter", reason="no_match")
    assert await guard.locked(caller_id=None, phone=None, name="JAMES CARTER")
    assert not await guard.locked(caller_id=None, phone=JAMES)
    assert not await guard.locked(caller_id=None, phone=None, account_id="NW-1002")


async def test_a_name_and_zip_find_one_account_and_tell_nothing_else(engine: AsyncEngine, clock: Clock) -> None:
    await create_schema(engine)
    await seed_demo(engine, today=NOW.date())
    customers = build_tenant(engine, clock=clock).customers
    found = await customers.match_name_and_zip("james  CARTER", "10453")
    assert found is not None
    assert found.account_id == "NW-1002"
    assert await customers.match_name_and_zip("James Carter", "10027") is None  # a wrong ZIP
    assert await customers.match_name_and_zip("John Smith", "10453") is None  # nobody by that name
    assert await customers.match_name_and_zip("James", "10453") is None  # a first name is not enough
    assert await customers.match_name_and_zip("James Carter", "") is None
