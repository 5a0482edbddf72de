"""ORM models of the console (tables `console_*`): users, admin API tokens, the audit log, callbacks, wrap-ups."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from orchestrator.sql import UTCDateTime, create_tables


class ConsoleBase(DeclarativeBase):
    """Declarative base with the console's own metadata, so its `create_all` touches only `console_*` tables."""

    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime()}


class UserRow(ConsoleBase):
    """A console user: a supervisor or an admin, with a salted scrypt hash of the password."""

    __tablename__ = "console_users"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime]


class TokenRow(ConsoleBase):
    """An admin's bearer API token; only the SHA-256 of the secret is kept (it has 256 bits of entropy)."""

    __tablename__ = "console_tokens"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class AuditRow(ConsoleBase):
    """One supervisor action (or an automatic one the console took on a supervisor's behalf)."""

    __tablename__ = "console_audit"
    __table_args__ = (Index("ix_console_audit_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    call_id: Mapped[str | None] = mapped_column(String(200), index=True)
    ticket_id: Mapped[str | None] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CallbackRow(ConsoleBase):
    """The number to ring back for an escalation whose caller hung up before a person took it."""

    __tablename__ = "console_callbacks"

    ticket_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(200), index=True)
    number: Mapped[str] = mapped_column(String(64))
    left_at: Mapped[datetime]


class WrapUpRow(ConsoleBase):
    """The disposition a person picked when closing an escalation: what became of it."""

    __tablename__ = "console_wrapups"
    __table_args__ = (Index("ix_console_wrapups_at", "at"),)

    ticket_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(200), index=True)
    code: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text, default="")
    username: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]


async def create_console_schema(engine: AsyncEngine) -> None:
    """Create the `console_*` tables that do not exist yet (safe from several processes at once)."""
    await create_tables(engine, ConsoleBase.metadata)
