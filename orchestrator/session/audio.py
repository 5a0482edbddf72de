"""The local audio transport: caller text → TTS → line audio → AgentSession (VAD ▸ STT ▸ graph ▸ TTS) → captured."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jiwer
import numpy as np
from livekit import rtc
from livekit.agents import AgentSession, io, stt, tts, vad
from livekit.agents.llm import ChatMessage
from livekit.agents.voice.events import (
    ConversationItemAddedEvent,
    UserInputTranscribedEvent,
)
from livekit.agents.voice.transcription.synchronizer import TranscriptSynchronizer
from opentelemetry import context as otel_context

from agents.supervisor import speaker_of
from orchestrator.providers.phrase_cache import CachedTTS
from orchestrator.results import CallResult, TurnRecord
from orchestrator.runtime import Services
from orchestrator.session.text import TextCall, play_script

__all__ = [
    "AudioCall",
    "AudioTurnRecord",
    "CaptureAudioOutput",
    "LineAudioInput",
    "caller_speech",
    "mulaw_decode",
    "mulaw_encode",
    "run_audio_call",
    "turn_handling",
    "word_error_rate",
]

_FRAME_MS = 20


# ---------------------------------------------------------------------------------------------
# Telephony line codec and scoring
# ---------------------------------------------------------------------------------------------

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


_NUMBERS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four",
    "5": "five", "6": "six", "7": "seven", "8": "eight", "9": "nine",
}  # fmt: skip


def _words(text: str) -> list[str]:
    text = text.lower().replace("’", "'")
    # "10027", "10,027", "1-0-0-2-7" and "one oh oh two seven" are the same ZIP code: compare digit by digit.
    text = re.sub(r"(?<=\d)[-,. ](?=\d)", "", text)
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    out: list[str] = []
    for word in text.split():
        word = word.strip("'")
        if word.isdigit():
            out.extend(_NUMBERS[d] for d in word)
        elif word == "oh":
            out.append(_NUMBERS["0"])
        elif word:
            out.append(word)
    return out


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER (jiwer) on normalised words (lower case, punctuation dropped, single digits spelled out)."""
    ref, hyp = _words(reference), _words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    if not hyp:
        return 1.0  # every reference word deleted (jiwer refuses an empty hypothesis)
    return float(jiwer.wer(" ".join(ref), " ".join(hyp)))


# ---------------------------------------------------------------------------------------------
# Audio I/O
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# The call
# ---------------------------------------------------------------------------------------------


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
    *, min_delay: float = 0.2, allow_interruptions: bool = True, resume_after_noise: bool = False
) -> dict[str, Any]:
    """Turn settings pinned for self-hosting: VAD endpointing, no cloud turn model, no preemptive graph runs.

    Preemptive generation is off because a graph turn has side effects (bookings, payments) and must run once.

    Args:
        resume_after_noise: an output that can pause (a LiveKit room's) pauses when the caller seems to cut
            in, and resumes the reply if no words follow within 2 s, so line noise never leaves the caller
            in silence. The local line's capture cannot pause, so there a cut-in always stops the reply.
    """
    return {
        "turn_detection": "vad",
        "endpointing": {"mode": "fixed", "min_delay": min_delay, "max_delay": 3.0},
        "interruption": {
            "enabled": allow_interruptions,
            "mode": "vad",
            "min_duration": 0.5,
            "resume_false_interruption": resume_after_noise,
            "false_interruption_timeout": 2.0 if resume_after_noise else None,
        },
        "preemptive_generation": {"enabled": False},
    }


@dataclass
class AudioTurnRecord(TurnRecord):
    """A text turn record plus what the audio path measured (all times in ms from end of caller speech).

    `agent_audio_ms` is the agent audio the caller heard; `interrupted` says the caller cut the reply off.
    """

    heard: str = ""
    wer: float | None = None
    agent_audio_ms: float = 0.0
    interrupted: bool = False
    breakdown: dict[str, float | None] = field(default_factory=dict)
    cached_sentences: int = 0

    def public(self) -> dict[str, Any]:
        data = super().public()
        data.pop("breakdown", None)
        data["latency_ms"] = self.breakdown
        return data


@dataclass
class _Item:
    """A message the session added to the conversation, as the call saw it arrive."""

    at: float
    role: str
    text: str
    interrupted: bool


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


