"""The small interfaces the agents need from the outside world: the tenant's systems and the classifier.

`agents/` defines these ports; `orchestrator/` implements them (the demo tenant lives in
`orchestrator/domain`). Every method that touches an account takes the account id explicitly: the
agents' tools always pass the *verified* caller's account, never one a model or caller supplied, and
implementations check that any appointment, invoice or line id they are given belongs to that account.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, Protocol

Intent = Literal["scheduling", "billing", "support", "escalation", "out_of_scope"]
INTENTS: tuple[Intent, ...] = ("scheduling", "billing", "support", "escalation", "out_of_scope")


# --------------------------------------------------------------------------------------------
# Errors: a tool turns these into a spoken explanation, never into a crash.
# --------------------------------------------------------------------------------------------


class DomainError(Exception):
    """A request the tenant's systems refused; `code` is stable, the message is safe to speak."""

    code = "domain_error"


class NotFound(DomainError):
    code = "not_found"


class NotAllowed(DomainError):
    """The object exists but does not belong to the verified caller's account."""

    code = "not_allowed"


class PolicyViolation(DomainError):
    """The request breaks a business rule (refund past policy, slot taken, and so on)."""

    code = "policy_violation"


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Customer:
    account_id: str
    name: str
    phone: str
    email: str
    zip_code: str
    plan: str
    vip: bool = False


@dataclass(frozen=True)
class Slot:
    slot_id: str
    start: datetime
    end: datetime
    technician: str


@dataclass(frozen=True)
class Appointment:
    appointment_id: str
    account_id: str
    slot_id: str
    start: datetime
    end: datetime
    status: Literal["booked", "cancelled", "completed"]
    reason: str


@dataclass(frozen=True)
class InvoiceLine:
    """One line of an invoice: a charge (positive) or a credit (negative).

    `recovered_by` says whether the charge was already refunded (by `recovered_cents`) or disputed: the
    tenant allows one recovery per charge.
    """

    line_id: str
    description: str
    amount_cents: int
    recovered_by: Literal["refund", "dispute"] | None = None
    recovered_cents: int = 0


@dataclass(frozen=True)
class Invoice:
    invoice_id: str
    account_id: str
    period: str
    issued_on: date
    due_on: date
    amount_cents: int
    paid_cents: int
    lines: tuple[InvoiceLine, ...] = ()

    @property
    def open_cents(self) -> int:
        return self.amount_cents - self.paid_cents


@dataclass(frozen=True)
class Payment:
    payment_id: str
    account_id: str
    amount_cents: int
    method: str
    created_at: datetime


@dataclass(frozen=True)
class Balance:
    account_id: str
    due_cents: int
    next_due_on: date | None
    last_payment: Payment | None


@dataclass(frozen=True)
class Dispute:
    dispute_id: str
    account_id: str
    invoice_id: str
    line_id: str
    amount_cents: int
    reason: str
    status: Literal["open", "resolved", "rejected"]


@dataclass(frozen=True)
class RefundPolicy:
    """Refunds the AI may grant by itself; anything beyond goes to a human."""

    max_cents: int
    window_days: int
    max_per_year: int


@dataclass(frozen=True)
class Refund:
    refund_id: str
    account_id: str
    invoice_id: str
    amount_cents: int
    reason: str


@dataclass(frozen=True)
class Outage:
    outage_id: str
    zip_prefix: str
    description: str
    started_at: datetime
    eta: datetime | None
    status: Literal["investigating", "fixing", "resolved"]


@dataclass(frozen=True)
class Article:
    article_id: str
    title: str
    tags: tuple[str, ...]
    steps: tuple[str, ...]


@dataclass(frozen=True)
class HumanTicket:
    ticket_id: str
    call_id: str
    account_id: str | None
    reason: str
    summary: str
    priority: int
    status: Literal["waiting", "accepted", "closed", "callback", "abandoned"]
    created_at: datetime


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------


class Customers(Protocol):
    async def find_by_phone(self, phone: str) -> Customer | None: ...

    async def get(self, account_id: str) -> Customer: ...

    async def check_second_factor(self, account_id: str, zip_code: str) -> bool:
        """True when `zip_code` matches the account's ZIP code (the second verification factor)."""
        ...

    async def match_name_and_zip(self, name: str, zip_code: str) -> Customer | None:
        """The one account held under `name` at `zip_code`, if exactly one is (an unknown name is a wrong ZIP)."""
        ...

    async def send_password_reset(self, account_id: str, *, key: str | None = None) -> str:
        """Send a reset link to the email on file; return the masked address it went to (once per `key`)."""
        ...


