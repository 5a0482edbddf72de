"""The router node: local classifier first, the LLM only when unsure, specialists keep their answers."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel

from agents.context import AgentContext, IntentPrefetch
from agents.ports import Intent, IntentPrediction
from agents.prompts import Prompts
from agents.router import intent_key, route, speculate
from agents.state import CallState, Task
from agents.supervisor import MAX_UTTERANCE_CHARS
from agents.testing import ScriptedChatModel, ToolCall
from orchestrator.config import PROMPTS_DIR

pytestmark = pytest.mark.unit


class Fixed:
    def __init__(self, intent: Intent, confidence: float) -> None:
        self.prediction = IntentPrediction(intent=intent, confidence=confidence)

    def classify(self, text: str) -> IntentPrediction:
        return self.prediction


class Models:
    def __init__(self, router: BaseChatModel) -> None:
        self.router = router

    def model_for(self, intent: str, confidence: float, failures: int = 0) -> BaseChatModel:
        raise AssertionError("no specialist model in these tests")

    def router_model(self) -> BaseChatModel:
        return self.router


def context(intent: Intent, confidence: float, models: Any = None) -> AgentContext:
    return AgentContext(
        tenant=None,  # type: ignore[arg-type]  # the router never touches the tenant
        classifier=Fixed(intent, confidence),
        prompts=Prompts.load(PROMPTS_DIR),
        models=models,
        clock=lambda: datetime(2026, 11, 24, 19, tzinfo=UTC),
    )


async def test_confident_reading_hands_off_without_a_model() -> None:
    model = ScriptedChatModel([])
    update = await route(context("billing", 0.97, Models(model)), CallState(utterance="what's my balance", turn=1))
    assert update["active"] == "billing"
    assert update["handoffs"][0]["reason"] == "intent:billing"
    model.assert_complete()


async def test_unsure_reading_asks_the_llm() -> None:
    model = ScriptedChatModel([ToolCall("CallerIntent", {"intent": "support"})])
    update = await route(context("billing", 0.3, Models(model)), CallState(utterance="the thing is broken", turn=1))
    assert update["active"] == "support"
    assert "routed by llm" in update["handoffs"][0]["context"]
    # The label set goes out as the one tool the model must call.
    [request] = model.calls
    assert request.tool_names == ("CallerIntent",)
    model.assert_complete()


@pytest.mark.parametrize(
    "answer",
    ["support", ToolCall("CallerIntent", {"intent": "refunds"}), ToolCall("CallerIntent", {})],
    ids=["prose", "label-outside-the-set", "no-label"],
)
async def test_an_llm_answer_that_is_no_label_leaves_the_classifiers_reading(answer: str | ToolCall) -> None:
    model = ScriptedChatModel([answer])
    update = await route(context("billing", 0.3, Models(model)), CallState(utterance="the thing is broken", turn=1))
    # As with no model at all: the reading stays unsure, so the caller is asked.
    assert update["directive"] == "respond"
    assert "right place" in update["reply"]
    assert "handoffs" not in update
    model.assert_complete()


async def test_unsure_without_llm_asks_the_caller() -> None:
    update = await route(context("billing", 0.3), CallState(utterance="the thing", turn=1))
    assert update["directive"] == "respond"
    assert "right place" in update["reply"]


async def test_answer_to_a_pending_question_stays_and_costs_no_model_call() -> None:
    model = ScriptedChatModel([])
    state = CallState(utterance="yes", turn=3, active="billing", task=Task(name="pay", awaiting="confirm"))
    update = await route(context("out_of_scope", 0.2, Models(model)), state)
    assert update["intent"] == "billing"
    assert "handoffs" not in update
    model.assert_complete()


async def test_confident_topic_change_hands_off() -> None:
    state = CallState(utterance="can I book a technician", turn=4, active="billing", task=Task(name="balance"))
    update = await route(context("scheduling", 0.95), state)
    assert update["active"] == "scheduling"
    assert update["handoffs"][0]["reason"] == "topic_change"


async def test_out_of_scope_gets_a_polite_answer() -> None:
    update = await route(context("out_of_scope", 0.9), CallState(utterance="what's the weather", turn=1))
    assert update["directive"] == "respond"
    assert "not something I can help with" in update["reply"]


class Counting(Fixed):
    def __init__(self, intent: Intent, confidence: float) -> None:
        super().__init__(intent, confidence)
        self.seen: list[str] = []
        self.classified = threading.Event()

    def classify(self, text: str) -> IntentPrediction:
        self.seen.append(text)
        self.classified.set()
        return self.prediction


async def test_a_speculated_classification_is_the_one_route_uses() -> None:
    ctx = context("billing", 0.97)
    counting = Counting("billing", 0.97)
    ctx.classifier = counting
    ctx.intents = IntentPrefetch(counting)
    words = "what's my balance " * 100  # longer than the graph keeps: the key must match what route sees
    speculate(ctx, "call-1", words)
    # The classifier runs in a worker thread, before the node is reached.
    assert await asyncio.to_thread(counting.classified.wait, 10)
    state = CallState(utterance=words[:MAX_UTTERANCE_CHARS], turn=1, call_id="call-1")
    update = await route(ctx, state)
    assert update["active"] == "billing"
    assert counting.seen == [words[:MAX_UTTERANCE_CHARS]], "classified once, ahead of the node, and reused"
    await route(ctx, state)  # nothing left over: a later turn classifies afresh
    assert len(counting.seen) == 2


async def test_short_answers_are_not_speculated_but_route_still_classifies_a_short_request() -> None:
    ctx = context("billing", 0.97)
    counting = Counting("billing", 0.97)
    ctx.classifier = counting
    ctx.intents = IntentPrefetch(counting)
    answers = ("10453", "yes please", "the second one", "what's my balance")
    for answer in answers:
        speculate(ctx, "call-2", answer)
    assert not any(ctx.intents.started(intent_key("call-2", a)) for a in answers), "short: not classified ahead"
    # A short request that does reach `route` (nothing pending) is classified there.
    update = await route(ctx, CallState(utterance="what's my balance", turn=1, call_id="call-2"))
    assert update["active"] == "billing"
    assert counting.seen == ["what's my balance"]
    # A longer one is.
    speculate(ctx, "call-2", "I need to move my technician visit")
    assert ctx.intents.started(intent_key("call-2", "I need to move my technician visit"))
    await ctx.intents.result(intent_key("call-2", "I need to move my technician visit"))


async def test_no_classifier_while_the_caller_answers_a_question() -> None:
    ctx = context("billing", 0.97)
    counting = Counting("out_of_scope", 0.2)
    ctx.classifier = counting
    ctx.intents = IntentPrefetch(counting)
    state = CallState(utterance="yes", turn=3, active="billing", task=Task(name="pay", awaiting="confirm"))
    await route(ctx, state)
    assert counting.seen == []
