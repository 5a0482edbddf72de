"""One conformance suite for the Northwind demo tenant, run on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.ports import Appointment, Invoice, InvoiceLine, NotAllowed, NotFound, PolicyViolation, Tenant
from orchestrator.domain import (
    DEMO_CUSTOMERS,
    SqlHumanDesk,
    build_tenant,
    create_schema,
    open_engine,
    seed_demo,
)
from orchestrator.domain.models import (
    AppointmentRow,
    Base,
    CustomerRow,
    DisputeRow,
    PasswordResetRow,
    PaymentRow,
    RefundRow,
    TicketRow,
)
from tests.conftest import POSTGRES_TEST_URL

pytestmark = pytest.mark.contract

TZ = ZoneInfo("America/New_York")
# A Monday; US daylight saving time starts inside the 21-day slot window, which the suite exercises.
TODAY = date(2025, 3, 3)
NOW = datetime.combine(TODAY, time(9, 0), tzinfo=TZ)

MARIA, JAMES, AISHA, TOM, ELEANOR, ROBERT, SOFIA, DAVID = (c.account_id for c in DEMO_CUSTOMERS)


def _async_pg_url(url: str, **query: str) -> str:
    base = "postgresql+psycopg://" + url.split("://", 1)[1]
    return base + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An empty store: a fresh SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        eng = open_engine(f"sqlite+aiosqlite:///{tmp_path / 'northwind.db'}")
        try:
            yield eng
        finally:
            await eng.dispose()
        return
    # A schema per test, with a random name, so parallel or repeated runs never see each other's rows.
    schema = f"nw_test_{uuid.uuid4().hex[:12]}"
    admin = open_engine(_async_pg_url(POSTGRES_TEST_URL))
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    eng = open_engine(_async_pg_url(POSTGRES_TEST_URL, options=f"-csearch_path%3D{schema}"))
    try:
        yield eng
    finally:
        await eng.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


@pytest.fixture
async def seeded(engine: AsyncEngine) -> AsyncEngine:
    await create_schema(engine)
    assert await seed_demo(engine, today=TODAY)
    return engine


@pytest.fixture
def tenant(seeded: AsyncEngine) -> Tenant:
    return build_tenant(seeded, clock=lambda: NOW)


async def _dump(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    async with engine.connect() as conn:
        return {
            table.name: [tuple(row) for row in await conn.execute(select(table).order_by(*table.primary_key.columns))]
            for table in Base.metadata.sorted_tables
        }


async def _invoice(tenant: Tenant, account_id: str, *, index: int = 0) -> Invoice:
    """The account's invoice, 0 being the newest (10 days old), 2 the oldest (70 days old)."""
    return (await tenant.billing.invoices(account_id, limit=3))[index]


# -------------------------------------------------------------------------------------------- seed


async def test_seed_is_idempotent(seeded: AsyncEngine) -> None:
    before = await _dump(seeded)
    assert await seed_demo(seeded, today=TODAY) is False
    assert await _dump(seeded) == before
    assert len(before["nw_customers"]) == 40


async def test_concurrent_schema_creation_and_seeding_agree_on_one_winner(engine: AsyncEngine) -> None:
    await asyncio.gather(create_schema(engine), create_schema(engine))
    results = await asyncio.gather(seed_demo(engine, today=TODAY), seed_demo(engine, today=TODAY))
    assert sorted(results) == [False, True]
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(CustomerRow))).scalar_one() == 40


async def test_a_later_seed_only_tops_up_slots(seeded: AsyncEngine) -> None:
    before = await _dump(seeded)
    assert await seed_demo(seeded, today=TODAY + timedelta(days=7)) is False
    after = await _dump(seeded)
    assert {k: v for k, v in after.items() if k != "nw_slots"} == {k: v for k, v in before.items() if k != "nw_slots"}
    assert set(before["nw_slots"]) < set(after["nw_slots"])


