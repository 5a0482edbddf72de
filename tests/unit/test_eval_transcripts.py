"""Transcripts in the reports: word-level differences, the side-by-side matrix and its filters, in HTML and rich."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from evals.compare import ComparePair, compare, print_compare, write_compare_html
from evals.grading import CompareGates, load_grades
from evals.report import build_report, print_report, write_html
from evals.runner import RunResult, TrialResult
from evals.scorers import Check
from evals.transcripts import shown, side_by_side, word_diff

pytestmark = pytest.mark.unit

GOODBYE = "Thanks for calling Northwind Broadband. Have a great day. Goodbye."
PAID = "Thank you. Your payment went through."
UPSELL = PAID + " Did you know we offer premium support plans?"


def trial(
    scenario: str, replies: list[str], *, ok: bool = True, findings: list[dict[str, Any]] | None = None
) -> TrialResult:
    callers = ["What's my balance?", "yes", "no, that's all"]
    return TrialResult(
        suite="s",
        scenario=scenario,
        trial=0,
        status="passed" if ok else "failed",
        checks=[Check("reply.closing", ok, "" if ok else "turn 3: a proper goodbye at the end of the call")],
        turns=[
            {"caller": c, "agent": r, "agent_name": "billing", "latency_ms": 20.0}
            for c, r in zip(callers, replies, strict=False)
        ],
        outcome="resolved",
        escalation_reason=None,
        routes=["billing"],
        tool_events=[],
        cost_usd=0.0,
        duration_s=0.1,
        findings=findings or [],
    )


def runs() -> ComparePair:
    base = [
        trial("pay", ["Your balance is $10.", PAID, GOODBYE]),
        trial("same", ["Your balance is $10.", PAID, GOODBYE]),
    ]
    cand = [
        trial(
            "pay",
            ["Your balance is $10.", UPSELL, "Bye."],
            ok=False,
            findings=[{"turn": 1, "rule": "upsell", "detail": "x"}, {"turn": 2, "rule": "closing", "detail": "y"}],
        ),
        trial("same", ["Your balance is $10.", PAID, GOODBYE]),
    ]
    return ComparePair(RunResult(base, ["s"], 1, 1.0, "base"), RunResult(cand, ["s"], 1, 1.0, "cand"))


def test_word_diff_marks_the_words_each_version_alone_says() -> None:
    assert word_diff(PAID, UPSELL) == [
        ("equal", "Thank you. Your payment went through. "),
        ("insert", "Did you know we offer premium support plans?"),
    ]
    assert word_diff(GOODBYE, "Bye.") == [("delete", GOODBYE), ("insert", "Bye.")]
    assert word_diff("Your visit is on Tuesday.", "Your visit is now on Tuesday.") == [
        ("equal", "Your visit is "),
        ("insert", "now "),
        ("equal", "on Tuesday."),
    ]


def test_the_matrix_pairs_every_turn_and_the_filters_keep_regressions_and_changes() -> None:
    pair = runs()
    rows = side_by_side(pair.base.trials, pair.candidate.trials)
    assert [(r["scenario"], r["kind"]) for r in rows] == [("pay", "regression"), ("same", "same")]
    pay = rows[0]
    assert [t["changed"] for t in pay["turns"]] == [False, True, True]
    assert pay["turns"][1]["candidate_rules_broken"] == ["upsell"]
    assert pay["turns"][2]["base"] == GOODBYE
    assert pay["turns"][2]["candidate"] == "Bye."
    assert [r["scenario"] for r in shown(rows, "regressions")] == ["pay"]
    assert [r["scenario"] for r in shown(rows, "changes")] == ["pay"]
    assert [r["scenario"] for r in shown(rows, "all")] == ["pay", "same"]
    assert shown(rows, "none") == []


def test_a_call_that_runs_longer_on_one_side_shows_the_missing_turns() -> None:
    rows = side_by_side([trial("t", ["a", "b"])], [trial("t", ["a", "b", "c"])])
    last = rows[0]["turns"][-1]
    assert (last["base"], last["candidate"], last["changed"]) == (None, "c", True)
    assert rows[0]["kind"] == "changed"


def terminal(pair: ComparePair, show: str) -> str:
    buf = io.StringIO()
    result = compare(pair, load_grades(), CompareGates(), resamples=50)
    print_compare(result, Console(file=buf, width=220, color_system=None), show)
    return buf.getvalue()


def test_the_terminal_shows_the_changed_turns_side_by_side() -> None:
    text = terminal(runs(), "changes")
    assert "regression s/pay[0]: base passed (resolved), candidate failed (resolved)" in text
    assert "Did you know we offer premium support plans?" in text
    assert "[upsell]" in text
    assert "Bye. [closing]" in text
    assert "1 unchanged turn(s) not shown" in text
    assert "s/same[0]" not in text
    assert "s/same[0]" in terminal(runs(), "all")
    assert "Replies side by side" not in terminal(runs(), "none")


def test_the_terminal_strikes_out_the_base_words_and_highlights_the_candidate_words() -> None:
    buf = io.StringIO()
    result = compare(runs(), load_grades(), CompareGates(), resamples=50)
    print_compare(result, Console(file=buf, width=220, force_terminal=True, color_system="standard"), "changes")
    text = buf.getvalue()
    # SGR 9 is strike-through (base only), 1;32 bold green (candidate only); shared words carry neither.
    assert re.search(r"\x1b\[9;31mThanks for calling", text) or re.search(r"\x1b\[31;9mThanks for calling", text)
    assert re.search(r"\x1b\[1;32mDid you know", text)
    assert re.search(r"\x1b\[1;32mBye\.", text)
    assert "\x1b[1;32mThank you." not in text


def test_the_comparison_page_is_self_contained_with_the_diff_and_the_filters(tmp_path: Path) -> None:
    pair = runs()
    result = compare(pair, load_grades(), CompareGates(), resamples=50)
    assert [r["scenario"] for r in result["scenarios"]] == ["pay", "same"]
    out = tmp_path / "compare.html"
    write_compare_html(result, pair, out)
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page
    # Nothing fetched: the only references are the charts' own (#id) ones.
    assert re.findall(r"(?:src|href)=[\"'](?!#)", page) == []
    assert "<ins>Did you know we offer premium support plans?</ins><span class='rule'>upsell</span>" in page
    assert f"<del>{GOODBYE}</del>" in page
    assert "<ins>Bye.</ins><span class='rule'>closing</span>" in page
    for radio in ("show-all", "show-chg", "show-reg"):
        assert f"id='{radio}'" in page
    assert "<details class='regression' open>" in page
    assert "<details class='same'>" in page


def test_the_run_report_carries_every_transcript(tmp_path: Path) -> None:
    pair = runs()
    report = build_report(pair.candidate, load_grades())
    assert [(t["scenario"], t["status"]) for t in report["trials"]] == [("pay", "failed"), ("same", "passed")]
    pay = report["trials"][0]["transcript"]
    assert [t["agent"] for t in pay] == ["Your balance is $10.", UPSELL, "Bye."]
    assert [t["reply_rules_broken"] for t in pay] == [[], ["upsell"], ["closing"]]
    out = tmp_path / "run.html"
    write_html(report, pair.candidate, load_grades(), out)
    page = out.read_text(encoding="utf-8")
    assert page.count("<summary>transcript: 3 turns</summary>") == 2
    assert "<details open><summary>transcript" in page
    buf = io.StringIO()
    print_report(report, pair.candidate, Console(file=buf, width=200, color_system=None), "failed")
    text = buf.getvalue()
    assert "billing: Bye. [closing]" in text
    assert "s/same[0]" not in text


def test_a_regression_shown_side_by_side_is_not_repeated_below_it() -> None:
    once = terminal(runs(), "changes")
    assert once.count("candidate failed: reply.closing") == 1
    assert "regressed s/pay[0]" not in once
    hidden = terminal(runs(), "none")
    assert "regressed s/pay[0]: reply.closing" in hidden
