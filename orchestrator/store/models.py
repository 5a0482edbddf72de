"""ORM models of the call records (tables prefixed `cc_`), beside the tenant's tables in the same database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from orchestrator.sql import UTCDateTime


class RecordsBase(DeclarativeBase):
    """Declarative base with the records' own metadata, so their `create_all` touches only `cc_*` tables."""

    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime()}


class CallRow(RecordsBase):
    """One call: outcome, timings, cost and where it ran. Transcript text lives in `cc_turns`, redacted."""

    __tablename__ = "cc_calls"

    call_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]
    # Hour of day in the tenant's time zone, for cost and volume by hour.
    local_hour: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(32))
    success: Mapped[bool] = mapped_column(Boolean)
    first_contact_resolved: Mapped[bool] = mapped_column(Boolean)
    escalation_reason: Mapped[str | None] = mapped_column(String(100))
    ticket_id: Mapped[str | None] = mapped_column(String(100))
    intent: Mapped[str | None] = mapped_column(String(32))
    agent: Mapped[str | None] = mapped_column(String(32))
    turns: Mapped[int] = mapped_column(Integer)
    resolutions: Mapped[list[str]] = mapped_column(JSON, default=list)
    errors: Mapped[list[str]] = mapped_column(JSON, default=list)
    queue_wait_ms: Mapped[float | None] = mapped_column(Float)
    worker: Mapped[str] = mapped_column(String(200), default="")
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    latency_p50_ms: Mapped[float | None] = mapped_column(Float)
    latency_p95_ms: Mapped[float | None] = mapped_column(Float)
    latency_max_ms: Mapped[float | None] = mapped_column(Float)
    # NULL when some part of the call had no price: unknown, not zero.
    cost_usd: Mapped[float | None] = mapped_column(Float)
    cost_known_usd: Mapped[float] = mapped_column(Float, default=0.0)
    cost_unknown: Mapped[list[str]] = mapped_column(JSON, default=list)
    cost_by_component: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    anomaly_count: Mapped[int] = mapped_column(Integer, default=0)
    trace_id: Mapped[str | None] = mapped_column(String(32))
    # Who called: the number as the source gave it, its digits alone (searched in any format), and the
    # account the caller was verified on, if any.
    caller_id: Mapped[str | None] = mapped_column(String(64))
    caller_digits: Mapped[str | None] = mapped_column(String(32), index=True)
    account_id: Mapped[str | None] = mapped_column(String(40), index=True)

    turn_rows: Mapped[list[TurnRow]] = relationship(
        back_populates="call", cascade="all, delete-orphan", order_by="TurnRow.idx"
    )
    event_rows: Mapped[list[EventRow]] = relationship(
        back_populates="call", cascade="all, delete-orphan", order_by="EventRow.id"
    )
    anomaly_rows: Mapped[list[AnomalyRow]] = relationship(
        back_populates="call", cascade="all, delete-orphan", order_by="AnomalyRow.id"
    )

    __table_args__ = (Index("ix_cc_calls_started_at", "started_at"), Index("ix_cc_calls_outcome", "outcome"))


class TurnRow(RecordsBase):
    """One caller turn and the agent's answer, redacted, with its latency and known cost."""

    __tablename__ = "cc_turns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("cc_calls.call_id", ondelete="CASCADE"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    caller: Mapped[str] = mapped_column(Text)
    agent: Mapped[str] = mapped_column(Text)
    agent_name: Mapped[str] = mapped_column(String(32))
    intent: Mapped[str | None] = mapped_column(String(32))
    confidence: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)
    graph_ms: Mapped[float] = mapped_column(Float)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    segment: Mapped[str] = mapped_column(String(80))

    call: Mapped[CallRow] = relationship(back_populates="turn_rows")


class EventRow(RecordsBase):
    """A handoff, a supervisor intervention or a tool call, as data (strings redacted)."""

    __tablename__ = "cc_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("cc_calls.call_id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    turn: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)

    call: Mapped[CallRow] = relationship(back_populates="event_rows")


class AnomalyRow(RecordsBase):
    """An anomaly flag with its reason."""

    __tablename__ = "cc_anomalies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("cc_calls.call_id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    why: Mapped[str] = mapped_column(Text)
    turn: Mapped[int | None] = mapped_column(Integer)
    score: Mapped[float | None] = mapped_column(Float)

    call: Mapped[CallRow] = relationship(back_populates="anomaly_rows")
