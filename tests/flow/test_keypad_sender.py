"""Keyed digits in a call's room count only when the call's SIP caller keyed them, never anyone else in the room.

The room is the livekit SDK's own `rtc.Room`, fed the events its FFI delivers (participants joining, SIP DTMF
data packets), so the call sees each key's sender as it would in a live room.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import AsyncIterator

import pytest
from livekit import rtc
from livekit.rtc._proto import participant_pb2 as proto_participant
from livekit.rtc._proto import room_pb2 as proto_room

from orchestrator.config import load_settings
from orchestrator.devstack.phone_caller import DTMF_CODES
from orchestrator.providers.tts import piper_available
from orchestrator.providers.voice import VoiceStack, open_voice
from orchestrator.runtime import Services
from orchestrator.session.room import VoiceCall

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(
        not piper_available() and shutil.which("flite") is None,
        reason="no local TTS: install Debian flite (apt-get install -y flite) or the piper extra",
    ),
]

Kind = proto_participant.ParticipantKind
CALLER = "sip_+15550100001"
SUPERVISOR = "supervisor-ada"
HOLD_VOICE = "hold-voice"
SECOND_LEG = "sip_+15550177777"


@pytest.fixture
async def voice(services: Services) -> AsyncIterator[VoiceStack]:
    stack = await open_voice(load_settings(data_dir=services.settings.data_dir), phrases=services.prompts.phrases())
    yield stack
    await stack.aclose()


def join(room: rtc.Room, identity: str, kind: proto_participant.ParticipantKind.ValueType) -> None:
    attributes = {"sip.phoneNumber": identity.removeprefix("sip_")} if kind == Kind.PARTICIPANT_KIND_SIP else {}
    info = proto_participant.ParticipantInfo(identity=identity, kind=kind, attributes=attributes)
    event = proto_room.ParticipantConnected(info=proto_participant.OwnedParticipant(info=info))
    room._on_room_event(proto_room.RoomEvent(participant_connected=event))


def keys(room: rtc.Room, identity: str, digits: str) -> None:
    for digit in digits:
        packet = proto_room.DataPacketReceived(
            participant_identity=identity, sip_dtmf=proto_room.SipDTMF(code=DTMF_CODES[digit], digit=digit)
        )
        room._on_room_event(proto_room.RoomEvent(data_packet_received=packet))


async def test_only_the_sip_callers_keys_make_an_entry(
    services: Services, voice: VoiceStack, caplog: pytest.LogCaptureFixture
) -> None:
    room = rtc.Room()
    call = VoiceCall(services, voice, call_id=f"call-{uuid.uuid4().hex[:10]}", room=room)
    assert call.keypad is not None
    # The agent is speaking: finished entries are held, in order, where the test can read them.
    call.keypad.set_busy(True)
    try:
        join(room, CALLER, Kind.PARTICIPANT_KIND_SIP)
        join(room, SUPERVISOR, Kind.PARTICIPANT_KIND_STANDARD)
        join(room, HOLD_VOICE, Kind.PARTICIPANT_KIND_AGENT)
        join(room, SECOND_LEG, Kind.PARTICIPANT_KIND_SIP)
        with caplog.at_level(logging.INFO, logger="orchestrator.session.telephony"):
            keys(room, SUPERVISOR, "4242#")
            keys(room, HOLD_VOICE, "7#")
            keys(room, CALLER, "10")
            keys(room, SECOND_LEG, "55#")  # a SIP leg added later is not the caller either
            keys(room, CALLER, "027#")
            keys(room, SUPERVISOR, "1#")
        assert call.keypad.pending == ["10027"]
        ignored = [r.getMessage() for r in caplog.records if "not the caller" in r.getMessage()]
        # One line for each other sender, whatever it keyed; no digits and no identity in it.
        assert len(ignored) == 3, ignored
        assert not any(ch.isdigit() for line in ignored for ch in line), ignored
        assert not any(name in line for line in ignored for name in (SUPERVISOR, HOLD_VOICE, SECOND_LEG))
    finally:
        await call.aclose()


async def test_keys_before_any_sip_participant_or_from_the_server_count_for_nobody(
    services: Services, voice: VoiceStack
) -> None:
    room = rtc.Room()
    call = VoiceCall(services, voice, call_id=f"call-{uuid.uuid4().hex[:10]}", room=room)
    assert call.keypad is not None
    call.keypad.set_busy(True)
    try:
        join(room, SUPERVISOR, Kind.PARTICIPANT_KIND_STANDARD)
        keys(room, SUPERVISOR, "10027#")
        keys(room, "", "10027#")  # a server SDK's DTMF has no participant
        join(room, CALLER, Kind.PARTICIPANT_KIND_SIP)
        keys(room, CALLER, "5550100001#")
        assert call.keypad.pending == ["5550100001"]
    finally:
        await call.aclose()
