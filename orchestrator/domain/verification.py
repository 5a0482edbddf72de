"""Failed verifications across calls: a rolling count per caller ID and per account, and lock-outs with a cool-down.

Phone numbers are stored as keyed hashes (`redact.number_key` with `Settings.record_key`), never in clear.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Index, Integer, String, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from agents.ports import Tenant, VerificationFailureReason
from orchestrator.config import DEV_RECORD_KEY
from orchestrator.domain.customers import normalize_name, normalize_phone
from orchestrator.domain.db import Store, new_id
from orchestrator.domain.models import Base, CustomerRow
from orchestrator.redact import keyed_hash, number_key

log = logging.getLogger(__name__)


class VerificationFailureRow(Base):
    """A failed verification check, counted against the caller ID and the claimed account (or name)."""

    __tablename__ = "nw_verification_failures"

    failure_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(128))
    # "caller:<number key>" and "account:<id>" (or "phone:<number key>" for a number with no account, or
    # "name:<name key>"): numbers and names are keyed hashes, never in clear.
    caller_key: Mapped[str | None] = mapped_column(String(64), index=True)
    account_key: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(index=True)


class VerificationLockoutRow(Base):
    """A key that reached the failure limit: verification is refused for it until `until`."""

    __tablename__ = "nw_verification_lockouts"
    __table_args__ = (Index("ix_nw_verification_lockouts_key", "key", "until"),)

    lockout_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    failures: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    until: Mapped[datetime]


@dataclass(frozen=True)
class VerificationLimits:
    """How many failed checks a caller ID or an account may have in a rolling window, and how long a lock lasts.

    Failures from before a lock ended do not count again once it has, so each cool-down gives a fresh start;
    but each further lock of a key within `memory` of its last one lasts twice as long (up to
    `max_cooldown`), so someone who keeps guessing gets a few tries a day, not a few an hour.
    """

    max_failures: int = 5
    window: timedelta = timedelta(hours=1)
    cooldown: timedelta = timedelta(hours=1)
    max_cooldown: timedelta = timedelta(days=1)
    memory: timedelta = timedelta(days=1)

    def cooldown_after(self, earlier_locks: int) -> timedelta:
        """The length of a lock that follows `earlier_locks` recent ones."""
        return min(self.max_cooldown, self.cooldown * (1 << min(earlier_locks, 32)))


DEFAULT_VERIFICATION_LIMITS = VerificationLimits()


@dataclass(frozen=True)
class Lockout:
    """A key that has just reached the limit, and what an alert reports of it (numbers masked).

    ``subject`` names the key with any phone number cut to its last four digits: "caller ***0002",
    "account NW-1002" (the key itself holds a number's keyed hash, which says nothing to a reader).
    """

    key: str
    call_id: str
    failures: int
    until: datetime
    subject: str


LockoutHook = Callable[[Lockout], None]


class SqlVerificationGuard:
    """`agents.ports.VerificationGuard` on the tenant's SQL store.

    Attributes:
        on_lockout: Called once per lock, after its transaction committed (the process wires it to alerts).
    """

    def __init__(
        self,
        store: Store,
        limits: VerificationLimits = DEFAULT_VERIFICATION_LIMITS,
        *,
        record_key: str = DEV_RECORD_KEY,
    ) -> None:
        self._store = store
        self.limits = limits
        self._record_key = record_key
        self.on_lockout: LockoutHook | None = None

    async def locked(
        self, *, caller_id: str | None, phone: str | None, account_id: str | None = None, name: str | None = None
    ) -> bool:
        """True while the caller ID, or the account claimed (by `phone`, `account_id` or `name`), is locked."""
        now = self._store.now()
        async with self._store.read() as session:
            keys = await self._keys(session, caller_id, phone, account_id, name)
            query = select(func.count()).where(VerificationLockoutRow.key.in_(keys), VerificationLockoutRow.until > now)
            return bool((await session.execute(query)).scalar_one())

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
        """Record one failed check; lock each key that reaches the limit within the window. True if any was locked."""
        now = self._store.now()
        fresh: list[Lockout] = []
        async with self._store.write() as session:
            caller_key, account_key = await self._key_pair(session, caller_id, phone, account_id, name)
            keys = [k for k in (caller_key, account_key) if k]
            subjects = {caller_key: f"caller ***{_last4(caller_id)}", account_key: _subject(account_key, phone)}
            if self._store.engine.dialect.name == "postgresql":
                # Two calls failing on one key at once must not both lock it (one lock, one alert).
                for key in sorted(keys):
                    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_id(key)})
            session.add(
                VerificationFailureRow(
                    failure_id=new_id("VF"),
                    call_id=call_id,
                    caller_key=caller_key,
                    account_key=account_key,
                    reason=reason,
                    at=now,
                )
            )
            await session.flush()
            for key in keys:
                lockout = await self._maybe_lock(session, key, subjects[key], call_id, now)
                if lockout is not None:
                    fresh.append(lockout)
        for lockout in fresh:
            log.warning("verification locked for %s after %d failures", lockout.subject, lockout.failures)
            if self.on_lockout is not None:
                try:
                    self.on_lockout(lockout)
                except Exception:
                    log.exception("verification lock-out hook failed")
        return bool(fresh)

    async def _maybe_lock(
        self, session: AsyncSession, key: str, subject: str, call_id: str, now: datetime
    ) -> Lockout | None:
        last_until, recent = (
            await session.execute(
                select(
                    func.max(VerificationLockoutRow.until),
                    func.count().filter(VerificationLockoutRow.until > now - self.limits.memory),
                ).where(VerificationLockoutRow.key == key)
            )
        ).one()
        if last_until is not None and last_until > now:
            return None  # already locked: this failure adds nothing
        column = VerificationFailureRow.caller_key if key.startswith("caller:") else VerificationFailureRow.account_key
        query = select(func.count()).where(column == key, VerificationFailureRow.at > now - self.limits.window)
        if last_until is not None:
            query = query.where(VerificationFailureRow.at >= last_until)  # from the end of the last lock on
        count = (await session.execute(query)).scalar_one()
        if count < self.limits.max_failures:
            return None
        until = now + self.limits.cooldown_after(recent)
        session.add(VerificationLockoutRow(lockout_id=new_id("VL"), key=key, failures=count, at=now, until=until))
        return Lockout(key=key, call_id=call_id, failures=count, until=until, subject=subject)

    async def _keys(
        self, session: AsyncSession, caller_id: str | None, phone: str | None, account_id: str | None, name: str | None
    ) -> list[str]:
        caller_key, account_key = await self._key_pair(session, caller_id, phone, account_id, name)
        return [k for k in (caller_key, account_key) if k]

    async def _key_pair(
        self,
        session: AsyncSession,
        caller_id: str | None,
        phone: str | None,
        account_id: str | None = None,
        name: str | None = None,
    ) -> tuple[str | None, str]:
        caller_key = f"caller:{self._number_key(caller_id)}" if caller_id else None
        if account_id:
            # The key a phone claim on the same account uses, so guesses by number and by account add up; an
            # account number that does not exist is keyed the same way and tells nothing.
            return caller_key, f"account:{account_id.upper()}"
        if name:
            # Names are not unique, so a name's guesses count under the name (and the caller ID), never under
            # an account a namesake holds: a stranger cannot lock a customer out by saying their name.
            # Keyed like numbers: a guessed name is the caller's words, and kept in clear it would name someone.
            return caller_key, f"name:{keyed_hash(normalize_name(name), self._record_key)}"
        if not phone:
            return caller_key, ""
        number = normalize_phone(phone)
        account = (
            await session.execute(select(CustomerRow.account_id).where(CustomerRow.phone == number))
        ).scalar_one_or_none()
        return caller_key, f"account:{account}" if account else f"phone:{self._number_key(number)}"

    def _number_key(self, number: str) -> str:
        return number_key(normalize_phone(number), self._record_key)


def _last4(number: str | None) -> str:
    return normalize_phone(number or "")[-4:]


def _subject(account_key: str, phone: str) -> str:
    kind, _, value = account_key.partition(":")
    if kind == "account":
        return f"account {value}"
    if kind == "name":
        return "a name"  # its key tells nothing, and the name itself is not kept
    return f"{kind} ***{_last4(phone) if kind == 'phone' else value[-4:]}"


# A key that holds a number or a name in clear, as rows written before they were keyed do; a keyed hash is 32 hex
# digits.
_CLEAR_NUMBER_KEY = re.compile(r"^(caller|phone):(\+?[0-9]{1,15})$")
_KEYED = re.compile(r"^[0-9a-f]{32}$")


def _keyed_again(value: str, record_key: str) -> str | None:
    """The keyed form of a stored key that holds a number or a name in clear; None for one already keyed."""
    if (found := _CLEAR_NUMBER_KEY.match(value)) is not None:
        return f"{found[1]}:{number_key(normalize_phone(found[2]), record_key)}"
    kind, _, name = value.partition(":")
    if kind == "name" and not _KEYED.match(name):
        return f"name:{keyed_hash(normalize_name(name), record_key)}"
    return None


async def rekey_clear_keys(engine: AsyncEngine, record_key: str = DEV_RECORD_KEY) -> int:
    """Replace the phone numbers and names rows written before they were keyed hold in clear by their keyed hashes.

    Counts and locks carry on as before (a number's or a name's failures and lock keep adding up under its new
    key). Safe from several processes at once: a value another process has rekeyed no longer matches its update.
    Returns how many distinct clear keys were replaced.
    """
    columns = (
        VerificationFailureRow.caller_key,
        VerificationFailureRow.account_key,
        VerificationLockoutRow.key,
    )
    clear: dict[str, str] = {}
    async with engine.connect() as conn:
        for column in columns:
            values = await conn.execute(
                select(column)
                .distinct()
                .where(column.like("caller:%") | column.like("phone:%") | column.like("name:%"))
            )
            for (value,) in values:
                if value and (keyed := _keyed_again(value, record_key)) is not None:
                    clear[value] = keyed
    for old, new in clear.items():
        async with engine.begin() as conn:
            for column in columns:
                await conn.execute(update(column.table).where(column == old).values({column.name: new}))
    if clear:
        log.info("verification failures: %d numbers and names kept in clear are now keyed", len(clear))
    return len(clear)


def _lock_id(key: str) -> int:
    # A stable signed 64-bit id per key for pg_advisory_xact_lock (Python's hash() differs per process).
    return zlib.crc32(key.encode()) | (0x5B0E << 32)


def watch_lockouts(tenant: Tenant, hook: LockoutHook) -> None:
    """Send the tenant's verification lock-outs to `hook` (alerts); a tenant without the SQL guard has none."""
    guard = tenant.verification
    if isinstance(guard, SqlVerificationGuard):
        guard.on_lockout = hook
