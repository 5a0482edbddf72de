"""Someone in a call's room who is not the caller (a supervisor from the console) keys digits as SIP DTMF.

Joins ROOM with the given token before anyone else (its join makes the room) and prints {"joined": true}, so
that the agent finds a supervisor in the room before the caller, as it does when one listens in to a waiting
call. Keys DIGITS once the SIP caller is in the room and the agent listens, then stays until the agent has
left (the call is over), so its leaving says nothing about the call.

Usage: room_keys.py URL TOKEN DIGITS  (prints {"joined": true}, then one JSON line at the end)
"""

from __future__ import annotations

import asyncio
import json
import sys

from livekit import rtc

from orchestrator.devstack.caller import AGENT_CAP_S, STATE, wait_until
from orchestrator.devstack.phone_caller import DTMF_CODES, KEY_GAP_S

# The whole call: the caller's turns, the agent's replies and the agent leaving after the caller hung up.
STAY_CAP_S = 600.0


async def main(url: str, token: str, digits: str) -> dict[str, object]:
    room = rtc.Room()
    changed = asyncio.Event()
    room.on("participant_attributes_changed", lambda *_: changed.set())
    room.on("participant_connected", lambda *_: changed.set())
    room.on("participant_disconnected", lambda *_: changed.set())
    await room.connect(url, token)
    print(json.dumps({"joined": True}), flush=True)

    def present(kind: rtc.ParticipantKind.ValueType) -> list[rtc.RemoteParticipant]:
        return [p for p in room.remote_participants.values() if p.kind == kind]

    def caller_heard() -> bool:
        agents = present(rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)
        listening = any(a.attributes.get(STATE) == "listening" for a in agents)
        return listening and bool(present(rtc.ParticipantKind.PARTICIPANT_KIND_SIP))

    try:
        if not await wait_until(changed, caller_heard, AGENT_CAP_S):
            return {"error": f"no SIP caller with an agent listening within {AGENT_CAP_S:.0f} s"}
        for digit in digits:
            await room.local_participant.publish_dtmf(code=DTMF_CODES[digit], digit=digit)
            await asyncio.sleep(KEY_GAP_S)  # a person's pace between keys, not a wait for anything
        stayed = await wait_until(changed, lambda: not present(rtc.ParticipantKind.PARTICIPANT_KIND_AGENT), STAY_CAP_S)
        return {"keyed": digits, "agent_left": stayed}
    finally:
        await room.disconnect()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))), flush=True)
