"""Call records on SQLite and on the real PostgreSQL: write, replace, read, list, search, purge."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.domain import open_engine
from orchestrator.results import AnomalyFlag, CallResult, TurnRecord
from orchestrator.store import CallStore
from orchestrator.telemetry.cost import PriceTable, ProviderProfile, call_usage, price_call
from tests.conftest import POSTGRES_TEST_URL

pytestmark = pytest.mark.contract

T0 = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
PRICES = PriceTable.load(Path(__file__).resolve().parents[2] / "orchestrator" / "telemetry" / "prices.yaml")


def _async_pg_url(url: str, **query: str) -> str:
    base = "postgresql+psycopg://" + url.split("://", 1)[1]
    return base + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CallStore]:
    if request.param == "sqlite":
        engine: AsyncEngine = open_engine(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}")
        try:
            s = CallStore(engine)
            await s.create_schema()
            yield s
        finally:
            await engine.dispose()
        return
    schema = f"cc_test_{uuid.uuid4().hex[:12]}"
    admin = open_engine(_async_pg_url(POSTGRES_TEST_URL))
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = open_engine(_async_pg_url(POSTGRES_TEST_URL, options=f"-csearch_path%3D{schema}"))
    try:
        s = CallStore(engine)
        await s.create_schema()
        await s.create_schema()  # idempotent
        yield s
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


def billing_call(call_id: str) -> CallResult:
    turns = [
        TurnRecord(
            "What's my balance?",
            "I can help with that. What's the ZIP code on your account?",
            "billing",
            "billing",
            0.99,
            20.0,
            15.0,
        ),
        TurnRecord(
            "10027",
            "Thank you, Maria, you're verified. Your balance is $79.99.",
            "billing",
            "billing",
            0.99,
            30.0,
            25.0,
        ),
        TurnRecord(
            "email maria@example.com", "I've sent it to m***@example.com.", "billing", "billing", 0.99, 40.0, 35.0
        ),
    ]
    return CallResult(
        call_id=call_id,
        turns=turns,
        handoffs=[
            {
                "turn": 1,
                "from_agent": "router",
                "to_agent": "billing",
                "reason": "intent:billing",
                "context": 'said: "call 555 010 0002"',
            }
        ],
        outcome="resolved",
        tool_events=[
            {
                "turn": 2,
                "agent": "billing",
                "name": "get_balance",
                "args": {"phone": "+15550100001"},
                "ok": True,
                "result": "$79.99",
            }
        ],
        interventions=[{"turn": 3, "kind": "correct_reply", "reason": "email_unmasked", "detail": "maria@example.com"}],
        resolutions=["billing:balance"],
    )


async def test_a_call_round_trips_redacted_with_cost_and_flags(store: CallStore) -> None:
    result = billing_call("call-rt")
    usage = call_usage([(t.caller, t.agent) for t in result.turns], profile=ProviderProfile.production(), duration_s=60)
    cost = price_call(PRICES, usage)
    flag = AnomalyFlag("call-rt", "loop", "the agent gave the same reply 3 times", turn=2, score=3)
    await store.record_call(
        result,
        started_at=T0,
        duration_s=60,
        queue_wait_ms=12.5,
        worker="w1",
        attempt=2,
        cost=cost,
        anomalies=[flag],
        trace_id="ab" * 16,
    )
    got = await store.get_call("call-rt")
    assert got is not None
    assert (got.outcome, got.success, got.first_contact_resolved, got.worker, got.attempt) == (
        "resolved",
        True,
        True,
        "w1",
        2,
    )
    assert got.started_at == T0
    assert got.local_hour == 14
    assert got.queue_wait_ms == 12.5
    assert got.intent == "billing"
    assert got.agent == "billing"
    assert got.turn_count == 3
    assert got.latency_p50_ms == 30.0
    assert got.trace_id == "ab" * 16
    assert got.cost_usd == pytest.approx(cost.total_usd)
    assert sum(t.cost_usd for t in got.turns) == pytest.approx(cost.known_usd)
    assert [t.caller for t in got.turns] == ["What's my balance?", "[ZIP]", "email [EMAIL]"]
    assert "Maria" not in got.turns[1].agent
    dumped = str(got.to_json())
    for secret in ("10027", "maria@example.com", "555 010 0002", "+15550100001"):
        assert secret not in dumped
    kinds = [e["event"] for e in got.events]
    assert kinds == ["handoff", "intervention", "tool"]
    assert got.events[1]["kind"] == "correct_reply"
    assert got.events[1]["detail"] == "[EMAIL]"
    assert got.events[2]["args"] == {"phone": "[PHONE]"}
    assert [(a.kind, a.turn, a.score) for a in got.anomalies] == [("loop", 2, 3.0)]


async def test_recording_again_replaces_the_call(store: CallStore) -> None:
    await store.record_call(billing_call("call-x"), started_at=T0, duration_s=10)
    again = billing_call("call-x")
    again.outcome = "escalated"
    again.escalation_reason = "requested_human"
    await store.record_call(again, started_at=T0, duration_s=12, attempt=2)
    calls = await store.list_calls()
    assert [(c.call_id, c.outcome, c.attempt) for c in calls] == [("call-x", "escalated", 2)]
    got = await store.get_call("call-x")
    assert got is not None
    assert len(got.turns) == 3
    assert len(got.events) == 3


async def test_unknown_cost_is_stored_as_null(store: CallStore) -> None:
    from orchestrator.telemetry.cost import Usage

    cost = price_call(PRICES, [Usage("llm", "openai", model="unpriced-model", input_tokens=10)])
    await store.record_call(billing_call("call-u"), started_at=T0, duration_s=10, cost=cost)
    got = await store.get_call("call-u")
    assert got is not None
    assert got.cost_usd is None
    assert got.cost_unknown == ["llm:openai/unpriced-model"]


async def test_list_filter_search_and_purge(store: CallStore) -> None:
    for i in range(5):
        r = billing_call(f"call-{i}")
        if i == 4:
            r.outcome = "escalated"
        await store.record_call(
            r,
            started_at=T0 - timedelta(days=i * 30),
            duration_s=10,
            anomalies=[AnomalyFlag(r.call_id, "loop", "x")] if i == 1 else [],
        )
    assert [c.call_id for c in await store.list_calls(limit=2)] == ["call-0", "call-1"]
    assert [c.call_id for c in await store.list_calls(outcome="escalated")] == ["call-4"]
    assert [c.call_id for c in await store.list_calls(anomalous=True)] == ["call-1"]
    assert len(await store.list_calls(since=T0 - timedelta(days=45))) == 2
    assert len(await store.list_calls(search="BALANCE IS")) == 5
    assert await store.list_calls(search="10027") == []  # redacted text is what is searchable
    assert [c.call_id for c in await store.list_calls(search="call-3")] == ["call-3"]
    assert len(await store.load_calls(since=T0 - timedelta(days=70))) == 3
    assert await store.purge_expired(0, now=T0) == 0
    assert await store.purge_expired(50, now=T0) == 3
    assert [c.call_id for c in await store.list_calls()] == ["call-0", "call-1"]
    assert await store.get_call("call-4") is None


async def test_a_records_table_from_before_the_caller_columns_gets_them_and_keeps_its_rows(store: CallStore) -> None:
    engine = store.engine
    await store.record_call(billing_call("call-old"), started_at=T0, duration_s=10)
    async with engine.begin() as conn:
        await conn.execute(text("DROP INDEX IF EXISTS ix_cc_calls_caller_digits"))
        await conn.execute(text("DROP INDEX IF EXISTS ix_cc_calls_account_id"))
        for column in ("caller_id", "caller_digits", "account_id"):
            await conn.execute(text(f"ALTER TABLE cc_calls DROP COLUMN {column}"))
    await store.create_schema()
    await store.create_schema()  # a second process finds them there
    result = billing_call("call-new")
    result.caller_id, result.account_id = "+1 (555) 010-0001", "NW-1001"
    await store.record_call(result, started_at=T0 + timedelta(minutes=1), duration_s=10)
    assert [c.call_id for c in await store.list_calls()] == ["call-new", "call-old"]
    assert [c.call_id for c in await store.list_calls(number="555.010.0001")] == ["call-new"]
    assert [c.call_id for c in await store.list_calls(accounts=["NW-1001"])] == ["call-new"]
    assert await store.count_calls(number="15550100001") == 1


async def test_a_record_keeps_the_callers_number_masked_and_finds_it_only_by_the_whole_number(store: CallStore) -> None:
    result = billing_call("call-number")
    result.caller_id = "+1 (555) 010-0001"
    await store.record_call(result, started_at=T0, duration_s=10)
    async with store.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT caller_id, caller_digits FROM cc_calls"))).one()
    assert stored[0] == "***0001"
    assert "5550100" not in str(stored)
    assert "0100001" not in str(stored)
    view = await store.get_call("call-number")
    assert view is not None
    assert view.caller_id == "***0001"
    assert [c.call_id for c in await store.list_calls(number="555.010.0001")] == ["call-number"]
    assert await store.count_calls(number="+15550100002") == 0
    assert await store.count_calls(number="0001") == 0  # four digits are what any record shows: not a search key
    # Another deployment's key (or none) finds nothing: the stored key is not the number's plain hash.
    other = CallStore(store.engine, record_key="another-deployment-key-0123456789abcdef")
    assert await other.count_calls(number="555.010.0001") == 0


async def test_records_written_with_the_number_in_clear_are_masked_when_the_schema_is_next_opened(
    store: CallStore,
) -> None:
    result = billing_call("call-clear")
    result.caller_id = "+15550100001"
    await store.record_call(result, started_at=T0, duration_s=10)
    async with store.engine.begin() as conn:
        await conn.execute(text("UPDATE cc_calls SET caller_id = '+15550100001', caller_digits = '5550100001'"))
    await store.create_schema()
    async with store.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT caller_id, caller_digits FROM cc_calls"))).one()
    assert stored[0] == "***0001"
    assert stored[1] != "5550100001"
    assert await store.count_calls(number="(555) 010-0001") == 1


async def test_processes_opening_the_schema_at_once_mask_old_numbers_without_a_lock_error(tmp_path: Path) -> None:
    # Each engine stands for a process: SQLite locks between connections as it does between processes.
    url = f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"
    first = CallStore(open_engine(url))
    await first.create_schema()
    for i in range(40):
        result = billing_call(f"call-{i}")
        result.caller_id = f"+1555010{i:04d}"
        await first.record_call(result, started_at=T0 + timedelta(minutes=i), duration_s=10)
    async with first.engine.begin() as conn:
        await conn.execute(text("UPDATE cc_calls SET caller_id = '+15550100001', caller_digits = '5550100001'"))
    stores = [CallStore(open_engine(url)) for _ in range(3)]
    try:
        await asyncio.gather(*(s.create_schema() for s in stores))
        async with first.engine.connect() as conn:
            left = (
                await conn.execute(text("SELECT count(*) FROM cc_calls WHERE caller_digits = '5550100001'"))
            ).scalar()
        assert left == 0
    finally:
        for s in [first, *stores]:
            await s.engine.dispose()


async def test_a_name_the_caller_gives_is_masked_in_the_record_and_the_agents_own_name_is_not(
    store: CallStore,
) -> None:
    turns = [
        TurnRecord(
            "Hi, this is John Smith speaking, my internet is down.",
            "Sorry to hear that, John. This is Sam from Northwind support.",
            "support",
            "support",
            0.99,
            20.0,
            15.0,
        ),
        TurnRecord(
            "This is ridiculous, it's the third outage.", "I understand.", "support", "support", 0.99, 20.0, 15.0
        ),
    ]
    await store.record_call(CallResult(call_id="call-named", turns=turns), started_at=T0, duration_s=30)
    got = await store.get_call("call-named")
    assert got is not None
    assert [t.caller for t in got.turns] == [
        "Hi, this is [NAME] speaking, my internet is down.",
        "This is ridiculous, it's the third outage.",
    ]
    assert got.turns[0].agent == "Sorry to hear that, [NAME]. This is Sam from Northwind support."
    assert "Smith" not in str(got.to_json())
    assert await store.list_calls(search="John Smith") == []