class AudioCall(TextCall):
    """A call on the local audio transport: the same GraphLLM and session as a LiveKit room call.

    Args:
        services: the process's services (graph, tenant, classifier).
        stt: a streaming STT (e.g. `local_stt(vad=...)` or a fallback chain).
        tts: the agent's TTS; wrap it in `CachedTTS` to use the phrase cache (timings are read from it).
        vad: the session's VAD (silero).
        caller_tts: the TTS that voices the scripted caller; default the agent's inner engine.
        telephony: 8 kHz μ-law line instead of 16 kHz linear.
        pace: line speed (1.0 real time).
        reply_timeout_s: how long a turn may wait for the agent before it is recorded as silence.
        realtime_playout: play the agent's audio out in real time (needed for barge-in); False finishes
            playback as soon as the audio is captured (faster tests and benchmarks).
    """

    def __init__(
        self,
        services: Services,
        *,
        stt: stt.STT[Any],
        tts: CachedTTS,
        vad: vad.VAD,
        caller_tts: tts.TTS[Any] | None = None,
        telephony: bool = False,
        pace: float = 1.0,
        noise_level: float = 0.0,
        reply_timeout_s: float = 20.0,
        call_id: str | None = None,
        caller_id: str | None = None,
        endpointing_s: float = 0.2,
        realtime_playout: bool = True,
    ) -> None:
        super().__init__(services, call_id=call_id, caller_id=caller_id)
        self.tts = tts
        self.caller_tts = caller_tts or tts.inner
        self.telephony = telephony
        self.reply_timeout_s = reply_timeout_s
        self.line = LineAudioInput(sample_rate=8000 if telephony else 16000, pace=pace, noise_level=noise_level)
        self.speaker = CaptureAudioOutput(realtime=realtime_playout)
        self.session = AgentSession(
            llm=self.llm,
            stt=stt,
            vad=vad,
            tts=tts,
            turn_handling=turn_handling(min_delay=endpointing_s),  # type: ignore[arg-type]
            user_away_timeout=None,
            # The line carries only the caller: the agent's audio goes to `speaker` and never echoes back.
            # The default AEC warm-up (3 s from the agent's first word) would hand STT silence in place of
            # a caller who barges in, and hold the interruption, so their sentence was never transcribed.
            aec_warmup_duration=None,
        )
        self.session.input.audio = self.line
        # As in a room (RoomIO): the reply's text follows its playout, so a reply the caller cuts off is
        # recorded as the words they heard, not the whole reply (`GraphLLM.on_speech`).
        self._synchronizer = TranscriptSynchronizer(next_in_chain_audio=self.speaker, next_in_chain_text=None)
        self.session.output.audio = self._synchronizer.audio_output
        self.session.output.transcription = self._synchronizer.text_output
        self._finals: list[tuple[float, str]] = []
        self._items: list[_Item] = []
        self._item_added = asyncio.Event()
        self.session.on("user_input_transcribed", self._on_transcript)
        self.llm.follow(self.session)  # the router starts at the STT final; cut-off replies are noted
        self.session.on("conversation_item_added", self._on_item)

    def _on_transcript(self, ev: UserInputTranscribedEvent) -> None:
        if ev.is_final and ev.transcript.strip():
            self._finals.append((time.perf_counter(), ev.transcript.strip()))

    def _on_item(self, ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        if isinstance(item, ChatMessage) and item.role in ("user", "assistant"):
            self._items.append(_Item(time.perf_counter(), item.role, item.text_content or "", item.interrupted))
            self._item_added.set()

    def _answer(self, since: int) -> tuple[_Item | None, list[_Item]]:
        """The first caller message committed after item `since`, and the agent's messages answering it."""
        user_at = next((i for i in range(since, len(self._items)) if self._items[i].role == "user"), None)
        if user_at is None:
            return None, []
        replies: list[_Item] = []
        for item in self._items[user_at + 1 :]:
            if item.role == "user":
                break
            replies.append(item)
        return self._items[user_at], replies

    async def caller_audio(self, text: str) -> bytes:
        """The caller's words as line audio: local TTS at the line rate, through μ-law on telephony."""
        audio = await caller_speech(self.caller_tts, text, sample_rate=self.line.sample_rate)
        if not self.telephony:
            return audio
        return mulaw_decode(mulaw_encode(np.frombuffer(audio, dtype=np.int16))).tobytes()

    async def say(self, utterance: str) -> AudioTurnRecord:
        """Speak one caller turn down the line and wait for the agent's spoken answer to it."""
        if not self._started:
            await self.start()
        return await self._turn(utterance, await self.caller_audio(utterance))

    async def barge_in(self, utterance: str) -> AudioTurnRecord:
        """Speak over the agent: wait until its reply is playing, say `utterance`, wait for the answer to it.

        Run the turn being interrupted as a task (`say`); it ends with the cut-off reply (`interrupted`).

        Raises:
            TimeoutError: the agent did not start speaking within `reply_timeout_s`.
        """
        if not self._started:
            await self.start()
        pcm = await self.caller_audio(utterance)
        async with asyncio.timeout(self.reply_timeout_s):
            await self.speaker.playing.wait()
        return await self._turn(utterance, pcm)

    async def _turn(self, utterance: str, pcm: bytes) -> AudioTurnRecord:
        # Anything before this point belongs to an earlier turn (possibly still being answered).
        mark = time.perf_counter()
        n_finals, n_items, n_frames = len(self._finals), len(self._items), len(self.speaker.frames)
        n_timings, n_synth = len(self.llm.turns.timings), self.tts.journal.added
        speech_end = await self.line.play(pcm)
        deadline = speech_end + self.reply_timeout_s
        while not self._answer(n_items)[1]:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._item_added.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._item_added.wait(), timeout=remaining)
        return await self._record(utterance, mark, speech_end, n_finals, n_items, n_frames, n_timings, n_synth)

    async def _record(
        self,
        utterance: str,
        mark: float,
        speech_end: float,
        n_finals: int,
        n_items: int,
        n_frames: int,
        n_timings: int,
        n_synth: int,
    ) -> AudioTurnRecord:
        user, replies = self._answer(n_items)
        # What STT heard for this turn: the finals that made up its caller message (all of them, if none
        # was committed), not the next turn's, which a caller barging in may already have said.
        finals = [(t, s) for t, s in self._finals[n_finals:] if t >= mark and (user is None or t <= user.at)]
        heard = " ".join(s for _, s in finals)
        reply = " ".join(r.text for r in replies).strip()
        frames = [f for f in self.speaker.frames[n_frames:] if f.at >= speech_end]
        timing = self.llm.turns.timings[n_timings] if len(self.llm.turns.timings) > n_timings else None
        synth = self.tts.journal.since(n_synth)
        first_synth = synth[0] if synth else None
        stt_final_at = finals[-1][0] if finals else None
        first_audio_at = frames[0].at if frames else None

        stt_final = (stt_final_at - speech_end) if stt_final_at else None
        graph_ft = (timing.first_token - timing.started) if timing and timing.first_token else None
        tts_fb = first_synth.first_audio - first_synth.started if first_synth and first_synth.first_audio else None
        first_audio = (first_audio_at - speech_end) if first_audio_at else None
        endpointing = (timing.started - stt_final_at) if timing and stt_final_at else None
        overhead = None
        if first_audio is not None and None not in (stt_final, graph_ft, tts_fb, endpointing):
            # What is neither a provider nor the deliberate endpointing wait: queues, scheduling, resampling.
            overhead = first_audio - (stt_final or 0) - (graph_ft or 0) - (tts_fb or 0) - (endpointing or 0)
        breakdown = {
            "first_audio": _ms(first_audio),
            "stt_final": _ms(stt_final),
            "graph_first_token": _ms(graph_ft),
            "tts_first_byte": _ms(tts_fb),
            "overhead": _ms(overhead),
            "endpointing": _ms(endpointing),
        }
        state = await self.state()
        record = AudioTurnRecord(
            caller=utterance,
            agent=reply,
            agent_name=speaker_of(state),
            intent=state.get("intent"),
            confidence=state.get("confidence"),
            latency_ms=breakdown["first_audio"] or 0.0,
            graph_ms=round(((timing.finished or timing.started) - timing.started) * 1000, 2) if timing else 0.0,
            heard=heard,
            wer=round(word_error_rate(utterance, heard), 4),
            agent_audio_ms=round(sum(f.frame.duration for f in frames) * 1000, 1),
            interrupted=any(r.interrupted for r in replies),
            breakdown=breakdown,
            cached_sentences=sum(1 for s in synth if s.cached),
        )
        self.result.turns.append(record)
        self._absorb(state)
        return record

    async def silence(self, seconds: float) -> list[tuple[float, str]]:
        """Let the line carry only silence (or noise) for `seconds`; returns what the agent said meanwhile."""
        n_items = len(self._items)
        await asyncio.sleep(seconds)
        return [(i.at, i.text) for i in self._items[n_items:] if i.role == "assistant"]

    async def aclose(self) -> None:
        await super().aclose()
        await self._synchronizer.aclose()
        await self.speaker.aclose()


async def run_audio_call(
    services: Services,
    utterances: Sequence[str],
    *,
    stt: stt.STT[Any],
    tts: CachedTTS,
    vad: vad.VAD,
    telephony: bool = False,
    pace: float = 1.0,
    call_id: str | None = None,
    caller_id: str | None = None,
    on_turn: Callable[[AudioTurnRecord], Awaitable[None] | None] | None = None,
) -> CallResult:
    """Run a scripted audio call to its end and return the result (turns are `AudioTurnRecord`s)."""
    call = AudioCall(
        services, stt=stt, tts=tts, vad=vad, telephony=telephony, pace=pace, call_id=call_id, caller_id=caller_id
    )
    return await play_script(call, utterances, on_turn)


_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def spoken_digits(text: str) -> str:
    """Read runs of three or more digits one by one, as callers say ZIP codes and phone numbers.

    A TTS reads "10027" as "ten thousand twenty-seven", which no caller says and no STT writes back as
    the same digits.
    """
    return re.sub(r"\d{3,}", lambda m: " ".join(_DIGIT_NAMES[int(d)] for d in m.group(0)), text)
