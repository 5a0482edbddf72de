"""Tools that act on the tenant's systems for the verified caller only, used by flows and LLM agents alike.

No tool takes an account id: the account is the one the session verified, whatever a model or a caller
asks for. Ids of appointments, invoices and lines are checked against that account by the tenant.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from datetime import date, datetime
from typing import Any, TypeVar

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from agents.context import AgentContext
from agents.ports import Appointment, Article, Balance, Dispute, DomainError, Invoice, Outage, Payment, Refund, Slot
from agents.speech import spoken_account, spoken_clock, spoken_money
from agents.state import CallState, ToolEvent, verification_of

T = TypeVar("T")


class NotVerified(DomainError):
    code = "not_verified"


def money(cents: int) -> str:
    """An amount for the ear: 4250 -> "forty-two dollars and fifty cents" (a voice misreads "$42.50")."""
    return spoken_money(cents)


def spoken_time(moment: datetime, ctx: AgentContext) -> str:
    """ "Tuesday, December 1 at ten in the morning" in the tenant's time zone."""
    local = moment.astimezone(ctx.tz)
    return f"{local.strftime('%A, %B')} {local.day} at {spoken_clock(local.hour, local.minute)}"


def spoken_date(day: date) -> str:
    """ "November 26" (a TTS voice reads the day as an ordinal), never an ISO date."""
    return f"{day.strftime('%B')} {day.day}"


def spoken_period(period: str) -> str:
    """A billing period for the ear: "2026-11-14 to 2026-12-13" -> "November 14 to December 13"; other text as is."""
    parts = [p.strip() for p in period.split(" to ")]
    try:
        days = [date.fromisoformat(p) for p in parts]
    except ValueError:
        return period
    return " to ".join(spoken_date(d) for d in days)


