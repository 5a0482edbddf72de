"""Reports of a run: the --json document, rich terminal tables, a self-contained HTML page, JUnit XML."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from rich.console import Console
from rich.table import Table

from evals.grading import GradeTable
from evals.metrics import compute_metrics, flatten
from evals.runner import RunResult, TrialResult
from evals.transcripts import CSS, print_transcript, transcript, transcript_html
from orchestrator.telemetry import charts

GRADE_STYLE = {"excellent": "bold green", "good": "green", "acceptable": "yellow", "below": "bold red", "n/a": "dim"}
# Metric -> the grade-table entry that grades it.
GRADED = {
    "success_rate": "success_rate",
    "first_call_resolution": "first_call_resolution",
    "escalation_rate": "escalation_rate",
    "escalation_correctness": "escalation_correctness",
    "routing_accuracy": "routing_accuracy",
    "tool_accuracy": "tool_accuracy",
    "pass_k": "pass_k",
    "latency_ms": "latency_p95_ms",
    "cost_per_call": "cost_per_call",
}


def grades_for(metrics: dict[str, Any], table: GradeTable) -> dict[str, str]:
    """A grade per metric (latency graded on its P95); "n/a" when nothing measured it."""
    flat = flatten(metrics)
    graded = table.grade_all(flat)
    return {name: graded.get(key, "n/a") for name, key in GRADED.items()}


def _transcript(t: TrialResult) -> list[str]:
    lines = []
    for turn in t.turns:
        lines += [f"caller: {turn['caller']}", f"{turn['agent_name']}: {turn['agent']}"]
    return lines


def build_report(run: RunResult, table: GradeTable, breaches: list[str] | None = None) -> dict[str, Any]:
    """The --json document: `scenarios, passed, failed, metrics, grades, failures`, run details and `trials`.

    `trials` carries every trial's verdict, failed checks and transcript (turns with the reply rules broken).
    """
    metrics = compute_metrics(run.trials, run.repeat)
    failures = [
        {
            "scenario": t.scenario,
            "suite": t.suite,
            "trial": t.trial,
            "why": t.why,
            "outcome": t.outcome,
            "escalation_reason": t.escalation_reason,
            "transcript": _transcript(t),
        }
        for t in run.trials
        if t.counts_as_failure
    ]
    known = [
        {
            "scenario": t.scenario,
            "suite": t.suite,
            "trial": t.trial,
            "bug": t.expect_failure,
            "why": t.why,
            "transcript": _transcript(t),
        }
        for t in run.trials
        if t.status == "xfail"
    ]
    scenario_ids = {(t.suite, t.scenario) for t in run.trials}
    return {
        "scenarios": len(scenario_ids),
        "passed": sum(1 for t in run.trials if t.status == "passed"),
        "failed": len(failures),
        "metrics": metrics,
        "grades": grades_for(metrics, table),
        "failures": failures,
        "expected_failures": known,
        "gates": {"passed": not breaches, "breaches": breaches or []},
        "trials": [
            {
                "suite": t.suite,
                "scenario": t.scenario,
                "trial": t.trial,
                "status": t.status,
                "outcome": t.outcome,
                "why": t.why if not t.passed or t.status == "xpass" else "",
                "transcript": transcript(t),
            }
            for t in run.trials
        ],
        "run": {
            "suites": run.suites,
            "trials": len(run.trials),
            "repeat": run.repeat,
            "prompts": run.prompts_dir,
            "duration_s": round(run.duration_s, 2),
        },
    }


def _fmt(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name == "latency_ms":
        return f"p50 {value['p50']:.0f} · p95 {value['p95']:.0f} · p99 {value['p99']:.0f} ms"
    if name == "cost_per_call":
        return f"${value:.4f}"
    return f"{value:.3f}"


def print_report(report: dict[str, Any], run: RunResult, console: Console, transcripts: str = "failed") -> None:
    """Terminal tables: per-scenario verdicts, metrics with grades, failures and gates.

    `transcripts` says whose transcripts to print: "failed" (failures and known bugs), "all" or "none".
    """
    table = Table(title="Scenarios", show_lines=False)
    for col in ("suite", "scenario", "trial", "status", "outcome", "turns", "max turn ms"):
        table.add_column(col, overflow="fold")
    style = {"passed": "green", "failed": "bold red", "xfail": "yellow", "xpass": "bold red"}
    for t in run.trials:
        worst = max(t.latencies) if t.latencies else 0.0
        table.add_row(
            t.suite,
            t.scenario,
            str(t.trial),
            f"[{style[t.status]}]{t.status}[/]",
            t.outcome,
            str(len(t.turns)),
            f"{worst:.0f}",
        )
    console.print(table)
    for t in run.trials:
        if transcripts == "all" or (transcripts == "failed" and not t.passed):
            print_transcript(t, console)
    for t in run.trials:
        if t.counts_as_failure:
            console.print(f"[bold red]FAILED[/] {t.suite}/{t.scenario}[{t.trial}]: {t.why}")
        elif t.status == "xfail":
            console.print(f"[yellow]known bug[/] {t.suite}/{t.scenario}: {t.expect_failure}")
    mt = Table(title=f"Metrics ({report['scenarios']} scenarios × {run.repeat})")
    for col in ("metric", "value", "grade"):
        mt.add_column(col)
    for name, value in report["metrics"].items():
        if name == "k":
            continue
        grade = report["grades"].get(name, "n/a")
        label = f"pass^{report['metrics']['k']}" if name == "pass_k" else name
        mt.add_row(label, _fmt(name, value), f"[{GRADE_STYLE[grade]}]{grade}[/]")
    console.print(mt)
    console.print(
        f"[bold]{report['passed']} passed, {report['failed']} failed, {len(report['expected_failures'])} known bugs"
        f"[/bold] in {report['run']['duration_s']:.1f} s"
    )
    for breach in report["gates"]["breaches"]:
        console.print(f"[bold red]gate breached:[/] {breach}")


def write_junit(run: RunResult, path: Path) -> None:
    """JUnit XML: one testsuite per suite, one testcase per scenario trial."""
    root = ET.Element("testsuites", name="switchboard-evals")
    for suite in run.suites:
        trials = [t for t in run.trials if t.suite == suite]
        node = ET.SubElement(
            root,
            "testsuite",
            name=suite,
            tests=str(len(trials)),
            failures=str(sum(t.counts_as_failure for t in trials)),
            skipped=str(sum(t.status == "xfail" for t in trials)),
            time=f"{sum(t.duration_s for t in trials):.3f}",
        )
        for t in trials:
            name = t.scenario if run.repeat == 1 else f"{t.scenario}[{t.trial}]"
            case = ET.SubElement(node, "testcase", classname=f"evals.{suite}", name=name, time=f"{t.duration_s:.3f}")
            if t.counts_as_failure:
                ET.SubElement(case, "failure", message=t.why[:500]).text = t.why
            elif t.status == "xfail":
                ET.SubElement(case, "skipped", message=f"known bug: {t.expect_failure}")
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}
th{background:#f4f4f4}.passed{color:#18794e}.failed,.xpass,.below{color:#c0392b;font-weight:600}
.xfail,.acceptable{color:#b7791f}.excellent{color:#18794e;font-weight:600}.good{color:#2f855a}
.regression{background:#fde8e8}.improvement{background:#e6f6ec}
"""


