"""The production report: grades, latency over time, outcomes, escalations, cost, anomalies (JSON, rich, HTML)."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from orchestrator.config import PROMPTS_DIR
from orchestrator.providers.llm import RoutingPolicy
from orchestrator.results import ESCALATED_OUTCOMES
from orchestrator.stats import percentile
from orchestrator.store.records import CallView
from orchestrator.telemetry import charts
from orchestrator.telemetry.cost import (
    AS_RUN,
    MANAGED_HIGH,
    MANAGED_LOW,
    REFERENCE,
    SCENARIOS,
    CallTurn,
    CostRollup,
    PriceTable,
    call_minutes,
    scenario_costs,
)
from orchestrator.telemetry.grades import GRADES, grade_all

# The shipped price table lives beside the cost model.
PRICES = Path(__file__).with_name("telemetry") / "prices.yaml"
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
    # The calls costed as run, on the reference cloud stack and on managed platforms (`cost_scenarios`).
    costs: dict[str, Any] = field(default_factory=dict)
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
    {
        "requested_human",
        "legal_threat",
        "emergency",
        "fraud",
        "refund_over_policy",
        "account_change",
        "cancellation",
        "complaint",
    }
)


class CallEnd(Protocol):
    """How a call ended: what FCR needs of it (stored calls and eval trials both have it)."""

    @property
    def outcome(self) -> str: ...

    @property
    def escalation_reason(self) -> str | None: ...


def fcr_in_scope(outcome: str, escalation_reason: str | None) -> bool:
    """Whether a call counts in first-call resolution: all but the policy escalations (`OUT_OF_SCOPE_ESCALATIONS`)."""
    return not (outcome in ESCALATED_OUTCOMES and escalation_reason in OUT_OF_SCOPE_ESCALATIONS)


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


ModelFor = Callable[[str, float], str | None]


def default_pricing() -> tuple[PriceTable, ModelFor]:
    """The shipped price table and the shipped routing policy's model choice (for `build_report`)."""
    return pricing(PriceTable.load(PRICES), RoutingPolicy.load(PROMPTS_DIR / "routing.yaml"))


def pricing(table: PriceTable, policy: Any) -> tuple[PriceTable, ModelFor]:
    """`table` and the model `policy` (a `RoutingPolicy`) picks for a turn, by the table's reference LLM provider."""
    provider = table.reference.get("llm", "")

    def model_for(intent: str, confidence: float) -> str | None:
        return policy.tiers[policy.tier_for(intent, confidence)].models.get(provider)  # type: ignore[no-any-return]

    return table, model_for


@dataclass
class _Sums:
    usd: float = 0.0
    calls: int = 0
    minutes: float = 0.0

    def add(self, usd: float, minutes: float) -> None:
        self.usd += usd
        self.calls += 1
        self.minutes += minutes

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "minutes": round(self.minutes, 2),
            "total_usd": round(self.usd, 6),
            "per_call": round(self.usd / self.calls, 6) if self.calls else None,
            "per_minute": round(self.usd / self.minutes, 6) if self.minutes else None,
        }


