"""Whole text calls decided before any specialist: fraud reaches a person, greetings are welcomed, not refused."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from agents.ports import IntentPrediction
from orchestrator.providers.intent import load_classifier
from orchestrator.runtime import Services
from orchestrator.session.text import run_text_call

pytestmark = pytest.mark.flow

JAMES = "+15550100002"


@pytest.mark.parametrize(
    "first",
    ["Someone stole my identity", "My router was stolen last night", "There are fraudulent charges on my account"],
)
async def test_a_fraud_or_theft_report_reaches_a_person_at_once(services: Services, first: str) -> None:
    result = await run_text_call(services, [first, "hello?"], caller_id=JAMES)
    assert result.outcome == "escalated", [(t.caller, t.agent) for t in result.turns]
    assert result.escalation_reason == "fraud"
    assert result.handoffs[0]["to_agent"] == "human"
    assert result.handoffs[0]["reason"] == "fraud"
    (ticket,) = [t for t in await services.tenant.desk.waiting() if t.call_id == result.call_id]
    assert ticket.reason == "fraud"
    assert ticket.priority == 1
    assert "fraud, theft or identity theft" in ticket.summary
    # The second line is held for the person who takes the call, not answered by the AI.
    assert "member of our team" in result.turns[1].agent


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        ("I need to ring the fire brigade and the line is dead", "emergency"),
        ("somebody has been logging into my account who isn't me", "fraud"),
    ],
)
async def test_a_trigger_in_words_the_patterns_do_not_know_reaches_a_person_for_its_reason(
    services: Services, first: str, reason: str
) -> None:
    # The classifier's trigger head reads what the supervisor's patterns miss; the router alone would have handed
    # the emergency over as a complaint and the break-in to support.
    result = await run_text_call(services, [first, "hello?"], caller_id=JAMES)
    assert result.outcome == "escalated", [(t.caller, t.agent) for t in result.turns]
    assert result.escalation_reason == reason
    assert result.handoffs[0]["to_agent"] == "human"


class CountingClassifier:
    """The shipped classifier, keeping the words of every turn it reads."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def classify(self, text: str) -> IntentPrediction:
        self.read.append(text)
        return load_classifier().classify(text)


async def test_a_routed_turn_is_embedded_once_for_the_router_and_the_trigger_head(
    open_services: Callable[..., Any],
) -> None:
    counting = CountingClassifier()
    services = await open_services(classifier=counting)
    try:
        turns = ["Hi, can you help me?", "What's my balance?"]
        result = await run_text_call(services, turns, caller_id=JAMES)
    finally:
        await services.aclose()
    assert [h["to_agent"] for h in result.handoffs] == ["billing"]
    # The supervisor asked the head about both turns (its patterns read nothing in them): one reading each.
    assert Counter(counting.read) == Counter(turns)


async def test_a_product_called_fire_is_support_not_an_emergency(services: Services) -> None:
    result = await run_text_call(services, ["My Fire TV stick keeps buffering"], caller_id=JAMES)
    assert result.escalation_reason is None
    assert result.handoffs[0]["to_agent"] == "support"
    assert not await services.tenant.desk.waiting()


@pytest.mark.parametrize(
    ("opening", "answer"),
    [
        ("Hi, can you help me?", "How can I help you today?"),
        ("Hello, is this Northwind?", "How can I help you today?"),
        ("Good morning", "How can I help you today?"),
        ("I need help right now", "What's happening?"),
        ("useless", "Tell me what's gone wrong"),
    ],
)
async def test_an_opening_with_no_topic_is_answered_and_the_next_turn_routed(
    services: Services, opening: str, answer: str
) -> None:
    result = await run_text_call(services, [opening, "What's my balance?"], caller_id=JAMES)
    assert answer in result.turns[0].agent
    assert "not something I can help with" not in result.turns[0].agent
    assert [h["to_agent"] for h in result.handoffs] == ["billing"]
    assert result.escalation_reason is None
