"""Retention on SQLite and on the real PostgreSQL: a call leaves the records and the graph checkpoints together."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.config import load_settings
from orchestrator.domain import open_engine
from orchestrator.runtime import Services
from orchestrator.store.records import CallStore
from orchestrator.store.retention import checkpoint_id_at, purge_expired
from orchestrator.telemetry.service import Telemetry
from orchestrator.worker.runner import run_traced_text_call
from tests.conftest import POSTGRES_TEST_URL
from tests.flow.conftest import fixed_clock

pytestmark = pytest.mark.contract

TURNS = ("What's my balance?", "10027", "no")
MARIA = "+15550100001"


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    schema = f"sb_ret_{uuid.uuid4().hex[:12]}"
    admin = open_engine("postgresql+psycopg://" + POSTGRES_TEST_URL.split("://", 1)[1])
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_TEST_URL}?options=-csearch_path%3D{schema}"
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def _threads(services: Services) -> set[str]:
    store: Any = services.checkpointer
    return {str(t.config["configurable"]["thread_id"]) async for t in store.alist(None)}


async def test_retention_purges_old_calls_from_records_and_checkpoints(
    database_url: str | None, tmp_path: Path
) -> None:
    settings = load_settings(data_dir=tmp_path, database_url=database_url, record_retention_days=30)
    services = await Services.open(settings, clock=fixed_clock)
    telemetry = Telemetry.build(settings, store=await CallStore.open(services.engine, settings), join_livekit=False)
    try:
        old, _ = await run_traced_text_call(telemetry, services, TURNS, call_id="call-old", caller_id=MARIA)
        between = datetime.now(UTC)
        new, _ = await run_traced_text_call(telemetry, services, TURNS, call_id="call-new", caller_id=MARIA)
        assert telemetry.store is not None
        assert await _threads(services) == {"call-old", "call-new"}
        # Thirty days after `between`, the first call is past the retention period and the second is not.
        days, store, checkpointer = settings.record_retention_days, telemetry.store, services.checkpointer
        kept = await purge_expired(days, records=store, checkpointer=checkpointer, now=between + timedelta(days=29))
        purged = await purge_expired(days, records=store, checkpointer=checkpointer, now=between + timedelta(days=30))
        threads = await _threads(services)
        records = {c.call_id for c in await telemetry.store.load_calls()}
        resumed = await services.graph.aget_state({"configurable": {"thread_id": "call-old"}})
    finally:
        await telemetry.aclose()
        await services.aclose()
    assert (kept.records, kept.threads) == (0, 0)
    assert (purged.records, purged.threads) == (1, 1)
    assert threads == {"call-new"}
    assert records == {"call-new"}
    assert not resumed.values, "nothing of the purged call is left to read"


def test_checkpoint_ids_of_a_moment_sort_between_those_written_before_and_after() -> None:
    from langgraph.checkpoint.base.id import uuid6

    before = checkpoint_id_at(datetime.now(UTC) - timedelta(milliseconds=1))
    written = str(uuid6(clock_seq=0))
    after = checkpoint_id_at(datetime.now(UTC) + timedelta(milliseconds=1))
    assert before < written < after


def test_the_purge_command_applies_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(data_dir=tmp_path)

    async def one_call() -> None:
        async with await Services.open(settings, clock=fixed_clock) as services:
            telemetry = Telemetry.build(
                settings, store=await CallStore.open(services.engine, settings), join_livekit=False
            )
            try:
                await run_traced_text_call(telemetry, services, TURNS, call_id="call-1", caller_id=MARIA)
            finally:
                await telemetry.aclose()

    asyncio.run(one_call())
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["purge"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"records": 0, "checkpoint_threads": 0}
    result = CliRunner().invoke(app, ["purge", "--days", "-1"])
    assert result.exit_code == 2
