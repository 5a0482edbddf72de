"""A new SQLite file is switched to WAL even while another process writes to it (workers starting together)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from orchestrator.sql import switch_to_wal

pytestmark = pytest.mark.unit


def test_switching_to_wal_waits_out_another_connection_s_write(tmp_path: Path) -> None:
    path = str(tmp_path / "new.db")
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("BEGIN IMMEDIATE")  # another worker seeding the file
    writer.execute("INSERT INTO t VALUES (1)")
    starting = sqlite3.connect(path, isolation_level=None)
    starting.execute("PRAGMA busy_timeout = 5000")
    # SQLite does not wait for busy_timeout here: it fails at once.
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        starting.execute("PRAGMA journal_mode = WAL")
    commit = threading.Timer(0.3, lambda: writer.execute("COMMIT"))
    commit.start()
    try:
        switch_to_wal(starting.execute)
    finally:
        commit.join()
    assert starting.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    starting.close()
    writer.close()


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    closed = sqlite3.connect(str(tmp_path / "closed.db"))
    closed.close()
    with pytest.raises(sqlite3.ProgrammingError):
        switch_to_wal(closed.execute)
