"""Anomaly detection on crafted transcripts: off-script, loops, frustration, long calls, tool failures."""

from __future__ import annotations

import pytest

from orchestrator.config import PROMPTS_DIR
from orchestrator.telemetry.anomaly import AnomalyDetector, OffScriptScorer, frustration_score

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def detector() -> AnomalyDetector:
    return AnomalyDetector.from_prompts(PROMPTS_DIR)


# Paraphrases an LLM specialist might say: on script. Invented content: off script. The threshold in
# DetectorLimits.off_script was tuned on these.
ON_SCRIPT = [
    "Your balance is $79.99. Do you want to pay it now?",
    "I can book a technician for Thursday morning. Does that work?",
    "I've opened a dispute for that charge; billing will review it in five business days.",
    "Let me check your account. One moment please.",
    "Thanks for waiting. I found the problem with your router.",
]
OFF_SCRIPT = [
    "Sure! I've gone ahead and upgraded you to our premium gigabit plan for free, and a crypto refund is on its way.",
    "As an AI language model I cannot have opinions about the election.",
    "Honestly our competitor Verizon is much better, you should switch.",
    "The weather in Paris is lovely this time of year.",
    "I promise you a full refund of $500 today.",
]


@pytest.mark.parametrize("reply", ON_SCRIPT)
def test_paraphrases_are_on_script(detector: AnomalyDetector, reply: str) -> None:
    assert detector.detect("c", [("hi", reply)]) == []


@pytest.mark.parametrize("reply", OFF_SCRIPT)
def test_invented_replies_are_flagged_with_the_sentence_and_the_score(detector: AnomalyDetector, reply: str) -> None:
    flags = detector.detect("c-1", [("What's my balance?", "I can help with that."), ("ok", reply)])
    assert [f.kind for f in flags] == ["off_script"]
    assert flags[0].turn == 2
    assert flags[0].call_id == "c-1"
    assert "turn 2" in flags[0].why
    assert "similarity" in flags[0].why
    assert "<" in flags[0].why


def test_templated_replies_with_fields_filled_score_one() -> None:
    scorer = OffScriptScorer.from_prompts(PROMPTS_DIR)
    reply = "Thank you, Maria, you're verified. Your balance is $79.99 due on December 4. Would you like to pay it now?"
    assert scorer.score(reply) == (1.0, "")


def test_a_scripted_reply_with_one_invented_sentence_is_caught(detector: AnomalyDetector) -> None:
    reply = "Your visit is currently booked for Monday at 10 AM. Also, our CEO says the stock will double next week."
    assert [f.kind for f in detector.detect("c", [("when is my visit", reply)])] == ["off_script"]


def test_a_repeated_reply_is_a_loop(detector: AnomalyDetector) -> None:
    turns = [("I want the thing", "Sorry, I didn't catch that. Could you say it again?")] * 3
    flags = detector.detect("c", turns)
    assert [f.kind for f in flags] == ["loop"]
    assert "same reply 3 times" in flags[0].why


def test_bouncing_between_agents_is_a_loop(detector: AnomalyDetector) -> None:
    turns = [
        ("bill", "Your balance is $5."),
        ("visit", "I have Monday at 8 AM. Which works best for you?"),
        ("bill", "Your balance is $6."),
        ("visit", "I have Tuesday at 8 AM. Which works best for you?"),
    ]
    flags = detector.detect("c", turns, agents=["billing", "scheduling", "billing", "scheduling"])
    assert any(f.kind == "loop" and "bounced between agents" in f.why for f in flags)


def test_a_walkthrough_is_not_a_loop(detector: AnomalyDetector) -> None:
    turns = [("done", f"Step {i}: Do the thing number {i}. Tell me when you're done.") for i in range(1, 5)]
    assert detector.detect("c", turns) == []


def test_rising_frustration_is_flagged_and_explains_the_trend(detector: AnomalyDetector) -> None:
    turns = [
        ("my internet is down", "I can check that for you. What's the ZIP code where you have service?"),
        ("it's still not working", "Sorry, I need the five-digit ZIP code of your service address."),
        ("I already told you that", "Sorry, I need the five-digit ZIP code of your service address."),
        ("this is RIDICULOUS!! useless", "Sorry, I didn't catch that. Could you say it again?"),
    ]
    assert [frustration_score(c) for c, _ in turns] == [0, 2, 3, 5]
    flags = detector.detect("c", turns)
    assert [f.kind for f in flags] == ["frustration"]
    assert "0→2→3→5" in flags[0].why


def test_long_calls_and_tool_failures_and_errors(detector: AnomalyDetector) -> None:
    turns = [("ok", "Is there anything else I can help you with?"), ("no", "Okay, let's go through it.")] * 8
    failed = [
        {"name": "pay_balance", "ok": False, "result": "payment_declined: the card was declined"},
        {"name": "pay_balance", "ok": False, "result": "payment_declined: the card was declined"},
    ]
    flags = detector.detect("c", turns[:15], tool_events=failed, errors=["TimeoutError: x"])
    kinds = {f.kind: f.why for f in flags}
    assert "15 caller turns (limit 14)" in kinds["long_call"]
    assert "2 failed tool calls" in kinds["tool_failure"]
    assert "payment_declined" in kinds["tool_failure"]
    assert "TimeoutError" in kinds["error"]
    assert "the card was declined" not in kinds["tool_failure"]


def test_reasons_never_quote_caller_pii(detector: AnomalyDetector) -> None:
    reply = "Sure, I emailed jane.doe@example.com and texted 555 010 0002 about your free upgrade to platinum."
    (flag,) = detector.detect("c", [("hi", reply)])
    assert "example.com" not in flag.why
    assert "010 0002" not in flag.why
