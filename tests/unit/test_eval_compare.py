"""Comparison verdicts: "better" or "worse" only when the interval excludes zero, otherwise no significant change."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from evals.compare import ComparePair, compare, print_compare
from evals.grading import CompareGates, load_grades
from evals.runner import RunResult, TrialResult
from evals.scorers import Check

pytestmark = pytest.mark.unit


def trial(scenario: str, latency_ms: float, *, ok: bool = True) -> TrialResult:
    return TrialResult(
        suite="s",
        scenario=scenario,
        trial=0,
        status="passed" if ok else "failed",
        checks=[Check("outcome", ok, "" if ok else "expected resolved, got escalated")],
        turns=[{"caller": "hi", "agent": "Hello.", "agent_name": "router", "latency_ms": latency_ms}],
        outcome="resolved",
        escalation_reason=None,
        routes=[],
        tool_events=[],
        cost_usd=0.0,
        duration_s=0.1,
    )


def pair(base_ms: list[float], cand_ms: list[float]) -> ComparePair:
    names = [f"sc{i}" for i in range(len(base_ms))]
    base = [trial(n, ms) for n, ms in zip(names, base_ms, strict=True)]
    cand = [trial(n, ms) for n, ms in zip(names, cand_ms, strict=True)]
    return ComparePair(RunResult(base, ["s"], 1, 1.0, "base"), RunResult(cand, ["s"], 1, 1.0, "cand"))


def rendered(result: dict[str, object]) -> str:
    buf = io.StringIO()
    print_compare(result, Console(file=buf, width=200, color_system=None))
    return buf.getvalue()


def row(text: str, metric: str) -> str:
    return next(line for line in text.splitlines() if f" {metric} " in line)


# Candidate faster on some scenarios, slower on others: the point estimate falls, the interval spans zero.
NOISY_BASE = [100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0]
NOISY_CAND = [40.0, 260.0, 250.0, 430.0, 440.0, 640.0, 620.0, 810.0]


def test_a_latency_drop_whose_interval_includes_zero_is_no_significant_change() -> None:
    result = compare(pair(NOISY_BASE, NOISY_CAND), load_grades(), CompareGates(), resamples=400)
    p50 = result["metrics"]["latency_p50_ms"]
    lo, hi = p50["ci"]
    assert p50["delta"] < 0
    assert lo < 0 < hi
    assert p50["verdict"] == "no significant change"
    line = row(rendered(result), "latency_p50_ms")
    assert "no significant change" in line
    assert "better" not in line
    assert f"[{lo:+.3f}, {hi:+.3f}]" in line
    assert result["ok"]


def test_a_consistent_latency_drop_is_better_and_a_consistent_rise_is_a_regression() -> None:
    faster = [ms - 50 for ms in NOISY_BASE]
    result = compare(pair(NOISY_BASE, faster), load_grades(), CompareGates(), resamples=400)
    assert result["metrics"]["latency_p50_ms"]["verdict"] == "better"
    assert result["metrics"]["latency_p50_ms"]["ci"][1] < 0
    assert "better" in row(rendered(result), "latency_p50_ms")
    slower = [ms + 20 for ms in NOISY_BASE]
    result = compare(pair(NOISY_BASE, slower), load_grades(), CompareGates(), resamples=400)
    # A rise whose interval excludes zero is a significant drop in quality: a regression, not merely worse.
    assert result["metrics"]["latency_p50_ms"]["verdict"] == "regression"
    assert not result["ok"]


def test_the_chosen_level_sets_the_interval_and_the_verdict() -> None:
    # A drop on seven of eight scenarios: outside the 50 % interval, inside the 99.9 % one.
    cand = [ms - 30 for ms in NOISY_BASE[:7]] + [NOISY_BASE[7] + 200]
    loose = compare(pair(NOISY_BASE, cand), load_grades(), CompareGates(), resamples=400, confidence=0.5)
    strict = compare(pair(NOISY_BASE, cand), load_grades(), CompareGates(), resamples=400, confidence=0.999)
    assert loose["confidence"] == 0.5
    assert loose["metrics"]["latency_p50_ms"]["verdict"] == "better"
    assert strict["metrics"]["latency_p50_ms"]["verdict"] == "no significant change"
    assert "99.9% CI" in rendered(strict) or "100% CI" in rendered(strict)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "--base", "HEAD", "--candidate", "prompts", "--confidence", "2"], "--confidence must be at least"),
        (["compare", "--base", "HEAD", "--candidate", "prompts", "--show", "x"], "--show must be regressions"),
        (["run", "--transcripts", "some"], "--transcripts must be failed, all or none, not 'some'"),
    ],
)
def test_a_bad_report_option_is_refused_in_one_line(args: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from orchestrator.cli import app
    from orchestrator.config import REPO_ROOT

    smoke = str(REPO_ROOT / "evals" / "suites" / "smoke.yaml")
    result = CliRunner().invoke(app, ["eval", args[0], smoke, *args[1:]])
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
