"""Northwind Broadband, the demo tenant: the `agents.ports` interfaces on SQLite or PostgreSQL."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from agents.ports import RefundPolicy, Tenant
from orchestrator.config import DEV_RECORD_KEY
from orchestrator.domain import redaction as _redaction  # noqa: F401 - registers the caller-text columns' redaction
from orchestrator.domain.billing import DEFAULT_REFUND_POLICY, SqlBilling
from orchestrator.domain.customers import SqlCustomers
from orchestrator.domain.db import DEFAULT_TIMEZONE, Clock, Store, create_schema
from orchestrator.domain.desk import SqlHumanDesk
from orchestrator.domain.scheduling import SqlScheduling
from orchestrator.domain.seed import DEMO_CUSTOMERS, seed_demo
from orchestrator.domain.support import SqlSupport
from orchestrator.domain.verification import (
    DEFAULT_VERIFICATION_LIMITS,
    Lockout,
    SqlVerificationGuard,
    VerificationLimits,
    rekey_clear_keys,
    watch_lockouts,
)
from orchestrator.sql import open_engine

TENANT_NAME = "Northwind Broadband"

__all__ = [
    "DEFAULT_REFUND_POLICY",
    "DEFAULT_VERIFICATION_LIMITS",
    "DEMO_CUSTOMERS",
    "TENANT_NAME",
    "Clock",
    "Lockout",
    "SqlBilling",
    "SqlCustomers",
    "SqlHumanDesk",
    "SqlScheduling",
    "SqlSupport",
    "SqlVerificationGuard",
    "VerificationLimits",
    "build_tenant",
    "create_schema",
    "open_engine",
    "rekey_clear_keys",
    "seed_demo",
    "watch_lockouts",
]


def build_tenant(
    engine: AsyncEngine,
    *,
    clock: Clock | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    refund_policy: RefundPolicy = DEFAULT_REFUND_POLICY,
    verification_limits: VerificationLimits = DEFAULT_VERIFICATION_LIMITS,
    record_key: str = DEV_RECORD_KEY,
) -> Tenant:
    """Wire the tenant's systems on one engine.

    Args:
        engine: From `open_engine`; the schema must exist (`create_schema`).
        clock: Returns the current time as an aware datetime; tests and evals pin it. Defaults to
            the system clock.
        timezone: The tenant's time zone: returned datetimes are aware and expressed in it, and
            "today" (refund window, open slots) is its local date.
        refund_policy: What the AI may refund by itself.
        verification_limits: Failed verifications a caller ID or an account may have before it is locked.
        record_key: Keys the hashes failed verifications are stored under instead of phone numbers
            (`Settings.record_key`, as the call records' number keys).

    Returns:
        The tenant. `tenant.desk` is a `SqlHumanDesk`, which also has `accept` and `close`;
        `tenant.verification` is a `SqlVerificationGuard`, whose `on_lockout` hook feeds alerts.
    """
    store = Store(engine, clock=clock, timezone=timezone)
    return Tenant(
        name=TENANT_NAME,
        customers=SqlCustomers(store),
        verification=SqlVerificationGuard(store, verification_limits, record_key=record_key),
        scheduling=SqlScheduling(store),
        billing=SqlBilling(store, policy=refund_policy),
        support=SqlSupport(store),
        desk=SqlHumanDesk(store),
    )
