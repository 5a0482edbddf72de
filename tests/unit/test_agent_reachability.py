"""What an agent worker says about reaching livekit-server: one line once away for the grace, one when back."""

from __future__ import annotations

import pytest

from orchestrator.worker.agent_worker import Reachability

pytestmark = pytest.mark.unit

AWAY = {"connected": False, "draining": False, "connecting": True}
BACK = {"connected": True, "draining": False, "connecting": False}


def test_away_is_said_once_after_the_grace_and_back_once_when_registered_again() -> None:
    reach = Reachability(5.0)
    assert [reach.step(**AWAY, now=t) for t in (0.0, 4.9, 5.0, 9.0)] == [None, None, "away", None]
    assert [reach.step(**BACK, now=t) for t in (10.0, 11.0)] == ["back", None]


def test_a_short_reconnect_and_a_worker_still_loading_its_models_say_nothing() -> None:
    reach = Reachability(5.0)
    starting = {"connected": False, "draining": False, "connecting": False}
    assert [reach.step(**starting, now=t) for t in (0.0, 30.0)] == [None, None]
    assert [reach.step(**AWAY, now=t) for t in (31.0, 33.0)] == [None, None]
    assert reach.step(**BACK, now=34.0) is None


def test_a_worker_stopping_without_ever_reaching_the_server_is_not_said_to_be_back() -> None:
    # It said it could not reach the server; told to stop, it drains: that is not "registered again: ready".
    reach = Reachability(5.0)
    assert [reach.step(**AWAY, now=t) for t in (0.0, 5.0)] == [None, "away"]
    draining = {"connected": False, "draining": True, "connecting": True}
    assert [reach.step(**draining, now=t) for t in (6.0, 7.0)] == [None, None]
