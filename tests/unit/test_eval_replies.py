"""The reply policy: wording every agent reply is held to, and the judge's rubrics on the scripted model."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agents.testing import ScriptedChatModel
from evals.grading import ConfigError
from evals.judge import grade_rubrics, judge_reply_rubrics
from evals.replies import check_replies, default_reply_policy, findings_to_checks, load_reply_policy
from evals.schema import Scenario
from orchestrator.config import REPO_ROOT, load_settings

pytestmark = pytest.mark.unit

GOODBYE = "Thanks for calling Northwind Broadband. Have a great day. Goodbye."
PAID = (
    "Thank you. Your payment of one hundred forty-four dollars and ninety-eight cents went through,"
    " and you'll get a receipt by email."
)


def rules(*turns: tuple[str, str], closed: bool = True) -> list[tuple[int, str]]:
    found = check_replies(
        default_reply_policy(), [{"caller": c, "agent": a} for c, a in turns], closed_by_caller=closed
    )
    return [(f.turn, f.rule) for f in found]


def test_the_shipped_replies_keep_the_policy() -> None:
    assert rules(("What's my balance?", PAID), ("no thanks", GOODBYE)) == []


def test_an_unrequested_upsell_is_caught_and_a_requested_one_is_not() -> None:
    upsell = PAID + " Did you know we offer premium support plans?"
    assert rules(("What's my balance?", upsell), ("no", GOODBYE)) == [(0, "upsell")]
    assert rules(("Are there any upgrade plans?", upsell), ("no", GOODBYE)) == []
    # A charge's own name is not marketing.
    said = "I see a Premium channel pack charge of fourteen dollars and ninety-nine cents on your December 13 bill."
    assert rules(("dispute a charge", said), ("no", GOODBYE)) == []


def test_a_curt_goodbye_fails_only_when_the_caller_ended_the_call() -> None:
    assert rules(("What's my balance?", PAID), ("no", "Bye.")) == [(1, "closing")]
    assert rules(("What's my balance?", PAID), ("no", "Bye."), closed=False) == []
    (check,) = findings_to_checks(
        check_replies(default_reply_policy(), [{"caller": "no", "agent": "Bye."}], closed_by_caller=True)
    )
    assert check.name == "reply.closing"
    assert not check.ok
    assert (
        check.detail
        == "turn 1: a proper goodbye at the end of the call: 'Bye.' (no thanks, no goodbye, 1 words, at least 6)"
    )


def test_raw_dates_cents_markup_and_long_sentences_are_caught() -> None:
    assert rules(("x", "Your bill for 2026-11-14 to 2026-12-13 is due."), closed=False) == [(0, "iso_date")]
    assert rules(("x", "Your balance is 14498 cents."), closed=False) == [(0, "raw_cents")]
    assert rules(("x", "I sent a link to e***@example.com. It's valid for one hour."), closed=False) == []
    assert rules(("x", "Go to **settings** and look."), closed=False) == [(0, "unspeakable")]
    long = "I can help with " + " and ".join(["technician visits"] * 10) + "."
    assert rules(("x", long), closed=False) == [(0, "long_sentence")]
    assert rules(("x", "Sure. " * 61), closed=False) == [(0, "too_long")]


def test_amounts_times_and_phone_numbers_written_for_the_eye_are_caught() -> None:
    assert rules(("x", "Your balance is $144.98."), closed=False) == [(0, "written_amount")]
    assert rules(("x", "That's 49 dollars."), closed=False) == [(0, "written_amount")]
    assert rules(("x", "A technician comes Tuesday at 2:30 PM."), closed=False) == [(0, "written_time")]
    assert rules(("x", "A technician comes Tuesday at 10 a.m."), closed=False) == [(0, "written_time")]
    assert rules(("x", "Is your number 555-010-0002?"), closed=False) == [(0, "written_phone")]
    assert rules(("x", "Is your number +15550100002?"), closed=False) == [(0, "written_phone")]
    spoken = "A technician comes Tuesday at two thirty in the afternoon. The fee is forty-nine dollars."
    assert rules(("x", spoken), ("Step 2 done", "Step 3: wait 30 seconds."), closed=False) == []


def test_the_same_reply_to_different_words_is_caught_and_to_the_same_words_is_not() -> None:
    ask = "What's the ZIP code on the account?"
    assert rules(("balance", ask), ("10001", ask), closed=False) == [(1, "repeated")]
    # A caller who says the same again hears the same again (the supervisor's loop check deals with it).
    assert rules(("balance", ask), ("balance", ask), closed=False) == []
    assert rules(("balance", ask), ("10001", "Sorry, that doesn't match. " + ask), closed=False) == []


def test_a_bad_policy_file_is_named_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("forbidden:\n  - {name: upsell, why: x, patterns: ['(unclosed']}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"policy\.yaml: forbidden\.0\.patterns: Value error, bad pattern"):
        load_reply_policy(bad)
    from orchestrator.cli import app

    smoke = REPO_ROOT / "evals" / "suites" / "smoke.yaml"
    result = CliRunner().invoke(app, ["eval", "run", str(smoke), "--reply-policy", str(bad)])
    assert result.exit_code == 2
    assert "bad pattern" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


SCENARIO = Scenario.model_validate(
    {"id": "pay", "persona": "James", "goal": "pay his bill", "caller": {"account": "NW-1002"}, "turns": ["x"]}
)
TURNS = [
    {"caller": "What's my balance?", "agent": PAID + " Did you know we offer premium plans?", "agent_name": "billing"}
]


async def test_the_reply_rubrics_are_graded_by_the_judge_model() -> None:
    model = ScriptedChatModel(["FAIL: it offered a premium plan nobody asked about.", "PASS"])
    rubrics = default_reply_policy().rubrics
    checks = await grade_rubrics(model, rubrics, SCENARIO, TURNS, "rubric.reply")
    model.assert_complete()
    assert [(c.name, c.ok) for c in checks] == [("rubric.reply.1", False), ("rubric.reply.2", True)]
    assert checks[0].detail.startswith("FAIL: it offered a premium plan")
    asked = model.calls[0].last_text
    assert f"Rubric: {rubrics[0]}" in asked
    assert "AGENT (billing): Thank you. Your payment" in asked


async def test_without_a_key_the_reply_rubrics_add_no_checks() -> None:
    settings = load_settings()
    assert not settings.llm_configured
    assert await judge_reply_rubrics(settings, default_reply_policy().rubrics, SCENARIO, None) == []  # type: ignore[arg-type]  # obs is never read without a key