async def test_demo_customers_are_stable(tenant: Tenant) -> None:
    for demo in DEMO_CUSTOMERS:
        customer = await tenant.customers.find_by_phone(demo.phone)
        assert customer is not None
        assert (customer.account_id, customer.name, customer.zip_code, customer.plan, customer.vip) == (
            demo.account_id,
            demo.name,
            demo.zip_code,
            demo.plan,
            demo.vip,
        )
    assert (await tenant.customers.get(ELEANOR)).vip


# ------------------------------------------------------------------------------------ verification


async def test_verification(tenant: Tenant) -> None:
    maria = await tenant.customers.find_by_phone("+1 (555) 010-0001")
    assert maria is not None
    assert maria.account_id == MARIA
    assert await tenant.customers.check_second_factor(MARIA, "10027")
    assert await tenant.customers.check_second_factor(MARIA, " 100 27 ")
    assert not await tenant.customers.check_second_factor(MARIA, "10028")
    assert not await tenant.customers.check_second_factor(MARIA, "")
    assert not await tenant.customers.check_second_factor("NW-9999", "10027")
    assert await tenant.customers.find_by_phone("+15559999999") is None
    with pytest.raises(NotFound):
        await tenant.customers.get("NW-9999")


async def test_password_reset_is_masked_and_recorded(tenant: Tenant, seeded: AsyncEngine) -> None:
    assert await tenant.customers.send_password_reset(MARIA) == "m***@example.com"
    async with seeded.connect() as conn:
        emails = (await conn.execute(select(PasswordResetRow.email))).scalars().all()
    assert emails == ["maria.gonzalez@example.com"]
    with pytest.raises(NotFound):
        await tenant.customers.send_password_reset("NW-9999")


# -------------------------------------------------------------------------------------- scheduling


async def test_open_slots_are_future_local_and_distinct(tenant: Tenant) -> None:
    slots = await tenant.scheduling.open_slots(on_or_after=TODAY, limit=5)
    assert len(slots) == 5
    assert len({slot.start for slot in slots}) == 5
    assert [s.start for s in slots] == sorted(s.start for s in slots)
    for slot in slots:
        assert slot.start > NOW
        assert slot.start.utcoffset() == slot.start.astimezone(TZ).utcoffset()
        assert slot.start.astimezone(TZ).time() in {time(8), time(10), time(13), time(15)}
        assert slot.end - slot.start == timedelta(hours=2)
    later = await tenant.scheduling.open_slots(on_or_after=TODAY + timedelta(days=14))
    assert len(later) == 3
    assert all(slot.start.astimezone(TZ).date() >= TODAY + timedelta(days=14) for slot in later)
    # After the DST switch on 2025-03-09 the windows keep their local hours (UTC offset -4, not -5).
    assert all(slot.start.astimezone(TZ).time() in {time(8), time(10), time(13), time(15)} for slot in later)
    assert later[0].start.utcoffset() == timedelta(hours=-4)
    assert await tenant.scheduling.open_slots(on_or_after=TODAY, limit=0) == []


async def test_seeded_appointment_next_week(tenant: Tenant) -> None:
    (appointment,) = await tenant.scheduling.appointments(MARIA)
    assert appointment.status == "booked"
    assert TODAY + timedelta(days=7) <= appointment.start.astimezone(TZ).date() <= TODAY + timedelta(days=9)
    assert appointment.start.tzinfo is not None
    assert await tenant.scheduling.appointments(DAVID) == []


