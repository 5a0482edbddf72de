"""A/B comparison of two prompt versions on the same scenarios: deltas with CIs, paired tests, regressions."""

from __future__ import annotations

import asyncio
import html
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from agents.ports import IntentClassifier
from evals.grading import CompareGates, GradeTable
from evals.metrics import HIGHER_IS_BETTER, compute_metrics, flatten
from evals.report import grades_for, page
from evals.runner import RunConfig, RunResult, TrialResult, _llm_caller_factory, run_trial
from evals.schema import Suite
from evals.stats import mcnemar_exact, paired_bootstrap_ci, wilcoxon_signed_rank
from evals.transcripts import CSS, print_side_by_side, shown, side_by_side, side_by_side_html
from orchestrator.telemetry import charts

COMPARED = (
    "success_rate",
    "first_call_resolution",
    "escalation_rate",
    "escalation_correctness",
    "routing_accuracy",
    "tool_accuracy",
    "pass_k",
    "latency_p50_ms",
    "latency_p95_ms",
    "cost_per_call",
)


@dataclass
class ComparePair:
    """The two runs, trial by trial in the same order."""

    base: RunResult
    candidate: RunResult


async def run_pair(
    suites: list[Suite],
    base: RunConfig,
    candidate: RunConfig,
    classifier: IntentClassifier | None = None,
) -> ComparePair:
    """Run every scenario trial on both prompt versions, interleaved so both see the same machine load."""
    if classifier is None:
        # Lazy: onnxruntime and the tokenizer load only when no classifier is passed in.
        from orchestrator.providers.intent import load_classifier

        classifier = load_classifier()
    gate = asyncio.Semaphore(max(1, base.concurrency))
    t0 = time.perf_counter()

    async def one(config: RunConfig, suite: str, scenario: Any, trial: int) -> TrialResult:
        async with gate:
            return await run_trial(suite, scenario, trial, config, classifier, _llm_caller_factory(config))

    units = [(s.suite, sc, t) for s in suites for sc in s.scenarios for t in range(base.repeat)]
    jobs = [one(cfg, suite, sc, t) for suite, sc, t in units for cfg in (base, candidate)]
    results = await asyncio.gather(*jobs)
    elapsed = time.perf_counter() - t0
    names = [s.suite for s in suites]

    def run(cfg: RunConfig, trials: list[TrialResult]) -> RunResult:
        return RunResult(trials, names, cfg.repeat, elapsed, str(cfg.prompts_dir))

    return ComparePair(run(base, list(results[0::2])), run(candidate, list(results[1::2])))


def _metric_values(trials: list[TrialResult], k: int) -> dict[str, float]:
    return flatten(compute_metrics(trials, k))


def verdict(name: str, lo: float, hi: float, regression: bool) -> str:
    """ "regression" by the compare rules, "better" only when the interval excludes zero, else no significant change.

    An interval that excludes zero on the bad side is always a regression (see `compare`), so there is no "worse".
    """
    if regression:
        return "regression"
    if (lo > 0) if name in HIGHER_IS_BETTER else (hi < 0):
        return "better"
    return "no significant change"


