"""The SQL databases every store shares: the engine (SQLite set up for several processes, or PostgreSQL), creating
tables, and the UTC datetime column."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from time import monotonic, sleep
from typing import Any

from sqlalchemy import DateTime, Dialect, MetaData, TypeDecorator, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 5000
# Marks the engine whose transactions write; on SQLite they start with BEGIN IMMEDIATE.
WRITE_OPTION = "switchboard_domain_write"
# Any constant works; it only has to be the same in every process that creates the schema.
_SCHEMA_LOCK_KEY = 0x5B_D0_4A_1E


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored in UTC; SQLite keeps no offset, so it is restored on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # A naive datetime would silently mean "server local time" on one backend and UTC on the other.
            raise ValueError("naive datetimes are not stored; pass an aware datetime")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


async def create_tables(engine: AsyncEngine, metadata: MetaData) -> None:
    """Create the tables of `metadata` that do not exist yet.

    Safe to run from several processes at once, on every store: the tenant, the call records and the
    console all create their tables through here.
    """
    # On SQLite the write lock is taken up front (BEGIN IMMEDIATE): create_all reads the schema, then
    # writes, and a deferred transaction that must upgrade its lock fails at once instead of waiting.
    async with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two processes running create_all at once would both see a table missing and both create it.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        await conn.run_sync(metadata.create_all)
