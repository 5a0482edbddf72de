"""The console's `release` override: a call a human held goes back to the AI, never into silence."""

from __future__ import annotations

from typing import Any

import pytest

from agents.context import AgentContext
from agents.prompts import Prompts
from agents.state import CallState, Handoff
from agents.supervisor import supervise
from orchestrator.config import PROMPTS_DIR

pytestmark = pytest.mark.unit


def context() -> AgentContext:
    return AgentContext(
        tenant=None,  # type: ignore[arg-type]  # the override branches never touch the tenant
        classifier=None,  # type: ignore[arg-type]  # nor the classifier
        prompts=Prompts.load(PROMPTS_DIR),
        models=None,
    )


def held(*handoffs: Handoff, **extra: Any) -> CallState:
    return CallState(
        turn=3,
        active="human",
        utterance="hello?",
        handoffs=list(handoffs),
        override={"kind": "release", **extra},
    )


async def test_release_returns_to_the_specialist_the_human_took_over_from() -> None:
    state = held(
        Handoff(turn=1, from_agent="router", to_agent="billing", reason="intent", context=""),
        Handoff(turn=2, from_agent="billing", to_agent="human", reason="requested_human", context="summary"),
    )
    update = await supervise(context(), state)
    assert update["active"] == "billing"
    assert update["override"] is None
    assert update["directive"] != "hold"
    assert update["handoffs"][-1]["reason"] == "supervisor_release"
    assert update["handoffs"][-1]["from_agent"] == "human"
    assert update["interventions"][0]["reason"] == "release"


async def test_release_after_a_take_over_without_handoffs_goes_to_the_router() -> None:
    update = await supervise(context(), held())
    assert update["active"] == "router"
    assert update["task"] == {}


async def test_release_to_a_named_specialist() -> None:
    update = await supervise(context(), held(agent="scheduling"))
    assert update["active"] == "scheduling"


async def test_release_of_a_call_the_ai_still_has_changes_nothing() -> None:
    state = held()
    state["active"] = "support"
    update = await supervise(context(), state)
    assert "active" not in update
    assert update["override"] is None
