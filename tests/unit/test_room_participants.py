"""Who the session takes for the caller in a room that holds others too (console users, the hold voice)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from livekit import rtc

from orchestrator.session.participants import find_caller, may_be_caller

pytestmark = pytest.mark.unit

SIP = rtc.ParticipantKind.PARTICIPANT_KIND_SIP
STANDARD = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
AGENT = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT


@dataclass
class Someone:
    """What `find_caller` reads of a room participant."""

    identity: str
    kind: Any


@dataclass
class Room:
    joined: list[Someone] = field(default_factory=list)

    @property
    def remote_participants(self) -> dict[str, Someone]:
        return {p.identity: p for p in self.joined}


def caller_in(*joined: Someone) -> str | None:
    found = find_caller(cast(rtc.Room, Room(list(joined))))
    return None if found is None else found.identity


def test_a_supervisor_who_was_in_the_room_first_is_not_taken_for_the_caller() -> None:
    assert caller_in(Someone("supervisor-ada", STANDARD), Someone("caller-1", STANDARD)) == "caller-1"
    assert caller_in(Someone("admin-sam", STANDARD), Someone("sip_+15550100001", SIP)) == "sip_+15550100001"


def test_a_phone_calls_caller_is_its_sip_participant_whoever_joined_before() -> None:
    assert caller_in(Someone("caller-x", STANDARD), Someone("sip_+15550100001", SIP)) == "sip_+15550100001"


def test_a_room_of_only_console_users_the_hold_voice_and_agents_has_no_caller() -> None:
    others = [Someone("supervisor-ada", STANDARD), Someone("hold-lk-RM_1", STANDARD), Someone("agent-AJ_1", AGENT)]
    assert caller_in(*others) is None
    assert not any(may_be_caller(cast(rtc.RemoteParticipant, p)) for p in others)


def test_a_browser_caller_from_the_talk_page_is_a_caller() -> None:
    assert caller_in(Someone("caller-sam-ab12cd", STANDARD)) == "caller-sam-ab12cd"
