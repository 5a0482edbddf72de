"""Engine setup and the session plumbing shared by the tenant's implementations."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from datetime import UTC, date, datetime, time
from time import monotonic, sleep
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import MetaData, event, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from agents.ports import NotFound
from orchestrator.domain.models import Base, CustomerRow, EffectRow

T = TypeVar("T")
Clock = Callable[[], datetime]
DEFAULT_TIMEZONE = "America/New_York"
SQLITE_BUSY_TIMEOUT_MS = 5000
# Marks the engine whose transactions write; on SQLite they start with BEGIN IMMEDIATE.
_WRITE_OPTION = "switchboard_domain_write"
# Any constant works; it only has to be the same in every process that creates the schema.
_SCHEMA_LOCK_KEY = 0x5B_D0_4A_1E


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


def open_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Create the async engine for the tenant's store.

    Args:
        url: An async SQLAlchemy URL (`sqlite+aiosqlite:///…`, `postgresql+psycopg://…` or
            `postgresql+asyncpg://…`), e.g. `Settings.sqlalchemy_url`.
        **kwargs: Passed on to `create_async_engine`.

    Returns:
        The engine, which leaves SQL parameters out of its errors and logs. On SQLite, every connection
        runs in WAL mode with a busy timeout and foreign keys on, and write transactions start with BEGIN
        IMMEDIATE, because several worker processes share the file.
    """
    # A failed statement's log and exception must not quote its parameters: they hold what callers said.
    kwargs.setdefault("hide_parameters", True)
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


# Waits between tries of switching a new SQLite file to WAL while another process is doing the same.
_WAL_RETRY_S = 0.05


def is_locked(exc: BaseException) -> bool:
    """Whether a SQLite error is "database is locked" (another connection holds the lock)."""
    return "database is locked" in str(exc)


def switch_to_wal(execute: Callable[[str], object], timeout_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
    """`PRAGMA journal_mode = WAL`, waiting out another process that is switching the same file.

    Changing the journal mode takes an exclusive lock and, unlike other statements, fails at once with
    "database is locked" instead of waiting for `busy_timeout`: two workers opening a new file together
    would see one of them fail to start. This waits up to `timeout_s` instead. (It blocks the caller's
    thread, which is fine at start-up, the only time a file is new.)
    """
    deadline = monotonic() + timeout_s
    while True:
        try:
            execute("PRAGMA journal_mode = WAL")
            return
        except Exception as exc:
            if not is_locked(exc) or monotonic() >= deadline:
                raise
            sleep(_WAL_RETRY_S)


def switch_file_to_wal(path: str, timeout_s: float) -> None:
    """`switch_to_wal` on a SQLite file, through a connection of its own (the mode stays with the file)."""
    with closing(sqlite3.connect(path, timeout=timeout_s)) as conn:
        switch_to_wal(conn.execute, timeout_s)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver: pysqlite's implicit BEGIN comes too late
        # (after a SELECT), so a read-then-write transaction could fail with "database is locked".
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if engine.url.database not in (None, "", ":memory:"):
                switch_to_wal(cursor.execute)
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front, so they queue on busy_timeout instead of failing
        # when their read snapshot turns stale; readers stay concurrent under WAL.
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


async def create_schema(engine: AsyncEngine, metadata: MetaData | None = None) -> None:
    """Create the tables of `metadata` (default: the tenant's) that do not exist yet.

    Safe to run from several processes at once, on every store: the tenant, the call records and the
    console all create their tables through here.
    """
    # On SQLite the write lock is taken up front (BEGIN IMMEDIATE): create_all reads the schema, then
    # writes, and a deferred transaction that must upgrade its lock fails at once instead of waiting.
    async with engine.execution_options(**{_WRITE_OPTION: True}).begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two processes running create_all at once would both see a table missing and both create it.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        await conn.run_sync((metadata or Base.metadata).create_all)


class Store:
    """Sessions, clock and time zone shared by the tenant's implementations."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock | None = None, timezone: str = DEFAULT_TIMEZONE) -> None:
        self.engine = engine
        self.clock: Clock = clock or utc_now
        self.tz = ZoneInfo(timezone)
        self._read = async_sessionmaker(engine, expire_on_commit=False)
        self._write = async_sessionmaker(engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False)

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
