"""Many light WebRTC callers in one process: each joins its room at the same moment, waits to be answered, hangs up.

A caller publishes nothing (joining is calling: the room's webhook admits the call); it listens only to the hold
voice, until it has heard speech, and notes when the agent's state first says it is listening (answered).
Usage: burst_caller.py URL ROOMS_JSON CAP_S, where ROOMS_JSON is a file of [{"room", "token"}]; prints one JSON
line, a report per room in the file's order (times on the machine's monotonic clock, shared with other processes).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from livekit import rtc

from orchestrator.devstack.rtc_exit import leave

STATE = "lk.agent.state"
HOLD_PREFIX = "hold-"
# A received frame louder than this is speech; silence and comfort noise sit far below it.
SPEECH_RMS = 300.0


async def _hear_hold(track: rtc.Track, out: dict[str, Any]) -> None:
    """Read the hold voice's track until its first frame of speech (then stop decoding: it costs CPU)."""
    stream = rtc.AudioStream(track, sample_rate=16000, num_channels=1, frame_size_ms=40)
    try:
        async for event in stream:
            pcm = np.frombuffer(event.frame.data, dtype=np.int16)
            if pcm.size and float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) >= SPEECH_RMS:
                out["hold_speech_at"] = time.monotonic()
                return
    finally:
        await stream.aclose()


async def call(url: str, room_name: str, token: str, cap_s: float, start: asyncio.Event) -> dict[str, Any]:
    """One caller: join when ``start`` is set, wait up to ``cap_s`` for an agent listening, hang up."""
    out: dict[str, Any] = {"room": room_name}
    room = rtc.Room()
    answered = asyncio.Event()
    readers: set[asyncio.Task[None]] = set()

    def note(participant: rtc.Participant) -> None:
        if (
            participant.identity.startswith(HOLD_PREFIX)
            or participant.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        ):
            return
        out.setdefault("agent_joined_at", time.monotonic())
        if participant.attributes.get(STATE) == "listening" and not answered.is_set():
            out["answered_at"] = time.monotonic()
            answered.set()

    def on_published(pub: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant) -> None:
        if participant.identity.startswith(HOLD_PREFIX) and "hold_speech_at" not in out:
            pub.set_subscribed(True)

    def on_track(track: rtc.Track, _pub: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant) -> None:
        if participant.identity.startswith(HOLD_PREFIX) and "hold_speech_at" not in out:
            out["hold_joined"] = True
            task = asyncio.create_task(_hear_hold(track, out))
            readers.add(task)
            task.add_done_callback(readers.discard)

    room.on("participant_connected", note)
    room.on("participant_attributes_changed", lambda _changed, p: note(p))
    room.on("track_published", on_published)
    room.on("track_subscribed", on_track)
    await start.wait()
    out["joining_at"] = time.monotonic()
    try:
        await room.connect(url, token, rtc.RoomOptions(auto_subscribe=False))
    except rtc.ConnectError as exc:
        out["error"] = f"could not join: {exc}"
        return out
    try:
        out["connected_at"] = time.monotonic()
        out["room_sid"] = await room.sid
        for participant in room.remote_participants.values():
            note(participant)
            for pub in participant.track_publications.values():
                on_published(pub, participant)
        try:
            await asyncio.wait_for(answered.wait(), cap_s)
        except TimeoutError:
            out["gave_up_at"] = time.monotonic()
    finally:
        for task in list(readers):
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        # Hanging up: the agent's session ends with the caller's departure, and its slot frees.
        await room.disconnect()
        out["left_at"] = time.monotonic()
    return out


async def main(url: str, rooms: list[dict[str, str]], cap_s: float) -> list[dict[str, Any]]:
    start = asyncio.Event()
    calls = [asyncio.create_task(call(url, r["room"], r["token"], cap_s, start)) for r in rooms]
    # Every caller is ready before any joins: the burst arrives as one.
    await asyncio.sleep(0)
    start.set()
    print(json.dumps({"started": len(calls), "at": time.monotonic()}), file=sys.stderr, flush=True)
    return list(await asyncio.gather(*calls))


if __name__ == "__main__":
    found = asyncio.run(main(sys.argv[1], json.loads(Path(sys.argv[2]).read_text()), float(sys.argv[3])))
    print(json.dumps(found), flush=True)
    leave(0)