async def test_book_move_cancel(tenant: Tenant) -> None:
    first, second, third = await tenant.scheduling.open_slots(on_or_after=TODAY)
    booked = await tenant.scheduling.book(DAVID, first.slot_id, "No internet since yesterday")
    assert (booked.status, booked.slot_id, booked.start) == ("booked", first.slot_id, first.start)
    assert [a.appointment_id for a in await tenant.scheduling.appointments(DAVID)] == [booked.appointment_id]
    assert first.slot_id not in {s.slot_id for s in await tenant.scheduling.open_slots(on_or_after=TODAY, limit=50)}

    with pytest.raises(PolicyViolation):
        await tenant.scheduling.book(TOM, first.slot_id, "Same slot")

    moved = await tenant.scheduling.move(DAVID, booked.appointment_id, second.slot_id)
    assert (moved.appointment_id, moved.slot_id, moved.start) == (booked.appointment_id, second.slot_id, second.start)
    assert len(await tenant.scheduling.appointments(DAVID)) == 1
    # The old slot is free again: someone else can have it.
    await tenant.scheduling.book(TOM, first.slot_id, "Slow Wi-Fi")

    with pytest.raises(PolicyViolation):
        await tenant.scheduling.move(DAVID, booked.appointment_id, first.slot_id)
    assert (await tenant.scheduling.appointments(DAVID))[0].slot_id == second.slot_id

    cancelled = await tenant.scheduling.cancel(DAVID, booked.appointment_id)
    assert cancelled.status == "cancelled"
    assert await tenant.scheduling.appointments(DAVID) == []
    with pytest.raises(PolicyViolation, match="already cancelled"):
        await tenant.scheduling.cancel(DAVID, booked.appointment_id)
    with pytest.raises(PolicyViolation):
        await tenant.scheduling.move(DAVID, booked.appointment_id, third.slot_id)
    # Cancelling released the slot.
    await tenant.scheduling.book(ELEANOR, second.slot_id, "Install a mesh extender")


async def test_booking_unknown_taken_and_past_slots(tenant: Tenant, seeded: AsyncEngine) -> None:
    with pytest.raises(NotFound):
        await tenant.scheduling.book(DAVID, "SL-19990101-0800-DO", "Nothing")
    (maria_visit,) = await tenant.scheduling.appointments(MARIA)
    with pytest.raises(PolicyViolation):
        await tenant.scheduling.book(DAVID, maria_visit.slot_id, "Taken by Maria")
    slot = (await tenant.scheduling.open_slots(on_or_after=TODAY))[0]
    tomorrow = build_tenant(seeded, clock=lambda: slot.end + timedelta(hours=1))
    with pytest.raises(PolicyViolation, match="passed"):
        await tomorrow.scheduling.book(DAVID, slot.slot_id, "Too late")
    after_visit = build_tenant(seeded, clock=lambda: maria_visit.end + timedelta(hours=1))
    with pytest.raises(PolicyViolation, match="taken place"):
        await after_visit.scheduling.cancel(MARIA, maria_visit.appointment_id)
    assert await after_visit.scheduling.appointments(MARIA) == []


async def test_two_bookings_of_one_slot_exactly_one_wins(tenant: Tenant) -> None:
    slot = (await tenant.scheduling.open_slots(on_or_after=TODAY))[0]
    results = await asyncio.gather(
        tenant.scheduling.book(DAVID, slot.slot_id, "Race A"),
        tenant.scheduling.book(TOM, slot.slot_id, "Race B"),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Appointment) for r in results) == 1, results
    assert sum(isinstance(r, PolicyViolation) for r in results) == 1, results


async def test_two_moves_onto_one_slot_exactly_one_wins(tenant: Tenant) -> None:
    a, b, target = await tenant.scheduling.open_slots(on_or_after=TODAY)
    first = await tenant.scheduling.book(DAVID, a.slot_id, "One")
    second = await tenant.scheduling.book(TOM, b.slot_id, "Two")
    results = await asyncio.gather(
        tenant.scheduling.move(DAVID, first.appointment_id, target.slot_id),
        tenant.scheduling.move(TOM, second.appointment_id, target.slot_id),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Appointment) for r in results) == 1, results
    assert sum(isinstance(r, PolicyViolation) for r in results) == 1, results


# ------------------------------------------------------------------------------------- ownership


async def _maria_appointment(tenant: Tenant) -> str:
    return (await tenant.scheduling.appointments(MARIA))[0].appointment_id


