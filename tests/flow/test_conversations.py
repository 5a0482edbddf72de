"""Ordinary calls that used to go wrong: numbers read for the ear, retries that say something new, callers
identified by what they naturally give, and a new request in the same breath as an answer."""

from __future__ import annotations

import pytest

from evals.replies import check_replies, default_reply_policy
from orchestrator.results import CallResult
from orchestrator.runtime import Services
from orchestrator.session.text import run_text_call

pytestmark = pytest.mark.flow

MARIA, JAMES, AISHA, TOM = "+15550100001", "+15550100002", "+15550100003", "+15550100004"


async def talk(services: Services, *turns: str, caller_id: str | None = None) -> CallResult:
    return await run_text_call(services, turns, caller_id=caller_id)


def replies(result: CallResult) -> list[str]:
    return [t.agent for t in result.turns]


def broken_rules(result: CallResult) -> list[tuple[int, str]]:
    turns = [{"caller": t.caller, "agent": t.agent} for t in result.turns]
    return [(f.turn, f.rule) for f in check_replies(default_reply_policy(), turns, closed_by_caller=False)]


def tools_ok(result: CallResult) -> list[str]:
    return [e["name"] for e in result.tool_events if e["ok"]]


# ------------------------------------------------------------------ numbers for the ear


@pytest.mark.parametrize(
    ("caller", "turns"),
    [
        (JAMES, ["What's my balance?", "10453", "yes", "50 dollars"]),
        (AISHA, ["I was charged for a premium channel pack I never ordered", "11375"]),
        (MARIA, ["Can I reschedule my technician appointment?", "10027", "the first one", "yes"]),
        (TOM, ["Is there an outage? My internet is down.", "11215"]),
    ],
)
async def test_amounts_and_times_are_said_in_words(services: Services, caller: str, turns: list[str]) -> None:
    result = await talk(services, *turns, caller_id=caller)
    assert broken_rules(result) == [], replies(result)


async def test_a_balance_is_read_as_dollars_and_cents(services: Services) -> None:
    result = await talk(services, "What's my balance?", "10453", caller_id=JAMES)
    assert "one hundred forty-four dollars and ninety-eight cents" in result.turns[1].agent
