"""Telemetry end to end: one trace per call across processes, no content in spans, metrics equal records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator.config import load_settings
from orchestrator.runtime import Services
from orchestrator.scenarios import SCENARIOS
from orchestrator.store.records import CallStore
from orchestrator.telemetry import names
from orchestrator.telemetry.cost import ProviderProfile
from orchestrator.telemetry.service import Telemetry
from orchestrator.telemetry.setup import setup_telemetry
from orchestrator.telemetry.tracing import allow_pii, current_traceparent, webhook_span
from orchestrator.worker.runner import run_traced_text_call

pytestmark = pytest.mark.flow

ROOT = Path(__file__).resolve().parents[2]
MARIA = "+15550100001"
BALANCE = ("What's my balance?", "10027", "no thanks")

# Runs in a separate process: a worker continuing the webhook's trace from the job's traceparent.
WORKER = """
import asyncio, json, sys
from pathlib import Path
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from orchestrator.config import load_settings
from orchestrator.runtime import Services
from orchestrator.store.records import CallStore
from orchestrator.telemetry.service import Telemetry
from orchestrator.worker.runner import run_traced_text_call

async def main():
    exporter = InMemorySpanExporter()
    settings = load_settings(data_dir=Path(sys.argv[1]))
    async with await Services.open(settings) as services:
        store = await CallStore.open(services.engine, settings)
        telemetry = Telemetry.build(settings, store=store, span_exporters=[exporter], simple=True)
        await run_traced_text_call(
            telemetry, services, json.loads(sys.argv[3]), call_id="call-xproc", caller_id="+15550100001",
            traceparent=sys.argv[2], worker="w-sub", queue_wait_ms=3.0,
        )
        await telemetry.aclose()
    print(json.dumps([
        {"name": s.name, "trace": f"{s.context.trace_id:032x}", "id": f"{s.context.span_id:016x}",
         "parent": f"{s.parent.span_id:016x}" if s.parent else None}
        for s in exporter.get_finished_spans()
    ]))

