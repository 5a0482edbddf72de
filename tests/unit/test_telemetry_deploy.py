"""Names and deploy files agree: span names carry no content, Prometheus rules and Grafana use exported metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from orchestrator.config import load_settings
from orchestrator.telemetry import names
from orchestrator.telemetry.cost import PriceTable, ProviderProfile, Usage, price_call
from orchestrator.telemetry.metrics import CallMetrics
from orchestrator.telemetry.setup import setup_telemetry

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PROM_NAME = re.compile(r"\b(cc_[a-zA-Z_]+)")


def exported_names(tmp_path: Path) -> set[str]:
    """Every Prometheus series name our instruments produce once each has a sample."""
    handles = setup_telemetry(
        load_settings(data_dir=tmp_path), join_livekit=False, metric_readers=[InMemoryMetricReader()]
    )
    m = CallMetrics(handles.meter)
    table = PriceTable.load(ROOT / "orchestrator" / "telemetry" / "prices.yaml")
    cost = price_call(
        table,
        [
            Usage("llm", "openai", model="gpt-4o-mini", input_tokens=1, output_tokens=1, turn=1),
            Usage("tts", "cartesia", characters=3, turn=1),
            Usage("stt", "deepgram", seconds=1, turn=1),
            Usage("stt", "nobody", seconds=1, turn=1),
        ],
    )
    m.observe_call(
        outcome="escalated",
        errors=[],
        resolutions=["billing:pay"],
        escalation_reason="requested_human",
        turn_latencies_ms=[10],
        graph_ms=[5],
        handoffs=[{"from_agent": "router", "to_agent": "billing"}],
        tool_events=[{"name": "get_balance", "ok": True}],
        interventions=[{"reason": "llm_unavailable"}],
        duration_s=3,
        queue_wait_ms=4,
        turns=1,
        cost=cost,
        cost_intent={"billing": 0.01},
        anomaly_kinds=["loop"],
    )
    m.calls.add(1, {"outcome": "resolved"})
    m.first_contact.add(1)
    m.observe_dead_letter()
    m.observe_provider_error("openai", "llm", "APIError")
    m.observe_phrase_cache(names.CACHE_HIT)
    m.alerts.add(1, {"rule": "x"})
    m.node_duration.record(1, {"node": "route"})
    m.update_queue({"waiting_by_priority": {1: 2}, "oldest_wait_s": 1.0, "dead_letters": 0})
    with m.in_flight_call("w"):
        m.set_worker_slots("w", 4)
        text = handles.prometheus_text()[0].decode()
    handles.shutdown()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("cc_")}


def test_prometheus_names_match_the_names_module(tmp_path: Path) -> None:
    exported = exported_names(tmp_path)
    for metric in (names.M_CALLS, names.M_ESCALATIONS, names.M_COST, names.M_QUEUE_DEPTH, names.M_IN_FLIGHT):
        assert names.prometheus_name(metric) in exported
    assert names.prometheus_name(names.M_TURN_LATENCY, series="bucket") in exported
    assert names.prometheus_name(names.M_CALL_COST, series="sum") in exported
    assert names.prometheus_name(names.M_SECONDS) in exported


def test_alert_rules_and_dashboard_use_only_exported_metrics(tmp_path: Path) -> None:
    exported = exported_names(tmp_path)
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert {
        "SwitchboardCallSuccessRateLow",
        "SwitchboardTurnLatencyP95High",
        "SwitchboardEscalationRateHigh",
        "SwitchboardDeadLetter",
        "SwitchboardCostPerCallOverBudget",
    } <= alerts
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "switchboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in PROM_NAME.findall(e)}
    assert used
    assert used <= exported, used - exported
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for view in ("latency percentiles", "outcome", "escalations by reason", "use case", "hour", "anomalies"):
        assert view in titles


def test_thresholds_in_the_rules_match_the_in_app_alerts() -> None:
    from orchestrator.telemetry.alerts import Thresholds

    text = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    th = Thresholds()
    assert f"< {th.success_rate_min}" in text
    assert f"> {th.latency_p95_ms_max:.0f}" in text
    assert f"> {th.escalation_rate_max:.2f}" in text
    assert f"> {th.cost_per_call_usd_max}" in text


def test_the_fcr_rule_leaves_out_the_same_escalations_as_the_report() -> None:
    from orchestrator.report import OUT_OF_SCOPE_ESCALATIONS

    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    (fcr,) = [
        r for g in rules["groups"] for r in g["rules"] if r.get("record") == "switchboard:first_call_resolution:1h"
    ]
    found = re.search(r'cc_escalations_total\{reason=~"([^"]+)"\}', fcr["expr"])
    assert found is not None, fcr["expr"]
    assert set(found.group(1).split("|")) == OUT_OF_SCOPE_ESCALATIONS


@pytest.mark.parametrize("raw", ["route", "Transfer To Billing", "I'm 555-010-0002, my card is 4111", "é" * 100])
def test_span_names_never_carry_free_text(raw: str) -> None:
    name = names.node_span(raw)
    assert re.fullmatch(r"cc\.node\.[a-z0-9_]{1,40}", name)
    assert " " not in names.tool_span(raw)


def test_pii_keys_are_marked() -> None:
    pii = [v for k, v in vars(names).items() if k.startswith("ATTR_PII_")]
    assert pii
    assert all(names.is_pii_key(k) and k.startswith(names.PII_PREFIX) for k in pii)
    others = [v for k, v in vars(names).items() if k.startswith("ATTR_") and not k.startswith("ATTR_PII_")]
    assert not any(names.is_pii_key(k) for k in others)


def test_profile_defaults() -> None:
    assert ProviderProfile.text().stt is None
    assert ProviderProfile.production().tts == "cartesia"
