"""The session plumbing shared by the tenant's implementations (the engine itself is `orchestrator.sql`'s)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import MetaData, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agents.ports import NotFound
from orchestrator.domain.models import Base, CustomerRow, EffectRow
from orchestrator.sql import WRITE_OPTION, create_tables

T = TypeVar("T")
Clock = Callable[[], datetime]
DEFAULT_TIMEZONE = "America/New_York"


def utc_now() -> datetime:
    """The default clock: an aware datetime in UTC."""
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A short random id for rows created at run time (seeded rows have fixed ids)."""
    return f"{prefix}-{uuid.uuid4().hex[:12].upper()}"


def money(cents: int) -> str:
    """Cents as a speakable amount, e.g. 4999 -> "$49.99"."""
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"


async def create_schema(engine: AsyncEngine, metadata: MetaData | None = None) -> None:
    """Create the tables of `metadata` (default: the tenant's) that do not exist yet (see `create_tables`)."""
    await create_tables(engine, metadata or Base.metadata)


class Store:
    """Sessions, clock and time zone shared by the tenant's implementations."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock | None = None, timezone: str = DEFAULT_TIMEZONE) -> None:
        self.engine = engine
        self.clock: Clock = clock or utc_now
        self.tz = ZoneInfo(timezone)
        self._read = async_sessionmaker(engine, expire_on_commit=False)
        self._write = async_sessionmaker(engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session in a read-only transaction."""
        async with self._read() as session, session.begin():
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session in a write transaction, committed on success and rolled back on error."""
        async with self._write() as session, session.begin():
            yield session

    async def once(
        self,
        key: str | None,
        kind: str,
        effect: Callable[[AsyncSession], Awaitable[tuple[str, T]]],
        replay: Callable[[AsyncSession, str], Awaitable[T]],
    ) -> T:
        """Run a write `effect` at most once per idempotency `key`, whatever crashes or races.

        The key is stored in the effect's own transaction, so the effect and its key commit together or not
        at all. A later call with the same key (a turn replayed after a worker died) gets `replay` of what
        the first one made instead of a second effect; two racing calls with one key leave one effect (the
        loser's transaction fails on the key and is answered by the replay).

        Args:
            key: The idempotency key, e.g. call, turn and tool call; None runs the effect unguarded.
            kind: What the effect is (``"payment"``), for the record.
            effect: Does the change in the given session and returns (the id of the row it made or
                changed, its result).
            replay: Rebuilds the result from that id.
        """
        for attempt in range(2):
            try:
                async with self.write() as session:
                    if key is not None:
                        done = await session.get(EffectRow, key)
                        if done is not None:
                            return await replay(session, done.ref_id)
                    ref_id, result = await effect(session)
                    if key is not None:
                        session.add(EffectRow(key=key, kind=kind, ref_id=ref_id, created_at=self.now()))
                        await session.flush()
                    return result
            except IntegrityError:
                # A racing call with the same key committed first (or the effect hit a unique rule): the
                # second try replays the winner's effect, or meets the effect's own refusal.
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def now(self) -> datetime:
        """The current time, aware, in UTC."""
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the clock must return aware datetimes")
        return now.astimezone(UTC)

    def today(self) -> date:
        """Today's date in the tenant's time zone."""
        return self.now().astimezone(self.tz).date()

    def local(self, value: datetime) -> datetime:
        """An aware datetime in the tenant's time zone (what callers hear)."""
        return value.astimezone(self.tz)

    def start_of(self, day: date) -> datetime:
        """Local midnight of `day`, as an aware UTC datetime."""
        return datetime.combine(day, time(0, 0), tzinfo=self.tz).astimezone(UTC)

    async def customer(self, session: AsyncSession, account_id: str, *, lock: bool = False) -> CustomerRow:
        """Load an account, optionally locking it to serialise billing changes on PostgreSQL."""
        query = select(CustomerRow).where(CustomerRow.account_id == account_id)
        if lock:
            # SQLite drops FOR UPDATE; there BEGIN IMMEDIATE already serialises writers.
            query = query.with_for_update()
        row = (await session.execute(query)).scalar_one_or_none()
        if row is None:
            raise NotFound("I couldn't find that account.")
        return row
