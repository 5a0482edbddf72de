"""Production storage: the tenant, the records and the graph checkpoints on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from orchestrator.config import load_settings
from orchestrator.domain import open_engine
from orchestrator.runtime import Services
from orchestrator.session.text import TextCall
from tests.conftest import POSTGRES_TEST_URL
from tests.flow.conftest import fixed_clock

pytestmark = pytest.mark.flow


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    # A schema per test so repeated or parallel runs never meet; dropped afterwards.
    schema = f"sb_flow_{uuid.uuid4().hex[:12]}"
    admin = open_engine("postgresql+psycopg://" + POSTGRES_TEST_URL.split("://", 1)[1])
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_TEST_URL}?options=-csearch_path%3D{schema}"
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def test_call_resumes_on_another_postgres_backed_process(database_url: str, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, database_url=database_url)
    first = await Services.open(settings, clock=fixed_clock)
    try:
        call = TextCall(first, call_id="call-pg-1", caller_id="+15550100002")
        await call.say("How much do I owe?")
        await call.say("10453")
        await call.aclose()
    finally:
        await first.aclose()

    second = await Services.open(settings, clock=fixed_clock)
    try:
        call = TextCall(second, call_id="call-pg-1", caller_id="+15550100002")
        await call.say("yes")
        await call.say("yes")
        state = await call.state()
        await call.aclose()
        balance = await second.tenant.billing.balance("NW-1002")
    finally:
        await second.aclose()
    assert [t["text"] for t in state["transcript"] if t["role"] == "caller"] == [
        "How much do I owe?",
        "10453",
        "yes",
        "yes",
    ]
    assert balance.due_cents == 0
    assert not (tmp_path / "checkpoints.db").exists(), "checkpoints must go to PostgreSQL, not SQLite"