def page(title: str, body: str, css: str = "") -> str:
    """A self-contained HTML page (inline CSS and SVG; no scripts, no CDN)."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}{css}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def write_html(report: dict[str, Any], run: RunResult, table: GradeTable, path: Path) -> None:
    """The run as one HTML file: metrics with grades, a latency histogram, per-scenario verdicts and transcripts."""
    rows = []
    for name, value in report["metrics"].items():
        if name == "k":
            continue
        grade = report["grades"].get(name, "n/a")
        band = table.metrics.get(GRADED.get(name, name))
        bar = f"{'≥' if band.direction == 'higher' else '≤'} {band.acceptable:g}" if band is not None else "-"
        rows.append(
            f"<tr><td>{name}</td><td>{html.escape(_fmt(name, value))}</td><td class='{grade}'>{grade}</td>"
            f"<td>{html.escape(bar)}</td></tr>"
        )
    bars = [
        (name, float(v), report["grades"].get(name, "n/a"))
        for name, v in report["metrics"].items()
        if name in {"success_rate", "first_call_resolution", "escalation_rate", "routing_accuracy", "tool_accuracy",
                    "escalation_correctness", "pass_k"} and v is not None
    ]  # fmt: skip
    latencies = [ms for t in run.trials for ms in t.latencies]
    lat = report["metrics"]["latency_ms"]
    scen = []
    for t in run.trials:
        why = t.why if t.status != "xfail" else f"known bug: {t.expect_failure}"
        scen.append(
            f"<tr><td>{t.suite}</td><td>{t.scenario}</td><td>{t.trial}</td><td class='{t.status}'>{t.status}</td>"
            f"<td>{t.outcome}</td><td>{len(t.turns)}</td><td>{html.escape(why)}</td></tr>"
            f"<tr><td colspan='7'>{transcript_html(t)}</td></tr>"
        )
    gates = (
        "".join(f"<li class='below'>{html.escape(b)}</li>" for b in report["gates"]["breaches"])
        or "<li>all gates pass</li>"
    )
    body = (
        f"<p>{report['passed']} passed, {report['failed']} failed, {len(report['expected_failures'])} known bugs; "
        f"{report['run']['trials']} calls in {report['run']['duration_s']:.1f} s; "
        f"prompts {html.escape(report['run']['prompts'])}</p>"
        f"<h2>Gates</h2><ul>{gates}</ul>"
        "<h2>Metrics</h2><table><tr><th>metric</th><th>value</th><th>grade</th><th>acceptable</th></tr>"
        + "".join(rows)
        + "</table>"
        + charts.bars(
            [b[0] for b in bars],
            {"measured": [b[1] for b in bars]},
            title="Rates (grades and the acceptable bars in the table above)",
            xlabel="share of calls",
            value_format="{:.3f}",
        )
        + "<h2>Turn latency</h2>"
        + charts.histogram(
            latencies,
            title="Turn latency",
            xlabel="turn latency (ms)",
            lines={"P50": lat["p50"], "P95": lat["p95"]} if latencies else None,
        )
        + "<h2>Scenarios</h2><table><tr><th>suite</th><th>scenario</th><th>trial</th><th>status</th><th>outcome</th>"
        "<th>turns</th><th>why</th></tr>" + "".join(scen) + "</table>"
    )
    path.write_text(page("Switchboard eval run", body, css=CSS), encoding="utf-8")
