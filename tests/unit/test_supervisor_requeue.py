"""The console's `requeue` override: the person who accepted an escalation is gone, so the caller hears hold lines."""

from __future__ import annotations

import pytest

from agents.context import AgentContext
from agents.prompts import Prompts
from agents.state import CallState
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


def accepted(**override: str) -> CallState:
    return CallState(turn=4, active="human", human_agent="sam", utterance="hello? anyone there?", override=override)


async def test_a_caller_whose_person_was_on_the_line_hears_nothing_from_the_ai() -> None:
    update = await supervise(context(), accepted())
    assert update["directive"] == "human"


async def test_after_a_requeue_the_caller_waits_for_the_next_person_with_hold_lines() -> None:
    update = await supervise(context(), accepted(kind="requeue", by="sam"))
    assert update["override"] is None
    assert update["human_agent"] is None
    assert update.get("active", "human") == "human"
    assert update["directive"] == "hold"


async def test_a_requeue_of_a_call_the_ai_has_changes_nothing() -> None:
    state = accepted(kind="requeue", by="sam")
    state["active"] = "billing"
    state["human_agent"] = None
    update = await supervise(context(), state)
    assert update["override"] is None
    assert "human_agent" not in update
    assert update["directive"] != "hold"