async def _aisha_invoice(tenant: Tenant) -> str:
    return (await _invoice(tenant, AISHA)).invoice_id


async def _aisha_line(tenant: Tenant) -> str:
    return (await _invoice(tenant, AISHA)).lines[-1].line_id


OWNERSHIP_CASES: dict[str, Callable[[Tenant], Awaitable[object]]] = {}


def _case(name: str) -> Callable[[Callable[[Tenant], Awaitable[object]]], Callable[[Tenant], Awaitable[object]]]:
    def register(fn: Callable[[Tenant], Awaitable[object]]) -> Callable[[Tenant], Awaitable[object]]:
        OWNERSHIP_CASES[name] = fn
        return fn

    return register


@_case("move")
async def _move_other(t: Tenant) -> object:
    slot = (await t.scheduling.open_slots(on_or_after=TODAY))[0]
    return await t.scheduling.move(DAVID, await _maria_appointment(t), slot.slot_id)


@_case("cancel")
async def _cancel_other(t: Tenant) -> object:
    return await t.scheduling.cancel(DAVID, await _maria_appointment(t))


@_case("dispute-invoice")
async def _dispute_other_invoice(t: Tenant) -> object:
    return await t.billing.dispute(DAVID, await _aisha_invoice(t), await _aisha_line(t), "Not mine")


@_case("dispute-line")
async def _dispute_other_line(t: Tenant) -> object:
    own = await _invoice(t, DAVID)
    return await t.billing.dispute(DAVID, own.invoice_id, await _aisha_line(t), "Not mine")


@_case("refund")
async def _refund_other(t: Tenant) -> object:
    return await t.billing.refund(DAVID, await _aisha_invoice(t), 500, "Not mine", line_id=await _aisha_line(t))


@pytest.mark.parametrize("case", sorted(OWNERSHIP_CASES))
async def test_other_accounts_objects_are_not_allowed(tenant: Tenant, case: str) -> None:
    with pytest.raises(NotAllowed) as caught:
        await OWNERSHIP_CASES[case](tenant)
    # The spoken message names no account and no id.
    assert "NW-" not in str(caught.value)
    assert "INV-" not in str(caught.value)
    # Nothing changed for the owner.
    assert len(await tenant.scheduling.appointments(MARIA)) == 1
    aisha = await _invoice(tenant, AISHA)
    assert len(aisha.lines) == 3


async def test_unknown_ids_are_not_found(tenant: Tenant) -> None:
    slot = (await tenant.scheduling.open_slots(on_or_after=TODAY))[0]
    own = await _invoice(tenant, DAVID)
    with pytest.raises(NotFound):
        await tenant.scheduling.move(DAVID, "AP-NOPE", slot.slot_id)
    with pytest.raises(NotFound):
        await tenant.scheduling.cancel(DAVID, "AP-NOPE")
    with pytest.raises(NotFound):
        await tenant.billing.dispute(DAVID, "INV-NOPE", own.lines[0].line_id, "x")
    with pytest.raises(NotFound):
        await tenant.billing.dispute(DAVID, own.invoice_id, "LINE-NOPE", "x")
    older = await _invoice(tenant, DAVID, index=1)
    with pytest.raises(NotFound):
        # A line of the caller's own account, but on another invoice.
        await tenant.billing.dispute(DAVID, own.invoice_id, older.lines[0].line_id, "x")
    with pytest.raises(NotFound):
        await tenant.billing.refund(DAVID, "INV-NOPE", 100, "x", line_id="LINE-NOPE")
    with pytest.raises(NotFound):
        await tenant.billing.refund(DAVID, own.invoice_id, 100, "x", line_id=older.lines[0].line_id)
    with pytest.raises(NotFound):
        await tenant.billing.balance("NW-9999")
    with pytest.raises(NotFound):
        await tenant.scheduling.book("NW-9999", slot.slot_id, "x")


# ---------------------------------------------------------------------------------------- billing


