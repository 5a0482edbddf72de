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

from orchestrator.config import DEV_RECORD_KEY
from orchestrator.domain import (
    Lockout,
    SqlVerificationGuard,
    VerificationLimits,
    build_tenant,
    create_schema,
    open_engine,
    seed_demo,
    verification,
)
from orchestrator.domain.verification import VerificationFailureRow, VerificationLockoutRow
from orchestrator.redact import number_key
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
    # Numbers are kept as the call records keep them: keyed hashes of their digits, never in clear.
    assert [tuple(r) for r in rows] == [
        ("c1", None, f"phone:{number_key('+15559991234', DEV_RECORD_KEY)}", "unknown_number"),
        ("c2", f"caller:{number_key('+15557770001', DEV_RECORD_KEY)}", "account:NW-1002", "wrong_zip"),
    ]


async def stored_keys(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        failures = (
            await conn.execute(select(VerificationFailureRow.caller_key, VerificationFailureRow.account_key))
        ).all()
        locks = (await conn.execute(select(VerificationLockoutRow.key))).scalars().all()
    return [k for row in failures for k in row if k] + list(locks)


async def test_no_number_is_stored_in_clear_and_a_number_locks_as_before(
    guard: SqlVerificationGuard, engine: AsyncEngine
) -> None:
    seen: list[Lockout] = []
    guard.on_lockout = seen.append
    for i in range(LIMITS.max_failures):
        locked = await guard.record_failure(
            call_id=f"c{i}", caller_id="+1 (555) 777-0001", phone="5559991234", reason="unknown_number"
        )
    assert locked
    # Counted per number whichever way it was written, both the caller ID and the number claimed.
    assert await guard.locked(caller_id="+15557770001", phone=None)
    assert await guard.locked(caller_id=None, phone="+1 555 999 1234")
    assert not await guard.locked(caller_id="+15557770002", phone="+15559991235")
    assert sorted(lo.subject for lo in seen) == ["caller ***0001", "phone ***1234"]
    keys = await stored_keys(engine)
    assert keys
    assert not [k for k in keys if "7770001" in k or "9991234" in k], keys


async def test_the_keys_depend_on_the_record_key(engine: AsyncEngine, clock: Clock) -> None:
    await create_schema(engine)
    await seed_demo(engine, today=NOW.date())
    other = build_tenant(engine, clock=clock, verification_limits=LIMITS, record_key="another-deployment-key")
    assert isinstance(other.verification, SqlVerificationGuard)
    await other.verification.record_failure(call_id="c1", caller_id="+15557770001", phone="", reason="no_match")
    assert await stored_keys(engine) == [f"caller:{number_key('+15557770001', 'another-deployment-key')}"]


async def old_failures(engine: AsyncEngine, *, caller_key: str | None, account_key: str, reason: str) -> None:
    """Failures as a guard from before keys were hashed wrote them: one short of the limit, a minute ago."""
    async with engine.begin() as conn:
        for i in range(LIMITS.max_failures - 1):
            await conn.execute(
                VerificationFailureRow.__table__.insert().values(
                    failure_id=f"VF-old{i}",
                    call_id=f"old{i}",
                    caller_key=caller_key,
                    account_key=account_key,
                    reason=reason,
                    at=NOW - timedelta(minutes=1),
                )
            )


async def test_rows_kept_in_clear_are_rekeyed_and_keep_counting(
    guard: SqlVerificationGuard, engine: AsyncEngine, clock: Clock
) -> None:
    # What the guard wrote before numbers were keyed: a caller ID one failure short of the limit, and a
    # number without an account locked until after now.
    await old_failures(
        engine, caller_key="caller:+15557770001", account_key="phone:+15559991234", reason="unknown_number"
    )
    async with engine.begin() as conn:
        await conn.execute(
            VerificationLockoutRow.__table__.insert().values(
                lockout_id="VL-old",
                key="phone:+15559991234",
                failures=LIMITS.max_failures,
                at=NOW - timedelta(minutes=1),
                until=NOW + timedelta(minutes=5),
            )
        )
    assert await verification.rekey_clear_keys(engine, DEV_RECORD_KEY) == 2
    assert not [k for k in await stored_keys(engine) if "7770001" in k or "9991234" in k]
    assert await verification.rekey_clear_keys(engine, DEV_RECORD_KEY) == 0  # once is enough
    # The old lock holds, and the old failures count towards the next one.
    assert await guard.locked(caller_id=None, phone="+15559991234")
    assert not await guard.locked(caller_id="+15557770001", phone=None)
    assert await guard.record_failure(call_id="new", caller_id="+15557770001", phone="", reason="no_match")
    assert await guard.locked(caller_id="+15557770001", phone=None)
    clock.now += timedelta(minutes=5)
    assert not await guard.locked(caller_id=None, phone="+15559991234")


async def test_names_kept_in_clear_are_rekeyed_and_keep_counting(
    guard: SqlVerificationGuard, engine: AsyncEngine
) -> None:
    # Guesses by name written before names were keyed: one short of the limit.
    await old_failures(engine, caller_key=None, account_key="name:james carter", reason="no_match")
    assert await verification.rekey_clear_keys(engine, DEV_RECORD_KEY) == 1
    assert not [k for k in await stored_keys(engine) if "james" in k]
    assert await verification.rekey_clear_keys(engine, DEV_RECORD_KEY) == 0
    assert await guard.record_failure(call_id="new", caller_id=None, phone="", name="James Carter", reason="no_match")
    assert await guard.locked(caller_id=None, phone=None, name="james carter")


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


async def test_guesses_by_name_lock_the_name_not_a_namesakes_account(
    guard: SqlVerificationGuard, engine: AsyncEngine
) -> None:
    for i in range(LIMITS.max_failures - 1):
        assert not await guard.record_failure(
            call_id=f"c{i}", caller_id=None, phone="", name="James Carter", reason="no_match"
        )
    assert await guard.record_failure(call_id="c9", caller_id=None, phone="", name="james  carter", reason="no_match")
    assert await guard.locked(caller_id=None, phone=None, name="JAMES CARTER")
    assert not await guard.locked(caller_id=None, phone=JAMES)
    assert not await guard.locked(caller_id=None, phone=None, account_id="NW-1002")
    # The name is counted under its keyed hash: the rows and the lock never hold it in clear.
    keys = await stored_keys(engine)
    assert keys
    assert not [k for k in keys if "james" in k.lower() or "carter" in k.lower()], keys


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
