"""A WebRTC caller for fault drills: speaks scripted steps, pauses while the test breaks something, notes each agent.

Steps (JSON list): ``{"say": text}`` speaks a turn and waits for its answer; ``{"say": text, "hang_up": true}``
speaks and hangs up as soon as the reply's first audio arrives; ``{"pause": true}`` prints
``{"paused": n, ...}`` and waits for a line on stdin, then for an agent other than the one that was listening
to be in the room and listening (the replacement of an agent the test killed); ``{"pause": true, "same": true}``
waits for a line only; ``{"silent": true}`` says nothing and waits for the agent to leave; ``{"hold": true}`` as
the first step prints ``{"held": true, ...}`` as soon as it is in the room and hangs up at a line on stdin (a caller
waiting in the queue); ``{"agent_cap_s": s}`` waits that long for the first agent instead of 90 s. Every agent's arrival
and departure and every turn's times (``time.monotonic``, shared by all processes on the machine) are printed
at the end, so the test can measure gaps against its own actions.

Usage: fault_caller.py URL TOKEN STEPS_JSON  (prints the pause lines, then one JSON line; exit 3 on a missed step,
2 when the server refused the token: then the one line is ``{"refused": why}``)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from livekit import rtc

from orchestrator.devstack.caller import AGENT_CAP_S, FRAME, RATE, STATE, TURN_CAP_S, Heard, render, wait_until
from orchestrator.devstack.rtc_exit import leave

AGENT = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT


async def main(url: str, token: str, steps: list[dict[str, Any]]) -> int:
    speech = await render([str(s["say"]) for s in steps if "say" in s])
    room = rtc.Room()
    heard = Heard()
    changed = asyncio.Event()
    events: list[dict[str, Any]] = []
    states: list[tuple[float, str]] = []  # every agent state seen, in order: a quick reply is not missed
    readers: set[asyncio.Task[None]] = set()

    def note(_changed: dict[str, str], p: rtc.Participant) -> None:
        if p.kind == AGENT and p.attributes.get(STATE):
            states.append((time.monotonic(), p.attributes[STATE]))
        changed.set()

    def on_joined(p: rtc.RemoteParticipant) -> None:
        if p.kind == AGENT:
            events.append({"at": time.monotonic(), "agent": p.identity, "event": "joined"})
        changed.set()

    def on_left(p: rtc.RemoteParticipant) -> None:
        if p.kind == AGENT:
            events.append({"at": time.monotonic(), "agent": p.identity, "event": "left"})
        changed.set()

    async def read(track: rtc.Track) -> None:
        async for ev in rtc.AudioStream(track, sample_rate=RATE, num_channels=1):
            heard.add(ev.frame)

    def on_track(track: rtc.Track, _pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO and p.kind == AGENT:
            task = asyncio.create_task(read(track))
            readers.add(task)
            task.add_done_callback(readers.discard)

    def agents() -> dict[str, str]:
        """Each agent in the room and its state."""
        return {p.identity: p.attributes.get(STATE, "") for p in room.remote_participants.values() if p.kind == AGENT}

    def listening(exclude: str | None = None) -> str | None:
        return next((who for who, state in agents().items() if state == "listening" and who != exclude), None)

    def spoke_since(t: float) -> bool:
        return any(at > t and state == "speaking" for at, state in states)

    def speaking() -> bool:
        return any(state == "speaking" for state in agents().values())

    room.on("participant_connected", on_joined)
    room.on("participant_disconnected", on_left)
    room.on("participant_attributes_changed", note)
    room.on("track_subscribed", on_track)
    out: dict[str, Any] = {"turns": [], "pauses": [], "agents": events}
    joined_at = time.monotonic()
    try:
        await room.connect(url, token, rtc.RoomOptions(auto_subscribe=True))
    except rtc.ConnectError as exc:
        # Refused by the server (a bad or expired token): one line, and nothing else happened.
        print(json.dumps({"refused": str(exc)}), flush=True)
        return 2
    out["room_sid"] = await room.sid
    for p in room.remote_participants.values():
        on_joined(p)
    source = rtc.AudioSource(RATE, 1, queue_size_ms=100)
    track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
    await room.local_participant.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    pending: asyncio.Queue[bytes] = asyncio.Queue()
    spoken: asyncio.Queue[float] = asyncio.Queue()

    async def microphone() -> None:
        silence = bytes(FRAME * 2)
        while True:
            if pending.empty():
                await source.capture_frame(rtc.AudioFrame(silence, RATE, 1, FRAME))
                continue
            pcm = pending.get_nowait()
            for i in range(0, len(pcm), FRAME * 2):
                chunk = pcm[i : i + FRAME * 2].ljust(FRAME * 2, b"\0")
                await source.capture_frame(rtc.AudioFrame(chunk, RATE, 1, FRAME))
            await source.wait_for_playout()
            spoken.put_nowait(time.monotonic())

    mic = asyncio.create_task(microphone())
    said = iter(speech)
    code = 0
    agent_cap_s = float(next((s["agent_cap_s"] for s in steps if "agent_cap_s" in s), AGENT_CAP_S))
    try:
        if steps and steps[0].get("hold"):
            # Waits in the queue: on the line, heard by nobody, until told to hang up.
            print(json.dumps({"held": True, "room_sid": out["room_sid"]}), flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            out["agents_seen"] = len(agents())
            return 0
        if not await wait_until(changed, lambda: listening() is not None, agent_cap_s):
            out["error"] = f"no agent was listening within {agent_cap_s:.0f} s"
            return 3
        for step in steps:
            if "agent_cap_s" in step:
                continue
            if step.get("silent"):
                # Says nothing, and stays until the agent has left (it ends a call with nobody on the line).
                left = await wait_until(changed, lambda: not agents(), TURN_CAP_S * 2)
                out["silent"] = {"agent_left": left, "heard_speech_at": heard.first_speech_after(joined_at)}
                continue
            if step.get("pause"):
                before = listening()
                last = max((at for at, _pcm, rms in heard.frames if rms >= 300.0), default=None)
                print(
                    json.dumps({"paused": len(out["pauses"]) + 1, "agent": before, "room_sid": out["room_sid"]}),
                    flush=True,
                )
                await asyncio.to_thread(sys.stdin.readline)
                resumed_at = time.monotonic()
                pause: dict[str, Any] = {"agent": before, "last_agent_audio": last, "resumed_at": resumed_at}
                out["pauses"].append(pause)
                if step.get("same"):
                    continue
                if not await wait_until(changed, lambda b=before: listening(exclude=b) is not None, AGENT_CAP_S):
                    out["error"] = f"no other agent was listening within {AGENT_CAP_S:.0f} s (agents: {agents()})"
                    return 3
                pause.update(listening_at=time.monotonic(), new_agent=listening(exclude=before))
                continue
            pending.put_nowait(next(said))
            ended = await spoken.get()
            turn: dict[str, Any] = {"caller": step["say"], "ended_at": ended}
            out["turns"].append(turn)
            if step.get("hang_up"):
                # Hang up mid-reply: as soon as the agent's voice arrives.
                replying = await wait_until(heard.changed, lambda e=ended: heard.first_speech_after(e) is not None,
                                            TURN_CAP_S)  # fmt: skip
                turn.update(first_audio_at=heard.first_speech_after(ended), hung_up_at=time.monotonic())
                if not replying:
                    out["error"] = f"no reply began to {step['say']!r} within {TURN_CAP_S:.0f} s"
                    code = 3
                break
            answered = await wait_until(changed, lambda e=ended: spoke_since(e), TURN_CAP_S) and await wait_until(
                changed, lambda: listening() is not None and not speaking(), TURN_CAP_S
            )
            if answered:
                quiet_from = time.monotonic()
                answered = await wait_until(
                    heard.changed, lambda q=quiet_from: heard.silent_since(q) >= 0.4, TURN_CAP_S
                )
            first = heard.first_speech_after(ended)
            turn.update(answered=answered, first_audio_at=first)
            if not answered:
                out["error"] = f"no answer to {step['say']!r} within {TURN_CAP_S:.0f} s (agents: {agents()})"
                code = 3
                break
        return code
    finally:
        mic.cancel()
        out["left_at"] = time.monotonic()
        await room.disconnect()
        for task in list(readers):
            task.cancel()
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    leave(asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))))
