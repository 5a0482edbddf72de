"""Deterministic demo data for Northwind Broadband, dated relative to an injected `today`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from orchestrator.domain.db import DEFAULT_TIMEZONE, Store
from orchestrator.domain.models import (
    AppointmentRow,
    ArticleRow,
    Base,
    CustomerRow,
    InvoiceLineRow,
    InvoiceRow,
    OutageRow,
    PaymentRow,
    RefundRow,
    SeedRunRow,
    SlotRow,
)

SEED_NAME = "northwind-demo"
SLOT_DAYS = 21
WINDOWS = ((time(8), time(10)), (time(10), time(12)), (time(13), time(15)), (time(15), time(17)))
TECHNICIANS = (("DO", "Dana Ortiz"), ("SL", "Sam Lee"), ("PN", "Priya Nair"))
PLANS = {
    "Fiber 100": 3999,
    "Fiber 300": 5499,
    "Fiber 500": 6999,
    "Fiber 1 Gig": 8999,
    "Fiber 2 Gig": 11999,
}
ROUTER_RENTAL_CENTS = 1000
INVOICE_AGES_DAYS = (10, 40, 70)  # newest first: inside, inside and outside the 60-day refund window
INVOICE_TERMS_DAYS = 21


@dataclass(frozen=True)
class DemoCustomer:
    """A customer with a stable phone, name and ZIP code that demos and evals rely on."""

    account_id: str
    phone: str
    name: str
    email: str
    zip_code: str
    plan: str
    vip: bool
    rents_router: bool
    story: str


# Keep in sync with the table in orchestrator/domain/README.md: evals dial these exact values.
DEMO_CUSTOMERS = (
    DemoCustomer("NW-1001", "+15550100001", "Maria Gonzalez", "maria.gonzalez@example.com", "10027", "Fiber 500",
                 False, True, "technician visit booked next week"),
    DemoCustomer("NW-1002", "+15550100002", "James Carter", "james.carter@example.com", "10453", "Fiber 300",
                 False, True, "overdue: last month unpaid, $15.00 late fee on this month"),
    DemoCustomer("NW-1003", "+15550100003", "Aisha Khan", "aisha.khan@example.com", "11375", "Fiber 1 Gig",
                 False, True, "$14.99 premium channel pack on the latest invoice (disputable)"),
    DemoCustomer("NW-1004", "+15550100004", "Tom Becker", "tom.becker@example.com", "11215", "Fiber 300",
                 False, False, "ZIP inside the active outage (prefix 1121)"),
    DemoCustomer("NW-1005", "+15550100005", "Eleanor Whitfield", "eleanor.whitfield@example.com", "10021",
                 "Fiber 2 Gig", True, True, "VIP"),
    DemoCustomer("NW-1006", "+15550100006", "Robert Chen", "robert.chen@example.com", "11201", "Fiber 500",
                 False, True, "already had 2 refunds in the past year"),
    DemoCustomer("NW-1007", "+15550100007", "Sofia Rossi", "sofia.rossi@example.com", "10301", "Fiber 100",
                 False, True, "refund-eligible $49.00 technician visit fee on the latest invoice"),
    DemoCustomer("NW-1008", "+15550100008", "David Okafor", "david.okafor@example.com", "10011", "Fiber 500",
                 False, False, "fully paid, nothing booked"),
)  # fmt: skip

_FIRST = ("Olivia", "Liam", "Emma", "Noah", "Ava", "Ethan", "Mia", "Lucas", "Zoe", "Mateo", "Grace", "Omar",
          "Hannah", "Kenji", "Chloe", "Samuel")  # fmt: skip
_LAST = ("Walker", "Patel", "Nguyen", "Brooks", "Schmidt", "Alvarez", "Kim", "Murphy", "Haddad", "Novak",
         "Reyes", "Fischer", "Adeyemi", "Larsen", "Moreau", "Sato")  # fmt: skip
_FILLER_ZIPS = ("10001", "10003", "10012", "10025", "10128", "10458", "10467", "10301", "10314", "11101",
                "11103", "11205", "11217", "11218", "11354", "11432", "11691", "07302", "07030", "10550")  # fmt: skip
FILLER_COUNT = 32

ARTICLES = (
    (
        "KB-ROUTER-RESTART",
        "Restart your router",
        ["router", "restart", "reboot", "modem", "no internet", "power cycle"],
        [
            "Find the Northwind router; it is the white box with the blue Northwind logo.",
            "Unplug the power cable from the back of the router.",
            "Wait a full 30 seconds so it clears its memory.",
            "Plug the power cable back in.",
            "Wait about two minutes until the light on the front turns solid white.",
            "Try loading a web page. If the light blinks red, tell me and we'll check for an outage.",
        ],
    ),
    (
        "KB-PASSWORD-RESET",
        "Reset your account password",
        ["password", "forgot", "reset", "login", "account", "sign in", "locked out"],
        [
            "I can email you a reset link right now to the address on your account.",
            "Open the email from Northwind Broadband; the link works for 30 minutes.",
            "Choose a new password with at least 12 characters.",
            "Sign in at my.northwind.example with your email and the new password.",
        ],
    ),
    (
        "KB-SLOW-WIFI",
        "Fix slow Wi-Fi",
        ["wifi", "slow", "speed", "buffering", "wireless", "signal"],
        [
            "Move the router to an open, central spot, off the floor and away from the microwave.",
            "Restart the router: unplug it for 30 seconds, then plug it back in.",
            "If your device sees two networks, use the one ending in 5G when you are close to the router.",
            "Test the speed with a cable plugged into the router; if that is fast, the issue is Wi-Fi coverage.",
            "If it is still slow on the cable, we can book a technician visit.",
        ],
    ),
    (
        "KB-NO-INTERNET-LIGHTS",
        "No internet: what the router lights mean",
        ["no internet", "lights", "light", "red", "blinking", "offline", "down"],
        [
            "Solid white means everything is working.",
            "Blinking white means the router is starting up; give it two minutes.",
            "Solid red means no signal from the street: check that the fiber cable is clicked in at both ends.",
            "Blinking red often means an outage in your area; I can check that for you.",
            "No light at all means no power: check the plug and try another outlet.",
        ],
    ),
    (
        "KB-MOVING-HOUSE",
        "Moving house with Northwind",
        ["move", "moving", "house", "new address", "relocate", "transfer"],
        [
            "Tell us your new address at least two weeks before you move.",
            "We check that Northwind fiber is available there.",
            "We book a technician for the day you move in; the visit is free when you move.",
            "Take your router with you, and keep the power cable.",
        ],
    ),
    (
        "KB-WIFI-PASSWORD",
        "Change your Wi-Fi network name or password",
        ["wifi", "wifi password", "network name", "change", "password"],
        [
            "Connect to your Wi-Fi and open 192.168.1.1 in a browser.",
            "Sign in with the admin password printed on the sticker under the router.",
            "Open Wireless settings and type a new network name or password.",
            "Save, then reconnect your devices with the new password.",
        ],
    ),
    (
        "KB-OUTAGE-CHECK",
        "Check for an outage in your area",
        ["outage", "down", "area", "no internet", "offline"],
        [
            "I can check your ZIP code for a known outage right now.",
            "If there is one, you don't need to do anything: the service comes back on its own.",
            "If there is none, restarting the router is the best first step.",
        ],
    ),
)


def _insert(session: AsyncSession, model: type[Base]) -> Any:
    """An INSERT … ON CONFLICT DO NOTHING in the session's dialect."""
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(model).on_conflict_do_nothing()


