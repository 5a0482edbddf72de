"""The eval engine end to end: failing and timed-out scenarios, the smoke suite via the CLI, and compare."""

from __future__ import annotations

import json
import re
import shutil
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from agents.ports import IntentClassifier, IntentPrediction
from evals.compare import compare, run_pair
from evals.grading import load_gates, load_grades
from evals.loader import load_suite
from evals.prompts_ref import resolve_prompts
from evals.runner import RunConfig, run_suites
from evals.schema import Scenario, Suite
from orchestrator.config import PROMPTS_DIR, REPO_ROOT

pytestmark = pytest.mark.flow

SMOKE = REPO_ROOT / "evals" / "suites" / "smoke.yaml"
CALLERS = REPO_ROOT / "evals" / "suites" / "callers.yaml"


@pytest.fixture(scope="module")
def classifier() -> IntentClassifier:
    from orchestrator.providers.intent import load_classifier

    return load_classifier()


def suite(*scenarios: dict[str, Any]) -> Suite:
    return Suite(suite="t", scenarios=[Scenario.model_validate(s) for s in scenarios])


async def test_a_scenario_that_must_fail_fails_with_the_reason(classifier: IntentClassifier) -> None:
    wrong = {
        "id": "balance-is-not-a-move",
        "persona": "James",
        "goal": "balance",
        "caller": {"account": "NW-1002"},
        "turns": ["What's my balance?", "10453", "no"],
        "expect": {"routes": ["scheduling"], "tools": [{"name": "move_visit"}], "db": {"balance_cents": 0}},
    }
    known_bug = {**wrong, "id": "known-bug", "expect_failure": "documented bug"}
    run = await run_suites([suite(wrong, known_bug)], RunConfig(concurrency=2), classifier=classifier)
    failed, xfail = run.trials
    assert failed.status == "failed"
    assert failed.counts_as_failure
    assert "routes: expected ['scheduling'], got ['billing']" in failed.why
    assert "tools.move_visit" in failed.why
    assert "db.balance_cents: balance 14498, expected 0" in failed.why
    assert xfail.status == "xfail"
    assert not xfail.counts_as_failure


class _SlowClassifier:
    """Takes longer than the trial's whole time limit, so the call cannot end in time on any machine."""

    def __init__(self, inner: IntentClassifier) -> None:
        self.inner = inner

    def classify(self, text: str) -> IntentPrediction:
        time.sleep(0.3)
        return self.inner.classify(text)


async def test_a_timeout_counts_as_failed_with_the_reason(classifier: IntentClassifier) -> None:
    slow = {
        "id": "too-slow",
        "persona": "p",
        "goal": "g",
        "caller": {"account": "NW-1001"},
        "turns": ["Can I reschedule my technician appointment?", "10027", "the first one", "yes"],
        "timeout_s": 0.05,
    }
    run = await run_suites([suite(slow)], RunConfig(), classifier=_SlowClassifier(classifier))
    (trial,) = run.trials
    assert trial.status == "failed"
    assert re.match(r"call: timed out after 0\.05 s \(at caller turn [1-4]\)$", trial.why), trial.why