class CallerTools:
    """The verified caller's tools for one turn. Every call is recorded as a ToolEvent."""

    def __init__(
        self, ctx: AgentContext, state: CallState, agent: str, *, effects: dict[str, int] | None = None
    ) -> None:
        self.ctx = ctx
        self.tenant = ctx.tenant
        verification = verification_of(state)
        self.account_id: str | None = verification["account_id"] if verification["status"] == "verified" else None
        self.call_id = state.get("call_id", "")
        self.turn = state.get("turn", 0)
        self.agent = agent
        self.events: list[ToolEvent] = []
        # Effects made so far this turn, per tool; shared by the flow runs of one turn (an answer, then a request).
        self._effects: dict[str, int] = {} if effects is None else effects

    def _key(self, name: str) -> str | None:
        """The idempotency key of this turn's next `name` effect: call, turn, agent, tool and its count.

        A turn replayed after a crash makes the same calls in the same order, so its keys match the first
        run's and the tenant reports the effects already made instead of making them again.
        """
        if not self.call_id:
            return None
        n = self._effects.get(name, 0)
        self._effects[name] = n + 1
        return f"{self.call_id}:{self.turn}:{self.agent}:{name}:{n}"

    def _account(self) -> str:
        if not self.account_id:
            raise NotVerified("I need to verify your identity before I can do that.")
        return self.account_id

    async def _run(self, name: str, args: dict[str, Any], call: Callable[[], Awaitable[T]]) -> T:
        try:
            result = await call()
        except DomainError as exc:
            self.events.append(
                ToolEvent(turn=self.turn, agent=self.agent, name=name, args=args, ok=False, result=f"{exc.code}: {exc}")
            )
            raise
        self.events.append(
            ToolEvent(turn=self.turn, agent=self.agent, name=name, args=args, ok=True, result=_summary(result))
        )
        return result

    # Scheduling ---------------------------------------------------------------------------------

    async def open_slots(
        self,
        on_or_after: date | None = None,
        part_of_day: str | None = None,
        exclude: Collection[str] = (),
        not_at: Collection[datetime] = (),
    ) -> list[Slot]:
        """Up to three open slots to offer; `exclude` drops slot ids, `not_at` start times (a visit being moved)."""
        start = max(on_or_after or self.ctx.today(), self.ctx.today())

        async def call() -> list[Slot]:
            slots = await self.tenant.scheduling.open_slots(on_or_after=start, limit=12 + len(exclude) + len(not_at))
            slots = [s for s in slots if s.slot_id not in exclude and s.start not in not_at]
            if part_of_day:
                local_hours = [(s, s.start.astimezone(self.ctx.tz).hour) for s in slots]
                slots = [s for s, h in local_hours if (h < 12) == (part_of_day == "morning")]
            if on_or_after:
                same_day = [s for s in slots if s.start.astimezone(self.ctx.tz).date() == on_or_after]
                if same_day:
                    return same_day[:3]
            # Otherwise offer a spread: the earliest slot of each of the next days.
            spread: list[Slot] = []
            seen_days: set[date] = set()
            for s in slots:
                day = s.start.astimezone(self.ctx.tz).date()
                if day not in seen_days:
                    seen_days.add(day)
                    spread.append(s)
            spread += [s for s in slots if s not in spread]
            return spread[:3]

        args: dict[str, Any] = {"on_or_after": start.isoformat()}
        if part_of_day:
            args["part_of_day"] = part_of_day
        return await self._run("open_slots", args, call)

    async def appointments(self) -> list[Appointment]:
        account = self._account()
        return await self._run("list_appointments", {}, lambda: self.tenant.scheduling.appointments(account))

    async def book_visit(self, slot_id: str, reason: str) -> Appointment:
        account, key = self._account(), self._key("book_visit")
        return await self._run(
            "book_visit",
            {"slot_id": slot_id, "reason": reason},
            lambda: self.tenant.scheduling.book(account, slot_id, reason, key=key),
        )

    async def move_visit(self, appointment_id: str, slot_id: str) -> Appointment:
        account, key = self._account(), self._key("move_visit")
        return await self._run(
            "move_visit",
            {"appointment_id": appointment_id, "slot_id": slot_id},
            lambda: self.tenant.scheduling.move(account, appointment_id, slot_id, key=key),
        )

    async def cancel_visit(self, appointment_id: str) -> Appointment:
        account, key = self._account(), self._key("cancel_visit")
        return await self._run(
            "cancel_visit",
            {"appointment_id": appointment_id},
            lambda: self.tenant.scheduling.cancel(account, appointment_id, key=key),
        )

    # Billing ------------------------------------------------------------------------------------

    async def balance(self) -> Balance:
        account = self._account()
        return await self._run("get_balance", {}, lambda: self.tenant.billing.balance(account))

    async def invoices(self) -> list[Invoice]:
        account = self._account()
        return await self._run("list_invoices", {}, lambda: self.tenant.billing.invoices(account, 3))

    async def plan(self) -> str:
        """The verified account's plan ("Fiber 500"): the account record's only field a caller asks to hear."""
        account = self._account()

        async def call() -> str:
            return (await self.tenant.customers.get(account)).plan

        return await self._run("get_plan", {}, call)

    async def pay(self, amount_cents: int) -> Payment:
        account, key = self._account(), self._key("make_payment")
        return await self._run(
            "make_payment",
            {"amount_cents": amount_cents},
            lambda: self.tenant.billing.pay(account, amount_cents, key=key),
        )

    async def dispute(self, invoice_id: str, line_id: str, reason: str) -> Dispute:
        account, key = self._account(), self._key("dispute_charge")
        return await self._run(
            "dispute_charge",
            {"invoice_id": invoice_id, "line_id": line_id, "reason": reason},
            lambda: self.tenant.billing.dispute(account, invoice_id, line_id, reason, key=key),
        )

    async def refund(self, invoice_id: str, line_id: str, amount_cents: int, reason: str) -> Refund:
        account, key = self._account(), self._key("request_refund")
        return await self._run(
            "request_refund",
            {"invoice_id": invoice_id, "line_id": line_id, "amount_cents": amount_cents, "reason": reason},
            lambda: self.tenant.billing.refund(account, invoice_id, amount_cents, reason, line_id=line_id, key=key),
        )

    # Support ------------------------------------------------------------------------------------

    async def outage(self, zip_code: str | None = None) -> Outage | None:
        async def call() -> Outage | None:
            code = zip_code
            if code is None:
                code = (await self.tenant.customers.get(self._account())).zip_code
            return await self.tenant.support.outage_for_zip(code)

        return await self._run("check_outage", {"zip_code": zip_code} if zip_code else {}, call)

    async def articles(self, query: str) -> list[Article]:
        return await self._run(
            "search_articles", {"query": query}, lambda: self.tenant.support.search_articles(query, 3)
        )

    async def reset_password(self) -> str:
        account, key = self._account(), self._key("reset_password")
        return await self._run(
            "reset_password", {}, lambda: self.tenant.customers.send_password_reset(account, key=key)
        )

    # Escalation ---------------------------------------------------------------------------------

    async def open_ticket(self, reason: str, summary: str, priority: int) -> str:
        key = self._key("transfer_to_human")

        async def call() -> str:
            ticket = await self.tenant.desk.open_ticket(
                call_id=self.call_id,
                account_id=self.account_id,
                reason=reason,
                summary=summary,
                priority=priority,
                key=key,
            )
            return ticket.ticket_id

        return await self._run("transfer_to_human", {"reason": reason, "priority": priority}, call)

    # LLM tool wrappers --------------------------------------------------------------------------

    def for_llm(self, agent: str) -> list[BaseTool]:
        """The tools an LLM specialist may call; each returns text the model can read."""
        tools = {
            "scheduling": [
                self._t_open_slots(),
                self._t_appointments(),
                self._t_book(),
                self._t_move(),
                self._t_cancel(),
            ],
            "billing": [
                self._t_balance(),
                self._t_invoices(),
                self._t_plan(),
                self._t_pay(),
                self._t_dispute(),
                self._t_refund(),
            ],
            "support": [self._t_outage(), self._t_articles(), self._t_reset()],
        }
        return tools.get(agent, [])

    def _tool(self, name: str, doc: str, schema: type[BaseModel], fn: Callable[..., Awaitable[str]]) -> BaseTool:
        async def guarded(**kwargs: Any) -> str:
            try:
                return await fn(**kwargs)
            except DomainError as exc:
                return f"error ({exc.code}): {exc}"

        return StructuredTool.from_function(coroutine=guarded, name=name, description=doc, args_schema=schema)

    def _t_open_slots(self) -> BaseTool:
        async def fn(day: str | None = None, part_of_day: str | None = None) -> str:
            on = date.fromisoformat(day) if day else None
            slots = await self.open_slots(on, part_of_day)
            return "; ".join(f"{s.slot_id}: {spoken_time(s.start, self.ctx)}" for s in slots) or "no open slots"

        return self._tool("open_slots", "List up to 3 open technician visit slots.", _OpenSlotsArgs, fn)

    def _t_appointments(self) -> BaseTool:
        async def fn() -> str:
            appts = await self.appointments()
            return "; ".join(f"{a.appointment_id}: {spoken_time(a.start, self.ctx)}" for a in appts) or "none booked"

        return self._tool("list_appointments", "List the caller's booked technician visits.", _NoArgs, fn)

    def _t_book(self) -> BaseTool:
        async def fn(slot_id: str, reason: str) -> str:
            appt = await self.book_visit(slot_id, reason)
            return f"booked {appt.appointment_id} for {spoken_time(appt.start, self.ctx)}"

        return self._tool("book_visit", "Book a technician visit in an open slot.", _BookArgs, fn)

    def _t_move(self) -> BaseTool:
        async def fn(appointment_id: str, slot_id: str) -> str:
            appt = await self.move_visit(appointment_id, slot_id)
            return f"moved to {spoken_time(appt.start, self.ctx)}"

        return self._tool("move_visit", "Move a booked visit to another open slot.", _MoveArgs, fn)

    def _t_cancel(self) -> BaseTool:
        async def fn(appointment_id: str) -> str:
            await self.cancel_visit(appointment_id)
            return "cancelled"

        return self._tool("cancel_visit", "Cancel a booked technician visit.", _AppointmentArgs, fn)

    def _t_balance(self) -> BaseTool:
        async def fn() -> str:
            bal = await self.balance()
            due = f", due {spoken_date(bal.next_due_on)}" if bal.next_due_on else ""
            return f"balance {money(bal.due_cents)}{due}"

        return self._tool("get_balance", "Get the caller's account balance.", _NoArgs, fn)

    def _t_invoices(self) -> BaseTool:
        async def fn() -> str:
            invs = await self.invoices()
            return " | ".join(
                f"{i.invoice_id} ({spoken_period(i.period)}, {money(i.amount_cents)}): "
                + ", ".join(f"{ln.line_id} {ln.description} {money(ln.amount_cents)}" for ln in i.lines)
                for i in invs
            )

        return self._tool("list_invoices", "List recent invoices with their charge lines.", _NoArgs, fn)

    def _t_plan(self) -> BaseTool:
        async def fn() -> str:
            plan = await self.plan()
            return f"plan {plan}; account number {spoken_account(self._account())}"

        return self._tool("get_plan", "Get the caller's plan and account number.", _NoArgs, fn)

    def _t_pay(self) -> BaseTool:
        async def fn(amount_cents: int) -> str:
            payment = await self.pay(amount_cents)
            return f"payment {payment.payment_id} of {money(payment.amount_cents)} taken"

        return self._tool("make_payment", "Charge the card on file.", _PayArgs, fn)

    def _t_dispute(self) -> BaseTool:
        async def fn(invoice_id: str, line_id: str, reason: str) -> str:
            dispute = await self.dispute(invoice_id, line_id, reason)
            return f"dispute {dispute.dispute_id} opened for {money(dispute.amount_cents)}"

        return self._tool("dispute_charge", "Open a dispute on one charge line.", _DisputeArgs, fn)

    def _t_refund(self) -> BaseTool:
        policy = self.tenant.billing.refund_policy()

        async def fn(invoice_id: str, line_id: str, amount_cents: int, reason: str) -> str:
            refund = await self.refund(invoice_id, line_id, amount_cents, reason)
            return f"refund {refund.refund_id} of {money(refund.amount_cents)} granted"

        doc = (
            f"Refund (part of) one charge line of an invoice; each charge is refunded or disputed once."
            f" Policy: at most {money(policy.max_cents)}, invoices from the last "
            f"{policy.window_days} days, {policy.max_per_year} refunds a year; beyond that, transfer to a human."
        )
        return self._tool("request_refund", doc, _RefundArgs, fn)

    def _t_outage(self) -> BaseTool:
        async def fn(zip_code: str | None = None) -> str:
            outage = await self.outage(zip_code)
            if outage is None:
                return "no known outage"
            eta = f", expected fix {spoken_time(outage.eta, self.ctx)}" if outage.eta else ""
            return f"{outage.status}: {outage.description}{eta}"

        return self._tool("check_outage", "Check for a network outage at the caller's address.", _OutageArgs, fn)

    def _t_articles(self) -> BaseTool:
        async def fn(query: str) -> str:
            found = await self.articles(query)
            return " | ".join(f"{a.title}: " + " ".join(a.steps) for a in found) or "nothing found"

        return self._tool("search_articles", "Search troubleshooting articles.", _QueryArgs, fn)

    def _t_reset(self) -> BaseTool:
        async def fn() -> str:
            return f"reset link sent to {await self.reset_password()}"

        return self._tool("reset_password", "Send a password reset link to the email on file.", _NoArgs, fn)