async def test_balances(tenant: Tenant) -> None:
    james = await tenant.billing.balance(JAMES)
    newest, previous = await tenant.billing.invoices(JAMES, limit=2)
    assert james.due_cents == newest.amount_cents + previous.amount_cents
    assert james.next_due_on == previous.due_on
    assert james.next_due_on is not None
    assert james.next_due_on < TODAY  # overdue
    assert "Late fee" in {line.description for line in newest.lines}
    assert james.last_payment is not None

    david = await tenant.billing.balance(DAVID)
    assert (david.due_cents, david.next_due_on) == (0, None)

    invoices = await tenant.billing.invoices(MARIA, limit=5)
    assert len(invoices) == 3
    assert [i.issued_on for i in invoices] == [TODAY - timedelta(days=d) for d in (10, 40, 70)]
    assert all(i.amount_cents == sum(line.amount_cents for line in i.lines) for i in invoices)


async def test_pay(tenant: Tenant) -> None:
    before = await tenant.billing.balance(JAMES)
    newest, previous = await tenant.billing.invoices(JAMES, limit=2)
    for amount in (0, -100, before.due_cents + 1):
        with pytest.raises(PolicyViolation):
            await tenant.billing.pay(JAMES, amount)
    with pytest.raises(PolicyViolation, match="zero"):
        await tenant.billing.pay(DAVID, 100)

    payment = await tenant.billing.pay(JAMES, previous.amount_cents + 100)
    assert payment.amount_cents == previous.amount_cents + 100
    assert payment.method.startswith("card ending ")
    assert payment.created_at == NOW
    after_newest, after_previous = await tenant.billing.invoices(JAMES, limit=2)
    # The oldest open invoice is settled first, the rest goes to the next one.
    assert after_previous.open_cents == 0
    assert after_newest.paid_cents == 100
    balance = await tenant.billing.balance(JAMES)
    assert balance.due_cents == before.due_cents - payment.amount_cents
    assert balance.next_due_on == newest.due_on
    assert balance.last_payment == payment

    await tenant.billing.pay(JAMES, balance.due_cents)
    assert (await tenant.billing.balance(JAMES)).due_cents == 0


async def test_dispute_once_per_line(tenant: Tenant) -> None:
    invoice = await _invoice(tenant, AISHA)
    line = next(line for line in invoice.lines if line.description == "Premium channel pack")
    dispute = await tenant.billing.dispute(AISHA, invoice.invoice_id, line.line_id, "Never ordered it")
    assert (dispute.account_id, dispute.line_id, dispute.amount_cents, dispute.status) == (
        AISHA,
        line.line_id,
        1499,
        "open",
    )
    with pytest.raises(PolicyViolation, match="already"):
        await tenant.billing.dispute(AISHA, invoice.invoice_id, line.line_id, "Again")


async def test_concurrent_disputes_of_one_line(tenant: Tenant) -> None:
    invoice = await _invoice(tenant, AISHA)
    line = invoice.lines[-1]
    results = await asyncio.gather(
        tenant.billing.dispute(AISHA, invoice.invoice_id, line.line_id, "A"),
        tenant.billing.dispute(AISHA, invoice.invoice_id, line.line_id, "B"),
        return_exceptions=True,
    )
    assert sum(isinstance(r, PolicyViolation) for r in results) == 1, results


