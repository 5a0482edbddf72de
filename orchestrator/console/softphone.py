"""The console's softphone: LiveKit tokens to listen in on, barge into or join a call, and to call the agent."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

from livekit.api import AccessToken, RoomConfiguration

from orchestrator.console.auth import Principal
from orchestrator.console.room_tokens import TOKEN_TTL, JoinMode, console_identity, room_token, speaker_grants
from orchestrator.console.service import Console
from orchestrator.web.errors import ApiError

# Rooms whose names start with it are calls (the webhook's default room prefix).
CALL_ROOM_PREFIX = "call-"
# The call id of a LiveKit room (`call_id_for_room`): only calls that have a room can be joined.
_ROOM_CALL = re.compile(r"lk-")
# What a browser caller may call themselves: a number (to be a seeded customer), or nothing.
CALLER_NUMBER = re.compile(r"\+?[0-9][0-9 ().-]{3,30}")


@dataclass(frozen=True)
class Join:
    """How a browser joins a room: the server's URL, the room, a token, and the call (once known)."""

    url: str
    room: str
    token: str
    identity: str
    mode: str
    call_id: str = ""


def public_url(console: Console) -> str | None:
    """The LiveKit URL browsers connect to, None without LiveKit."""
    return console.settings.livekit_public_url or console.settings.livekit_url


async def join_call(console: Console, who: Principal, call_id: str, mode: JoinMode) -> Join:
    """A token for the live call's room, for ``mode``.

    ``listen``: any console user, hidden and receive-only; the call stays with whoever has it. ``barge``: the
    user takes the call over (the AI stays silent while a person talks, as with a take-over) and publishes a
    microphone. ``escalation``: only the user who accepted the call's escalation. Both need a person at the
    console (a session): an API token has no microphone.

    Raises:
        ApiError: 404 no such call; 409 the call ended, has no room, or someone else holds it; 403 a bearer
            token asking to speak, or an escalation the user did not accept; 409 without LiveKit.
    """
    url = public_url(console)
    call = await console.feed.get(call_id)
    refused = None
    if call is None:
        refused = ApiError(404, "call_not_found", f"no live or recent call {call_id!r}")
    elif call.status != "live":
        refused = ApiError(409, "call_ended", f"call {call_id!r} has ended; only a live call can be joined")
    elif not _ROOM_CALL.match(call_id) or not call.room:
        refused = ApiError(409, "no_room", f"call {call_id!r} is not in a LiveKit room, so there is nothing to join")
    elif url is None:
        refused = ApiError(409, "no_livekit", "LiveKit is not configured (LIVEKIT_URL), so calls cannot be joined")
    elif mode != "listen" and who.via != "session":
        refused = ApiError(403, "forbidden", "speaking on a call needs a person at the console, not an API token")
    elif mode == "escalation" and (call.control_mode != "escalation" or call.controller != who.username):
        refused = (
            ApiError(403, "not_your_escalation", f"{call.controller} accepted this call's escalation, not you")
            if call.control_mode == "escalation"
            else ApiError(409, "not_accepted", "nobody has accepted an escalation of this call; accept it first")
        )
    if refused is not None:
        await console.audit.record(who, f"join_{mode}", call_id=call_id, outcome="refused", detail=refused.message)
        raise refused
    assert call is not None  # refused above otherwise
    assert url is not None
    joined_now = mode == "escalation"
    if mode == "barge" and call.controller != who.username:
        # Refused (409) when someone else holds the call, and audited as a take-over from the page is.
        try:
            await console.take_over(who, call_id)
        except ApiError as exc:
            await console.audit.record(who, "join_barge", call_id=call_id, outcome="refused", detail=exc.message)
            raise
        joined_now = True
    identity = console_identity(who)
    token = room_token(console.settings, who, call.room, mode)
    await console.audit.record(who, f"join_{mode}", call_id=call_id, detail=call.room)
    if joined_now:
        what = "joined the call with a microphone" if mode == "escalation" else "barged in with a microphone"
        await console.feed.append(call_id, "event", who.username, f"{who.username} {what}.")
    return Join(url=url, room=call.room, token=token, identity=identity, mode=mode, call_id=call_id)


async def talk(console: Console, who: Principal, caller_id: str = "") -> Join:
    """A new call from the browser to the agent: a call room, and a caller token whose join creates it.

    The room's creation is the call: the server's ``room_started`` webhook admits it into the queue and a worker
    dispatches the agent, as for any WebRTC caller. The caller's join creates the room, so the call is admitted
    only once its caller is in it (an agent never waits in a room for a browser still connecting). The call id
    is ``lk-<room sid>``, which the browser learns once it is in the room.

    Args:
        who: The console user calling.
        caller_id: A number to call as (a seeded customer's, to be verified by the flows); else the user.

    Raises:
        ApiError: 422 a caller id that is not a number; 409 without LiveKit.
    """
    url = public_url(console)
    caller_id = " ".join(caller_id.split())
    if caller_id and not CALLER_NUMBER.fullmatch(caller_id):
        await console.audit.record(who, "talk", outcome="refused", detail=f"caller id {caller_id[:40]!r}")
        raise ApiError(422, "invalid_request", "caller_id: a phone number (digits, +, spaces, dashes), or nothing")
    if url is None:
        await console.audit.record(who, "talk", outcome="refused", detail="no LiveKit")
        raise ApiError(409, "no_livekit", "LiveKit is not configured (LIVEKIT_URL), so the agent cannot be called")
    room = f"{CALL_ROOM_PREFIX}console-{secrets.token_hex(6)}"
    identity = f"caller-{who.username}-{secrets.token_hex(3)}"
    metadata = {"caller_id": caller_id or f"console:{who.username}", "console_user": who.username}
    settings = console.settings
    token = (
        AccessToken(settings.livekit_api_key, settings.livekit_api_secret.get_secret_value())
        .with_identity(identity)
        .with_name(who.username)
        .with_ttl(TOKEN_TTL)
        .with_grants(speaker_grants(room))
        .with_room_config(RoomConfiguration(metadata=json.dumps(metadata)))
        .to_jwt()
    )
    await console.audit.record(who, "talk", detail=f"room {room} as {metadata['caller_id']}")
    return Join(url=url, room=room, token=token, identity=identity, mode="talk")