class _DemoData:
    """Builds the row dictionaries for one `today`; nothing here touches the database."""

    def __init__(self, today: date, tz: ZoneInfo) -> None:
        self.today = today
        self.tz = tz

    def at(self, day: date, clock: time) -> datetime:
        return datetime.combine(day, clock, tzinfo=self.tz).astimezone(UTC)

    def slot_id(self, day: date, window: int, tech: int) -> str:
        return f"SL-{day:%Y%m%d}-{WINDOWS[window][0]:%H%M}-{TECHNICIANS[tech][0]}"

    def working_days(self) -> list[date]:
        days = (self.today + timedelta(days=n) for n in range(1, SLOT_DAYS + 1))
        return [day for day in days if day.weekday() < 5]

    def slots(self) -> list[dict[str, Any]]:
        rows = []
        for day in self.working_days():
            for w, (start, end) in enumerate(WINDOWS):
                for t, (_, technician) in enumerate(TECHNICIANS):
                    rows.append(
                        {
                            "slot_id": self.slot_id(day, w, t),
                            "starts_at": self.at(day, start),
                            "ends_at": self.at(day, end),
                            "technician": technician,
                            # About one slot in seven is busy with other work; keyed on the calendar date,
                            # not on `today`, so a slot keeps its state when a later seed tops slots up.
                            "taken": (day.toordinal() * 4 + w + t * 3) % 7 == 0,
                        }
                    )
        return rows

    def customers(self) -> list[DemoCustomer]:
        plans = list(PLANS)
        fillers = []
        for n in range(FILLER_COUNT):
            number = len(DEMO_CUSTOMERS) + n + 1
            first, last = _FIRST[n % len(_FIRST)], _LAST[(n * 5 + 3) % len(_LAST)]
            fillers.append(
                DemoCustomer(
                    account_id=f"NW-{1000 + number}",
                    phone=f"+155501000{number:02d}",
                    name=f"{first} {last}",
                    email=f"{first.lower()}.{last.lower()}@example.net",
                    zip_code=_FILLER_ZIPS[n % len(_FILLER_ZIPS)],
                    plan=plans[n % len(plans)],
                    vip=n % 11 == 5,
                    rents_router=n % 3 != 0,
                    story="",
                )
            )
        return [*DEMO_CUSTOMERS, *fillers]

    def appointment_slots(self) -> dict[str, tuple[str, str]]:
        """Account id -> (slot id, reason) of the seeded bookings."""
        days = self.working_days()
        next_week = next(day for day in days if day >= self.today + timedelta(days=7))
        booked = {
            "NW-1001": (self.slot_id(next_week, 1, 0), "Wi-Fi keeps dropping in the evenings; check router and wiring"),
        }
        for n, account in enumerate(("NW-1010", "NW-1014", "NW-1019", "NW-1023", "NW-1027", "NW-1031", "NW-1036")):
            day = days[(n * 2 + 1) % len(days)]
            booked[account] = (self.slot_id(day, n % 4, (n + 1) % 3), "New fiber installation")
        return booked


