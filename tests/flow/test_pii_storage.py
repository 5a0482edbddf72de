"""Caller PII never reaches a store, a span or a log in clear: checkpoints, records, live feed, tickets, PostgreSQL."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from orchestrator.config import load_settings
from orchestrator.contracts import CallJob, CallOutcome
from orchestrator.domain import open_engine
from orchestrator.live import LiveFeed
from orchestrator.queue import CallQueue
from orchestrator.queue.outcomes import read_outcomes
from orchestrator.runtime import Services
from orchestrator.session.text import TextCall
from orchestrator.store.records import CallStore
from orchestrator.telemetry.service import Telemetry
from orchestrator.telemetry.tracing import allow_pii
from orchestrator.worker.runner import TextCallRunner, run_traced_text_call
from orchestrator.worker.worker import Worker
from tests.conftest import POSTGRES_TEST_URL, REDIS_TEST_URL
from tests.flow.conftest import fixed_clock

pytestmark = pytest.mark.flow

JAMES = "+15550100002"  # James Carter, ZIP 10453
CARD = "4111 1111 1111 1111"
# What a caller may say, and the digits or words of it that must never be stored: card, SSN, e-mail.
SAID = f"How much do I owe? My card is {CARD}, my social is 123 - 45 - 6789, mail jane dot doe at gmail dot com"
SECRETS = ("4111", "6789", "jane", "gmail")
# Each as a word of its own: a random id ("item_9e3d6789ab", a span's hex id) holds "6789" one time in a few hundred.
_SECRET_RES = [re.compile(rf"(?<![0-9a-z]){s}(?![0-9a-z])") for s in SECRETS]


def _clean(blob: str | bytes) -> list[str]:
    """The secrets found in a stored value (text, JSON or a serialised checkpoint)."""
    data = (blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob).lower()
    return [s for s, pattern in zip(SECRETS, _SECRET_RES, strict=True) if pattern.search(data)]


def test_a_secret_is_found_as_said_and_not_inside_a_random_id() -> None:
    assert _clean("my social is 123 - 45 - 6789") == ["6789"]
    assert _clean('{"ssn": "123-45-6789", "card": "4111 1111"}') == ["4111", "6789"]
    assert _clean(b"\x92\xa4jane\xa5gmail") == ["jane", "gmail"]
    assert _clean('{"id": "item_9e3d6789ab41", "span": "41114e2b"}') == []


async def _checkpoint_leaks(services: Services, call_id: str) -> list[str]:
    """Every checkpoint of the call, as the store holds it, searched for the secrets."""
    found: list[str] = []
    store: Any = services.checkpointer.store  # type: ignore[attr-defined]  # the cache's durable saver
    async for item in store.alist({"configurable": {"thread_id": call_id}}):
        found += _clean(repr(item.checkpoint["channel_values"]))
        found += _clean(repr(item.pending_writes))
    return found


async def test_card_ssn_and_email_never_reach_the_graphs_checkpoints(services: Services) -> None:
    call = TextCall(services, call_id="call-pii-1", caller_id=JAMES)
    first = await call.say(SAID)
    await call.say("10453")
    state = await call.state()
    await call.aclose()
    assert "something went wrong" not in first.agent
    callers = [t["text"] for t in state["transcript"] if t["role"] == "caller"]
    assert callers[0].startswith("How much do I owe? My card is [CARD]"), callers
    assert "[SSN]" in callers[0]
    assert "[EMAIL]" in callers[0]
    # The ZIP code the caller gave for verification was read: the balance was told.
    assert state["verification"]["status"] == "verified"
    assert await _checkpoint_leaks(services, "call-pii-1") == []


async def test_the_live_transcript_in_redis_is_redacted(services: Services) -> None:
    redis = aioredis.from_url(REDIS_TEST_URL, decode_responses=True)
    feed = LiveFeed(redis, prefix=f"t{uuid.uuid4().hex[:8]}")
    call = TextCall(services, call_id="call-pii-live", caller_id=None)
    try:
        for said in ("What's my balance?", SAID, "my number is 555 010 0002", "10453"):
            record = await call.say(said)
            await feed.turn_done(call, said, record)
        lines = await feed.lines("call-pii-live")
        ttl = await redis.ttl(f"{feed.prefix}:console:tx:call-pii-live")
    finally:
        await call.aclose()
        await redis.delete(*[k async for k in redis.scan_iter(f"{feed.prefix}:*")])
        await redis.aclose()
    stored = " ".join(line.text for line in lines)
    assert _clean(stored) == []
    assert "5550100002" not in stored.replace(" ", "")
    assert "10453" not in stored
    assert "[PHONE]" in stored
    assert "[ZIP]" in stored
    assert "[CARD]" in stored
    assert "James" not in stored  # the verified caller's name, as in the call record
    assert ttl > 0, "a live call's transcript expires even if its worker never says the call ended"


async def test_escalation_ticket_summaries_are_redacted(services: Services) -> None:
    call = TextCall(services, call_id="call-pii-desk", caller_id=JAMES)
    await call.say(f"My card {CARD} was charged twice, call me back on 555 010 0002")
    await call.say("10453, and I want to talk to a human")
    await call.aclose()
    tickets = await services.tenant.desk.waiting()
    (ticket,) = [t for t in tickets if t.call_id == "call-pii-desk"]
    # The note states the call's facts and quotes nothing the caller said: no card, phone or ZIP in it.
    assert "charged twice" not in ticket.summary
    assert _clean(ticket.summary) == []
    assert "10453" not in ticket.summary
    assert "010 0002" not in ticket.summary


async def test_the_call_records_events_keep_no_zip_code(services: Services, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "tel")
    telemetry = Telemetry.build(settings, store=await CallStore.open(services.engine, settings))
    try:
        result, _ = await run_traced_text_call(
            telemetry, services, ("Is there an outage in my area?", "10027", "no thanks"), caller_id=None
        )
        assert telemetry.store is not None
        stored = await telemetry.store.get_call(result.call_id)
    finally:
        await telemetry.aclose()
    assert stored is not None
    tools = [e for e in stored.events if e.get("name") == "check_outage"]
    assert [t["args"] for t in tools] == [{"zip_code": "[ZIP]"}]
    assert "10027" not in repr(stored.events) + repr(stored.turns)


@pytest.fixture
def pii_allowed() -> Iterator[None]:
    allow_pii(True)
    try:
        yield
    finally:
        allow_pii(False)


async def test_livekits_pii_attributes_are_redacted_like_ours_when_pii_is_allowed(
    services: Services, tmp_path: Path, pii_allowed: None
) -> None:
    exporter = InMemorySpanExporter()
    settings = load_settings(data_dir=tmp_path / "tel", telemetry_allow_pii=True)
    telemetry = Telemetry.build(
        settings, store=await CallStore.open(services.engine, settings), span_exporters=[exporter], simple=True
    )
    try:
        await run_traced_text_call(telemetry, services, (SAID, "555 010 0002", "10453"), caller_id=None)
    finally:
        await telemetry.aclose()
    spans = exporter.get_finished_spans()
    livekit = {k for s in spans for k in (s.attributes or {}) if k.startswith("lk.pii.")}
    assert livekit, f"livekit's spans carry lk.pii.* attributes when PII is allowed: {[s.name for s in spans]}"
    for span in spans:
        for key, value in (span.attributes or {}).items():
            # The value is the test's own made-up caller, quoted whole so a failure says where the words came from.
            where = (span.name, key, str(value)[:3000])
            assert _clean(str(value)) == [], where
            assert "0100002" not in str(value).replace(" ", ""), where
            assert not re.search(r"(?<![0-9a-z])10453(?![0-9a-z])", str(value)), where


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    # A schema per test so repeated or parallel runs never meet; dropped afterwards.
    schema = f"sb_pii_{uuid.uuid4().hex[:12]}"
    admin = open_engine("postgresql+psycopg://" + POSTGRES_TEST_URL.split("://", 1)[1])
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_TEST_URL}?options=-csearch_path%3D{schema}"
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def test_a_nul_byte_in_caller_text_is_stored_on_postgres_and_the_log_quotes_no_caller_text(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = load_settings(data_dir=tmp_path, database_url=postgres_url)
    services = await Services.open(settings, clock=fixed_clock)
    telemetry = Telemetry.build(settings, store=await CallStore.open(services.engine, settings), join_livekit=False)
    try:
        result, view = await run_traced_text_call(
            telemetry, services, (f"How much do I owe?\x00 my card is {CARD}\x00", "10453"), caller_id=JAMES
        )
        assert telemetry.store is not None
        stored = await telemetry.store.get_call(result.call_id)
        leaks = await _checkpoint_leaks(services, result.call_id)
    finally:
        await telemetry.aclose()
        await services.aclose()
    assert result.errors == []
    assert not any("something went wrong" in t.agent for t in result.turns)
    assert "Your balance is" in result.turns[1].agent
    assert stored is not None, "the call record is written"
    assert len(stored.turns) == 2
    assert stored.turns[0].caller == "How much do I owe? my card is [CARD]"
    assert leaks == []
    logged = "\n".join(caplog.handler.format(r) for r in caplog.records)
    assert "4111" not in logged


async def test_a_failed_statement_on_postgres_quotes_no_parameters(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    engine = open_engine("postgresql+psycopg://" + postgres_url.split("://", 1)[1])
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE notes (body varchar(8))"))
        with pytest.raises(DBAPIError) as failed:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO notes (body) VALUES (:body)"), {"body": f"card {CARD}"})
    finally:
        await engine.dispose()
    logging.getLogger("test").error("store write failed", exc_info=failed.value)
    logged = "\n".join(caplog.handler.format(r) for r in caplog.records)
    assert "value too long" in str(failed.value)
    assert "4111" not in str(failed.value)
    assert "4111" not in logged


async def test_a_failed_calls_dead_letter_and_outcome_quote_no_caller_text(caplog: pytest.LogCaptureFixture) -> None:
    class Failing:
        async def run(self, claimed: Any) -> CallOutcome:
            raise RuntimeError(f"could not store 'my card is {CARD}, call me on 555 010 0002'")

    queue = CallQueue.from_url(REDIS_TEST_URL, prefix=f"pii-{uuid.uuid4().hex[:10]}", backoff_base_s=0.01)
    try:
        await queue.admit(CallJob(call_id="call-pii-dead", source="simulate"))
        await Worker(queue, Failing(), slots=1, hold_interval_s=None).run(burst=True)
        dead = await queue.dead_letters()
        outcomes, _ = await read_outcomes(queue.redis, queue.keys.prefix)
    finally:
        await queue.redis.delete(*[k async for k in queue.redis.scan_iter(f"{queue.keys.prefix}:*")])
        await queue.aclose()
    assert [d.job.call_id for d in dead] == ["call-pii-dead"]
    assert dead[0].error.startswith("RuntimeError: could not store 'my card is [CARD], call me on [PHONE]'")
    assert [o.error for o in outcomes] == [dead[0].error]
    assert "4111" not in caplog.text


async def test_a_published_outcomes_handoff_notes_are_redacted(services: Services) -> None:
    queue = CallQueue.from_url(REDIS_TEST_URL, prefix=f"pii-{uuid.uuid4().hex[:10]}")
    said = "I need to pay my bill, my number is 555 010 0002"
    try:
        await queue.admit(CallJob(call_id="call-pii-outcome", source="simulate", script=[said, "10453"]))
        await Worker(queue, TextCallRunner(services), slots=1, hold_interval_s=None).run(burst=True)
        outcomes, _ = await read_outcomes(queue.redis, queue.keys.prefix)
    finally:
        await queue.redis.delete(*[k async for k in queue.redis.scan_iter(f"{queue.keys.prefix}:*")])
        await queue.aclose()
    (outcome,) = outcomes
    notes = " ".join(str(h.get("context")) for h in outcome.handoffs)
    assert "[PHONE]" in notes
    assert "010 0002" not in notes