async def test_refund_within_policy(tenant: Tenant) -> None:
    policy = tenant.billing.refund_policy()
    assert (policy.max_cents, policy.window_days, policy.max_per_year) == (5000, 60, 2)
    invoice = await _invoice(tenant, SOFIA)
    visit = _line(invoice, "Technician visit fee")
    refund = await tenant.billing.refund(
        SOFIA, invoice.invoice_id, 4900, "Technician visit was not needed", line_id=visit.line_id
    )
    assert (refund.account_id, refund.invoice_id, refund.amount_cents) == (SOFIA, invoice.invoice_id, 4900)
    after = await _invoice(tenant, SOFIA)
    assert after.amount_cents == invoice.amount_cents - 4900
    assert after.lines[-1].amount_cents == -4900
    assert after.lines[-1].description == "Credit: Technician visit fee"
    assert (
        _line(after, "Technician visit fee").recovered_by,
        _line(after, "Technician visit fee").recovered_cents,
    ) == (
        "refund",
        4900,
    )
    assert (await tenant.billing.balance(SOFIA)).due_cents == after.open_cents
    # A credit line is not a charge one can dispute.
    with pytest.raises(PolicyViolation, match="credit"):
        await tenant.billing.dispute(SOFIA, after.invoice_id, after.lines[-1].line_id, "x")


async def test_refund_policy_violations(tenant: Tenant) -> None:
    newest = await _invoice(tenant, SOFIA)
    oldest = await _invoice(tenant, SOFIA, index=2)
    plan, router, visit = (line.line_id for line in newest.lines)
    with pytest.raises(PolicyViolation, match=r"\$50\.00"):
        await tenant.billing.refund(SOFIA, newest.invoice_id, 5001, "Too much", line_id=visit)
    with pytest.raises(PolicyViolation, match=r"charge of \$10\.00"):
        await tenant.billing.refund(SOFIA, newest.invoice_id, 1001, "More than the charge", line_id=router)
    with pytest.raises(PolicyViolation, match="60 days"):
        await tenant.billing.refund(SOFIA, oldest.invoice_id, 1000, "Too old", line_id=oldest.lines[1].line_id)
    robert = await _invoice(tenant, ROBERT)
    with pytest.raises(PolicyViolation, match="past year"):
        await tenant.billing.refund(ROBERT, robert.invoice_id, 1000, "Third one", line_id=robert.lines[0].line_id)
    for amount in (0, -5):
        with pytest.raises(PolicyViolation):
            await tenant.billing.refund(SOFIA, newest.invoice_id, amount, "Nothing", line_id=plan)
    # Two refunds are fine, the third within a year is not.
    await tenant.billing.refund(SOFIA, newest.invoice_id, 1000, "One", line_id=plan)
    await tenant.billing.refund(SOFIA, newest.invoice_id, 1000, "Two", line_id=router)
    with pytest.raises(PolicyViolation, match="past year"):
        await tenant.billing.refund(SOFIA, newest.invoice_id, 1000, "Three", line_id=visit)


async def test_one_recovery_per_charge_whatever_the_wording(tenant: Tenant) -> None:
    invoice = await _invoice(tenant, SOFIA)
    router = _line(invoice, "Wi-Fi router rental").line_id
    await tenant.billing.refund(SOFIA, invoice.invoice_id, 500, "The router was broken", line_id=router)
    for reason in ("Refund my router rental please", "router money back"):
        with pytest.raises(PolicyViolation, match="already refunded"):
            await tenant.billing.refund(SOFIA, invoice.invoice_id, 500, reason, line_id=router)
    with pytest.raises(PolicyViolation, match="already refunded"):
        await tenant.billing.dispute(SOFIA, invoice.invoice_id, router, "I never had a router")
    # A disputed charge cannot be refunded too.
    aisha = await _invoice(tenant, AISHA)
    pack = _line(aisha, "Premium channel pack").line_id
    await tenant.billing.dispute(AISHA, aisha.invoice_id, pack, "Never ordered it")
    with pytest.raises(PolicyViolation, match="under dispute"):
        await tenant.billing.refund(AISHA, aisha.invoice_id, 1499, "Refund it instead", line_id=pack)
    assert _line(await _invoice(tenant, AISHA), "Premium channel pack").recovered_by == "dispute"