def compare(
    pair: ComparePair,
    table: GradeTable,
    rules: CompareGates,
    *,
    resamples: int = 400,
    seed: int = 0,
    confidence: float | None = None,
) -> dict[str, Any]:
    """Deltas (candidate − base) with paired-bootstrap CIs, paired tests and the regressions.

    Args:
        pair: the two runs.
        table: the benchmark table (grades).
        rules: what counts as a regression.
        resamples: bootstrap resamples.
        seed: the bootstrap's seed.
        confidence: the intervals' level; 1 − the rules' alpha when not given.

    Returns:
        A JSON-able dict: `metrics` (per metric base, candidate, delta, ci, verdict, regression),
        `confidence`, `tests`, `scenario_regressions`, `scenario_improvements`, `reply_regressions` (reply rules
        the candidate breaks and the base kept), `scenarios` (both versions' replies side by side, see
        `evals.transcripts.side_by_side`), `regressions` and `ok`.
    """
    level = 1 - rules.alpha if confidence is None else confidence
    b, c = pair.base.trials, pair.candidate.trials
    k = pair.base.repeat
    # The bootstrap resamples scenarios (with all their trials), keeping base and candidate paired.
    keys = sorted({(t.suite, t.scenario) for t in b})
    by_key_b: dict[tuple[str, str], list[TrialResult]] = {key: [] for key in keys}
    by_key_c: dict[tuple[str, str], list[TrialResult]] = {key: [] for key in keys}
    for tb, tc in zip(b, c, strict=True):
        by_key_b[(tb.suite, tb.scenario)].append(tb)
        by_key_c[(tc.suite, tc.scenario)].append(tc)
    base_vals, cand_vals = _metric_values(b, k), _metric_values(c, k)
    cache: dict[bytes, tuple[dict[str, float], dict[str, float]]] = {}

    def resampled(idx: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
        token = idx.tobytes()
        if token not in cache:
            tb = [t for i in idx for t in by_key_b[keys[int(i)]]]
            tc = [t for i in idx for t in by_key_c[keys[int(i)]]]
            cache[token] = (_metric_values(tb, k), _metric_values(tc, k))
        return cache[token]

    rng_seed = seed
    metrics: dict[str, Any] = {}
    regressions: list[str] = []
    for name in COMPARED:
        if name not in base_vals or name not in cand_vals:
            continue
        delta = cand_vals[name] - base_vals[name]

        def fn(idx: np.ndarray, name: str = name) -> float:
            vb, vc = resampled(idx)
            return vc.get(name, 0.0) - vb.get(name, 0.0)

        lo, hi = paired_bootstrap_ci(len(keys), fn, resamples=resamples, confidence=level, seed=rng_seed)
        higher = name in HIGHER_IS_BETTER
        worse = -delta if higher else delta
        ci_bad = (hi < 0) if higher else (lo > 0)
        limit = (rules.max_drop if higher else rules.max_rise).get(name)
        regression = ci_bad or (limit is not None and worse > limit)
        if regression:
            regressions.append(
                f"{name} {'fell' if higher else 'rose'} from {base_vals[name]:.3f} to {cand_vals[name]:.3f} "
                f"(delta {delta:+.3f}, {level:.0%} CI [{lo:+.3f}, {hi:+.3f}])"
            )
        metrics[name] = {
            "base": base_vals[name],
            "candidate": cand_vals[name],
            "delta": delta,
            "ci": [lo, hi],
            "verdict": verdict(name, lo, hi, regression),
            "regression": regression,
        }
    success = mcnemar_exact([t.passed for t in b], [t.passed for t in c])
    lat = wilcoxon_signed_rank(
        [float(np.mean(t.latencies)) if t.latencies else 0.0 for t in b],
        [float(np.mean(t.latencies)) if t.latencies else 0.0 for t in c],
    )
    lost = [
        {"scenario": tc.scenario, "suite": tc.suite, "trial": tc.trial, "why": tc.why}
        for tb, tc in zip(b, c, strict=True)
        if tb.passed and not tc.passed
    ]
    gained = [
        {"scenario": tc.scenario, "suite": tc.suite, "trial": tc.trial}
        for tb, tc in zip(b, c, strict=True)
        if tc.passed and not tb.passed
    ]
    # Wording: a reply rule the candidate breaks and the base kept, on the same trial, whatever else the call did.
    wording: list[dict[str, Any]] = []
    for tb, tc in zip(b, c, strict=True):
        kept = {f["rule"] for f in tb.findings}
        broken = [f for f in tc.findings if f["rule"] not in kept]
        if broken:
            wording.append({"scenario": tc.scenario, "suite": tc.suite, "trial": tc.trial, "findings": broken})
    for w in wording:
        what = ", ".join(f"{f['rule']} (turn {f['turn'] + 1})" for f in w["findings"])
        regressions.append(f"{w['suite']}/{w['scenario']}[{w['trial']}]: the candidate's replies break {what}")
    if len(lost) > rules.max_scenario_regressions:
        regressions.append(f"{len(lost)} scenario trial(s) passed on the base and fail on the candidate")
    if success.p_value < rules.alpha and len(lost) > len(gained):
        regressions.append(f"success dropped significantly (McNemar exact p={success.p_value:.4f})")
    return {
        "base": pair.base.prompts_dir,
        "candidate": pair.candidate.prompts_dir,
        "trials": len(b),
        "confidence": level,
        "metrics": metrics,
        "grades": {
            "base": grades_for(compute_metrics(b, k), table),
            "candidate": grades_for(compute_metrics(c, k), table),
        },
        "tests": {
            "success_mcnemar": {"lost": len(lost), "gained": len(gained), "p_value": success.p_value},
            "latency_wilcoxon": {"w_plus": lat.statistic, "n": lat.n, "p_value": lat.p_value},
        },
        "scenario_regressions": lost,
        "scenario_improvements": gained,
        "reply_regressions": wording,
        "scenarios": side_by_side(b, c),
        "regressions": regressions,
        "ok": not regressions,
    }


VERDICT_STYLE = {"regression": "bold red", "better": "green", "no significant change": "dim"}


def print_compare(result: dict[str, Any], console: Console, show: str = "changes") -> None:
    """The comparison as terminal tables, regressions in red; then the replies side by side, filtered by `show`."""
    level = f"{result['confidence']:.0%}"
    t = Table(title=f"Compare: base {result['base']} → candidate {result['candidate']} ({result['trials']} trials)")
    for col in ("metric", "base", "candidate", "delta", f"{level} CI", "verdict"):
        t.add_column(col)
    for name, m in result["metrics"].items():
        lo, hi = m["ci"]
        t.add_row(
            name,
            f"{m['base']:.3f}",
            f"{m['candidate']:.3f}",
            f"{m['delta']:+.3f}",
            f"[{lo:+.3f}, {hi:+.3f}]",
            f"[{VERDICT_STYLE[m['verdict']]}]{m['verdict']}[/]",
        )
    console.print(t)
    tests = result["tests"]
    s = tests["success_mcnemar"]
    w = tests["latency_wilcoxon"]
    console.print(
        f"success, McNemar exact: {s['lost']} lost, {s['gained']} gained, p={s['p_value']:.4f}; "
        f"mean turn latency, Wilcoxon signed-rank: n={w['n']}, p={w['p_value']:.4f}"
    )
    print_side_by_side(result["scenarios"], console, show)
    # A trial shown side by side already says why the candidate failed.
    seen = {(r["suite"], r["scenario"], r["trial"]) for r in shown(result["scenarios"], show)}
    for r in result["scenario_regressions"]:
        if (r["suite"], r["scenario"], r["trial"]) in seen:
            continue
        console.print(f"[bold red]regressed[/] {r['suite']}/{r['scenario']}[{r['trial']}]: {r['why']}")
    for r in result["regressions"]:
        console.print(f"[bold red]regression:[/] {r}")
    console.print("[bold green]no regressions[/]" if result["ok"] else "[bold red]the candidate regresses[/]")


def write_compare_html(result: dict[str, Any], pair: ComparePair, path: Path) -> None:
    """The comparison as one HTML page: delta plots with CIs, metric table, both versions' replies side by side."""
    level = f"{result['confidence']:.0%}"
    regressed = [name for name, m in result["metrics"].items() if m["regression"]]

    def forest(names: list[str], title: str, xlabel: str, fmt: str) -> str:
        rows = [(n, result["metrics"][n]["delta"], *result["metrics"][n]["ci"]) for n in names]
        return charts.forest(rows, title=title, xlabel=xlabel, highlight=regressed, value_format=fmt)

    names = list(result["metrics"])
    rates = [n for n in names if not n.startswith("latency") and n != "cost_per_call"]
    latency = [n for n in names if n.startswith("latency")]
    mt = "".join(
        f"<tr class='{'regression' if m['regression'] else ''}'><td>{name}</td><td>{m['base']:.3f}</td>"
        f"<td>{m['candidate']:.3f}</td><td>{m['delta']:+.3f}</td>"
        f"<td>[{m['ci'][0]:+.3f}, {m['ci'][1]:+.3f}]</td><td>{m['verdict']}</td></tr>"
        for name, m in result["metrics"].items()
    )
    regs = "".join(f"<li class='below'>{html.escape(r)}</li>" for r in result["regressions"]) or "<li>none</li>"
    s = result["tests"]["success_mcnemar"]
    w = result["tests"]["latency_wilcoxon"]
    body = (
        f"<p>base <code>{html.escape(result['base'])}</code> vs candidate <code>{html.escape(result['candidate'])}"
        f"</code>, {result['trials']} paired trials.</p><h2>Regressions</h2><ul>{regs}</ul>"
        f"<p>Success, McNemar exact: {s['lost']} lost, {s['gained']} gained, p = {s['p_value']:.4f}. "
        f"Mean turn latency, Wilcoxon signed-rank: n = {w['n']}, p = {w['p_value']:.4f}.</p>"
        f"<h2>Rates: candidate − base, {level} paired-bootstrap CI</h2>"
        + forest(rates, "Rates (regressions in red)", "candidate − base", "{:+.3f}")
        + "<h2>Latency (ms)</h2>"
        + forest(latency, "Turn latency (regressions in red)", "candidate − base (ms)", "{:+.0f} ms")
        + "<table><tr><th>metric</th><th>base</th><th>candidate</th><th>delta</th><th>CI</th><th>verdict</th></tr>"
        + mt
        + "</table>"
        "<h2>Replies side by side</h2><p>Words only the base said are struck out, words only the candidate says "
        "are highlighted; red tags name the reply rules a reply breaks.</p>" + side_by_side_html(result["scenarios"])
    )
    path.write_text(page("Switchboard prompt comparison", body, css=CSS), encoding="utf-8")


def with_prompts(config: RunConfig, prompts_dir: Path) -> RunConfig:
    """The same run configuration on another prompts folder."""
    return replace(config, prompts_dir=prompts_dir)