async def seed_demo(engine: AsyncEngine, *, today: date, timezone: str = DEFAULT_TIMEZONE) -> bool:
    """Load the Northwind Broadband demo data; running it again changes nothing.

    The data set is written once, in one transaction that starts by claiming a marker row, so
    concurrent seeders (several workers starting at once) agree on one winner. Later runs only add
    technician slots for the 21 days after their own `today`, so a long-lived demo database keeps
    bookable slots; with the same `today` they add nothing.

    Args:
        engine: The tenant's engine (see `open_engine`); the schema must exist (`create_schema`).
        today: The date everything is relative to (slots, invoices, refunds, outages), in the
            tenant's time zone. Tests and evals pin it.
        timezone: The tenant's time zone; technician windows are local times there.

    Returns:
        True when this call wrote the data set, False when it was already there.
    """
    data = _DemoData(today, ZoneInfo(timezone))
    store = Store(engine, timezone=timezone)
    async with store.write() as session:
        # RETURNING rather than rowcount: drivers report -1 for some INSERT … ON CONFLICT statements.
        conn = await session.connection()
        claimed = await conn.execute(
            _insert(session, SeedRunRow).returning(SeedRunRow.name), {"name": SEED_NAME, "seeded_for": today}
        )
        first = claimed.scalar_one_or_none() is not None
        slots = data.slots()
        if first:
            _book_seeded_slots(data, slots)
        await conn.execute(_insert(session, SlotRow), slots)
        if first:
            await _seed_everything_else(session, data)
    return first


async def reset_demo(engine: AsyncEngine, *, today: date, timezone: str = DEFAULT_TIMEZONE) -> None:
    """Put the demo tenant back as seeded: every tenant row goes, then `seed_demo` writes the data set again.

    For the embedded demo's own database only (a simulator run starts from the customers the domain README
    describes, not from what the last run paid, refunded or booked); never point it at a real tenant.
    """
    store = Store(engine, timezone=timezone)
    async with store.write() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(table.delete())
    await seed_demo(engine, today=today, timezone=timezone)


def _book_seeded_slots(data: _DemoData, slots: list[dict[str, Any]]) -> None:
    booked = {slot_id for slot_id, _ in data.appointment_slots().values()}
    for slot in slots:
        if slot["slot_id"] in booked:
            slot["taken"] = True


