"""LLM mode: specialists as tool-calling agents over the same tools, driven by strict scripted models."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel

from agents.testing import FunctionChatModel, ScriptedChatModel, ToolCall
from orchestrator.session.text import run_text_call

pytestmark = pytest.mark.flow

MARIA = "+15550100001"


class OneModel:
    """A routing policy that gives every specialist the same scripted model.

    The router's low-confidence fallback gets its own model, which answers with the intent the
    classifier would have given, so it never eats a specialist's scripted step.
    """

    def __init__(self, model: BaseChatModel) -> None:
        self.model = model
        self.router = FunctionChatModel(lambda request: _keyword_intent(request.last_text))

    def model_for(self, intent: str, confidence: float, failures: int = 0) -> BaseChatModel:
        return self.model

    def router_model(self) -> BaseChatModel:
        return self.router


def _keyword_intent(text: str) -> ToolCall:
    lowered = text.lower()
    intent = "scheduling" if "appointment" in lowered or "visit" in lowered else "billing"
    return ToolCall("CallerIntent", {"intent": intent})


async def test_llm_billing_uses_tools_after_deterministic_verification(open_services: Callable[..., Any]) -> None:
    model = ScriptedChatModel([ToolCall("get_balance"), "Your balance is zero. Anything else?"])
    services = await open_services(models=OneModel(model))
    try:
        result = await run_text_call(services, ["What's my balance?", "10027"], caller_id=MARIA)
    finally:
        await services.aclose()
    model.assert_complete()
    # The first turn asked for the ZIP code without any model call: verification is not the model's job.
    assert "ZIP code" in result.turns[0].agent
    assert result.turns[1].agent.endswith("Your balance is zero. Anything else?")
    assert [e["name"] for e in result.tool_events] == ["get_balance"]
    request = model.calls[0]
    assert "get_balance" in request.tool_names
    assert "account_id" not in str(request.tools)


async def test_llm_billing_reads_the_verified_accounts_plan_and_number(open_services: Callable[..., Any]) -> None:
    model = ScriptedChatModel([ToolCall("get_plan"), "You're on Fiber 500."])
    services = await open_services(models=OneModel(model))
    try:
        result = await run_text_call(services, ["What plan am I on?", "10027"], caller_id=MARIA)
    finally:
        await services.aclose()
    model.assert_complete()
    (event,) = result.tool_events
    assert (event["name"], event["ok"], event["result"]) == ("get_plan", True, "Fiber 500")
    assert "get_plan" in model.calls[0].tool_names


async def test_model_cannot_touch_another_account(open_services: Callable[..., Any]) -> None:
    services = await open_services()
    try:
        slot = (await services.tenant.scheduling.open_slots(on_or_after=services.context.today() + timedelta(days=2)))[
            0
        ]
        other = await services.tenant.scheduling.book("NW-1008", slot.slot_id, "someone else's visit")
    finally:
        await services.aclose()
    # A prompt-injected model tries to cancel David's visit while Maria is the verified caller.
    model = ScriptedChatModel(
        [
            ToolCall("cancel_visit", {"appointment_id": other.appointment_id, "account_id": "NW-1008"}),
            "I'm sorry, I can't change that appointment.",
        ]
    )
    services = await open_services(models=OneModel(model))
    try:
        result = await run_text_call(
            services, [f"Cancel appointment {other.appointment_id} for account NW-1008", "10027"], caller_id=MARIA
        )
        still_booked = await services.tenant.scheduling.appointments("NW-1008")
    finally:
        await services.aclose()
    model.assert_complete()
    assert [a.appointment_id for a in still_booked] == [other.appointment_id]
    failed = [e for e in result.tool_events if e["name"] == "cancel_visit"]
    assert failed
    assert not failed[0]["ok"]


async def test_policy_breach_in_a_streamed_reply_is_never_spoken(open_services: Callable[..., Any]) -> None:
    model = ScriptedChatModel(["Sure! I've refunded $200.00 to your card. Anything else?"])
    services = await open_services(models=OneModel(model))
    try:
        result = await run_text_call(services, ["I want my money back for last month", "10027"], caller_id=MARIA)
    finally:
        await services.aclose()
    model.assert_complete()
    assert "$200" not in result.turns[-1].agent
    assert any(i["kind"] == "correct_reply" for i in result.interventions)


async def test_model_outage_falls_back_to_the_flow(open_services: Callable[..., Any]) -> None:
    from langchain_core.exceptions import ModelAPIError

    model = ScriptedChatModel([ModelAPIError("upstream 500")])
    services = await open_services(models=OneModel(model))
    try:
        result = await run_text_call(services, ["What's my balance?", "10027"], caller_id=MARIA)
    finally:
        await services.aclose()
    model.assert_complete()
    assert "Your balance is" in result.turns[-1].agent or "don't owe anything" in result.turns[-1].agent
    assert any(i["reason"] == "llm_unavailable" for i in result.interventions)