def test_smoke_suite_passes_through_the_cli() -> None:
    from orchestrator.cli import app

    result = CliRunner().invoke(app, ["eval", "run", str(SMOKE), "--json", "--concurrency", "3"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) >= {"scenarios", "passed", "failed", "metrics", "grades", "failures"}
    assert set(report["metrics"]) >= {
        "success_rate",
        "first_call_resolution",
        "escalation_rate",
        "routing_accuracy",
        "tool_accuracy",
        "pass_k",
        "latency_ms",
        "cost_per_call",
    }
    assert set(report["metrics"]["latency_ms"]) == {"p50", "p95", "p99"}
    assert report["failed"] == 0
    assert report["failures"] == []
    assert report["passed"] == report["scenarios"] >= 12
    assert report["grades"]["success_rate"] == "excellent"


def test_callers_suite_passes_through_the_cli() -> None:
    """Realistic callers (answers with a new request, names for verification, indirect asks): CI runs them too."""
    from orchestrator.cli import app

    result = CliRunner().invoke(app, ["eval", "run", str(CALLERS), "--json", "--concurrency", "3"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["failed"] == 0, report["failures"]
    assert report["passed"] >= 20


def test_audio_is_refused_clearly() -> None:
    from orchestrator.cli import app

    result = CliRunner().invoke(app, ["eval", "run", str(SMOKE), "--audio"])
    assert result.exit_code == 2
    assert "voice issue" in result.output


async def test_compare_catches_a_prompt_version_that_breaks_a_reply(
    classifier: IntentClassifier, tmp_path: Path
) -> None:
    broken = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, broken)
    replies = yaml.safe_load((broken / "replies.yaml").read_text(encoding="utf-8"))
    replies["billing"]["disputed"] = "Noted. Someone may look at the {description} charge at some point."
    (broken / "replies.yaml").write_text(yaml.safe_dump(replies), encoding="utf-8")

    smoke = load_suite(SMOKE)
    picked = Suite(
        suite="smoke",
        scenarios=[
            s for s in smoke.scenarios if s.id in {"smoke-dispute-charge", "smoke-pay-balance", "smoke-emergency"}
        ],
    )
    with ExitStack() as stack:
        base_dir = resolve_prompts("HEAD", stack)  # the committed prompts, unpacked from git
        assert (base_dir / "replies.yaml").is_file()
        pair = await run_pair(
            [picked],
            RunConfig(prompts_dir=base_dir, concurrency=3),
            RunConfig(prompts_dir=broken, concurrency=3),
            classifier=classifier,
        )
    result = compare(pair, load_grades(), load_gates().compare, resamples=100)
    assert not result["ok"]
    (lost,) = result["scenario_regressions"]
    assert lost["scenario"] == "smoke-dispute-charge"
    assert "no agent reply said 'opened a dispute'" in lost["why"]
    assert result["metrics"]["success_rate"]["delta"] == pytest.approx(-1 / 3)
    assert result["metrics"]["success_rate"]["regression"]
    assert any("passed on the base and fail on the candidate" in r for r in result["regressions"])
    assert result["tests"]["success_mcnemar"]["lost"] == 1


def upsell_candidate(root: Path) -> Path:
    """prompts/ as a candidate with exactly two edits: an upsell after a payment and a curt goodbye."""
    cand = root / "candidate"
    shutil.copytree(PROMPTS_DIR, cand)
    replies = cand / "replies.yaml"
    text = replies.read_text(encoding="utf-8")
    paid = "went through, and you'll get a receipt by email."
    goodbye = 'goodbye: "Thanks for calling Northwind Broadband. Have a great day. Goodbye."'
    assert text.count(paid) == 1
    assert text.count(goodbye) == 1
    text = text.replace(paid, paid + " Did you know we offer premium support plans?")
    replies.write_text(text.replace(goodbye, 'goodbye: "Bye."'), encoding="utf-8")
    return cand


def smoke_subset(root: Path, ids: set[str]) -> Path:
    data = yaml.safe_load(SMOKE.read_text(encoding="utf-8"))
    data["scenarios"] = [s for s in data["scenarios"] if s["id"] in ids]
    path = root / "subset.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_compare_catches_an_upsell_and_a_curt_goodbye(tmp_path: Path) -> None:
    from orchestrator.cli import app

    cand = upsell_candidate(tmp_path)
    suite_file = smoke_subset(tmp_path, {"smoke-pay-balance", "smoke-cancel-visit"})
    args = ["eval", "compare", str(suite_file), "--base", str(PROMPTS_DIR), "--candidate", str(cand)]
    result = CliRunner().invoke(app, [*args, "--json", "--concurrency", "2"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert not report["ok"]
    broken = {(r["scenario"], f["rule"]) for r in report["reply_regressions"] for f in r["findings"]}
    assert broken == {
        ("smoke-pay-balance", "upsell"),
        ("smoke-pay-balance", "closing"),
        ("smoke-cancel-visit", "closing"),
    }
    (pay,) = [r for r in report["reply_regressions"] if r["scenario"] == "smoke-pay-balance"]
    upsell = next(f for f in pay["findings"] if f["rule"] == "upsell")
    assert "premium support plans" in upsell["detail"]
    assert {r["scenario"] for r in report["scenario_regressions"]} == {"smoke-pay-balance", "smoke-cancel-visit"}
    assert any("the candidate's replies break upsell" in r for r in report["regressions"])


def test_the_comparison_shows_both_versions_replies_side_by_side(tmp_path: Path) -> None:
    from orchestrator.cli import app

    cand = upsell_candidate(tmp_path)
    suite_file = smoke_subset(tmp_path, {"smoke-pay-balance", "smoke-emergency"})
    page = tmp_path / "compare.html"
    args = ["eval", "compare", str(suite_file), "--base", str(PROMPTS_DIR), "--candidate", str(cand)]
    result = CliRunner().invoke(app, [*args, "--json", "--html", str(page), "--concurrency", "2"])
    assert result.exit_code == 1, result.output
    rows = {r["scenario"]: r for r in json.loads(result.stdout)["scenarios"]}
    # The emergency call is handed to a person before any goodbye: the same on both sides.
    assert rows["smoke-emergency"]["kind"] == "same"
    pay = rows["smoke-pay-balance"]
    assert pay["kind"] == "regression"
    changed = [t for t in pay["turns"] if t["changed"]]
    assert [t["candidate_rules_broken"] for t in changed] == [["upsell"], ["closing"]]
    paid, bye = changed
    # The payment's reply, then "anything else?": only the upsell between them is new.
    assert [op for op, _ in paid["diff"]] == ["equal", "insert", "equal"]
    assert paid["diff"][1] == ["insert", "Did you know we offer premium support plans? "]
    assert paid["diff"][2][1].startswith("Is there anything else")
    assert bye["base"] == "Thanks for calling Northwind Broadband. Have a great day. Goodbye."
    assert bye["candidate"] == "Bye."
    html = page.read_text(encoding="utf-8")
    assert "<ins>Did you know we offer premium support plans? </ins>" in html
    assert "<del>Thanks for calling Northwind Broadband. Have a great day. Goodbye.</del>" in html
    assert "<script" not in html

    shown = CliRunner().invoke(app, [*args, "--show", "regressions", "--concurrency", "2"], terminal_width=200)
    assert shown.exit_code == 1
    assert "Replies side by side (regressions: 1 of 2 trials)" in shown.output
    assert "regression smoke/smoke-pay-balance[0]" in shown.output
    assert "smoke/smoke-emergency[0]" not in shown.output
    assert "Did you know we offer premium support plans?" in shown.output

    bad = CliRunner().invoke(app, [*args, "--show", "everything"])
    assert bad.exit_code == 2
    assert "--show must be regressions, changes, all or none, not 'everything'" in bad.output


async def test_the_reply_rubrics_are_graded_on_every_scenario_by_the_judge_model(
    classifier: IntentClassifier, tmp_path: Path
) -> None:
    from agents.testing import ScriptedChatModel

    cand = upsell_candidate(tmp_path)
    smoke = load_suite(SMOKE)
    picked = Suite(suite="smoke", scenarios=[s for s in smoke.scenarios if s.id == "smoke-pay-balance"])
    judge = ScriptedChatModel(["FAIL: it offered premium support plans nobody asked about.", "FAIL: 'Bye.'"])
    run = await run_suites([picked], RunConfig(prompts_dir=cand, judge=judge), classifier=classifier)
    judge.assert_complete()
    (trial,) = run.trials
    rubrics = {c.name: c for c in trial.checks if c.name.startswith("rubric.reply.")}
    assert [(name, c.ok) for name, c in rubrics.items()] == [("rubric.reply.1", False), ("rubric.reply.2", False)]
    assert rubrics["rubric.reply.1"].detail.startswith("FAIL: it offered premium support plans")
    asked = judge.calls[0].last_text
    assert "Did you know we offer premium support plans?" in asked
    assert asked.rstrip().endswith("Bye.")


def test_a_base_from_before_a_reply_existed_runs_with_the_current_text_for_it(tmp_path: Path) -> None:
    from orchestrator.cli import app

    base = tmp_path / "old-prompts"
    shutil.copytree(PROMPTS_DIR, base)
    replies = yaml.safe_load((base / "replies.yaml").read_text(encoding="utf-8"))
    removed = [group for group, node in replies.items() if isinstance(node, dict) and "still_need" in node]
    assert removed, "the shipped replies have a still_need reply to take out"
    for group in removed:
        del replies[group]["still_need"]
    (base / "replies.yaml").write_text(yaml.safe_dump(replies, sort_keys=False), encoding="utf-8")
    before = (base / "replies.yaml").read_text(encoding="utf-8")
    suite_file = smoke_subset(tmp_path, {"smoke-pay-balance"})
    args = ["eval", "compare", str(suite_file), "--base", str(base), "--candidate", str(PROMPTS_DIR), "--json"]
    result = CliRunner().invoke(app, args)
    assert "the base lacks 1 replies this code uses" in result.stderr
    assert "still_need" in result.stderr
    # Both versions ran every scenario alike (the latency gate is left out: it measures the machine's load).
    report = json.loads(result.stdout)
    assert report["scenario_regressions"] == []
    assert report["reply_regressions"] == []
    assert {r["base_status"] for r in report["scenarios"]} == {"passed"}, result.stdout
    assert (base / "replies.yaml").read_text(encoding="utf-8") == before  # the base folder itself is never written