def _summary(result: object) -> str:
    if isinstance(result, list):
        return f"{len(result)} item(s)"
    if result is None:
        return "none"
    for attr in ("appointment_id", "payment_id", "dispute_id", "refund_id", "outage_id"):
        if hasattr(result, attr):
            return f"{attr}={getattr(result, attr)}"
    if isinstance(result, Balance):
        return f"due_cents={result.due_cents}"
    return str(result)[:80]


class _NoArgs(BaseModel):
    pass


class _OpenSlotsArgs(BaseModel):
    day: str | None = Field(default=None, description="ISO date to look from, e.g. 2026-12-01")
    part_of_day: str | None = Field(default=None, description="'morning' or 'afternoon'")


class _BookArgs(BaseModel):
    slot_id: str
    reason: str = Field(description="What the technician should look at")


class _MoveArgs(BaseModel):
    appointment_id: str
    slot_id: str


class _AppointmentArgs(BaseModel):
    appointment_id: str


class _PayArgs(BaseModel):
    amount_cents: int = Field(gt=0)


class _DisputeArgs(BaseModel):
    invoice_id: str
    line_id: str
    reason: str


class _RefundArgs(BaseModel):
    invoice_id: str
    line_id: str = Field(description="The charge line to refund, from list_invoices")
    amount_cents: int = Field(gt=0)
    reason: str


class _OutageArgs(BaseModel):
    zip_code: str | None = Field(default=None, description="Only when the caller gives a different address")


class _QueryArgs(BaseModel):
    query: str
