"""The local audio call: caller text → TTS → line audio → AgentSession (VAD ▸ STT ▸ graph ▸ TTS) → captured."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from livekit.agents import AgentSession, stt, tts, vad
from livekit.agents.llm import ChatMessage
from livekit.agents.voice.events import (
    ConversationItemAddedEvent,
    UserInputTranscribedEvent,
)
from livekit.agents.voice.transcription.synchronizer import TranscriptSynchronizer

from agents.supervisor import speaker_of
from orchestrator.providers.phrase_cache import CachedTTS
from orchestrator.results import CallResult, TurnRecord
from orchestrator.runtime import Services
from orchestrator.session.line import (
    CaptureAudioOutput,
    LineAudioInput,
    caller_speech,
    mulaw_decode,
    mulaw_encode,
    turn_handling,
)
from orchestrator.session.text import TextCall, play_script
from orchestrator.telemetry.wer import word_error_rate

__all__ = ["AudioCall", "AudioTurnRecord", "run_audio_call"]


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

    async def say_in_parts(self, parts: Sequence[str], *, pause_s: float) -> AudioTurnRecord:
        """Speak one caller turn in parts with `pause_s` of silence between them, as callers read a number out
        in groups, and wait for the agent's answer to the whole of it."""
        if not self._started:
            await self.start()
        gap = bytes(round(self.line.sample_rate * pause_s) * 2)
        pcm = gap.join([await self.caller_audio(part) for part in parts])
        return await self._turn(" ".join(parts), pcm)

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
