"""The report: the issue's --json shape, grades, --since parsing, and an HTML page with its sections and plots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from orchestrator.report import (
    OUT_OF_SCOPE_ESCALATIONS,
    build_report,
    first_call_resolution,
    parse_since,
    render_html,
    render_terminal,
)
from orchestrator.results import AnomalyFlag
from orchestrator.store.records import CallView, TurnView
from orchestrator.telemetry.grades import GRADES

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)


def call(
    i: int, outcome: str, *, ms: float, cost: float | None, intent: str = "billing", reason: str | None = None
) -> CallView:
    turns = [TurnView(1, "hi", "Hello.", intent, intent, 0.9, ms, ms / 2, cost or 0.0, f"router>{intent}")]
    return CallView(
        call_id=f"c{i}",
        started_at=T0 + timedelta(minutes=10 * i),
        ended_at=T0 + timedelta(minutes=10 * i, seconds=30),
        local_hour=9 + i % 2,
        duration_s=30,
        outcome=outcome,
        success=outcome != "abandoned",
        first_contact_resolved=outcome == "resolved",
        escalation_reason=reason,
        ticket_id=None,
        intent=intent,
        agent=intent,
        turn_count=1,
        queue_wait_ms=5,
        worker="w",
        attempt=1,
        latency_p50_ms=ms,
        latency_p95_ms=ms,
        cost_usd=cost,
        cost_known_usd=cost or 0.0,
        cost_unknown=[] if cost is not None else ["llm:openai/new"],
        cost_by_component={},
        anomaly_count=0,
        trace_id=None,
        errors=[],
        turns=turns,
        anomalies=[AnomalyFlag(f"c{i}", "loop", "the agent gave the same reply 3 times")] if i == 3 else [],
    )


CALLS = [
    call(0, "resolved", ms=100, cost=0.02),
    call(1, "resolved", ms=200, cost=0.04, intent="scheduling"),
    call(2, "escalated", ms=300, cost=0.03, intent="escalation", reason="requested_human"),
    call(3, "abandoned", ms=900, cost=None),
]


def test_json_has_exactly_the_issue_shape() -> None:
    data = build_report(CALLS).summary()
    assert set(data) == {
        "calls",
        "success_rate",
        "latency_ms",
        "escalation_rate",
        "first_call_resolution",
        "cost_per_call",
        "anomalies",
        "grades",
    }
    assert data["calls"] == 4
    assert data["success_rate"] == 0.75
    assert set(data["latency_ms"]) == {"p50", "p95", "p99"}
    assert data["latency_ms"]["p50"] == 250.0
    assert data["escalation_rate"] == 0.25
    # Two of the three in-scope calls: the escalation the caller asked for is out of scope.
    assert data["first_call_resolution"] == 0.6667
    # The call with an unknown price is left out of the mean rather than counted as free.
    assert data["cost_per_call"]["mean"] == pytest.approx(0.03)
    assert set(data["cost_per_call"]) == {"mean", "by_intent", "by_hour"}
    assert data["cost_per_call"]["by_intent"]["scheduling"] == pytest.approx(0.04)
    assert set(data["cost_per_call"]["by_hour"]) == {"09", "10"}
    assert data["anomalies"] == [{"call_id": "c3", "kind": "loop", "why": "the agent gave the same reply 3 times"}]
    # Every production metric of the shared table (evals/grades.yaml) is graded; eval-only ones are not.
    assert set(data["grades"]) == {
        "success_rate",
        "latency_p95_ms",
        "escalation_rate",
        "first_call_resolution",
        "cost_per_call",
    }
    assert set(data["grades"]) <= set(GRADES)
    assert data["grades"]["success_rate"] == "below"
    assert data["grades"]["cost_per_call"] == "excellent"
    assert data["grades"]["escalation_rate"] == "acceptable"


# (outcome, escalation reason, what an eval scenario expected): every way a call can count for FCR.
ENDINGS = [
    ("resolved", None, "resolved"),
    ("resolved", None, None),
    ("escalated", "requested_human", "escalated"),  # policy: out of scope
    ("escalated", "legal_threat", "resolved"),  # out of scope even where a scenario hoped otherwise
    ("escalated", "frustration", "resolved"),  # the AI failed: in scope, not resolved
    ("escalated", "verification_failed", "escalated"),  # the right move, yet the issue is not resolved
    ("abandoned", None, "resolved"),
]


def test_first_call_resolution_leaves_out_only_the_escalations_policy_requires() -> None:
    calls = [call(i, outcome, ms=100, cost=0.01, reason=reason) for i, (outcome, reason, _) in enumerate(ENDINGS)]
    assert first_call_resolution(calls) == pytest.approx(2 / 5)
    assert build_report(calls).summary()["first_call_resolution"] == 0.4
    assert first_call_resolution([]) is None
    out_of_scope = [call(i, "escalated", ms=100, cost=0.01, reason=r) for i, r in enumerate(OUT_OF_SCOPE_ESCALATIONS)]
    assert first_call_resolution(out_of_scope) is None
    # The escalation reasons the agents can give, each classified on purpose (a new one must be too).
    from agents.specialists.escalation import REASON_TEXT

    assert set(REASON_TEXT) >= OUT_OF_SCOPE_ESCALATIONS


def test_the_report_and_the_evals_compute_the_same_first_call_resolution() -> None:
    from evals.metrics import compute_metrics
    from evals.runner import TrialResult

    calls = [call(i, outcome, ms=100, cost=0.01, reason=reason) for i, (outcome, reason, _) in enumerate(ENDINGS)]
    trials = [
        TrialResult(
            suite="s",
            scenario=f"sc{i}",
            trial=0,
            status="passed",
            checks=[],
            turns=[],
            outcome=outcome,
            escalation_reason=reason,
            routes=[],
            tool_events=[],
            cost_usd=0.0,
            duration_s=1.0,
            expected_outcome=expected,
        )
        for i, (outcome, reason, expected) in enumerate(ENDINGS)
    ]
    from_evals = compute_metrics(trials)["first_call_resolution"]
    assert from_evals == first_call_resolution(calls) == pytest.approx(0.4)
    assert build_report(calls).summary()["first_call_resolution"] == round(from_evals, 4)


def test_an_empty_period_reports_zero_calls() -> None:
    data = build_report([]).summary()
    assert data["calls"] == 0
    assert data["success_rate"] is None
    assert data["latency_ms"]["p95"] is None


def test_parse_since() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert parse_since("24h", now=now) == now - timedelta(hours=24)
    assert parse_since("7d", now=now) == now - timedelta(days=7)
    assert parse_since("2026-01-01") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_since(None) is None
    with pytest.raises(ValueError):
        parse_since("yesterday")


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.ids: list[str] = []
        self.srcs: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for key, value in attrs:
            if key == "id" and value:
                self.ids.append(value)
            # A link the reader may follow is not a resource the page loads.
            if tag == "a" and key in {"href", "xlink:href"} and value:
                self.links.append(value)
            elif key in {"src", "href", "xlink:href"} and value and not value.startswith("#"):
                self.srcs.append(value)


def test_html_renders_every_section_with_inline_svg_and_no_external_resource() -> None:
    page = render_html(build_report(CALLS))
    parser = _Collect()
    parser.feed(page)
    assert set(parser.ids) >= {
        "grades",
        "latency",
        "outcomes",
        "escalations",
        "cost-intent",
        "cost-hour",
        "cost-segment",
        "anomalies",
    }
    assert parser.tags.count("svg") >= 8
    # matplotlib's drawing, inline: paths, and text kept as text (no glyph outlines, no font files).
    assert "path" in parser.tags
    assert "text" in parser.tags
    assert "matplotlib" in page
    assert "script" not in parser.tags
    assert parser.srcs == []
    # The call behind an anomaly: its point on the latency chart leads to its row, which leads to the console.
    assert "#call-c3" in parser.links
    assert "http://127.0.0.1:8000/console/history/c3" in parser.links
    assert "call-c3" in parser.ids
    assert "requested_human" in page
    assert "the agent gave the same reply 3 times" in page
    assert 'class="below"' in page
    assert "cost is unknown" in page


def test_html_escapes_content() -> None:
    evil = call(9, "resolved", ms=10, cost=0.01, intent="<script>x</script>")
    page = render_html(build_report([evil]))
    assert "<script>x" not in page
    assert "&lt;script&gt;" in page


def test_terminal_rendering_shows_grades() -> None:
    from rich.console import Console

    console = Console(record=True, width=140)
    render_terminal(build_report(CALLS), console)
    out = console.export_text()
    assert "success_rate" in out
    assert "below" in out
    assert "requested_human" in out
    assert "loop" in out