# "no_match": an account number or a name whose ZIP did not match (the two are never told apart).
VerificationFailureReason = Literal["unknown_number", "wrong_zip", "no_match"]


class VerificationGuard(Protocol):
    """Failed verifications across calls: a caller ID or an account that fails too often is locked for a while.

    Keys are the caller ID the call came from and the account the caller claims: by a phone number (a number
    with no account counts under itself, so a lock says nothing about which numbers are customers), by an
    account number (`account_id`, counted under itself whether or not it exists) or by a name (`name`).
    """

    async def locked(
        self, *, caller_id: str | None, phone: str | None, account_id: str | None = None, name: str | None = None
    ) -> bool:
        """True while the caller ID, or the account claimed, cools down after too many failures."""
        ...

    async def record_failure(
        self,
        *,
        call_id: str,
        caller_id: str | None,
        phone: str,
        reason: VerificationFailureReason,
        account_id: str | None = None,
        name: str | None = None,
    ) -> bool:
        """Record a failed phone-and-ZIP check; True when this failure reached the limit and locked a key."""
        ...


class Scheduling(Protocol):
    async def open_slots(self, *, on_or_after: date, limit: int = 3) -> list[Slot]: ...

    async def appointments(self, account_id: str) -> list[Appointment]:
        """Booked (future) appointments of the account, soonest first."""
        ...

    async def book(self, account_id: str, slot_id: str, reason: str, *, key: str | None = None) -> Appointment: ...

    async def move(
        self, account_id: str, appointment_id: str, slot_id: str, *, key: str | None = None
    ) -> Appointment: ...

    async def cancel(self, account_id: str, appointment_id: str, *, key: str | None = None) -> Appointment: ...


class Billing(Protocol):
    async def balance(self, account_id: str) -> Balance: ...

    async def invoices(self, account_id: str, limit: int = 3) -> list[Invoice]:
        """Most recent first."""
        ...

    async def pay(self, account_id: str, amount_cents: int, *, key: str | None = None) -> Payment:
        """Charge the card on file (once per `key`)."""
        ...

    async def dispute(
        self, account_id: str, invoice_id: str, line_id: str, reason: str, *, key: str | None = None
    ) -> Dispute:
        """Dispute one charge line; a charge is refunded or disputed once, not both."""
        ...

    def refund_policy(self) -> RefundPolicy: ...

    async def refund(
        self,
        account_id: str,
        invoice_id: str,
        amount_cents: int,
        reason: str,
        *,
        line_id: str,
        key: str | None = None,
    ) -> Refund:
        """Refund (part of) one charge line; raises PolicyViolation past the policy (one recovery per charge,
        amount, window, yearly count)."""
        ...


class Support(Protocol):
    async def outage_for_zip(self, zip_code: str) -> Outage | None: ...

    async def search_articles(self, query: str, limit: int = 3) -> list[Article]: ...

    async def article(self, article_id: str) -> Article: ...


class HumanDesk(Protocol):
    async def open_ticket(
        self,
        *,
        call_id: str,
        account_id: str | None,
        reason: str,
        summary: str,
        priority: int,
        key: str | None = None,
    ) -> HumanTicket: ...

    async def waiting(self) -> list[HumanTicket]: ...


@dataclass(frozen=True)
class Tenant:
    """Everything the agents may touch of one tenant's systems."""

    name: str
    customers: Customers
    verification: VerificationGuard
    scheduling: Scheduling
    billing: Billing
    support: Support
    desk: HumanDesk


# --------------------------------------------------------------------------------------------
# Intent classification
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntentPrediction:
    """The router's reading of a turn; `trigger` is the escalation trigger a second head reads in the same words
    (over its own threshold), for the supervisor where its patterns find none."""

    intent: Intent
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)
    trigger: str | None = None


class IntentClassifier(Protocol):
    def classify(self, text: str) -> IntentPrediction: ...


class AsyncIntentClassifier(IntentClassifier, Protocol):
    """A classifier that also classifies off the event loop by itself (in a child process, say)."""

    async def aclassify(self, text: str) -> IntentPrediction: ...
