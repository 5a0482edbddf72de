"""A phone caller as LiveKit SIP puts one in a room: a SIP participant that speaks and keys digits (SIP DTMF).

The test's token makes the participant a SIP one with LiveKit SIP's attributes (``sip.phoneNumber``), and each
keyed digit is published as the same SIP DTMF packet LiveKit SIP sends for an RFC 4733 event. The speech
(flite-rendered turns) reaches the room as a phone line brings it: 8 kHz through G.711 μ-law, then back at
the room's rate, as LiveKit SIP decodes a PCMU call. What the caller hears is kept per reply, as in `caller`.

Steps (JSON list): {"say": TEXT}, {"keys": DIGITS} (keyed once the agent listens; '#' ends an entry, a pause
ends one too), or {"say": TEXT, "keys_while_answered": DIGITS}: keyed as soon as the agent starts its reply
to TEXT, so that entry is answered after that reply. Each reply heard is one turn of the output.

Usage: phone_caller.py URL TOKEN OUT_DIR STEPS_JSON  (prints one JSON line; exit 3 when a reply never came)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
from livekit import rtc

from orchestrator.devstack.caller import (
    AGENT_CAP_S,
    FRAME,
    RATE,
    STATE,
    TAIL_SILENCE_S,
    TURN_CAP_S,
    Heard,
    render,
    wait_until,
)
from orchestrator.devstack.rtc_exit import leave

# DTMF event codes of RFC 4733: digits are themselves, '*' 10, '#' 11.
DTMF_CODES = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}
# A person keys about this fast.
KEY_GAP_S = 0.15
# The agent's replies are counted by their transcripts (one text stream each, closed when its audio has played):
# the server forwards only the latest of quick attribute changes, so a reply to a keyed entry (from the phrase
# cache within 0.1 s) may never show as thinking and speaking in the agent's state.
TRANSCRIPTION_TOPIC = "lk.transcription"
PHONE_RATE = 8000


def resample(pcm: bytes, rate_in: int, rate_out: int) -> bytes:
    resampler = rtc.AudioResampler(input_rate=rate_in, output_rate=rate_out, quality=rtc.AudioResamplerQuality.HIGH)
    frames = resampler.push(rtc.AudioFrame(pcm, rate_in, 1, len(pcm) // 2)) + resampler.flush()
    return bytes(rtc.combine_audio_frames(frames).data) if frames else b""


def phone_line(pcm: bytes) -> bytes:
    """16 kHz speech as a G.711 μ-law call carries it: narrowband, companded, and back at 16 kHz."""
    from orchestrator.session.line import mulaw_decode, mulaw_encode

    narrow = np.frombuffer(resample(pcm, RATE, PHONE_RATE), dtype=np.int16)
    return resample(mulaw_decode(mulaw_encode(narrow)).tobytes(), PHONE_RATE, RATE)


async def main(url: str, token: str, out_dir: Path, steps: list[dict[str, str]]) -> int:
    speech = [phone_line(pcm) for pcm in await render([s["say"] for s in steps if "say" in s])]
    room = rtc.Room()
    heard = Heard()
    states: list[tuple[float, str]] = []
    state_changed = asyncio.Event()
    readers: set[asyncio.Task[None]] = set()

    def agent_state() -> str:
        return states[-1][1] if states else ""

    def note_state(participant: rtc.Participant) -> None:
        state = participant.attributes.get(STATE)
        if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT and state and state != agent_state():
            states.append((time.monotonic(), state))
            state_changed.set()

    async def read(track: rtc.Track) -> None:
        async for ev in rtc.AudioStream(track, sample_rate=RATE, num_channels=1):
            heard.add(ev.frame)

    def on_track(track: rtc.Track, _pub: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO and participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            task = asyncio.create_task(read(track))
            readers.add(task)
            task.add_done_callback(readers.discard)

    room.on("participant_attributes_changed", lambda _changed, p: note_state(p))
    room.on("participant_connected", note_state)
    room.on("track_subscribed", on_track)
    out: dict[str, Any] = {"turns": []}
    t0 = time.monotonic()
    await room.connect(url, token, rtc.RoomOptions(auto_subscribe=True))
    out["room_sid"] = await room.sid
    for participant in room.remote_participants.values():
        note_state(participant)
    source = rtc.AudioSource(RATE, 1, queue_size_ms=100)
    track = rtc.LocalAudioTrack.create_audio_track("phone", source)
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

    async def key(digits: str) -> float:
        for digit in digits:
            await room.local_participant.publish_dtmf(code=DTMF_CODES[digit], digit=digit)
            await asyncio.sleep(KEY_GAP_S)  # a person's pace between keys, not a wait for anything
        return time.monotonic()

    replies: list[float] = []  # when each reply's transcript closed
    reply_closed = asyncio.Event()

    def on_transcript(reader: rtc.TextStreamReader, identity: str) -> None:
        sender = room.remote_participants.get(identity)
        if sender is None or sender.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            return  # the caller's own words, transcribed by the agent

        async def read() -> None:
            await reader.read_all()
            replies.append(time.monotonic())
            reply_closed.set()

        task = asyncio.create_task(read())
        readers.add(task)
        task.add_done_callback(readers.discard)

    room.register_text_stream_handler(TRANSCRIPTION_TOPIC, on_transcript)

    async def wait_reply(count: int) -> float | None:
        """The agent's ``count``-th reply is over and its audio silent: when its transcript closed."""
        if not await wait_until(reply_closed, lambda: len(replies) >= count, TURN_CAP_S):
            return None
        done = replies[count - 1]
        if not await wait_until(heard.changed, lambda: heard.silent_since(done) >= TAIL_SILENCE_S, TURN_CAP_S):
            return None
        return done

    def keep(caller: str, after: float, back: float | None) -> bool:
        first = heard.first_speech_after(after)
        wav = out_dir / f"turn-{len(out['turns']) + 1}.wav"
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(heard.pcm_between(after, time.monotonic()))
        out["turns"].append(
            {
                "caller": caller,
                "answered": back is not None,
                "first_audio_ms": None if first is None else round((first - after) * 1000, 1),
                "wav": str(wav),
            }
        )
        if back is None:
            out["error"] = f"no answer to {caller!r} within {TURN_CAP_S:.0f} s (states: {states[-6:]})"
        return back is not None

    mic = asyncio.create_task(microphone())
    said = iter(speech)
    expected = 0  # replies the caller has been given so far, once each is over
    try:
        if not await wait_until(state_changed, lambda: agent_state() == "listening", AGENT_CAP_S):
            out["error"] = f"the agent did not start listening within {AGENT_CAP_S:.0f} s (states: {states})"
            return 3
        out["agent_listening_s"] = round(time.monotonic() - t0, 3)
        for step in steps:
            if "say" in step:
                pending.put_nowait(next(said))
                ended = await spoken.get()
                early = step.get("keys_while_answered")
                if early:
                    if not await wait_until(
                        heard.changed, lambda t=ended: heard.first_speech_after(t) is not None, TURN_CAP_S
                    ):
                        keep(step["say"], ended, None)
                        return 3
                    await key(early)
                    # Its reply's transcript still open: the agent was still speaking when the last key went.
                    out["keyed_while"] = "speaking" if len(replies) <= expected else "listening"
                expected += 1
                back = await wait_reply(expected)
                if not keep(step["say"], ended, back):
                    return 3
                if early:
                    # The held entry goes to the graph once the agent listens: its reply comes after that.
                    assert back is not None
                    expected += 1
                    if not keep(f"keys:{early}", back, await wait_reply(expected)):
                        return 3
            else:
                ended = await key(step["keys"])
                expected += 1
                if not keep(f"keys:{step['keys']}", ended, await wait_reply(expected)):
                    return 3
        out["states"] = [s for _, s in states]
        return 0
    finally:
        mic.cancel()
        await room.disconnect()
        for task in list(readers):
            task.cancel()
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    leave(asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4]))))
