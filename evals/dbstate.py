"""Snapshots of the tenant's database before and after a call, to check the final domain state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.domain.models import (
    AppointmentRow,
    DisputeRow,
    InvoiceLineRow,
    InvoiceRow,
    PasswordResetRow,
    PaymentRow,
    RefundRow,
    TicketRow,
)


@dataclass(frozen=True)
class Snapshot:
    """Rows that calls change, keyed by table; each row a tuple whose first items are (id, account)."""

    tables: dict[str, frozenset[tuple[Any, ...]]] = field(default_factory=dict)

    def new_rows(self, before: Snapshot, table: str) -> list[tuple[Any, ...]]:
        """Rows of `table` present now and not in `before`."""
        return sorted(self.tables[table] - before.tables[table], key=repr)

    def touched_accounts(self, before: Snapshot) -> set[str]:
        """Accounts with any row added, removed or changed since `before` (tickets excluded)."""
        out: set[str] = set()
        for name, rows in self.tables.items():
            if name == "tickets":
                continue
            for row in rows ^ before.tables[name]:
                if row[1]:
                    out.add(str(row[1]))
        return out


async def snapshot(engine: AsyncEngine) -> Snapshot:
    """Read every row a call may change (a few small tables; about a millisecond on SQLite)."""
    queries: dict[str, Any] = {
        "appointments": select(
            AppointmentRow.appointment_id, AppointmentRow.account_id, AppointmentRow.slot_id, AppointmentRow.status
        ),
        "invoices": select(
            InvoiceRow.invoice_id, InvoiceRow.account_id, InvoiceRow.amount_cents, InvoiceRow.paid_cents
        ),
        "payments": select(PaymentRow.payment_id, PaymentRow.account_id, PaymentRow.amount_cents),
        "disputes": select(
            DisputeRow.dispute_id,
            DisputeRow.account_id,
            DisputeRow.amount_cents,
            InvoiceLineRow.description,
        ).join(InvoiceLineRow, InvoiceLineRow.line_id == DisputeRow.line_id),
        "refunds": select(RefundRow.refund_id, RefundRow.account_id, RefundRow.amount_cents, RefundRow.reason),
        "password_resets": select(PasswordResetRow.reset_id, PasswordResetRow.account_id, PasswordResetRow.email),
        "tickets": select(
            TicketRow.ticket_id,
            TicketRow.account_id,
            TicketRow.call_id,
            TicketRow.reason,
            TicketRow.priority,
            TicketRow.summary,
        ),
    }
    tables: dict[str, frozenset[tuple[Any, ...]]] = {}
    async with engine.connect() as conn:
        for name, query in queries.items():
            rows = (await conn.execute(query)).all()
            tables[name] = frozenset(tuple(r) for r in rows)
    return Snapshot(tables)