async def test_concurrent_refund_and_dispute_of_one_charge_recover_it_once(tenant: Tenant) -> None:
    invoice = await _invoice(tenant, SOFIA)
    router = _line(invoice, "Wi-Fi router rental").line_id
    results = await asyncio.gather(
        tenant.billing.refund(SOFIA, invoice.invoice_id, 1000, "A", line_id=router),
        tenant.billing.dispute(SOFIA, invoice.invoice_id, router, "B"),
        return_exceptions=True,
    )
    assert sum(isinstance(r, PolicyViolation) for r in results) == 1, results


# ------------------------------------------------------------------------------ effects happen once


async def test_each_effect_happens_once_per_key(tenant: Tenant) -> None:
    """Every effect a tool can cause, made twice under one key (a replayed turn): one effect, one answer."""
    slots = await tenant.scheduling.open_slots(on_or_after=TODAY, limit=3)
    sofia = await _invoice(tenant, SOFIA)
    aisha = await _invoice(tenant, AISHA)
    booked = await tenant.scheduling.book(DAVID, slots[0].slot_id, "No internet", key="k-book")
    effects: dict[str, Callable[[], Awaitable[object]]] = {
        "pay": lambda: tenant.billing.pay(JAMES, 1000, key="k-pay"),
        "refund": lambda: tenant.billing.refund(
            SOFIA, sofia.invoice_id, 1000, "x", line_id=_line(sofia, "Wi-Fi router rental").line_id, key="k-refund"
        ),
        "dispute": lambda: tenant.billing.dispute(
            AISHA, aisha.invoice_id, _line(aisha, "Premium channel pack").line_id, "x", key="k-dispute"
        ),
        "book": lambda: tenant.scheduling.book(DAVID, slots[0].slot_id, "No internet", key="k-book"),
        "move": lambda: tenant.scheduling.move(DAVID, booked.appointment_id, slots[1].slot_id, key="k-move"),
        "reset": lambda: tenant.customers.send_password_reset(MARIA, key="k-reset"),
        "ticket": lambda: tenant.desk.open_ticket(
            call_id="call-once", account_id=TOM, reason="human", summary="s", priority=2, key="k-ticket"
        ),
    }
    before = await _effect_counts(tenant)
    for name, effect in effects.items():
        first = await effect()
        assert await effect() == first, name
    after = await _effect_counts(tenant)
    # The booking was made before the baseline; its replay added nothing.
    assert {k: after[k] - before[k] for k in after} == {
        "payments": 1,
        "refunds": 1,
        "disputes": 1,
        "appointments": 0,
        "resets": 1,
        "tickets": 1,
    }
    moved = await tenant.scheduling.appointments(DAVID)
    assert [a.slot_id for a in moved if a.appointment_id == booked.appointment_id] == [slots[1].slot_id]
    cancelled = await tenant.scheduling.cancel(DAVID, booked.appointment_id, key="k-cancel")
    assert await tenant.scheduling.cancel(DAVID, booked.appointment_id, key="k-cancel") == cancelled


async def test_racing_payments_with_one_key_charge_once(tenant: Tenant) -> None:
    before = (await _effect_counts(tenant))["payments"]
    results = await asyncio.gather(*(tenant.billing.pay(JAMES, 500, key="k-race") for _ in range(4)))
    assert len({r.payment_id for r in results}) == 1
    assert (await _effect_counts(tenant))["payments"] == before + 1
    # Another key is another decision: a second payment.
    await tenant.billing.pay(JAMES, 500, key="k-race-2")
    assert (await _effect_counts(tenant))["payments"] == before + 2


async def _effect_counts(tenant: Tenant) -> dict[str, int]:
    store = tenant.billing._store  # type: ignore[attr-defined]  # the SQL tenant's store, to count rows
    tables = {
        "payments": PaymentRow,
        "refunds": RefundRow,
        "disputes": DisputeRow,
        "appointments": AppointmentRow,
        "resets": PasswordResetRow,
        "tickets": TicketRow,
    }
    async with store.read() as session:
        return {
            name: int((await session.execute(select(func.count()).select_from(row))).scalar_one())
            for name, row in tables.items()
        }