def cost_scenarios(calls: Sequence[CallView], table: PriceTable, model_for: ModelFor) -> dict[str, Any]:
    """Every call costed as it ran, on the reference cloud stack and on a managed platform: per call and per
    minute, overall, by intent and by hour, and the saving against managed platforms.

    A call whose cost in a scenario is unknown (a part without a price) is left out of that scenario's sums
    and counted apart.
    """
    total = {name: _Sums() for name in SCENARIOS}
    by_intent: dict[str, dict[str, _Sums]] = defaultdict(lambda: {name: _Sums() for name in SCENARIOS})
    by_hour: dict[str, dict[str, _Sums]] = defaultdict(lambda: {name: _Sums() for name in SCENARIOS})
    unknown = dict.fromkeys(SCENARIOS, 0)
    per_call: list[dict[str, Any]] = []
    for c in calls:
        turns = [CallTurn(t.caller, t.agent, t.intent, t.confidence) for t in c.turns]
        minutes = call_minutes(c.duration_s, turns, [t.latency_ms for t in c.turns])
        costs = scenario_costs(
            table,
            as_run_usd=c.cost_usd,
            by_component=c.cost_by_component,
            minutes=minutes,
            turns=turns,
            model_for=model_for,
        )
        intent, hour = c.intent or "unknown", f"{c.local_hour:02d}"
        for name, usd in costs.items():
            if usd is None:
                unknown[name] += 1
                continue
            for sums in (total[name], by_intent[intent][name], by_hour[hour][name]):
                sums.add(usd, minutes)
        per_call.append(
            {"call_id": c.call_id, "intent": intent, "minutes": round(minutes, 3)}
            | {k: None if v is None else round(v, 6) for k, v in costs.items()}
        )

    def saving(name: str, against: str) -> float | None:
        ours, theirs = total[name], total[against]
        if not ours.minutes or not theirs.usd:
            return None
        return round(1 - (ours.usd / ours.minutes) / (theirs.usd / theirs.minutes), 4)

    infra = table.infrastructure
    return {
        "as_of": table.as_of,
        "infrastructure": None
        if infra is None
        else {
            "instance_usd_per_hour": infra.instance_usd_per_hour,
            "calls_per_instance": round(infra.calls_per_instance, 2),
            "per_minute": round(infra.per_minute, 6),
        },
        "managed_per_minute": list(table.managed_per_minute),
        "scenarios": {name: total[name].to_json() for name in SCENARIOS},
        "by_intent": {k: {n: v[n].to_json() for n in SCENARIOS} for k, v in sorted(by_intent.items())},
        "by_hour": {k: {n: v[n].to_json() for n in SCENARIOS} for k, v in sorted(by_hour.items())},
        "unknown_calls": unknown,
        "saving_vs_managed": {
            "as_run_vs_low": saving(AS_RUN, MANAGED_LOW),
            "as_run_vs_high": saving(AS_RUN, MANAGED_HIGH),
            "reference_vs_low": saving(REFERENCE, MANAGED_LOW),
            "reference_vs_high": saving(REFERENCE, MANAGED_HIGH),
        },
        "calls": per_call,
    }


def build_report(
    calls: Sequence[CallView],
    *,
    since: datetime | None = None,
    bins: int = 12,
    prices: tuple[PriceTable, ModelFor] | None = None,
) -> Report:
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
    for c in calls:
        rollup.add(
            hour=c.local_hour,
            turn_costs=[t.cost_usd for t in c.turns],
            turn_intents=[t.intent for t in c.turns],
            turn_agents=[t.agent_name for t in c.turns],
            turn_segments=[t.segment for t in c.turns],
            unknown=c.cost_usd is None,
        )
    p = {q: round(percentile(latencies, q), 1) if latencies else None for q in (50, 95, 99)}
    success_rate = _rate(sum(c.success for c in calls), total)
    escalation_rate = _rate(sum(c.outcome in ESCALATED_OUTCOMES for c in calls), total)
    fcr_share = first_call_resolution(calls)
    fcr = round(fcr_share, 4) if fcr_share is not None else None
    anomalies = [a.to_json() for c in calls for a in c.anomalies]
    known_costs = [c.cost_usd for c in calls if c.cost_usd is not None]
    mean_cost = round(sum(known_costs) / len(known_costs), 6) if known_costs else None
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
            Counter(c.escalation_reason or "unspecified" for c in calls if c.outcome in ESCALATED_OUTCOMES)
        ),
        latency_series=_latency_series(calls, bins),
        rollup=rollup,
        costs=cost_scenarios(calls, *(prices or default_pricing())),
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
    if report.costs:
        _render_cost_scenarios(report.costs, console)
    if d["anomalies"]:
        anomalies = Table(title=f"Anomalies ({len(d['anomalies'])})")
        for col in ("call", "kind", "why"):
            anomalies.add_column(col)
        for a in d["anomalies"][:50]:
            anomalies.add_row(a["call_id"], a["kind"], a["why"])
        console.print(anomalies)
    else:
        console.print("[green]no anomalies[/]")


