"""Someone in a call's room who is not the caller (a supervisor from the console) keys digits as SIP DTMF.

Joins ROOM with the given token once the SIP caller is in it (the caller's join makes the room, and the agent
takes the first participant for the caller), keys DIGITS once the agent listens, then stays until the agent has
left (the call is over), so its leaving says nothing about the call. The server's key pair is read from
LIVEKIT_API_KEY and LIVEKIT_API_SECRET.

Usage: room_keys.py URL TOKEN ROOM DIGITS  (prints one JSON line)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from livekit import api, rtc

from orchestrator.devstack.caller import AGENT_CAP_S, STATE, wait_until
from orchestrator.devstack.phone_caller import DTMF_CODES, KEY_GAP_S

# The whole call: the caller's turns, the agent's replies and the agent leaving after the caller hung up.
STAY_CAP_S = 600.0
POLL_S = 0.2


async def caller_joined(url: str, name: str, cap_s: float) -> bool:
    """Poll the server until a SIP participant is in room ``name``; False after ``cap_s``."""
    server = api.LiveKitAPI(
        url.replace("ws://", "http://"), os.environ["LIVEKIT_API_KEY"], os.environ["LIVEKIT_API_SECRET"]
    )
    try:
        deadline = time.monotonic() + cap_s
        while time.monotonic() < deadline:
            try:
                found = (await server.room.list_participants(api.ListParticipantsRequest(room=name))).participants
            except api.TwirpError:
                found = []  # no such room yet
            if any(p.kind == api.ParticipantInfo.Kind.SIP for p in found):
                return True
            await asyncio.sleep(POLL_S)  # a poll's interval, on a condition with a cap
        return False
    finally:
        await server.aclose()


async def main(url: str, token: str, name: str, digits: str) -> dict[str, object]:
    if not await caller_joined(url, name, AGENT_CAP_S):
        return {"error": f"no SIP caller in the room within {AGENT_CAP_S:.0f} s"}
    room = rtc.Room()
    changed = asyncio.Event()
    room.on("participant_attributes_changed", lambda *_: changed.set())
    room.on("participant_connected", lambda *_: changed.set())
    room.on("participant_disconnected", lambda *_: changed.set())
    await room.connect(url, token)

    def agents() -> list[rtc.RemoteParticipant]:
        return [p for p in room.remote_participants.values() if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT]

    try:
        if not await wait_until(
            changed, lambda: any(a.attributes.get(STATE) == "listening" for a in agents()), AGENT_CAP_S
        ):
            return {"error": f"the agent did not listen within {AGENT_CAP_S:.0f} s"}
        for digit in digits:
            await room.local_participant.publish_dtmf(code=DTMF_CODES[digit], digit=digit)
            await asyncio.sleep(KEY_GAP_S)  # a person's pace between keys, not a wait for anything
        stayed = await wait_until(changed, lambda: not agents(), STAY_CAP_S)
        return {"keyed": digits, "agent_left": stayed}
    finally:
        await room.disconnect()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]))), flush=True)
