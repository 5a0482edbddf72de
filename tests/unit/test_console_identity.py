"""Which room participants are console users, whose joining and leaving the voice session reports."""

from __future__ import annotations

import pytest

from orchestrator.session.participants import console_user

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("identity", "username"), [("supervisor-sam", "sam"), ("admin-ada", "ada")])
def test_a_supervisor_or_an_admin_from_the_console_is_named_by_username(identity: str, username: str) -> None:
    assert console_user(identity) == username


@pytest.mark.parametrize("identity", ["sip_+15550100001", "caller-1", "agent-AJ_x", "hold-voice", "supervisor-", ""])
def test_anyone_else_in_the_room_is_not_a_console_user(identity: str) -> None:
    assert console_user(identity) is None
