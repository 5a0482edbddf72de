"""The router's answer to turns with nothing to route yet: greetings, bare urgency, complaints with no topic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.context import AgentContext
from agents.ports import Intent, IntentPrediction
from agents.prompts import Prompts
from agents.router import route, topicless
from agents.state import CallState
from orchestrator.config import PROMPTS_DIR

pytestmark = pytest.mark.unit

PROMPTS = Prompts.load(PROMPTS_DIR)


class Fixed:
    def __init__(self, intent: Intent, confidence: float) -> None:
        self.prediction = IntentPrediction(intent=intent, confidence=confidence)

    def classify(self, text: str) -> IntentPrediction:
        return self.prediction


def context(intent: Intent, confidence: float) -> AgentContext:
    return AgentContext(
        tenant=None,  # type: ignore[arg-type]  # the router never touches the tenant
        classifier=Fixed(intent, confidence),
        prompts=PROMPTS,
        models=None,
        clock=lambda: datetime(2026, 11, 24, 19, tzinfo=UTC),
    )


# Each with what the shipped classifier made of it: the readings that led to a refusal or a ZIP-code question.
@pytest.mark.parametrize(
    ("text", "intent", "confidence"),
    [
        ("Hello", "out_of_scope", 0.97),
        ("Hi, can you help me?", "support", 0.91),
        ("Good morning", "out_of_scope", 0.99),
        ("Hello, is this Northwind?", "out_of_scope", 0.9),
        ("Hey, how are you?", "out_of_scope", 0.9),
        ("hi there, I have a question", "out_of_scope", 0.92),
        ("Yes hello", "out_of_scope", 0.9),
        ("Can you help me?", "support", 0.8),
    ],
)
async def test_a_greeting_is_welcomed_never_refused(text: str, intent: Intent, confidence: float) -> None:
    update = await route(context(intent, confidence), CallState(utterance=text, turn=1))
    assert update["directive"] == "respond"
    assert update["reply"] == PROMPTS.reply("common.greet")
    assert "handoffs" not in update
    assert update["intent"] is None, "a greeting is no reading of intent, so a later unclear turn is no failure"


@pytest.mark.parametrize("text", ["It's urgent", "I need help right now", "This is urgent, please", "help me quickly"])
async def test_urgency_without_a_topic_asks_what_is_happening(text: str) -> None:
    update = await route(context("out_of_scope", 0.98), CallState(utterance=text, turn=1))
    assert update["reply"] == PROMPTS.reply("router.urgent")
    assert "failures" not in update


@pytest.mark.parametrize(
    ("text", "intent", "confidence"),
    [
        ("useless", "out_of_scope", 0.94),
        ("this is a joke", "out_of_scope", 0.98),
        ("nobody ever picks up the phone", "out_of_scope", 0.71),
        ("absolutely pathetic", "billing", 0.4),
    ],
)
async def test_a_complaint_with_no_topic_is_heard_not_refused(text: str, intent: Intent, confidence: float) -> None:
    update = await route(context(intent, confidence), CallState(utterance=text, turn=1))
    assert update["reply"] == PROMPTS.reply("router.complaint")
    assert update["intent"] == "escalation"
    assert "failures" not in update


async def test_a_complaint_about_a_topic_goes_to_that_topic() -> None:
    update = await route(context("billing", 0.93), CallState(utterance="This bill is ridiculous", turn=1))
    assert update["active"] == "billing"


@pytest.mark.parametrize(
    "text",
    [
        "hi, I'm calling about my bill",
        "hello, my internet is down",
        "good morning, I need to book a technician",
        "hi what's the weather like",
        "can you help me with my bill",
        "thanks",
        "yes",
    ],
)
def test_a_topic_or_a_plain_answer_is_no_opening(text: str) -> None:
    assert topicless(text) is None


async def test_out_of_scope_is_still_refused() -> None:
    update = await route(context("out_of_scope", 0.9), CallState(utterance="hi, what's the weather like?", turn=1))
    assert "not something I can help with" in update["reply"]
