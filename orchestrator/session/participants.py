"""Who is who in a call's room: the caller, console users, and the hold voice.

A call's room holds more than its caller. A supervisor may listen in from the console before the agent
arrives, the hold voice may still be leaving, and a SIP leg may be added later. livekit's RoomIO takes the
first standard or SIP participant it sees for the user; left to itself it can take a supervisor for the
caller, listen to their silence and end the call as a dead line. The session links the caller named here.
"""

from __future__ import annotations

from livekit import rtc

# The identity prefixes of a console user in a room (`<role>-<username>`, the console's join tokens).
CONSOLE_ROLES = ("supervisor-", "admin-")
# The identity prefix of the voice that plays the hold message into a waiting call's room.
HOLD_VOICE_PREFIX = "hold-"

_SIP = rtc.ParticipantKind.PARTICIPANT_KIND_SIP
_STANDARD = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD


def console_user(identity: str) -> str | None:
    """The console username a room participant's identity names, None for anyone else (caller, agent, hold voice)."""
    for prefix in CONSOLE_ROLES:
        if identity.startswith(prefix) and len(identity) > len(prefix):
            return identity.removeprefix(prefix)
    return None


def may_be_caller(participant: rtc.RemoteParticipant) -> bool:
    """True for a SIP participant, or a standard one that is neither a console user nor the hold voice."""
    if participant.kind == _SIP:
        return True
    return (
        participant.kind == _STANDARD
        and console_user(participant.identity) is None
        and not participant.identity.startswith(HOLD_VOICE_PREFIX)
    )


def sip_caller(room: rtc.Room) -> rtc.RemoteParticipant | None:
    """The phone caller's participant (the first LiveKit SIP made) in ``room``, if one is there."""
    return next((p for p in room.remote_participants.values() if p.kind == _SIP), None)


def find_caller(room: rtc.Room) -> rtc.RemoteParticipant | None:
    """The call's caller among those in ``room``: its SIP participant when there is one, else the first other caller.

    A phone call's caller is the SIP participant LiveKit SIP made for it, whoever joined before it.
    """
    if (phone := sip_caller(room)) is not None:
        return phone
    return next((p for p in room.remote_participants.values() if may_be_caller(p)), None)
