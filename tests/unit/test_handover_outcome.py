"""A call a supervisor took over ends handled_by_human: its own outcome, a success, counted apart in reports."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.results import is_first_contact_resolution, is_success, outcome_of

pytestmark = pytest.mark.unit

TAKE_OVER = {"turn": 3, "kind": "take_over", "reason": "supervisor", "detail": "sam"}
ACCEPTED = {"turn": 3, "kind": "take_over", "reason": "escalation", "detail": "kim"}


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        ({"human_agent": "sam", "interventions": [TAKE_OVER], "resolutions": ["billing:balance"]}, "handled_by_human"),
        # Sent back to the AI after the take-over: the AI's own outcome.
        ({"human_agent": None, "interventions": [TAKE_OVER], "resolutions": ["billing:pay"]}, "resolved"),
        # An escalation a person accepted stays an escalation.
        ({"human_agent": "kim", "interventions": [ACCEPTED], "outcome": "escalated"}, "escalated"),
        ({"resolutions": []}, "abandoned"),
        # An escalated phone caller the desk took by SIP.
        ({"outcome": "transferred", "escalation_reason": "requested_human"}, "transferred"),
    ],
)
def test_the_outcome_says_who_handled_the_call(state: dict[str, Any], outcome: str) -> None:
    assert outcome_of(state) == outcome


def test_a_transferred_call_is_a_success_and_an_escalation_but_not_a_first_contact_resolution() -> None:
    from orchestrator.report import fcr_in_scope, first_call_resolution

    assert is_success("transferred")
    assert not is_first_contact_resolution("transferred", ["billing:pay"])
    # Asked for a person: out of FCR's scope, as the same call waiting for the console is.
    assert not fcr_in_scope("transferred", "requested_human")
    assert fcr_in_scope("transferred", "frustration")

    class End:
        outcome, escalation_reason = "transferred", "frustration"

    assert first_call_resolution([End()]) == 0.0


def test_a_call_handled_by_a_person_is_a_success_but_not_a_first_contact_resolution_by_the_ai() -> None:
    assert is_success("handled_by_human")
    assert not is_success("handled_by_human", ["graph_error"])
    assert not is_first_contact_resolution("handled_by_human", ["billing:pay"])