asyncio.run(main())
"""


def span_dicts(spans: Sequence[ReadableSpan]) -> list[dict[str, Any]]:
    return [
        {
            "name": s.name,
            "trace": f"{s.context.trace_id:032x}",
            "id": f"{s.context.span_id:016x}",
            "parent": f"{s.parent.span_id:016x}" if s.parent else None,
        }
        for s in spans
    ]


def test_one_connected_trace_per_call_across_processes(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    handles = setup_telemetry(
        load_settings(data_dir=tmp_path), span_exporters=[exporter], simple=True, join_livekit=False
    )
    with webhook_span(handles.tracer, call_id="call-xproc", source="livekit"):
        traceparent = current_traceparent()
    (webhook,) = span_dicts(exporter.get_finished_spans())
    assert traceparent is not None
    assert webhook["trace"] in traceparent
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(tmp_path / "worker"), traceparent, json.dumps(BALANCE)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
        env=env,
        check=True,
    )
    spans = json.loads(out.stdout.strip().splitlines()[-1])
    assert {s["trace"] for s in spans} == {webhook["trace"]}
    ids = {s["id"] for s in spans} | {webhook["id"]}
    assert all(s["parent"] in ids for s in spans), "every span hangs off the call's tree"
    (call,) = [s for s in spans if s["name"] == names.SPAN_CALL]
    assert call["parent"] == webhook["id"]
    by_name = Counter(s["name"] for s in spans)
    # livekit-agents' own spans joined, and ours: a graph run per turn, nodes, and the tool.
    assert by_name["agent_session"] == 1
    assert by_name["agent_turn"] == len(BALANCE)
    assert by_name[names.SPAN_GRAPH] == len(BALANCE)
    assert by_name["cc.node.supervise"] == len(BALANCE)
    # Only the first turn is routed: the ZIP code and the "no thanks" answer billing's questions and
    # go straight to it.
    assert by_name["cc.node.route"] == 1
    assert by_name["cc.node.billing"] == len(BALANCE)
    assert by_name["cc.tool.get_balance"] == 1
    (session,) = [s for s in spans if s["name"] == "agent_session"]
    assert session["parent"] == call["id"]


@pytest.fixture
def pii_allowed() -> Iterator[None]:
    allow_pii(True)
    try:
        yield
    finally:
        allow_pii(False)


async def _telemetry(services: Services, tmp_path: Path, **kwargs: Any) -> Telemetry:
    settings = load_settings(data_dir=tmp_path / "tel", **kwargs.pop("settings", {}))
    return Telemetry.build(settings, store=await CallStore.open(services.engine, settings), **kwargs)


async def test_no_caller_content_in_span_names_or_plain_attributes(services: Services, tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    telemetry = await _telemetry(services, tmp_path, span_exporters=[exporter], simple=True)
    try:
        await run_traced_text_call(telemetry, services, ("What's my balance?", "555 010 0001", "10027", "no"))
    finally:
        await telemetry.aclose()
    spans = exporter.get_finished_spans()
    assert len(spans) > 20
    secrets = ("What's my balance", "555 010 0001", "10027", "Maria", "+1555")
    for span in spans:
        assert not any(s.lower() in span.name.lower() for s in secrets), span.name
        for key, value in (span.attributes or {}).items():
            # A timing's digits can hold a ZIP by chance (a queue wait of 0.0100271 s): a number leaks a secret only
            # by being it, text by containing it.
            if isinstance(value, int | float):
                assert str(value) not in secrets, (span.name, key)
            else:
                assert not any(s in str(value) for s in secrets), (span.name, key)
        for event in span.events:
            assert not any(s in str(dict(event.attributes or {})) for s in secrets), (span.name, event.name)


async def test_pii_attributes_are_marked_and_redacted_when_allowed(
    services: Services, tmp_path: Path, pii_allowed: None
) -> None:
    exporter = InMemorySpanExporter()
    telemetry = await _telemetry(
        services, tmp_path, span_exporters=[exporter], simple=True, settings={"telemetry_allow_pii": True}
    )
    try:
        await run_traced_text_call(telemetry, services, ("What's my balance?", "10027", "no"), caller_id=MARIA)
    finally:
        await telemetry.aclose()
    ours = [s for s in exporter.get_finished_spans() if s.name.startswith("cc.")]
    pii = [(k, str(v)) for s in ours for k, v in (s.attributes or {}).items() if names.is_pii_key(k)]
    assert pii, "utterances are recorded under cc.pii.* when allowed"
    assert all(k.startswith(names.PII_PREFIX) for k, _ in pii)
    values = " ".join(v for _, v in pii)
    assert "What's my balance?" in values
    assert "[ZIP]" in values
    assert "[PHONE]" in values
    assert "10027" not in values
    assert "0100001" not in values


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, list[Any]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


async def test_metrics_after_a_batch_match_the_call_records(services: Services, tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    telemetry = await _telemetry(
        services, tmp_path, metric_readers=[reader], join_livekit=False, profile=ProviderProfile.production()
    )
    try:
        for scenario in SCENARIOS:
            await run_traced_text_call(telemetry, services, scenario.turns, caller_id=scenario.caller_id, worker="w1")
        assert telemetry.store is not None
        records = await telemetry.store.load_calls()
    finally:
        await telemetry.aclose()
    points = metric_points(reader)
    assert len(records) == len(SCENARIOS)
    outcomes = {p.attributes["outcome"]: p.value for p in points[names.M_CALLS]}
    assert outcomes == dict(Counter(r.outcome for r in records))
    escalations = {p.attributes["reason"]: p.value for p in points[names.M_ESCALATIONS]}
    assert escalations == dict(Counter(r.escalation_reason for r in records if r.outcome == "escalated"))
    (fcr,) = points[names.M_FIRST_CONTACT]
    assert fcr.value == sum(r.first_contact_resolved for r in records)
    (e2e,) = [p for p in points[names.M_TURN_LATENCY] if p.attributes["stage"] == names.STAGE_E2E]
    latencies = [t.latency_ms for r in records for t in r.turns]
    assert e2e.count == len(latencies)
    assert e2e.sum == pytest.approx(sum(latencies))
    (cost,) = points[names.M_CALL_COST]
    assert cost.count == len(records)
    assert cost.sum == pytest.approx(sum(r.cost_known_usd for r in records))
    by_intent = {p.attributes["intent"]: p.value for p in points[names.M_COST_BY_INTENT]}
    assert sum(by_intent.values()) == pytest.approx(sum(t.cost_usd for r in records for t in r.turns))
    (success,) = points[names.M_SUCCESS_RATE]
    assert success.value == pytest.approx(sum(r.success for r in records) / len(records))
    # Text calls speak no audio: the phrase cache counts its own lookups, so none is inferred from replies
    # (voice calls count theirs: tests/flow/test_agent_worker.py). Its series exist from the start, at 0.
    assert {p.attributes["result"]: p.value for p in points[names.M_PHRASE_CACHE]} == {
        names.CACHE_HIT: 0,
        names.CACHE_MISS: 0,
        names.CACHE_BYPASS: 0,
    }
    # The demo scenarios are normal calls: the detector must not flag any of them.
    assert [a.to_json() for r in records for a in r.anomalies] == []
    assert all(r.cost_usd is not None and r.cost_usd > 0 for r in records)


class BrokenExporter(SpanExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        raise ConnectionError("collector is down")

    def shutdown(self) -> None:
        raise RuntimeError("and it cannot even shut down")


async def test_a_broken_exporter_never_breaks_a_call(
    services: Services, tmp_path: Path, open_services: Callable[..., Any]
) -> None:
    broken = BrokenExporter()
    telemetry = await _telemetry(
        services,
        tmp_path,
        span_exporters=[broken],
        simple=True,
        settings={
            # A collector and a webhook nobody listens on, and a price table that does not exist.
            "otlp_endpoint": "http://127.0.0.1:9",
            "alert_webhook_url": "http://127.0.0.1:9/hook",
            "price_table": tmp_path / "missing.yaml",
        },
    )
    try:
        result, view = await run_traced_text_call(telemetry, services, BALANCE, caller_id=MARIA)
        telemetry.dead_letter(call_id="call-dead", error="RuntimeError: boom", attempts=3)
    finally:
        await telemetry.aclose()
    assert broken.calls > 0
    assert result.outcome == "resolved"
    assert len(result.turns) == len(BALANCE)
    assert view is not None
    assert view.outcome == "resolved"
    assert view.cost_usd is None
    assert view.cost_unknown
    assert [a.rule for a in telemetry.alerts.stream.recent()] == ["dead_letter"]
