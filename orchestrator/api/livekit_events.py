"""Which LiveKit webhook events start a call, and how a call job is read from them.

Two events admit a call, and both name the same call so that a SIP call (which produces both) is
admitted once:

- ``participant_joined`` of a SIP participant (``ParticipantInfo.Kind.SIP``): a phone caller was
  bridged into a room by LiveKit SIP. This is the production path; the caller id comes from the
  participant's ``sip.phoneNumber`` attribute (else its identity).
- ``room_started`` of a room whose name starts with the configured prefix (``call-`` by default):
  WebRTC callers and the simulator create such rooms. Rooms of other names (agent rooms, tests,
  supervisor rooms) are not calls.

Two events say the caller hung up, and take a call that still waits out of the queue (counted as
abandoned): ``participant_left`` of the caller (a SIP participant in any room, a standard, WebRTC,
participant in a call room) and ``room_finished`` of a call room.

Every other event is acknowledged and ignored. The call id is ``lk-<room sid>`` (the room name when
the sid is absent): one room instance is one call, so duplicate or repeated deliveries are idempotent.

Room metadata may be JSON with ``caller_id``, ``priority`` (0 = VIP/callback, 1 = normal) and, only
when it also says ``"simulated": true``, ``script`` (the scripted caller turns of a simulated caller).
Other scalar fields are kept as string metadata.
"""

from __future__ import annotations

import json
import re
from typing import Any

from livekit.protocol.models import ParticipantInfo
from livekit.protocol.webhook import WebhookEvent

from orchestrator.contracts import CallJob
from orchestrator.web.limits import MAX_JSON_DEPTH, json_too_deep

ADMITTING_EVENTS = ("room_started", "participant_joined")
_SAFE = re.compile(r"[^A-Za-z0-9._:-]")
MAX_SCRIPT_TURNS = 200
MAX_TURN_CHARS = 2000


class BadEvent(ValueError):
    """The event would start a call but cannot be turned into one; ``code`` says why, ``status`` is the answer."""

    def __init__(self, code: str, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def call_id_for_room(sid: str, name: str) -> str:
    """The call id of a LiveKit room: ``lk-<sid>`` (or ``lk-<name>``), reduced to URL- and key-safe characters."""
    base = sid or name
    if not base:
        raise BadEvent("missing_room", "the event carries neither a room sid nor a room name")
    return "lk-" + _SAFE.sub("_", base)[:190]


def starts_call(event: WebhookEvent, room_prefix: str) -> bool:
    """True for the events that admit a call (see the module docstring)."""
    if event.event == "participant_joined":
        return event.HasField("participant") and event.participant.kind == ParticipantInfo.Kind.SIP
    if event.event == "room_started":
        return event.HasField("room") and event.room.name.startswith(room_prefix)
    return False


def ends_call(event: WebhookEvent, room_prefix: str) -> bool:
    """True for the events that say a call's caller hung up (see the module docstring)."""
    if not event.HasField("room"):
        return False
    if event.event == "participant_left" and event.HasField("participant"):
        kind = event.participant.kind
        return kind == ParticipantInfo.Kind.SIP or (
            kind == ParticipantInfo.Kind.STANDARD and event.room.name.startswith(room_prefix)
        )
    return event.event == "room_finished" and event.room.name.startswith(room_prefix)


def job_from_event(event: WebhookEvent, *, traceparent: str | None = None) -> CallJob:
    """Build the call job of an admitting event.

    Raises:
        BadEvent: No room, bad room metadata, or an unusable priority or script.
    """
    if not event.HasField("room"):
        raise BadEvent("missing_room", f"a {event.event} event that starts a call must carry the room")
    room = event.room
    meta = _room_metadata(room.metadata)
    caller_id = ""
    if event.event == "participant_joined":
        p = event.participant
        caller_id = p.attributes.get("sip.phoneNumber", "") or p.identity
    caller_id = str(meta.pop("caller_id", caller_id) or caller_id)
    priority = meta.pop("priority", 1)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise BadEvent("bad_room_metadata", "room metadata 'priority' must be an integer (0 = VIP, 1 = normal)")
    simulated = meta.pop("simulated", False) is True
    script = meta.pop("script", None)
    if script is not None:
        if not simulated:
            # A real caller's words come from the room, never from metadata: ignore it.
            script = None
        elif (
            not isinstance(script, list)
            or not all(isinstance(t, str) and 0 < len(t) <= MAX_TURN_CHARS for t in script)
            or len(script) > MAX_SCRIPT_TURNS
        ):
            raise BadEvent(
                "bad_room_metadata",
                f"room metadata 'script' must be a list of at most {MAX_SCRIPT_TURNS} non-empty strings",
            )
    extra = {str(k): str(v) for k, v in meta.items() if isinstance(v, str | int | float | bool)}
    if simulated:
        extra["simulated"] = "true"
    if event.id:
        extra["webhook_event_id"] = event.id
    try:
        return CallJob(
            call_id=call_id_for_room(room.sid, room.name),
            source="livekit",
            room=room.name,
            caller_id=caller_id[:64],
            priority=priority,
            traceparent=traceparent,
            script=script,
            metadata=extra,
        )
    except ValueError as exc:
        raise BadEvent("bad_room_metadata", f"room metadata does not make a valid call: {exc}") from None


def _room_metadata(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    if json_too_deep(raw):
        # json recurses once per level: refuse before it runs out of stack.
        raise BadEvent("json_too_deep", f"room metadata nests JSON deeper than {MAX_JSON_DEPTH} levels", status=400)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadEvent("bad_room_metadata", f"room metadata is not valid JSON: {exc.msg} at char {exc.pos}") from None
    if not isinstance(data, dict):
        raise BadEvent("bad_room_metadata", "room metadata must be a JSON object")
    return data
