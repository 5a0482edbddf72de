"""The cloud STT's answer deadline on a virtual clock (looptime): kept if it answers in time, dropped right on time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from livekit import rtc
from livekit.agents import stt

from orchestrator.providers.fallbacks import fallback_stt
from tests.voice_fakes import ListeningSTT, LoudnessVAD, ScriptedSTT

pytestmark = pytest.mark.unit

RATE = 16000
FRAME_S = 0.02
TIMEOUT_S = 0.5
LEAD_S, SPEECH_S, MIN_SILENCE_S, TAIL_S = 0.3, 1.0, 0.4, 3.0
# The VAD ends speech on the frame that completes its silence window: this long after the first loud frame.
END_OF_SPEECH_S = SPEECH_S + MIN_SILENCE_S - FRAME_S
CAP_S = 60  # virtual seconds: a hung test ends at once under looptime


def frames(seconds: float, level: int) -> Iterator[rtc.AudioFrame]:
    samples = int(RATE * FRAME_S)
    for _ in range(round(seconds / FRAME_S)):
        yield rtc.AudioFrame(level.to_bytes(2, "little", signed=True) * samples, RATE, 1, samples)


def line() -> list[rtc.AudioFrame]:
    """A breath of silence, a second of speech, then the silence of a caller waiting for an answer."""
    return [*frames(LEAD_S, 0), *frames(SPEECH_S, 1000), *frames(TAIL_S, 0)]


def speech_pcm() -> bytes:
    return b"".join(bytes(f.data.cast("B")) for f in frames(SPEECH_S, 1000))


async def speak(stream: stt.RecognizeStream) -> None:
    # At the line's pace; the line stays open after, so only the deadline can notice an STT gone quiet.
    for frame in line():
        stream.push_frame(frame)
        await asyncio.sleep(FRAME_S)


async def first_final(stream: stt.RecognizeStream) -> stt.SpeechEvent:
    async for event in stream:
        if event.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
            return event
    raise AssertionError("the stream ended without a final transcript")


async def run_call(answer_after_s: float | None) -> tuple[str, list[tuple[str, bool]], dict[str, Any]]:
    """One utterance through the fallback chain; the final's text, availability changes, and the fakes' times."""
    silero_free = LoudnessVAD(min_silence_s=MIN_SILENCE_S)
    cloud = ScriptedSTT(text="from the cloud", answer_after_s=answer_after_s)
    local = ListeningSTT(words=speech_pcm(), text="from the local STT")
    engine = fallback_stt(cloud, local, vad=silero_free, timeout_s=TIMEOUT_S)
    changes: list[tuple[str, bool]] = []
    down_at: list[float] = []

    def on_availability(ev: Any) -> None:
        changes.append((ev.stt.provider, ev.available))
        if not ev.available:
            down_at.append(asyncio.get_running_loop().time())

    engine.on("stt_availability_changed", on_availability)
    stream = engine.stream()
    speaker = asyncio.create_task(speak(stream))
    try:
        async with asyncio.timeout(CAP_S):
            final = await first_final(stream)
    finally:
        speaker.cancel()
        await stream.aclose()
        await engine.aclose()
    times = {
        "cloud_heard_speech": cloud.first_speech_at,
        "end_of_speech": silero_free.ended_at[0] if silero_free.ended_at else None,
        "down": down_at[0] if down_at else None,
        "local_first_audio": local.first_audio_at,
        "local_answered": local.answered_at,
    }
    return final.alternatives[0].text, changes, times


@pytest.mark.looptime
@pytest.mark.parametrize(
    "answer_after_s",
    [
        pytest.param(SPEECH_S / 2, id="while-the-caller-speaks"),
        pytest.param(END_OF_SPEECH_S + TIMEOUT_S - 0.05, id="just-inside-the-deadline"),
    ],
)
async def test_an_answer_within_the_deadline_keeps_the_cloud_stt(answer_after_s: float) -> None:
    text, changes, times = await run_call(answer_after_s)
    assert text == "from the cloud"
    assert changes == []
    assert times["local_first_audio"] is None, "the local STT was never asked"


@pytest.mark.looptime
@pytest.mark.parametrize(
    "answer_after_s",
    [
        pytest.param(END_OF_SPEECH_S + TIMEOUT_S + 0.05, id="just-too-late"),
        pytest.param(None, id="never"),
    ],
)
async def test_speech_left_unanswered_switches_exactly_at_the_deadline(answer_after_s: float | None) -> None:
    text, changes, times = await run_call(answer_after_s)
    assert text == "from the local STT", "the local STT was handed the speech the cloud left unanswered"
    assert changes[0] == ("scripted", False)
    # The timeline is what the line played: the VAD's end of speech, then the deadline to the microsecond.
    assert times["end_of_speech"] - times["cloud_heard_speech"] == pytest.approx(END_OF_SPEECH_S, abs=1e-6)
    assert times["down"] - times["end_of_speech"] == pytest.approx(TIMEOUT_S, abs=1e-6)
    assert times["down"] <= times["local_first_audio"] <= times["local_answered"]
