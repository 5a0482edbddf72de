"""SQLAlchemy ORM models of the Northwind Broadband demo tenant (tables prefixed `nw_`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from orchestrator.sql import UTCDateTime


class Base(DeclarativeBase):
    """Declarative base with the domain's own metadata, so `create_schema` touches only these tables."""

    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime(), date: Date()}


class CustomerRow(Base):
    """A subscriber account."""

    __tablename__ = "nw_customers"

    account_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str] = mapped_column(String(254))
    zip_code: Mapped[str] = mapped_column(String(16))
    plan: Mapped[str] = mapped_column(String(64))
    vip: Mapped[bool] = mapped_column(Boolean, default=False)
    card_last4: Mapped[str] = mapped_column(String(4))


class PasswordResetRow(Base):
    """An outbox row per password-reset email we were asked to send."""

    __tablename__ = "nw_password_resets"

    reset_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("nw_customers.account_id"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime]


class SlotRow(Base):
    """A technician visit window; `taken` flips with a conditional UPDATE so only one booking wins."""

    __tablename__ = "nw_slots"
    __table_args__ = (Index("ix_nw_slots_open", "taken", "starts_at"),)

    slot_id: Mapped[str] = mapped_column(String(48), primary_key=True)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    technician: Mapped[str] = mapped_column(String(100))
    taken: Mapped[bool] = mapped_column(Boolean, default=False)


class AppointmentRow(Base):
    """A technician visit booked on a slot."""

    __tablename__ = "nw_appointments"
    __table_args__ = (
        # Backstop for the conditional UPDATE on nw_slots: never two live bookings of one slot.
        Index(
            "uq_nw_appointments_booked_slot",
            "slot_id",
            unique=True,
            sqlite_where=text("status = 'booked'"),
            postgresql_where=text("status = 'booked'"),
        ),
    )

    appointment_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("nw_customers.account_id"), index=True)
    slot_id: Mapped[str] = mapped_column(ForeignKey("nw_slots.slot_id"))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    slot: Mapped[SlotRow] = relationship(lazy="joined")


class InvoiceRow(Base):
    """A monthly bill; `amount_cents` is the sum of its lines (credits included)."""

    __tablename__ = "nw_invoices"

    invoice_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("nw_customers.account_id"), index=True)
    period: Mapped[str] = mapped_column(String(40))
    issued_on: Mapped[date]
    due_on: Mapped[date]
    amount_cents: Mapped[int] = mapped_column(Integer)
    paid_cents: Mapped[int] = mapped_column(Integer, default=0)

    lines: Mapped[list[InvoiceLineRow]] = relationship(
        lazy="selectin", order_by="InvoiceLineRow.position", back_populates="invoice"
    )


class InvoiceLineRow(Base):
    """One charge (or credit, when negative) on an invoice."""

    __tablename__ = "nw_invoice_lines"

    line_id: Mapped[str] = mapped_column(String(48), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("nw_invoices.invoice_id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # plan, equipment, one_off, credit
    description: Mapped[str] = mapped_column(String(200))
    amount_cents: Mapped[int] = mapped_column(Integer)

    invoice: Mapped[InvoiceRow] = relationship(back_populates="lines")


class PaymentRow(Base):
    """A payment taken from the card on file."""

    __tablename__ = "nw_payments"

    payment_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("nw_customers.account_id"), index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class DisputeRow(Base):
    """A disputed invoice line; the unique line id makes "once per line" hold under concurrency."""

    __tablename__ = "nw_disputes"

    dispute_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("nw_customers.account_id"), index=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("nw_invoices.invoice_id"))
    line_id: Mapped[str] = mapped_column(ForeignKey("nw_invoice_lines.line_id"), unique=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]


class RefundRow(Base):
    """A refund granted on an invoice; `created_at` feeds the rolling-year count of the policy."""

    __tablename__ = "nw_refunds"
    __table_args__ = (Index("ix_nw_refunds_account_created", "account_id", "created_at"),)

    refund_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("nw_customers.account_id"))
    invoice_id: Mapped[str] = mapped_column(ForeignKey("nw_invoices.invoice_id"))
    amount_cents: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class RecoveryRow(Base):
    """Money recovered on one charge line, by a refund or a dispute: the unique line id allows one per charge."""

    __tablename__ = "nw_recoveries"

    line_id: Mapped[str] = mapped_column(ForeignKey("nw_invoice_lines.line_id"), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("nw_customers.account_id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # refund, dispute
    ref_id: Mapped[str] = mapped_column(String(40))  # the refund or dispute id
    created_at: Mapped[datetime]


class EffectRow(Base):
    """An effect (a payment, a refund, a booking…) under its idempotency key, written in the effect's transaction.

    A caller's decision is carried out once: a turn replayed after a crash presents the same key and is
    answered with the effect already made (`ref_id`, the row it created or changed) instead of a second one.
    """

    __tablename__ = "nw_effects"

    key: Mapped[str] = mapped_column(String(240), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    ref_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class OutageRow(Base):
    """A network outage affecting every ZIP code that starts with `zip_prefix`."""

    __tablename__ = "nw_outages"

    outage_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    zip_prefix: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime]
    eta: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))


class ArticleRow(Base):
    """A knowledge-base article with spoken troubleshooting steps."""

    __tablename__ = "nw_articles"

    article_id: Mapped[str] = mapped_column(String(48), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    tags: Mapped[list[str]] = mapped_column(JSON)
    steps: Mapped[list[str]] = mapped_column(JSON)


class TicketRow(Base):
    """A call waiting for (or taken by) a human agent."""

    __tablename__ = "nw_tickets"
    __table_args__ = (Index("ix_nw_tickets_queue", "status", "priority", "created_at"),)

    ticket_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(128), index=True)
    account_id: Mapped[str | None] = mapped_column(ForeignKey("nw_customers.account_id"))
    reason: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    agent: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]


class SeedRunRow(Base):
    """Marks a data set as seeded; inserting it first makes concurrent seeders agree on one winner."""

    __tablename__ = "nw_seed_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    seeded_for: Mapped[date]
