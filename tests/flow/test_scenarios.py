"""Every demo scenario reaches its expected outcome through its expected first specialist."""

from __future__ import annotations

import pytest

from orchestrator.runtime import Services
from orchestrator.scenarios import SCENARIOS, Scenario
from orchestrator.session.text import run_text_call

pytestmark = pytest.mark.flow


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_scenario(services: Services, scenario: Scenario) -> None:
    result = await run_text_call(services, scenario.turns, caller_id=scenario.caller_id)
    transcript = [(t.caller, t.agent) for t in result.turns]
    assert result.outcome == scenario.expect_outcome, transcript
    first = result.handoffs[0]["to_agent"] if result.handoffs else "router"
    expected_first = "human" if scenario.expect_route == "escalation" else scenario.expect_route
    assert first == expected_first, transcript
    assert result.turns[0].intent == scenario.expect_route
    assert not result.errors
