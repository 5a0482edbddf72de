"""The local STT starts decoding as the caller falls silent, and never finalises a speech cut by a short pause."""

from __future__ import annotations

import shutil
from typing import Any

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import stt, utils
from livekit.agents.types import NOT_GIVEN, APIConnectOptions, NotGivenOr

from orchestrator.providers.stt import SpeculativeStreamAdapter, load_vad
from orchestrator.providers.tts import FliteTTS

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(shutil.which("flite") is None, reason="the speech is Debian flite's (apt-get install flite)"),
]

RATE = 16000
MIN_SILENCE_S = 0.4


class CountingSTT(stt.STT[Any]):
    """Writes back what it was given: the audio's length and its samples that are not silence."""

    def __init__(self) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self.buffers: list[np.ndarray[Any, np.dtype[np.int16]]] = []

    async def _recognize_impl(
        self, buffer: utils.AudioBuffer, *, language: NotGivenOr[str] = NOT_GIVEN, conn_options: APIConnectOptions
    ) -> stt.SpeechEvent:
        frame = rtc.combine_audio_frames(buffer) if isinstance(buffer, list) else buffer
        pcm = np.frombuffer(frame.data, dtype=np.int16).copy()
        self.buffers.append(pcm)
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            alternatives=[stt.SpeechData(language="en", text=str(int(np.count_nonzero(pcm))))],  # type: ignore[arg-type]  # a plain code
        )


def speech(text: str) -> np.ndarray[Any, np.dtype[np.int16]]:
    """flite's words without the quiet it pads them with, so the pauses between them are the test's."""
    pcm = np.frombuffer(FliteTTS().render(text), dtype=np.int16)
    loud = np.flatnonzero(np.abs(pcm) > 300)
    return pcm[loud[0] : loud[-1] + 1].copy()


def silence(seconds: float) -> np.ndarray[Any, np.dtype[np.int16]]:
    return np.zeros(int(RATE * seconds), dtype=np.int16)


async def finals_of(adapter: stt.STT[Any], pcm: np.ndarray[Any, np.dtype[np.int16]]) -> list[str]:
    stream = adapter.stream()
    step = RATE // 50
    for i in range(0, len(pcm) - step + 1, step):
        stream.push_frame(rtc.AudioFrame(pcm[i : i + step].tobytes(), RATE, 1, step))
    stream.end_input()
    finals = [ev.alternatives[0].text async for ev in stream if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
    await stream.aclose()
    return finals


def trailing_silence_s(pcm: np.ndarray[Any, np.dtype[np.int16]]) -> float:
    voiced = np.flatnonzero(np.abs(pcm) > 0)
    return (len(pcm) - 1 - voiced[-1]) / RATE if voiced.size else len(pcm) / RATE


async def test_the_decode_starts_before_the_vad_has_waited_out_its_silence() -> None:
    whisper = CountingSTT()
    adapter = SpeculativeStreamAdapter(stt=whisper, vad=load_vad(min_silence_s=MIN_SILENCE_S), speculate_after_s=0.1)
    said = speech("What's my balance?")
    finals = await finals_of(adapter, np.concatenate([silence(0.3), said, silence(1.0)]))
    assert finals == [str(np.count_nonzero(said))], "one final, with all of the caller's words"
    # The decoded audio ends a little into the silence, not after the VAD's whole wait for the end of speech.
    assert trailing_silence_s(whisper.buffers[0]) < MIN_SILENCE_S - 0.1


async def test_a_pause_shorter_than_the_vads_wait_drops_the_early_decode() -> None:
    whisper = CountingSTT()
    adapter = SpeculativeStreamAdapter(stt=whisper, vad=load_vad(min_silence_s=MIN_SILENCE_S), speculate_after_s=0.1)
    first, second = speech("five five five"), speech("zero one zero")
    pcm = np.concatenate([silence(0.3), first, silence(0.25), second, silence(1.0)])
    finals = await finals_of(adapter, pcm)
    assert finals == [str(np.count_nonzero(first) + np.count_nonzero(second))], "the pause did not end the speech"
    assert len(whisper.buffers) >= 2, "a decode started in the pause, and its result was dropped"
