"""The handover note on a ticket: a model writes it from the transcript, else it is stated from the call's state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.exceptions import ModelAPIError
from langchain_core.language_models import BaseChatModel

from agents.testing import ScriptedChatModel
from orchestrator.runtime import Services
from orchestrator.session.text import run_text_call

pytestmark = pytest.mark.flow

MARIA = "+15550100001"
NOTE = "Reason: asked for a person. Verified: unknown. Tried: nothing yet. Wants: a person about a bill."


class SummaryModel:
    """A routing policy whose every model is the scripted one (the call escalates before anything routes)."""

    def __init__(self, model: BaseChatModel) -> None:
        self.model = model

    def model_for(self, intent: str, confidence: float, failures: int = 0) -> BaseChatModel:
        return self.model

    def router_model(self) -> BaseChatModel:
        return self.model


async def _ticket_summary(services: Services, call_id: str) -> str:
    (ticket,) = [t for t in await services.tenant.desk.waiting() if t.call_id == call_id]
    return ticket.summary


async def test_without_a_model_the_note_states_reason_verification_what_was_tried_and_the_want(
    services: Services,
) -> None:
    result = await run_text_call(
        services, ["What's my balance?", "10027", "this is useless, I want to talk to a real person"], caller_id=MARIA
    )
    summary = await _ticket_summary(services, result.call_id)
    assert summary.startswith("Reason: the caller asked for a person.")
    assert "Verified: Maria Gonzalez, verified on account NW-1001." in summary
    assert "Tried: handled by billing; get balance" in summary
    assert "Wants: help with a bill or a payment." in summary
    # Stated from the call's state, not quoted from what the caller said.
    assert "balance?" not in summary
    assert "useless" not in summary
    assert '"' not in summary


async def test_with_a_model_the_note_is_written_from_the_transcript(open_services: Callable[..., Any]) -> None:
    model = ScriptedChatModel([NOTE])
    services = await open_services(models=SummaryModel(model))
    try:
        result = await run_text_call(services, ["I want to talk to a real person about my bill"], caller_id=MARIA)
        summary = await _ticket_summary(services, result.call_id)
    finally:
        await services.aclose()
    model.assert_complete()
    assert summary == NOTE
    (request,) = model.calls
    assert "handover note" in request.messages[0].text
    assert "Caller: I want to talk to a real person about my bill" in request.last_text
    assert "Reason: the caller asked for a person." in request.last_text


async def test_a_model_that_fails_falls_back_to_the_stated_note(open_services: Callable[..., Any]) -> None:
    model = ScriptedChatModel([ModelAPIError("overloaded")])
    services = await open_services(models=SummaryModel(model))
    try:
        result = await run_text_call(services, ["I want to talk to a real person"], caller_id=MARIA)
        summary = await _ticket_summary(services, result.call_id)
    finally:
        await services.aclose()
    model.assert_complete()
    assert result.outcome == "escalated"
    assert summary.startswith("Reason: the caller asked for a person. Verified: not verified yet.")
