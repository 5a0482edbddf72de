"""Balances, invoices, payments, disputes and refunds within the AI's refund policy."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agents.ports import (
    Balance,
    Dispute,
    Invoice,
    InvoiceLine,
    NotAllowed,
    NotFound,
    Payment,
    PolicyViolation,
    Refund,
    RefundPolicy,
)
from orchestrator.domain.db import Store, money, new_id
from orchestrator.domain.models import DisputeRow, InvoiceLineRow, InvoiceRow, PaymentRow, RecoveryRow, RefundRow

DEFAULT_REFUND_POLICY = RefundPolicy(max_cents=5000, window_days=60, max_per_year=2)
_NO_INVOICE = "I couldn't find that invoice on your account."
_NO_LINE = "I couldn't find that charge on your account."
_ALREADY_DISPUTED = "That charge is already under dispute."
_ALREADY_REFUNDED = "That charge was already refunded."
_ALREADY_RECOVERED = "That charge was already refunded or disputed."


Recoveries = dict[str, tuple[Literal["refund", "dispute"], int]]


def to_invoice(row: InvoiceRow, recoveries: Recoveries | None = None) -> Invoice:
    """The port record of an invoice row with its lines; `recoveries` maps a line id to how it was recovered."""
    recovered = recoveries or {}
    return Invoice(
        invoice_id=row.invoice_id,
        account_id=row.account_id,
        period=row.period,
        issued_on=row.issued_on,
        due_on=row.due_on,
        amount_cents=row.amount_cents,
        paid_cents=row.paid_cents,
        lines=tuple(
            InvoiceLine(
                line_id=line.line_id,
                description=line.description,
                amount_cents=line.amount_cents,
                recovered_by=recovered[line.line_id][0] if line.line_id in recovered else None,
                recovered_cents=recovered[line.line_id][1] if line.line_id in recovered else 0,
            )
            for line in row.lines
        ),
    )


class SqlBilling:
    """`agents.ports.Billing` on the tenant's SQL store."""

    def __init__(self, store: Store, *, policy: RefundPolicy = DEFAULT_REFUND_POLICY) -> None:
        self._store = store
        self._policy = policy

    def _payment(self, row: PaymentRow) -> Payment:
        return Payment(
            payment_id=row.payment_id,
            account_id=row.account_id,
            amount_cents=row.amount_cents,
            method=row.method,
            created_at=self._store.local(row.created_at),
        )

    async def balance(self, account_id: str) -> Balance:
        """What the account owes now, the earliest due date among open invoices and the last payment."""
        async with self._store.read() as session:
            await self._store.customer(session, account_id)
            open_cents = InvoiceRow.amount_cents - InvoiceRow.paid_cents
            due_cents, next_due_on = (
                await session.execute(
                    select(func.coalesce(func.sum(open_cents), 0), func.min(InvoiceRow.due_on)).where(
                        InvoiceRow.account_id == account_id, open_cents > 0
                    )
                )
            ).one()
            last = (
                await session.execute(
                    select(PaymentRow)
                    .where(PaymentRow.account_id == account_id)
                    .order_by(PaymentRow.created_at.desc(), PaymentRow.payment_id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
        return Balance(
            account_id=account_id,
            due_cents=int(due_cents),
            next_due_on=next_due_on,
            last_payment=self._payment(last) if last else None,
        )

    async def invoices(self, account_id: str, limit: int = 3) -> list[Invoice]:
        """The account's invoices, most recent first."""
        async with self._store.read() as session:
            await self._store.customer(session, account_id)
            rows = (
                (
                    await session.execute(
                        select(InvoiceRow)
                        .where(InvoiceRow.account_id == account_id)
                        .order_by(InvoiceRow.issued_on.desc(), InvoiceRow.invoice_id.desc())
                        .limit(max(limit, 0))
                    )
                )
                .scalars()
                .all()
            )
            recoveries = await self._recoveries(session, account_id)
        return [to_invoice(row, recoveries) for row in rows]

    async def _recoveries(self, session: AsyncSession, account_id: str) -> Recoveries:
        """The account's refunded and disputed charge lines (disputes from before recoveries were kept too)."""
        found: Recoveries = {}
        refunds = await session.execute(
            select(RecoveryRow.line_id, RefundRow.amount_cents)
            .join(RefundRow, RefundRow.refund_id == RecoveryRow.ref_id)
            .where(RecoveryRow.account_id == account_id, RecoveryRow.kind == "refund")
        )
        for line_id, cents in refunds:
            found[line_id] = ("refund", int(cents))
        disputes = await session.execute(
            select(DisputeRow.line_id, DisputeRow.amount_cents).where(DisputeRow.account_id == account_id)
        )
        for line_id, cents in disputes:
            found[line_id] = ("dispute", int(cents))
        return found

    async def pay(self, account_id: str, amount_cents: int, *, key: str | None = None) -> Payment:
        """Charge the card on file and apply the payment to the oldest open invoices first.

        `key` makes the payment happen once: a second call with it returns the first payment.
        """
        if amount_cents <= 0:
            raise PolicyViolation("The payment amount has to be more than zero.")

        async def effect(session: AsyncSession) -> tuple[str, Payment]:
            # Locking the account serialises concurrent payments, so two cannot both pass the balance check.
            customer = await self._store.customer(session, account_id, lock=True)
            open_invoices = (
                (
                    await session.execute(
                        select(InvoiceRow)
                        .where(InvoiceRow.account_id == account_id, InvoiceRow.amount_cents > InvoiceRow.paid_cents)
                        .order_by(InvoiceRow.issued_on, InvoiceRow.invoice_id)
                    )
                )
                .scalars()
                .all()
            )
            due = sum(row.amount_cents - row.paid_cents for row in open_invoices)
            if due == 0:
                raise PolicyViolation("There is nothing to pay right now: your balance is zero.")
            if amount_cents > due:
                raise PolicyViolation(f"That is more than your open balance of {money(due)}.")
            left = amount_cents
            for row in open_invoices:
                applied = min(left, row.amount_cents - row.paid_cents)
                row.paid_cents += applied
                left -= applied
                if left == 0:
                    break
            payment = PaymentRow(
                payment_id=new_id("PM"),
                account_id=account_id,
                amount_cents=amount_cents,
                method=f"card ending {customer.card_last4}",
                created_at=self._store.now(),
            )
            session.add(payment)
            await session.flush()
            return payment.payment_id, self._payment(payment)

        async def replay(session: AsyncSession, payment_id: str) -> Payment:
            row = await session.get(PaymentRow, payment_id)
            if row is None or row.account_id != account_id:
                raise NotAllowed("That payment request belongs to another account.")
            return self._payment(row)

        return await self._store.once(key, "payment", effect, replay)

    async def dispute(
        self, account_id: str, invoice_id: str, line_id: str, reason: str, *, key: str | None = None
    ) -> Dispute:
        """Open a dispute on one charge of an invoice; a charge is disputed or refunded once, not both."""

        async def effect(session: AsyncSession) -> tuple[str, Dispute]:
            invoice = await self._owned_invoice(session, account_id, invoice_id)
            line = await self._owned_charge(session, account_id, invoice, line_id, "dispute")
            row = DisputeRow(
                dispute_id=new_id("DP"),
                account_id=account_id,
                invoice_id=invoice.invoice_id,
                line_id=line.line_id,
                amount_cents=line.amount_cents,
                reason=reason.strip() or "Caller disputes the charge",
                status="open",
                created_at=self._store.now(),
            )
            session.add(row)
            session.add(
                RecoveryRow(
                    line_id=line.line_id,
                    account_id=account_id,
                    kind="dispute",
                    ref_id=row.dispute_id,
                    created_at=row.created_at,
                )
            )
            await session.flush()
            return row.dispute_id, self._dispute(row)

        async def replay(session: AsyncSession, dispute_id: str) -> Dispute:
            row = await session.get(DisputeRow, dispute_id)
            if row is None or row.account_id != account_id:
                raise NotAllowed(_NO_LINE)
            return self._dispute(row)

        try:
            return await self._store.once(key, "dispute", effect, replay)
        except IntegrityError as exc:
            # Two concurrent recoveries of one line: the unique line id lets only the first one in.
            raise PolicyViolation(_ALREADY_RECOVERED) from exc

    def refund_policy(self) -> RefundPolicy:
        """Refunds the AI may grant by itself; anything beyond goes to a human."""
        return self._policy

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
        """Refund (part of) one charge as a credit line on its invoice; raises PolicyViolation past the policy.

        The policy: one recovery per charge (a refund or a dispute, whatever the caller's words), at most
        the charge and at most `max_cents` per refund, only on invoices issued within `window_days`, and at
        most `max_per_year` refunds per account over a rolling year. When the invoice was already paid,
        the part of the payment the credit frees goes back to the card.
        """
        policy = self._policy
        if amount_cents <= 0:
            raise PolicyViolation("The refund amount has to be more than zero.")

        async def effect(session: AsyncSession) -> tuple[str, Refund]:
            # Locking the account serialises refunds, so the yearly count cannot be raced past.
            await self._store.customer(session, account_id, lock=True)
            invoice = await self._owned_invoice(session, account_id, invoice_id)
            line = await self._owned_charge(session, account_id, invoice, line_id, "refund")
            if amount_cents > policy.max_cents:
                raise PolicyViolation(
                    f"I can refund at most {money(policy.max_cents)} myself; a colleague can review a larger refund."
                )
            if amount_cents > line.amount_cents:
                raise PolicyViolation(f"That is more than the charge of {money(line.amount_cents)}.")
            if invoice.issued_on < self._store.today() - timedelta(days=policy.window_days):
                raise PolicyViolation(
                    f"That invoice is older than {policy.window_days} days, so I can't refund it myself;"
                    " a colleague can review it."
                )
            now = self._store.now()
            granted = (
                await session.execute(
                    select(func.count())
                    .select_from(RefundRow)
                    .where(RefundRow.account_id == account_id, RefundRow.created_at > now - timedelta(days=365))
                )
            ).scalar_one()
            if granted >= policy.max_per_year:
                raise PolicyViolation(
                    f"This account already had {granted} refunds in the past year, which is the most I can grant;"
                    " a colleague can review this one."
                )
            text = reason.strip() or "Goodwill credit"
            row = RefundRow(
                refund_id=new_id("RF"),
                account_id=account_id,
                invoice_id=invoice.invoice_id,
                amount_cents=amount_cents,
                reason=text,
                created_at=now,
            )
            session.add(row)
            session.add(
                RecoveryRow(
                    line_id=line.line_id, account_id=account_id, kind="refund", ref_id=row.refund_id, created_at=now
                )
            )
            invoice.lines.append(
                InvoiceLineRow(
                    line_id=f"{invoice.invoice_id}-{row.refund_id}",
                    position=max((ln.position for ln in invoice.lines), default=0) + 1,
                    kind="credit",
                    description=f"Credit: {line.description}"[:200],
                    amount_cents=-amount_cents,
                )
            )
            invoice.amount_cents -= amount_cents
            invoice.paid_cents = min(invoice.paid_cents, invoice.amount_cents)
            await session.flush()
            return row.refund_id, self._refund(row)

        async def replay(session: AsyncSession, refund_id: str) -> Refund:
            row = await session.get(RefundRow, refund_id)
            if row is None or row.account_id != account_id:
                raise NotAllowed(_NO_INVOICE)
            return self._refund(row)

        try:
            return await self._store.once(key, "refund", effect, replay)
        except IntegrityError as exc:
            raise PolicyViolation(_ALREADY_RECOVERED) from exc

    @staticmethod
    def _dispute(row: DisputeRow) -> Dispute:
        return Dispute(
            dispute_id=row.dispute_id,
            account_id=row.account_id,
            invoice_id=row.invoice_id,
            line_id=row.line_id,
            amount_cents=row.amount_cents,
            reason=row.reason,
            status="open",
        )

    @staticmethod
    def _refund(row: RefundRow) -> Refund:
        return Refund(
            refund_id=row.refund_id,
            account_id=row.account_id,
            invoice_id=row.invoice_id,
            amount_cents=row.amount_cents,
            reason=row.reason,
        )

    async def _owned_charge(
        self, session: AsyncSession, account_id: str, invoice: InvoiceRow, line_id: str, what: str
    ) -> InvoiceLineRow:
        """A charge line of the invoice that has not been refunded or disputed yet."""
        line = await session.get(InvoiceLineRow, line_id)
        if line is None or line.invoice_id != invoice.invoice_id:
            raise await self._line_error(session, account_id, line)
        if line.amount_cents <= 0:
            raise PolicyViolation(f"That line is a credit, not a charge, so there is nothing to {what}.")
        earlier = await session.get(RecoveryRow, line_id)
        disputed = (
            await session.execute(select(DisputeRow.dispute_id).where(DisputeRow.line_id == line_id))
        ).scalar_one_or_none()
        if disputed is not None or (earlier is not None and earlier.kind == "dispute"):
            raise PolicyViolation(_ALREADY_DISPUTED)
        if earlier is not None:
            raise PolicyViolation(_ALREADY_REFUNDED)
        return line

    async def _owned_invoice(self, session: AsyncSession, account_id: str, invoice_id: str) -> InvoiceRow:
        # FOR UPDATE (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers) keeps the
        # check-then-change of amounts atomic.
        invoice = await session.get(InvoiceRow, invoice_id, with_for_update=True)
        if invoice is None:
            raise NotFound(_NO_INVOICE)
        if invoice.account_id != account_id:
            raise NotAllowed(_NO_INVOICE)
        return invoice

    async def _line_error(self, session: AsyncSession, account_id: str, line: InvoiceLineRow | None) -> Exception:
        # Another account's line is NotAllowed; a line of this account on another invoice is NotFound.
        if line is not None:
            owner = await session.get(InvoiceRow, line.invoice_id)
            if owner is not None and owner.account_id != account_id:
                return NotAllowed(_NO_LINE)
        return NotFound(_NO_LINE)
