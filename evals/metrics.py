"""Aggregate metrics of a run: success, first-call resolution, escalations, routing, tools, pass^k, latency, cost."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from evals.runner import TrialResult
from evals.stats import mean, pass_hat_k, percentile
from orchestrator.report import first_call_resolution

# Metrics where a drop is bad; the others (escalation rate, latency, cost) are bad when they rise.
HIGHER_IS_BETTER = {
    "success_rate",
    "first_call_resolution",
    "escalation_correctness",
    "routing_accuracy",
    "tool_accuracy",
    "pass_k",
}


def _share(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def compute_metrics(trials: Sequence[TrialResult], k: int = 1) -> dict[str, Any]:
    """The `metrics` object of the --json output.

    Definitions: success = every check passed; first-call resolution = share of in-scope calls that
    ended resolved, with policy escalations (the caller asked for a person, legal threats, emergencies...)
    out of scope, exactly as `switchboard report` computes it (`orchestrator.report.
    first_call_resolution`; what a scenario expected plays no part); escalation rate = share of calls that
    reached a human; escalation correctness = share of calls with an escalation expectation that met it
    (whether and why); routing accuracy = share of calls with routing expectations that met all of them;
    tool accuracy = share of expected tool calls made and forbidden tools avoided; pass^k over scenarios;
    latency over every caller turn; cost = mean USD per call. A metric nothing measured is None.
    """
    per_scenario: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for t in trials:
        per_scenario[(t.suite, t.scenario)].append(t.passed)
    k = max(1, min([k, *[len(v) for v in per_scenario.values()]]) if per_scenario else 1)
    routing = [
        all(c.ok for c in t.checks if c.kind == "routing") for t in trials if any(c.kind == "routing" for c in t.checks)
    ]
    escalation = [
        all(c.ok for c in t.checks if c.kind == "escalation")
        for t in trials
        if any(c.kind == "escalation" for c in t.checks)
    ]
    tool_items = sum(c.items for t in trials for c in t.checks if c.kind == "tools")
    tool_ok = sum(c.items_ok for t in trials for c in t.checks if c.kind == "tools")
    latencies = [lat for t in trials for lat in t.latencies]
    return {
        "success_rate": _share([t.passed for t in trials]),
        "first_call_resolution": first_call_resolution(trials),
        "escalation_rate": _share([t.outcome == "escalated" for t in trials]),
        "escalation_correctness": _share(escalation),
        "routing_accuracy": _share(routing),
        "tool_accuracy": tool_ok / tool_items if tool_items else None,
        "pass_k": pass_hat_k([(len(v), sum(v)) for v in per_scenario.values()], k) if per_scenario else None,
        "k": k,
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
        },
        "cost_per_call": mean([t.cost_usd for t in trials]) if trials else None,
    }


def flatten(metrics: dict[str, Any]) -> dict[str, float]:
    """Metric name -> number, as grades and gates name them (latency as latency_p50_ms…)."""
    flat: dict[str, float] = {}
    for name, value in metrics.items():
        if name == "latency_ms":
            for q, v in value.items():
                flat[f"latency_{q}_ms"] = float(v)
        elif name != "k" and value is not None:
            flat[name] = float(value)
    return flat