def _line(invoice: Invoice, description: str) -> InvoiceLine:
    return next(line for line in invoice.lines if line.description == description)


# ---------------------------------------------------------------------------------------- support


async def test_outage_lookup(tenant: Tenant) -> None:
    outage = await tenant.support.outage_for_zip("11215")
    assert outage is not None
    assert (outage.zip_prefix, outage.status) == ("1121", "fixing")
    assert outage.eta is not None
    assert outage.eta.tzinfo is not None
    assert await tenant.support.outage_for_zip(" 112 15 ") == outage
    assert await tenant.support.outage_for_zip("10453") is None  # that outage is resolved
    assert await tenant.support.outage_for_zip("10027") is None
    assert await tenant.support.outage_for_zip("") is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("restart my router", "KB-ROUTER-RESTART"),
        ("how do I reboot the modem", "KB-ROUTER-RESTART"),
        ("forgot password", "KB-PASSWORD-RESET"),
        ("I forgot my password and can't log in", "KB-PASSWORD-RESET"),
        ("wifi slow", "KB-SLOW-WIFI"),
        ("my Wi-Fi is really slow", "KB-SLOW-WIFI"),
        ("the light on the box is blinking red", "KB-NO-INTERNET-LIGHTS"),
        ("I'm moving house next month", "KB-MOVING-HOUSE"),
    ],
)
async def test_article_search(tenant: Tenant, query: str, expected: str) -> None:
    articles = await tenant.support.search_articles(query)
    assert articles
    assert articles[0].article_id == expected
    assert len(articles) <= 3


async def test_articles(tenant: Tenant) -> None:
    assert await tenant.support.search_articles("the and of") == []
    router = await tenant.support.article("KB-ROUTER-RESTART")
    assert len(router.steps) >= 4
    assert any("30 seconds" in step for step in router.steps)
    with pytest.raises(NotFound):
        await tenant.support.article("KB-NOPE")


# ------------------------------------------------------------------------------------------- desk


async def test_desk_queue_and_lifecycle(tenant: Tenant) -> None:
    desk = tenant.desk
    assert isinstance(desk, SqlHumanDesk)
    low = await desk.open_ticket(call_id="call-1", account_id=MARIA, reason="complaint", summary="s1", priority=3)
    urgent = await desk.open_ticket(call_id="call-2", account_id=None, reason="legal", summary="s2", priority=1)
    assert low.status == "waiting"
    assert low.created_at == NOW
    assert [t.ticket_id for t in await desk.waiting()] == [urgent.ticket_id, low.ticket_id]

    accepted = await desk.accept(urgent.ticket_id, "agent-ann")
    assert accepted.status == "accepted"
    assert [t.ticket_id for t in await desk.waiting()] == [low.ticket_id]
    with pytest.raises(PolicyViolation):
        await desk.accept(urgent.ticket_id, "agent-bob")
    assert (await desk.close(urgent.ticket_id)).status == "closed"
    with pytest.raises(PolicyViolation):
        await desk.close(urgent.ticket_id)
    with pytest.raises(NotFound):
        await desk.accept("TK-NOPE", "agent-ann")
    with pytest.raises(NotFound):
        await desk.open_ticket(call_id="c", account_id="NW-9999", reason="r", summary="s", priority=2)


async def test_desk_accept_race_exactly_one_wins(tenant: Tenant) -> None:
    desk = tenant.desk
    assert isinstance(desk, SqlHumanDesk)
    ticket = await desk.open_ticket(call_id="call-9", account_id=TOM, reason="human", summary="s", priority=2)
    results = await asyncio.gather(
        desk.accept(ticket.ticket_id, "agent-ann"), desk.accept(ticket.ticket_id, "agent-bob"), return_exceptions=True
    )
    assert sum(isinstance(r, PolicyViolation) for r in results) == 1, results
    assert sum(not isinstance(r, BaseException) and r.status == "accepted" for r in results) == 1, results
    assert await desk.waiting() == []
