"""A WebRTC caller: joins a room with the `livekit` rtc SDK, speaks scripted turns, records what the agent says.

Each turn is rendered with the local TTS (flite) before the call, so speaking it costs nothing. The
microphone track carries silence between turns, as a phone does, so the agent's VAD sees each turn end.
A turn is over when the agent's state attribute has gone from speaking back to listening and its audio
has fallen silent; the audio of each reply (from the end of the caller's turn, or from when the agent began
speaking if that came first) is written as a WAV for the test to transcribe.

Usage: caller.py URL TOKEN OUT_DIR TURNS_JSON [PAUSE_AFTER]  (prints one JSON line: timings, per-turn WAV paths)
With no turns the caller only waits in the room, and hangs up when a line arrives on its stdin; one whose right to
publish is taken as it joins stays on as a listener. With PAUSE_AFTER
(a turn count, or several: "1,2"), it prints {"paused": N} after N turns and stays on the line until a line arrives
on its stdin. What people other than the agent say (a supervisor who barged in) is written to people.wav.
Exit codes: 0 every turn answered, 3 the agent never arrived or never answered a turn.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from livekit import rtc
from livekit.rtc.participant import PublishTrackError

from orchestrator.devstack.rtc_exit import leave

RATE = 16000
FRAME = RATE // 100  # 10 ms
STATE = "lk.agent.state"
# A received frame louder than this is speech; flite and the network's comfort noise sit far below it.
SPEECH_RMS = 300.0
# The agent's reply is over once this much silence has arrived after its state went back to listening.
TAIL_SILENCE_S = 0.4
AGENT_CAP_S = 90.0
TURN_CAP_S = 60.0


@dataclass
class Heard:
    """The agent's audio as it arrives at the caller, with each frame's arrival time."""

    frames: list[tuple[float, bytes, float]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, frame: rtc.AudioFrame) -> None:
        pcm = np.frombuffer(frame.data, dtype=np.int16)
        rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if pcm.size else 0.0
        self.frames.append((time.monotonic(), pcm.tobytes(), rms))
        self.changed.set()

    def first_speech_after(self, t: float) -> float | None:
        return next((at for at, _pcm, rms in self.frames if at >= t and rms >= SPEECH_RMS), None)

    def silent_since(self, t: float) -> float:
        """Seconds of silence received at the end of the stream, counting only frames after ``t``."""
        quiet = 0.0
        for at, pcm, rms in reversed(self.frames):
            if at < t or rms >= SPEECH_RMS:
                break
            quiet += len(pcm) / 2 / RATE
        return quiet

    def pcm_between(self, start: float, end: float) -> bytes:
        return b"".join(pcm for at, pcm, _ in self.frames if start <= at <= end)


async def wait_until(event: asyncio.Event, check: Any, cap_s: float) -> bool:
    """Wait on ``event`` (set on every change) until ``check()`` holds; False after ``cap_s``."""
    deadline = time.monotonic() + cap_s
    while not check():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        event.clear()
        try:
            await asyncio.wait_for(event.wait(), min(remaining, 0.5))
        except TimeoutError:
            pass
    return True


async def render(turns: list[str]) -> list[bytes]:
    from orchestrator.providers.tts import FliteTTS

    tts = FliteTTS()
    return [await asyncio.to_thread(tts.render, text) for text in turns]


async def main(url: str, token: str, out_dir: Path, turns: list[str], pause_after: int | set[int] | None = None) -> int:
    speech = await render(turns)
    room = rtc.Room()
    heard = Heard()
    people = Heard()
    pauses = {pause_after} if isinstance(pause_after, int) else set(pause_after or ())
    states: list[tuple[float, str]] = []
    state_changed = asyncio.Event()
    readers: set[asyncio.Task[None]] = set()

    def agent_state() -> str:
        return states[-1][1] if states else ""

    def note_state(participant: rtc.Participant) -> None:
        # An agent's state arrives with its participant info when it joins, and as attribute changes after.
        state = participant.attributes.get(STATE)
        if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT and state and state != agent_state():
            states.append((time.monotonic(), state))
            state_changed.set()

    def on_attributes(_changed: dict[str, str], participant: rtc.Participant) -> None:
        note_state(participant)

    async def read(track: rtc.Track, into: Heard) -> None:
        async for ev in rtc.AudioStream(track, sample_rate=RATE, num_channels=1):
            into.add(ev.frame)

    def on_track(track: rtc.Track, _pub: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            agent = participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
            task = asyncio.create_task(read(track, heard if agent else people))
            readers.add(task)
            task.add_done_callback(readers.discard)

    room.on("participant_attributes_changed", on_attributes)
    room.on("participant_connected", note_state)
    room.on("track_subscribed", on_track)
    out: dict[str, Any] = {"turns": []}
    t0 = time.monotonic()
    await room.connect(url, token, rtc.RoomOptions(auto_subscribe=True))
    out["connected_s"] = round(time.monotonic() - t0, 3)
    out["room_sid"] = await room.sid  # the call is lk-<room sid>
    for participant in room.remote_participants.values():
        note_state(participant)
    source = rtc.AudioSource(RATE, 1, queue_size_ms=100)
    track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
    try:
        await room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
    except PublishTrackError:
        # A listener who was made one as they joined (a console user who no longer holds the call): the server
        # took the right to publish before the track's answer came, and never answers it. They still hear the call.
        if turns or room.local_participant.permissions.can_publish:
            raise
        out["listener"] = True
    pending: asyncio.Queue[bytes] = asyncio.Queue()
    spoken: asyncio.Queue[float] = asyncio.Queue()

    async def microphone() -> None:
        # Silence between turns, speech when a turn is queued; capture_frame paces it at real time.
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

    async def wait_reply(ended: float) -> bool:
        """The agent spoke after ``ended``, went back to listening, and its audio has fallen silent."""
        if not await wait_until(
            state_changed, lambda: any(at > ended and s == "speaking" for at, s in states), TURN_CAP_S
        ):
            return False
        if not await wait_until(
            state_changed, lambda: agent_state() == "listening" and states[-1][0] > ended, TURN_CAP_S
        ):
            return False
        listening_at = states[-1][0]
        return await wait_until(heard.changed, lambda: heard.silent_since(listening_at) >= TAIL_SILENCE_S, TURN_CAP_S)

    def reply_from(began: float, ended: float) -> float:
        """Where a turn's reply starts: when the caller's turn ended, or earlier if the agent began speaking
        during it (a starved caller's clock sees its own turn end late); never the previous reply's tail."""
        return min([ended, *(at for at, s in states if s == "speaking" and began <= at)])

    mic = asyncio.create_task(microphone())
    code = 0
    try:
        if not turns:
            # A caller who gives up in the queue: joined, heard by nobody, gone when the test says so.
            print(json.dumps({"joined": True}), flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            out["agents_seen"] = sum(
                p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT for p in room.remote_participants.values()
            )
            return 0
        if not await wait_until(state_changed, lambda: agent_state() == "listening", AGENT_CAP_S):
            out["error"] = f"the agent did not start listening within {AGENT_CAP_S:.0f} s (states: {states})"
            return 3
        out["agent_listening_s"] = round(time.monotonic() - t0, 3)
        for text, pcm in zip(turns, speech, strict=True):
            began = time.monotonic()
            pending.put_nowait(pcm)
            ended = await spoken.get()
            back = await wait_reply(ended)
            first = heard.first_speech_after(ended)
            wav = out_dir / f"turn-{len(out['turns']) + 1}.wav"
            with wave.open(str(wav), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(RATE)
                w.writeframes(heard.pcm_between(reply_from(began, ended), time.monotonic()))
            out["turns"].append(
                {
                    "caller": text,
                    "answered": back,
                    "first_audio_ms": None if first is None else round((first - ended) * 1000, 1),
                    "wav": str(wav),
                }
            )
            if not back:
                out["error"] = f"no answer to {text!r} within {TURN_CAP_S:.0f} s (states: {states[-6:]})"
                code = 3
                break
            if len(out["turns"]) in pauses:
                # A call in progress, held open while the test does something else (stops a server node).
                print(json.dumps({"paused": len(out["turns"]), "room_sid": out["room_sid"]}), flush=True)
                await asyncio.to_thread(sys.stdin.readline)
        out["states"] = [s for _, s in states]
        return code
    finally:
        mic.cancel()
        # Hanging up: the agent's session closes with the caller's departure.
        await room.disconnect()
        for task in list(readers):
            task.cancel()
        if people.frames:
            out["people_wav"] = str(out_dir / "people.wav")
            with wave.open(out["people_wav"], "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(RATE)
                w.writeframes(b"".join(pcm for _at, pcm, _rms in people.frames))
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    pause = {int(n) for n in sys.argv[5].split(",")} if len(sys.argv) > 5 else None
    leave(asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4]), pause)))
