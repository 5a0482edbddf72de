"""The production report: grades, latency over time, outcomes, escalations, cost, anomalies (JSON, rich, HTML)."""

from __future__ import annotations

import html
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from orchestrator.store.records import CallView
from orchestrator.telemetry.alerts import percentile
from orchestrator.telemetry.cost import CostRollup
from orchestrator.telemetry.grades import GRADES, grade_all

_SINCE_RE = re.compile(r"^(\d+)\s*([mhdw])$")


def parse_since(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """`30m`, `24h`, `7d`, `2w`, or an ISO date/time (UTC when no offset); None for everything."""
    if not value:
        return None
    now = now or datetime.now(UTC)
    match = _SINCE_RE.match(value.strip().lower())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        unit_name = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[unit]
        return now - timedelta(**{unit_name: amount})
    parsed = datetime.fromisoformat(value.strip())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class Report:
    """Everything the three renderings show. `summary()` is the `--json` shape of the issue."""

    since: datetime | None
    calls: list[CallView]
    outcomes: dict[str, int] = field(default_factory=dict)
    escalation_reasons: dict[str, int] = field(default_factory=dict)
    latency_series: list[dict[str, Any]] = field(default_factory=list)
    rollup: CostRollup = field(default_factory=CostRollup)
    data: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return self.data


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


# Escalations that no first contact with the AI could have resolved, because policy sends them to a person
# whatever the AI does (escalation reasons: agents/specialists/escalation.py). They are out of FCR's scope.
# Escalations after the AI failed (frustration, loops, repeated misunderstanding, failed verification, no
# slots, abuse, a supervisor stepping in) stay in scope and count as not resolved.
OUT_OF_SCOPE_ESCALATIONS: frozenset[str] = frozenset(
    {"requested_human", "legal_threat", "emergency", "fraud", "refund_over_policy", "complaint"}
)


class CallEnd(Protocol):
    """How a call ended: what FCR needs of it (stored calls and eval trials both have it)."""

    @property
    def outcome(self) -> str: ...

    @property
    def escalation_reason(self) -> str | None: ...


def fcr_in_scope(outcome: str, escalation_reason: str | None) -> bool:
    """Whether a call counts in first-call resolution: all but the policy escalations (`OUT_OF_SCOPE_ESCALATIONS`)."""
    return not (outcome == "escalated" and escalation_reason in OUT_OF_SCOPE_ESCALATIONS)


def first_call_resolution(calls: Iterable[CallEnd]) -> float | None:
    """First-call resolution (FCR): the one definition `switchboard report` and the evals both use.

    FCR is the share of in-scope calls whose issue was resolved on that call, by the AI, with no transfer
    to a person: the calls that ended ``resolved``. Escalated and abandoned calls are not resolved.
    Out of scope, and left out of the denominator as contact centres do for contacts the channel may
    not resolve, are the escalations policy requires whatever the AI does: the caller asked for a
    person, a legal threat, a possible emergency, a refund above the AI's limit, a formal complaint
    (`OUT_OF_SCOPE_ESCALATIONS`). An escalation after the AI failed (frustration, loops, failed
    verification, no slots...) stays in scope and counts against FCR.

    Repeat contacts (the same caller calling back about the same issue within days) would also undo a
    first-call resolution; nothing links two calls to one issue yet, so they are not detected: this FCR
    is an upper bound of the industry's repeat-aware one.

    Args:
        calls: Stored calls (`CallView`) or eval trials (`TrialResult`): anything with ``outcome`` and
            ``escalation_reason``.

    Returns:
        The share (unrounded), or None when no call is in scope.
    """
    in_scope = [c.outcome for c in calls if fcr_in_scope(c.outcome, c.escalation_reason)]
    return sum(outcome == "resolved" for outcome in in_scope) / len(in_scope) if in_scope else None


def build_report(calls: Sequence[CallView], *, since: datetime | None = None, bins: int = 12) -> Report:
    """Aggregate stored calls into a report.

    Success is "resolved or handed to a human, with no error"; first-call resolution is the share of
    in-scope calls resolved without a human (`first_call_resolution`, the evals' definition too); latency
    percentiles are over every caller turn; cost per call is the mean known cost of the calls whose every
    part had a price (calls with an unknown part are counted apart).
    """
    calls = sorted(calls, key=lambda c: c.started_at)
    total = len(calls)
    latencies = [t.latency_ms for c in calls for t in c.turns]
    rollup = CostRollup()
    known_costs: list[float] = []
    for c in calls:
        rollup.add(
            hour=c.local_hour,
            turn_costs=[t.cost_usd for t in c.turns],
            turn_intents=[t.intent for t in c.turns],
            turn_agents=[t.agent_name for t in c.turns],
            turn_segments=[t.segment for t in c.turns],
            unknown=c.cost_usd is None,
        )
        if c.cost_usd is not None:
            known_costs.append(c.cost_usd)
    mean_cost = round(sum(known_costs) / len(known_costs), 6) if known_costs else None
    p = {q: round(percentile(latencies, q), 1) if latencies else None for q in (50, 95, 99)}
    success_rate = _rate(sum(c.success for c in calls), total)
    escalation_rate = _rate(sum(c.outcome == "escalated" for c in calls), total)
    fcr_share = first_call_resolution(calls)
    fcr = round(fcr_share, 4) if fcr_share is not None else None
    anomalies = [a.to_json() for c in calls for a in c.anomalies]
    data: dict[str, Any] = {
        "calls": total,
        "success_rate": success_rate,
        "latency_ms": {"p50": p[50], "p95": p[95], "p99": p[99]},
        "escalation_rate": escalation_rate,
        "first_call_resolution": fcr,
        "cost_per_call": {
            "mean": mean_cost,
            "by_intent": {k: round(v, 6) for k, v in rollup.per_call_by_intent().items()},
            "by_hour": {k: round(v, 6) for k, v in rollup.per_call_by_hour().items()},
        },
        "anomalies": anomalies,
        "grades": grade_all(
            {
                "success_rate": success_rate,
                "latency_p95_ms": p[95],
                "escalation_rate": escalation_rate,
                "first_call_resolution": fcr,
                "cost_per_call": mean_cost,
            }
        ),
    }
    return Report(
        since=since,
        calls=list(calls),
        outcomes=dict(Counter(c.outcome for c in calls)),
        escalation_reasons=dict(
            Counter(c.escalation_reason or "unspecified" for c in calls if c.outcome == "escalated")
        ),
        latency_series=_latency_series(calls, bins),
        rollup=rollup,
        data=data,
    )


def _latency_series(calls: Sequence[CallView], bins: int) -> list[dict[str, Any]]:
    if not calls:
        return []
    start, end = calls[0].started_at, calls[-1].started_at
    width = max((end - start) / bins, timedelta(seconds=1))
    grouped: dict[int, list[float]] = defaultdict(list)
    for c in calls:
        index = min(int((c.started_at - start) / width), bins - 1)
        grouped[index].extend(t.latency_ms for t in c.turns)
    out = []
    for index in sorted(grouped):
        values = grouped[index]
        if values:
            out.append(
                {
                    "at": (start + width * index).isoformat(timespec="seconds"),
                    "p50": percentile(values, 50),
                    "p95": percentile(values, 95),
                    "p99": percentile(values, 99),
                }
            )
    return out


# --- Terminal -------------------------------------------------------------------------------------

_GRADE_STYLE = {"excellent": "bold green", "good": "green", "acceptable": "yellow", "below": "bold red"}


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if metric in {"success_rate", "escalation_rate", "first_call_resolution"}:
        return f"{value:.1%}"
    if metric == "cost_per_call":
        return f"${value:.4f}"
    return f"{value:.0f} ms"


def render_terminal(report: Report, console: Any) -> None:
    """Print the report as rich tables."""
    from rich.table import Table

    d = report.data
    period = f"since {report.since:%Y-%m-%d %H:%M} UTC" if report.since else "all time"
    values = {
        "success_rate": d["success_rate"],
        "latency_p95_ms": d["latency_ms"]["p95"],
        "escalation_rate": d["escalation_rate"],
        "first_call_resolution": d["first_call_resolution"],
        "cost_per_call": d["cost_per_call"]["mean"],
    }
    summary = Table(title=f"Switchboard: {d['calls']} calls, {period}")
    for col in ("metric", "value", "grade", "good is"):
        summary.add_column(col)
    for metric, value in values.items():
        grade = d["grades"].get(metric, "below")
        band = GRADES[metric]
        target = f"{'≥' if band.higher else '≤'} {_fmt(metric, band.good)}"
        summary.add_row(metric, _fmt(metric, value), f"[{_GRADE_STYLE[grade]}]{grade}[/]", target)
    console.print(summary)
    lat = d["latency_ms"]
    console.print(
        f"turn latency: p50 {_fmt('l', lat['p50'])} · p95 {_fmt('l', lat['p95'])} · p99 {_fmt('l', lat['p99'])}"
    )
    outcomes = Table(title="Outcomes")
    outcomes.add_column("outcome")
    outcomes.add_column("calls", justify="right")
    for outcome, count in sorted(report.outcomes.items()):
        outcomes.add_row(outcome, str(count))
    console.print(outcomes)
    if report.escalation_reasons:
        reasons = Table(title="Escalation reasons")
        reasons.add_column("reason")
        reasons.add_column("calls", justify="right")
        for reason, count in sorted(report.escalation_reasons.items(), key=lambda kv: -kv[1]):
            reasons.add_row(reason, str(count))
        console.print(reasons)
    cost = Table(title="Cost per call by use case (intent)")
    cost.add_column("intent")
    cost.add_column("mean $/call", justify="right")
    for intent, usd in d["cost_per_call"]["by_intent"].items():
        cost.add_row(intent, f"{usd:.4f}")
    console.print(cost)
    if report.rollup.unknown_calls:
        console.print(f"[yellow]{report.rollup.unknown_calls} call(s) had a part without a price: cost unknown[/]")
    hours = Table(title="Cost per call by hour (tenant time)")
    hours.add_column("hour")
    hours.add_column("mean $/call", justify="right")
    for hour, usd in d["cost_per_call"]["by_hour"].items():
        hours.add_row(hour, f"{usd:.4f}")
    console.print(hours)
    if d["anomalies"]:
        anomalies = Table(title=f"Anomalies ({len(d['anomalies'])})")
        for col in ("call", "kind", "why"):
            anomalies.add_column(col)
        for a in d["anomalies"][:50]:
            anomalies.add_row(a["call_id"], a["kind"], a["why"])
        console.print(anomalies)
    else:
        console.print("[green]no anomalies[/]")


# --- HTML with inline SVG -------------------------------------------------------------------------


def _bar_chart(items: Sequence[tuple[str, float]], *, fmt: str = "{:.0f}", color: str = "#3b6ea8") -> str:
    if not items:
        return '<p class="empty">no data</p>'
    width, row, label_w = 640, 24, 180
    top = max(v for _, v in items) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{row * len(items) + 8}" role="img">']
    for i, (label, value) in enumerate(items):
        y = i * row + 4
        w = max((width - label_w - 90) * value / top, 1)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{html.escape(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{row - 6}" fill="{color}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}">{html.escape(fmt.format(value))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _line_chart(points: Sequence[dict[str, Any]], keys: Sequence[str], *, threshold: float | None = None) -> str:
    if not points:
        return '<p class="empty">no data</p>'
    width, height, pad = 640, 240, 44
    top = max(max(p[k] for k in keys for p in points), threshold or 0) * 1.1 or 1.0
    n = len(points)

    def x(i: int) -> float:
        return pad + (width - 2 * pad) * (i / (n - 1) if n > 1 else 0.5)

    def y(v: float) -> float:
        return height - pad - (height - 2 * pad) * v / top

    colors = {"p50": "#3b6ea8", "p95": "#e08a1e", "p99": "#c0392b"}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#999"/>',
        f'<text x="4" y="{pad}">{top:.0f} ms</text><text x="4" y="{height - pad}">0</text>',
    ]
    if threshold is not None:
        parts.append(
            f'<line x1="{pad}" y1="{y(threshold):.1f}" x2="{width - pad}" y2="{y(threshold):.1f}" '
            f'stroke="#c0392b" stroke-dasharray="4 4"/><text x="{width - pad - 110}" y="{y(threshold) - 4:.1f}">'
            f"P95 alert {threshold:.0f} ms</text>"
        )
    for key in keys:
        coords = " ".join(f"{x(i):.1f},{y(p[key]):.1f}" for i, p in enumerate(points))
        parts.append(f'<polyline fill="none" stroke="{colors.get(key, "#333")}" stroke-width="2" points="{coords}"/>')
    for i, key in enumerate(keys):
        parts.append(f'<text x="{pad + 70 * i}" y="{height - 12}" fill="{colors.get(key, "#333")}">{key}</text>')
    parts.append(
        f'<text x="{width - pad}" y="{height - 12}" text-anchor="end">{html.escape(points[0]["at"])} → '
        f"{html.escape(points[-1]['at'])}</text></svg>"
    )
    return "".join(parts)


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Switchboard report</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left}
.excellent{color:#1e7d32;font-weight:bold}.good{color:#2e7d32}.acceptable{color:#b7791f}.below{color:#c0392b;font-weight:bold}
svg text{font:12px system-ui,sans-serif}.empty{color:#888}section{margin-bottom:2em}
</style></head><body>
<h1>Switchboard report</h1>
<p>{{ calls }} calls · {{ period }} · generated {{ generated }}</p>
<section id="grades"><h2>Grades</h2><table><tr><th>metric</th><th>value</th><th>grade</th><th>good is</th></tr>
{% for g in grades %}<tr><td>{{ g.metric }}</td><td>{{ g.value }}</td><td class="{{ g.grade }}">{{ g.grade }}</td>
<td>{{ g.target }}</td></tr>{% endfor %}</table>
<p>Turn latency p50 {{ lat.p50 }} · p95 {{ lat.p95 }} · p99 {{ lat.p99 }}</p></section>
<section id="latency"><h2>Latency percentiles over time</h2>{{ latency_svg | safe }}</section>
<section id="outcomes"><h2>Outcomes</h2>{{ outcomes_svg | safe }}</section>
<section id="escalations"><h2>Escalation reasons</h2>{{ escalations_svg | safe }}</section>
<section id="cost-intent"><h2>Cost per call by use case</h2>{{ cost_intent_svg | safe }}
{% if unknown_calls %}<p class="below">{{ unknown_calls }} call(s) had a part without a price: their cost is unknown
and left out of the means.</p>{% endif %}</section>
<section id="cost-segment"><h2>Cost by handoff segment</h2>{{ cost_segment_svg | safe }}</section>
<section id="cost-hour"><h2>Cost per call by hour of day</h2>{{ cost_hour_svg | safe }}</section>
<section id="anomalies"><h2>Anomalies</h2>{{ anomaly_svg | safe }}
{% if anomalies %}<table><tr><th>call</th><th>kind</th><th>why</th></tr>
{% for a in anomalies %}<tr><td>{{ a.call_id }}</td><td>{{ a.kind }}</td><td>{{ a.why }}</td></tr>{% endfor %}
</table>{% else %}<p>No anomalies.</p>{% endif %}</section>
</body></html>
"""


def render_html(report: Report) -> str:
    """A self-contained HTML page (inline CSS and SVG, no scripts, no CDN)."""
    from jinja2 import Environment

    d = report.data
    values = {
        "success_rate": d["success_rate"],
        "latency_p95_ms": d["latency_ms"]["p95"],
        "escalation_rate": d["escalation_rate"],
        "first_call_resolution": d["first_call_resolution"],
        "cost_per_call": d["cost_per_call"]["mean"],
    }
    grades = [
        {
            "metric": metric,
            "value": _fmt(metric, value),
            "grade": d["grades"].get(metric, "below"),
            "target": f"{'≥' if GRADES[metric].higher else '≤'} {_fmt(metric, GRADES[metric].good)}",
        }
        for metric, value in values.items()
    ]
    anomaly_kinds = Counter(a["kind"] for a in d["anomalies"])
    env = Environment(autoescape=True)
    return env.from_string(_HTML).render(
        calls=d["calls"],
        period=f"since {report.since:%Y-%m-%d %H:%M} UTC" if report.since else "all time",
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        grades=grades,
        lat={k: _fmt("l", v) for k, v in d["latency_ms"].items()},
        latency_svg=_line_chart(report.latency_series, ("p50", "p95", "p99"), threshold=GRADES["latency_p95_ms"].good),
        outcomes_svg=_bar_chart(sorted(report.outcomes.items())),
        escalations_svg=_bar_chart(sorted(report.escalation_reasons.items(), key=lambda kv: -kv[1]), color="#e08a1e"),
        cost_intent_svg=_bar_chart(list(d["cost_per_call"]["by_intent"].items()), fmt="${:.4f}", color="#2e7d32"),
        cost_segment_svg=_bar_chart(sorted(report.rollup.by_segment.items()), fmt="${:.4f}", color="#2e7d32"),
        cost_hour_svg=_bar_chart(list(d["cost_per_call"]["by_hour"].items()), fmt="${:.4f}", color="#2e7d32"),
        anomaly_svg=_bar_chart(sorted(anomaly_kinds.items()), color="#c0392b"),
        anomalies=d["anomalies"][:200],
        unknown_calls=report.rollup.unknown_calls,
    )