SCENARIO_TITLES = {
    AS_RUN: "as run",
    REFERENCE: "reference cloud",
    MANAGED_LOW: "managed (low)",
    MANAGED_HIGH: "managed (high)",
}


def _usd(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    # The embedded stack costs fractions of a cent a call: enough digits to show them.
    return f"${value:,.{digits if abs(value) >= 0.01 or value == 0 else 6}f}"


def _render_cost_scenarios(cs: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    infra = cs["infrastructure"]
    where = (
        f"our compute {_usd(infra['per_minute'], 6)}/min ({infra['calls_per_instance']:g} calls on a "
        f"${infra['instance_usd_per_hour']}/h node)"
        if infra
        else "no infrastructure price: our compute is not costed"
    )
    table = Table(title=f"Cost by stack (list prices of {cs['as_of'] or 'undated'}; {where})")
    for col in ("stack", "calls", "minutes", "per call", "per minute", "total"):
        table.add_column(col, justify="left" if col == "stack" else "right")
    for name, s in cs["scenarios"].items():
        table.add_row(
            SCENARIO_TITLES[name],
            str(s["calls"]),
            f"{s['minutes']:.1f}",
            _usd(s["per_call"]),
            _usd(s["per_minute"]),
            _usd(s["total_usd"], 2),
        )
    console.print(table)
    for key, title in (("by_intent", "intent"), ("by_hour", "hour")):
        split = Table(title=f"Cost per call / per minute by {title}")
        split.add_column(title)
        for name in cs["scenarios"]:
            split.add_column(SCENARIO_TITLES[name], justify="right")
        for label, per in cs[key].items():
            split.add_row(label, *(f"{_usd(per[n]['per_call'])} / {_usd(per[n]['per_minute'])}" for n in per))
        console.print(split)
    saving = cs["saving_vs_managed"]
    if saving["as_run_vs_low"] is not None:
        console.print(
            f"saving per minute against managed platforms (${cs['managed_per_minute'][0]}-"
            f"${cs['managed_per_minute'][1]}): as run {saving['as_run_vs_low']:.1%}-{saving['as_run_vs_high']:.1%}"
            + (
                f", reference cloud {saving['reference_vs_low']:.1%}-{saving['reference_vs_high']:.1%}"
                if saving["reference_vs_low"] is not None
                else ""
            )
        )


# --- HTML with inline SVG -------------------------------------------------------------------------


def _bins(calls: Sequence[CallView], bins: int) -> tuple[list[datetime], list[list[CallView]]]:
    """The calls in `bins` equal slices of their time span (at least a minute each), by start time."""
    if not calls:
        return [], []
    start, end = calls[0].started_at, calls[-1].started_at
    width = max((end - start) / bins, timedelta(minutes=1))
    count = min(bins, int((end - start) / width) + 1)
    grouped: list[list[CallView]] = [[] for _ in range(count)]
    for c in calls:
        grouped[min(int((c.started_at - start) / width), count - 1)].append(c)
    return [start + width * i + width / 2 for i in range(count)], grouped


def _charts(report: Report, *, bins: int = 24) -> dict[str, str]:
    """Every chart of the HTML report, as inline SVG (`orchestrator.telemetry.charts`)."""
    d = report.data
    calls = report.calls
    latencies = [t.latency_ms for c in calls for t in c.turns if t.latency_ms > 0]
    lat = d["latency_ms"]
    target = GRADES["latency_p95_ms"].good
    out = {
        "latency_hist": charts.histogram(
            latencies,
            title="Turn latency distribution (every caller turn)",
            xlabel="first answer after the caller's turn (ms, log scale)",
            lines={k.upper(): v for k, v in lat.items() if v is not None},
            log_x=bool(latencies) and min(latencies) > 0,
        )
    }
    series = report.latency_series
    times = [datetime.fromisoformat(p["at"]) for p in series]
    markers = [
        charts.Marker(
            at=c.started_at,
            value=max((t.latency_ms for t in c.turns), default=0.0),
            label=", ".join(sorted({a.kind for a in c.anomalies})),
            href=f"#call-{c.call_id}",
        )
        for c in calls
        if c.anomalies
    ]
    out["latency_time"] = charts.time_series(
        times,
        {k: [p[k] for p in series] for k in ("p50", "p95", "p99")},
        title="Turn latency percentiles over time",
        ylabel="ms",
        thresholds={f"P95 target {target:.0f} ms": target},
        markers=markers,
    )
    centres, grouped = _bins(calls, bins)
    outcomes = sorted({c.outcome for c in calls})
    out["volume"] = charts.time_series(
        centres,
        {o: [float(sum(c.outcome == o for c in group)) for group in grouped] for o in outcomes},
        title="Call volume and outcomes over time",
        ylabel="calls",
        stacked=True,
    )
    reasons = sorted(report.escalation_reasons.items(), key=lambda kv: -kv[1])
    out["escalations"] = charts.bars(
        [r for r, _ in reasons], {"calls": [float(n) for _, n in reasons]}, title="Escalation reasons", xlabel="calls"
    )
    costs = report.costs
    for key, title in (("by_intent", "use case (intent)"), ("by_hour", "hour of day (tenant time)")):
        split = costs.get(key, {})
        labels = list(split)
        out[f"cost_{key}"] = charts.bars(
            labels,
            # Managed platforms are ten times the reference and would flatten both bars: they are in the table.
            {
                SCENARIO_TITLES[name]: [float(split[label][name]["per_call"] or 0.0) for label in labels]
                for name in (AS_RUN, REFERENCE)
            },
            title=f"Cost per call by {title}: as run and on the reference cloud",
            xlabel="USD per call",
            value_format="${:.3g}",
            height=min(1.2 + 0.3 * len(labels), 8.0),
        )
    segments = sorted(report.rollup.by_segment.items())
    out["cost_segment"] = charts.bars(
        [k for k, _ in segments],
        {"as run": [v for _, v in segments]},
        title="Recorded cost by handoff segment (all calls)",
        xlabel="USD",
        value_format="${:.3g}",
    )
    kinds = Counter(a["kind"] for a in d["anomalies"])
    out["anomalies"] = charts.bars(
        sorted(kinds), {"flags": [float(kinds[k]) for k in sorted(kinds)]}, title="Anomalies by kind", xlabel="flags"
    )
    return out


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Switchboard report</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left}
td.n,th.n{text-align:right}
.excellent{color:#1e7d32;font-weight:bold}.good{color:#2e7d32}.acceptable{color:#b7791f}.below{color:#c0392b;font-weight:bold}
svg{max-width:100%;height:auto}section{margin-bottom:2em}tr:target{background:#fff3c4}.note{color:#555}
</style></head><body>
<h1>Switchboard report</h1>
<p>{{ calls }} calls · {{ period }} · generated {{ generated }}</p>
<section id="grades"><h2>Grades</h2><table><tr><th>metric</th><th>value</th><th>grade</th><th>good is</th></tr>
{% for g in grades %}<tr><td>{{ g.metric }}</td><td>{{ g.value }}</td><td class="{{ g.grade }}">{{ g.grade }}</td>
<td>{{ g.target }}</td></tr>{% endfor %}</table>
<p>Turn latency p50 {{ lat.p50 }} · p95 {{ lat.p95 }} · p99 {{ lat.p99 }}</p></section>
<section id="latency"><h2>Latency</h2>{{ svg.latency_hist | safe }}{{ svg.latency_time | safe }}
<p class="note">Diamonds: calls with an anomaly, at their slowest turn; each links to its row under
Anomalies.</p></section>
<section id="outcomes"><h2>Call volume and outcomes</h2>{{ svg.volume | safe }}</section>
<section id="escalations"><h2>Escalation reasons</h2>{{ svg.escalations | safe }}</section>
<section id="cost"><h2>Cost on each stack</h2>
<p class="note">As run: the call's recorded cost, our compute by its minutes{% if infra %}
(${{ "%.6f"|format(infra.per_minute) }} a minute: {{ infra.calls_per_instance }} calls on a
${{ infra.instance_usd_per_hour }}/h node){% endif %}. Reference cloud: the same words through Deepgram,
the routing policy's OpenAI models and Cartesia. Managed: ${{ managed[0] }}-${{ managed[1] }} a minute.
List prices of {{ as_of or "an undated table" }}.</p>
<table><tr><th>stack</th><th class="n">calls</th><th class="n">minutes</th><th class="n">per call</th>
<th class="n">per minute</th><th class="n">total</th></tr>
{% for row in stacks %}<tr><td>{{ row.title }}</td><td class="n">{{ row.calls }}</td>
<td class="n">{{ row.minutes }}</td><td class="n">{{ row.per_call }}</td><td class="n">{{ row.per_minute }}</td>
<td class="n">{{ row.total }}</td></tr>{% endfor %}
</table>{% if saving %}<p>Saving per minute against managed platforms: <b>{{ saving }}</b>.</p>{% endif %}
{% if unknown_calls %}<p class="below">{{ unknown_calls }} call(s) had a part without a price: their
recorded cost is unknown and left out of the as-run figures.</p>{% endif %}
<div id="cost-intent">{{ svg.cost_by_intent | safe }}</div><div id="cost-hour">{{ svg.cost_by_hour | safe }}</div>
<div id="cost-segment">{{ svg.cost_segment | safe }}</div></section>
<section id="anomalies"><h2>Anomalies</h2>{{ svg.anomalies | safe }}
{% if anomalies %}<table><tr><th>call</th><th>kind</th><th>why</th></tr>
{% for a in anomalies %}<tr id="call-{{ a.call_id }}">
<td><a href="{{ console_url }}/console/history/{{ a.call_id }}">{{ a.call_id }}</a></td>
<td>{{ a.kind }}</td><td>{{ a.why }}</td></tr>{% endfor %}
</table>{% else %}<p>No anomalies.</p>{% endif %}</section>
</body></html>
"""


def render_html(report: Report, *, console_url: str = "http://127.0.0.1:8000") -> str:
    """A self-contained HTML page: inline CSS and matplotlib's SVG charts, no scripts, no CDN.

    Args:
        report: What `build_report` built.
        console_url: Where the supervisor console is served; each anomaly links to its call there.
    """
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
    costs = report.costs
    stacks = [
        {
            "title": SCENARIO_TITLES[name],
            "calls": s["calls"],
            "minutes": f"{s['minutes']:.1f}",
            "per_call": _usd(s["per_call"]),
            "per_minute": _usd(s["per_minute"]),
            "total": _usd(s["total_usd"], 2),
        }
        for name, s in costs.get("scenarios", {}).items()
    ]
    saving = costs.get("saving_vs_managed", {})
    saving_text = (
        f"as run {saving['as_run_vs_low']:.1%} to {saving['as_run_vs_high']:.1%}"
        + (
            f"; reference cloud {saving['reference_vs_low']:.1%} to {saving['reference_vs_high']:.1%}"
            if saving.get("reference_vs_low") is not None
            else ""
        )
        if saving.get("as_run_vs_low") is not None
        else ""
    )
    env = Environment(autoescape=True)
    return env.from_string(_HTML).render(
        calls=d["calls"],
        period=f"since {report.since:%Y-%m-%d %H:%M} UTC" if report.since else "all time",
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        grades=grades,
        lat={k: _fmt("l", v) for k, v in d["latency_ms"].items()},
        svg=_charts(report),
        stacks=stacks,
        saving=saving_text,
        infra=costs.get("infrastructure"),
        managed=costs.get("managed_per_minute", [0.23, 0.33]),
        as_of=costs.get("as_of", ""),
        anomalies=d["anomalies"][:200],
        unknown_calls=costs.get("unknown_calls", {}).get(AS_RUN, 0),
        console_url=console_url.rstrip("/"),
    )