async def _seed_everything_else(session: AsyncSession, data: _DemoData) -> None:
    today = data.today
    customers = data.customers()
    await session.execute(
        insert(CustomerRow),
        [
            {
                "account_id": c.account_id,
                "name": c.name,
                "phone": c.phone,
                "email": c.email,
                "zip_code": c.zip_code,
                "plan": c.plan,
                "vip": c.vip,
                "card_last4": f"{(int(c.account_id[3:]) * 7919) % 10000:04d}",
            }
            for c in customers
        ],
    )

    booked_at = data.at(today - timedelta(days=2), time(10, 30))
    await session.execute(
        insert(AppointmentRow),
        [
            {
                "appointment_id": f"AP-{account_id[3:]}-1",
                "account_id": account_id,
                "slot_id": slot_id,
                "status": "booked",
                "reason": reason,
                "created_at": booked_at,
                "updated_at": booked_at,
            }
            for account_id, (slot_id, reason) in data.appointment_slots().items()
        ],
    )

    invoices: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    payments: list[dict[str, Any]] = []
    refunds: list[dict[str, Any]] = []
    for c in customers:
        for k, age in enumerate(INVOICE_AGES_DAYS):
            issued = today - timedelta(days=age)
            invoice_id = f"INV-{c.account_id[3:]}-{issued:%Y%m%d}"
            charges = [("plan", f"{c.plan} monthly plan", PLANS[c.plan])]
            if c.rents_router:
                charges.append(("equipment", "Wi-Fi router rental", ROUTER_RENTAL_CENTS))
            charges += _one_offs(c.account_id, k)
            credits = _seeded_refunds(c.account_id, k)
            for refund_no, (amount, reason, days_after) in enumerate(credits, start=1):
                refund_id = f"RF-{c.account_id[3:]}-{k}{refund_no}"
                refunds.append(
                    {
                        "refund_id": refund_id,
                        "account_id": c.account_id,
                        "invoice_id": invoice_id,
                        "amount_cents": amount,
                        "reason": reason,
                        "created_at": data.at(issued + timedelta(days=days_after), time(14)),
                    }
                )
                charges.append(("credit", f"Credit: {reason}", -amount))
            for position, (kind, description, amount) in enumerate(charges, start=1):
                lines.append(
                    {
                        "line_id": f"{invoice_id}-L{position}",
                        "invoice_id": invoice_id,
                        "position": position,
                        "kind": kind,
                        "description": description,
                        "amount_cents": amount,
                    }
                )
            total = sum(amount for _, _, amount in charges)
            paid = total if _is_paid(c.account_id, k) else 0
            invoices.append(
                {
                    "invoice_id": invoice_id,
                    "account_id": c.account_id,
                    "period": f"{issued:%Y-%m-%d} to {issued + timedelta(days=29):%Y-%m-%d}",
                    "issued_on": issued,
                    "due_on": issued + timedelta(days=INVOICE_TERMS_DAYS),
                    "amount_cents": total,
                    "paid_cents": paid,
                }
            )
            if paid:
                paid_on = min(issued + timedelta(days=15), today - timedelta(days=1))
                payments.append(
                    {
                        "payment_id": f"PM-{c.account_id[3:]}-{issued:%Y%m%d}",
                        "account_id": c.account_id,
                        "amount_cents": paid,
                        "method": f"card ending {(int(c.account_id[3:]) * 7919) % 10000:04d}",
                        "created_at": data.at(paid_on, time(12)),
                    }
                )
    await session.execute(insert(InvoiceRow), invoices)
    await session.execute(insert(InvoiceLineRow), lines)
    await session.execute(insert(PaymentRow), payments)
    await session.execute(insert(RefundRow), refunds)

    await session.execute(
        insert(OutageRow),
        [
            {
                "outage_id": "OUT-1121-BROOKLYN",
                "zip_prefix": "1121",
                "description": "A fiber cable was cut near Prospect Park; crews are splicing it now.",
                "started_at": data.at(today, time(6, 40)),
                "eta": data.at(today, time(18)),
                "status": "fixing",
            },
            {
                "outage_id": "OUT-104-BRONX",
                "zip_prefix": "104",
                "description": "A power failure at the Bronx hub interrupted service.",
                "started_at": data.at(today - timedelta(days=3), time(8)),
                "eta": data.at(today - timedelta(days=3), time(14)),
                "status": "resolved",
            },
        ],
    )
    await session.execute(
        insert(ArticleRow),
        [{"article_id": a, "title": title, "tags": tags, "steps": steps} for a, title, tags, steps in ARTICLES],
    )


def _one_offs(account_id: str, k: int) -> list[tuple[str, str, int]]:
    """Extra one-off charges that make the demo customers' stories (k = 0 is the newest invoice)."""
    if account_id == "NW-1002" and k == 0:
        return [("one_off", "Late fee", 1500)]
    if account_id == "NW-1003" and k == 0:
        return [("one_off", "Premium channel pack", 1499)]
    if account_id == "NW-1007" and k == 0:
        return [("one_off", "Technician visit fee", 4900)]
    return []


def _seeded_refunds(account_id: str, k: int) -> list[tuple[int, str, int]]:
    """(amount, reason, days after issue) of refunds already granted; Robert Chen has used his two."""
    if account_id == "NW-1006" and k == 1:
        return [(2000, "Service credit for a two-day outage", 10)]
    if account_id == "NW-1006" and k == 2:
        return [(1500, "Goodwill credit for a missed appointment", 10)]
    return []


def _is_paid(account_id: str, k: int) -> bool:
    """Older invoices are paid; the newest is open (not yet due), except for the stories below."""
    if account_id == "NW-1002":
        return k == 2  # last month's bill is past due
    if account_id == "NW-1008":
        return True  # pays as soon as the bill arrives
    return k > 0


def all_customers() -> list[DemoCustomer]:
    """Every seeded customer: the documented demo ones, then the fillers (they do not depend on the date)."""
    return _DemoData(date(2000, 1, 3), ZoneInfo(DEFAULT_TIMEZONE)).customers()
