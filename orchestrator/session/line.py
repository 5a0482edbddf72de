"""A phone line for room-less audio calls: G.711 μ-law, the paced line input, captured output, a caller's speech."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import io, tts
from opentelemetry import context as otel_context

from orchestrator.providers.stt import UNFINISHED_ANSWER_WAIT_S
from orchestrator.session.endpointing import AnswerAwareTurnDetector

__all__ = [
    "CaptureAudioOutput",
    "CapturedFrame",
    "LineAudioInput",
    "caller_speech",
    "mulaw_decode",
    "mulaw_encode",
    "spoken_digits",
    "turn_handling",
]

_FRAME_MS = 20

_MU_BIAS = 0x84
_MU_CLIP = 32635


def mulaw_encode(pcm: np.ndarray[Any, np.dtype[np.int16]]) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """G.711 μ-law encode 16-bit PCM (audioop is deprecated, and we need only this)."""
    x = pcm.astype(np.int32)
    sign = (x < 0).astype(np.int32)
    mag = np.minimum(np.abs(x), _MU_CLIP) + _MU_BIAS
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    code: np.ndarray[Any, np.dtype[np.uint8]] = (~((sign << 7) | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return code


def mulaw_decode(code: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, np.dtype[np.int16]]:
    """G.711 μ-law decode to 16-bit PCM."""
    u = (~code.astype(np.int32)) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + _MU_BIAS) << exponent) - _MU_BIAS
    return np.where(sign != 0, -mag, mag).astype(np.int16)


class LineAudioInput(io.AudioInput):
    """A phone line into the session: queued caller speech, silence otherwise, paced like a real microphone.

    A frame is handed over when its 20 ms have "elapsed" (divided by `pace`), so end-of-speech time is the
    moment the last speech frame is delivered. If the session reads late, pacing restarts rather than
    bursting a backlog of silence.

    Args:
        sample_rate: 16000, or 8000 for telephony.
        pace: 1.0 is real time; 2.0 delivers audio twice as fast (latency figures then mean less).
        noise_level: RMS of background noise in int16 units (0: digital silence).
    """

    def __init__(self, *, sample_rate: int = 16000, pace: float = 1.0, noise_level: float = 0.0) -> None:
        super().__init__(label="switchboard-line")
        self.sample_rate = sample_rate
        self.pace = pace
        self.noise_level = noise_level
        self._samples = sample_rate * _FRAME_MS // 1000
        self._pending: list[tuple[bytes, asyncio.Future[float] | None]] = []
        self._next_at: float | None = None
        self._rng = np.random.default_rng(7)
        self.frames_delivered = 0

    def play(self, pcm: bytes) -> asyncio.Future[float]:
        """Queue caller speech (16-bit mono at `sample_rate`); the future gets the end-of-speech time."""
        step = self._samples * 2
        chunks = [pcm[i : i + step] for i in range(0, len(pcm), step)] or [b""]
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        for i, chunk in enumerate(chunks):
            chunk = chunk.ljust(step, b"\0")
            self._pending.append((chunk, done if i == len(chunks) - 1 else None))
        return done

    def _silence(self) -> bytes:
        if self.noise_level <= 0:
            return b"\0" * (self._samples * 2)
        noise = self._rng.normal(0.0, self.noise_level, self._samples).clip(-32768, 32767).astype(np.int16)
        return noise.tobytes()

    async def __anext__(self) -> rtc.AudioFrame:
        period = _FRAME_MS / 1000 / self.pace
        now = time.perf_counter()
        if self._next_at is None or now - self._next_at > 0.2:
            self._next_at = now + period
        delay = self._next_at - now
        if delay > 0:
            await asyncio.sleep(delay)
        self._next_at += period
        data, done = self._pending.pop(0) if self._pending else (self._silence(), None)
        self.frames_delivered += 1
        if done is not None and not done.done():
            done.set_result(time.perf_counter())
        return rtc.AudioFrame(data, self.sample_rate, 1, self._samples)


@dataclass
class CapturedFrame:
    at: float
    frame: rtc.AudioFrame


class CaptureAudioOutput(io.AudioOutput):
    """The session's speaker: keeps every agent frame with its arrival time and plays out in real time.

    Real-time playout matters: the session considers the agent speaking until playback finishes, which is
    what makes barge-in (and "do not talk over the caller") behave as on a real line. Like LiveKit's room
    output, a real-time speaker takes audio only as fast as it plays it (plus a small jitter buffer), so
    an interruption cuts the reply where the caller stopped hearing it: `frames` is what was played.

    Args:
        realtime: pace and play out in real time; False accepts audio at once and finishes on flush.
        buffer_s: how far ahead of playout a real-time speaker accepts audio.
    """

    def __init__(self, *, realtime: bool = True, buffer_s: float = 0.2) -> None:
        super().__init__(label="switchboard-capture", capabilities=io.AudioOutputCapabilities(pause=False))
        self.realtime = realtime
        self.buffer_s = buffer_s
        self.frames: list[CapturedFrame] = []
        self.interruptions = 0
        self.playing = asyncio.Event()
        self._segment_start: float | None = None
        self._segment_pushed = 0.0
        self._finish_task: asyncio.Task[None] | None = None
        self._draining: tuple[float, float] | None = None  # (start, pushed) of a flushed segment still playing

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        if self.realtime and self._segment_start is not None:
            ahead = self._segment_start + self._segment_pushed - self.buffer_s - time.perf_counter()
            if ahead > 0:
                await asyncio.sleep(ahead)
        await super().capture_frame(frame)
        now = time.perf_counter()
        if self._segment_start is None:
            self._segment_start = now
            self._segment_pushed = 0.0
            self.playing.set()
            self.on_playback_started(created_at=time.time())
        self.frames.append(CapturedFrame(now, frame))
        self._segment_pushed += frame.duration

    def flush(self) -> None:
        super().flush()
        if self._segment_start is None:
            return
        start, pushed = self._segment_start, self._segment_pushed
        self._segment_start = None
        remaining = (start + pushed - time.perf_counter()) if self.realtime else 0.0
        if remaining <= 0:
            self._finished(pushed, interrupted=False)
            return
        self._draining = (start, pushed)
        self._finish_task = asyncio.create_task(self._finish_later(remaining, pushed), name="capture.playout")

    async def _finish_later(self, delay: float, pushed: float) -> None:
        await asyncio.sleep(delay)
        self._finish_task = None
        self._draining = None
        self._finished(pushed, interrupted=False)

    def _finished(self, position: float, *, interrupted: bool) -> None:
        if interrupted:
            self.interruptions += 1
        if self._segment_start is None and self._finish_task is None:
            self.playing.clear()
        self.on_playback_finished(playback_position=position, interrupted=interrupted)

    def clear_buffer(self) -> None:
        task, self._finish_task = self._finish_task, None
        if task is not None and self._draining is not None:
            task.cancel()
            start, pushed = self._draining
            self._draining = None
            self._finished(min(pushed, time.perf_counter() - start), interrupted=True)
        elif self._segment_start is not None:
            played = min(self._segment_pushed, time.perf_counter() - self._segment_start)
            self._segment_start = None
            io.AudioOutput.flush(self)  # the segment is over: the next frame opens a new one
            self._finished(played, interrupted=True)

    async def aclose(self) -> None:
        task, self._finish_task = self._finish_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def caller_speech(engine: tts.TTS[Any], text: str, *, sample_rate: int) -> bytes:
    """A simulated caller's words as 16-bit line audio at ``sample_rate``, after a breath of silence.

    The caller's own TTS is not part of the call's work, so its synthesis stays out of the call's trace.
    """
    token = otel_context.attach(otel_context.Context())
    try:
        stream = engine.synthesize(spoken_digits(text))
        try:
            frame = await stream.collect()
        finally:
            await stream.aclose()
    finally:
        otel_context.detach(token)
    if frame.sample_rate != sample_rate:
        resampler = rtc.AudioResampler(
            input_rate=frame.sample_rate, output_rate=sample_rate, quality=rtc.AudioResamplerQuality.HIGH
        )
        frame = rtc.combine_audio_frames(resampler.push(frame) + resampler.flush())
    return b"\0" * (sample_rate // 10 * 2) + bytes(frame.data.cast("B"))


def turn_handling(
    *,
    min_delay: float = 0.2,
    max_delay: float = UNFINISHED_ANSWER_WAIT_S,
    allow_interruptions: bool = True,
    resume_after_noise: bool = False,
) -> dict[str, Any]:
    """Turn settings pinned for self-hosting: VAD endpointing read by the answer-aware detector, no cloud turn
    model, no preemptive graph runs.

    The session's VAD ends a speech after `TURN_SILENCE_S`; a turn that sounds finished then ends `min_delay`
    after the caller's last word, one that does not (`AnswerAwareTurnDetector`) up to `max_delay` after it.
    Preemptive generation is off because a graph turn has side effects (bookings, payments) and must run once.

    Args:
        resume_after_noise: an output that can pause (a LiveKit room's) pauses when the caller seems to cut
            in, and resumes the reply if no words follow within 2 s, so line noise never leaves the caller
            in silence. The local line's capture cannot pause, so there a cut-in always stops the reply.
    """
    return {
        "turn_detection": AnswerAwareTurnDetector(),
        "endpointing": {"mode": "fixed", "min_delay": min_delay, "max_delay": max_delay},
        "interruption": {
            "enabled": allow_interruptions,
            "mode": "vad",
            "min_duration": 0.5,
            "resume_false_interruption": resume_after_noise,
            "false_interruption_timeout": 2.0 if resume_after_noise else None,
        },
        "preemptive_generation": {"enabled": False},
    }


_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def spoken_digits(text: str) -> str:
    """Read runs of three or more digits one by one, as callers say ZIP codes and phone numbers.

    A TTS reads "10027" as "ten thousand twenty-seven", which no caller says and no STT writes back as
    the same digits.
    """
    return re.sub(r"\d{3,}", lambda m: " ".join(_DIGIT_NAMES[int(d)] for d in m.group(0)), text)
