"""The router's answer to turns with nothing to route yet: greetings, bare urgency, complaints with no topic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.context import AgentContext
from agents.ports import Intent, IntentPrediction
from agents.prompts import Prompts
from agents.router import introduction, route, topicless, without_introduction
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


# ------------------------------------------------------------------ who the caller is, before what they want


@pytest.mark.parametrize(
    ("text", "first_name"),
    [
        ("hi, it's Aisha Khan, zip 11375", "Aisha"),
        ("Hello, this is James Carter", "James"),
        ("Good morning, my name is Maria Gonzalez", "Maria"),
        ("Hi, account number N W one zero zero three", ""),
        ("hi my zip code is 10453", ""),
        ("It's Robert Chen speaking", "Robert"),
    ],
)
async def test_an_introduction_alone_is_welcomed_by_name_and_kept_for_verification(text: str, first_name: str) -> None:
    assert introduction(text) == first_name
    update = await route(context("out_of_scope", 0.58), CallState(utterance=text, turn=1))
    assert update["introduced"] == text
    assert update["directive"] == "respond"
    expected = PROMPTS.reply("common.greet_named", name=first_name) if first_name else PROMPTS.reply("common.greet")
    assert update["reply"] == expected


@pytest.mark.parametrize(
    "text",
    [
        "absolutely pathetic",  # two words, but a verdict: no lead-in makes them a name
        "it's James Carter, what's my balance?",  # an introduction with a request is routed, not welcomed
        "my internet is down",
        "I'm calling about my bill",
        "the late fee of 15 dollars",
    ],
)
def test_a_turn_with_something_to_route_is_no_introduction(text: str) -> None:
    assert introduction(text) is None


@pytest.mark.parametrize(
    ("text", "classified"),
    [
        ("I'm James Carter, what's my balance?", "what's my balance"),
        ("What's my balance? It's Aisha Khan, zip code 11375", "What's my balance"),
        ("my internet is down", "my internet is down"),
        ("hi, it's Aisha Khan, zip 11375", "hi, it's Aisha Khan, zip 11375"),  # nothing else: the whole turn
    ],
)
def test_the_classifier_reads_the_request_without_the_introduction(text: str, classified: str) -> None:
    assert without_introduction(text) == classified
