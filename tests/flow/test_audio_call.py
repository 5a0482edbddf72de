"""Audio calls end to end on the embedded default: caller TTS → line → silero VAD → Whisper → graph → local TTS."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from livekit.agents import tts as lk_tts
from livekit.agents import utils

from agents.context import IntentPrefetch
from agents.graph import build_graph
from orchestrator.bench.providers.deepgram_ws import DeepgramStandin, Say, Stream
from orchestrator.config import load_settings
from orchestrator.providers.tts import FliteTTS, LocalTTSUnavailable, local_tts, piper_available
from orchestrator.providers.voice import VoiceStack, build_stt, open_voice
from orchestrator.runtime import Services
from orchestrator.session.audio import AudioCall, AudioTurnRecord

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(
        not piper_available() and shutil.which("flite") is None,
        reason="no local TTS: install Debian flite (apt-get install -y flite) or the piper extra",
    ),
]

CALLER = "+15550100001"


@pytest.fixture
async def voice(services: Services) -> AsyncIterator[VoiceStack]:
    settings = load_settings(data_dir=services.settings.data_dir)
    stack = await open_voice(settings, phrases=services.prompts.phrases())
    yield stack
    await stack.aclose()


def caller_voice() -> lk_tts.TTS[Any]:
    # flite is the fast, permissive caller voice; without it the caller speaks with the agent's engine.
    try:
        return FliteTTS()
    except LocalTTSUnavailable:
        return local_tts()


def assert_turn_measured(turn: AudioTurnRecord) -> None:
    lat = turn.breakdown
    assert set(lat) >= {"first_audio", "stt_final", "graph_first_token", "tts_first_byte", "overhead"}
    assert lat["first_audio"] is not None
    assert lat["first_audio"] > 0
    assert lat["stt_final"] is not None
    assert lat["stt_final"] <= lat["first_audio"]


async def test_caller_is_heard_and_answered(services: Services, voice: VoiceStack) -> None:
    call = AudioCall(
        services, stt=voice.stt, tts=voice.tts, vad=voice.turn_vad, caller_tts=caller_voice(), caller_id=CALLER,
        realtime_playout=False,
    )  # fmt: skip
    try:
        turn = await call.say("What's my balance?")
    finally:
        await call.aclose()
    assert turn.wer is not None
    assert turn.wer <= 0.34, turn.heard
    assert turn.intent == "billing"
    assert turn.agent, "the agent answered in text"
    assert turn.agent_audio_ms > 500, "and the answer was spoken"
    assert_turn_measured(turn)
    assert call.result.to_json()["turns"][0]["latency_ms"]["first_audio"] == turn.breakdown["first_audio"]


async def test_telephony_line(services: Services, voice: VoiceStack) -> None:
    call = AudioCall(
        services, stt=voice.stt, tts=voice.tts, vad=voice.turn_vad, caller_tts=caller_voice(), caller_id=CALLER,
        telephony=True, realtime_playout=False,
    )  # fmt: skip
    try:
        turn = await call.say("I need to book a technician visit.")
    finally:
        await call.aclose()
    assert turn.wer is not None
    assert turn.wer <= 0.5, turn.heard
    assert turn.intent == "scheduling"
    assert turn.agent_audio_ms > 500


async def test_silence_and_line_noise_start_no_turn(services: Services, voice: VoiceStack) -> None:
    call = AudioCall(
        services, stt=voice.stt, tts=voice.tts, vad=voice.turn_vad, caller_tts=caller_voice(), noise_level=30.0,
        realtime_playout=False,
    )  # fmt: skip
    try:
        await call.start()
        said = await call.silence(1.5)
    finally:
        await call.aclose()
    assert said == []
    assert call.llm.turns.timings == [], "no graph turn ran on silence"


async def first_reply(services: Services, call: AudioCall) -> str:
    """The agent's reply to the call's first turn as the graph wrote it (the first turn's checkpoint)."""
    async for snapshot in services.graph.aget_state_history(call.llm.config):
        lines = snapshot.values.get("transcript", [])
        if len(lines) == 2 and not lines[1].get("interrupted"):
            return str(lines[1]["text"])
    raise AssertionError("no checkpoint of the first turn")


async def test_barge_in_stops_the_agent(services: Services, voice: VoiceStack) -> None:
    """The caller talks over the agent's first reply with a new request: the agent stops, hears it, answers it."""
    call = AudioCall(
        services, stt=voice.stt, tts=voice.tts, vad=voice.turn_vad, caller_tts=caller_voice(), caller_id=CALLER,
    )  # fmt: skip
    try:
        first = asyncio.create_task(call.say("My internet keeps dropping."))
        try:
            # Into the agent's first words: the window in which AEC warm-up used to feed STT silence instead.
            second = await call.barge_in("Actually, what's my balance?")
            cut = await first
        finally:
            first.cancel()
    finally:
        await call.aclose()

    # The support reply was cut off: the caller heard only its start, in words as in audio.
    assert cut.intent == "support"
    assert cut.interrupted
    assert call.speaker.interruptions >= 1
    said = await first_reply(services, call)
    full_reply = await voice.tts.synthesize(said).collect()
    assert full_reply.duration > 2.5, "the reply is long enough to cut off"
    assert cut.agent_audio_ms < full_reply.duration * 1000 / 2, (cut.agent_audio_ms, full_reply.duration)
    heard = cut.agent.split()
    assert 0 < len(heard) < len(said.split()) / 2
    assert said.split()[: len(heard)] == heard
    assert cut.wer is not None
    assert cut.wer <= 0.34, cut.heard
    assert "balance" not in cut.heard.lower(), "the barge-in's words belong to the next turn"

    # The words the caller barged in with are the next turn, and that turn is answered by billing.
    assert second.wer is not None
    assert second.wer <= 0.34, second.heard
    assert second.intent == "billing"
    assert second.agent_name == "billing"
    assert second.agent, "billing answered"
    assert second.agent != cut.agent
    assert not second.interrupted
    assert second.agent_audio_ms > 1000, "and the answer was spoken"
    assert_turn_measured(second)
    assert [t.caller for t in call.result.turns] == ["My internet keeps dropping.", "Actually, what's my balance?"]
    assert [(h["from_agent"], h["to_agent"]) for h in call.result.handoffs] == [
        ("router", "support"),
        ("support", "billing"),
    ]
    assert call.result.errors == []

    # The graph's transcript keeps what the caller heard of the cut reply, marked as cut, not the whole reply.
    lines = (await call.state())["transcript"]
    assert [line["role"] for line in lines] == ["caller", "agent", "caller", "agent"]
    assert lines[1] == {"role": "agent", "agent": "support", "text": cut.agent, "interrupted": True}
    assert "interrupted" not in lines[3]


class HeldWrites(BaseCheckpointSaver[Any]):
    """The real checkpointer, with the turn's checkpoint write held until the test lets it go."""

    def __init__(self, inner: BaseCheckpointSaver[Any]) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self.writing = asyncio.Event()
        self.release = asyncio.Event()

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self.inner.aget_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,  # noqa: A002 - the saver interface's name
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        async for found in self.inner.alist(config, filter=filter, before=before, limit=limit):
            yield found

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        self.writing.set()
        await self.release.wait()
        return await self.inner.aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        await self.inner.aput_writes(config, writes, task_id, task_path)

    def get_next_version(self, current: Any, channel: None) -> Any:
        return self.inner.get_next_version(current, channel)


async def test_the_reply_is_spoken_before_the_turn_is_saved(services: Services, voice: VoiceStack) -> None:
    """A one-sentence reply reaches the caller's ear while the turn's checkpoint write is still held.

    The TTS's sentence splitter keeps a reply's last sentence until the text stream ends, and the graph's
    stream ends after its checkpoint write; the graph's end-of-reply mark flushes it first (`GraphAgent`).
    """
    held = HeldWrites(services.checkpointer)
    call = AudioCall(
        replace(services, graph=build_graph(held)), stt=voice.stt, tts=voice.tts, vad=voice.turn_vad,
        caller_tts=caller_voice(), caller_id=CALLER, realtime_playout=False,
    )  # fmt: skip
    try:
        turn = asyncio.create_task(call.say("Hello?"))
        async with asyncio.timeout(60):
            await held.writing.wait()
            await call.speaker.playing.wait()  # never set if the reply waited for the write
        assert not turn.done()
        held.release.set()
        record = await turn
    finally:
        held.release.set()
        await call.aclose()
    assert record.agent.count(".") + record.agent.count("!") + record.agent.count("?") <= 2, record.agent
    assert record.agent_audio_ms > 500
    assert (await services.checkpointer.aget_tuple({"configurable": {"thread_id": call.call_id}})) is not None


class RecordedPrefetch(IntentPrefetch):
    """The router's classifications, with when each was started and which were dropped unasked."""

    def __init__(self, classifier: Any) -> None:
        super().__init__(classifier)
        self.starts: list[tuple[float, tuple[str, str]]] = []
        self.discarded: list[tuple[str, str]] = []

    def start(self, key: tuple[str, str]) -> None:
        self.starts.append((time.perf_counter(), key))
        super().start(key)

    def discard(self, key: tuple[str, str]) -> None:
        self.discarded.append(key)
        super().discard(key)


async def test_the_router_starts_on_the_stt_final_before_the_turn_is_committed(
    services: Services, voice: VoiceStack
) -> None:
    """With a streaming STT (Deepgram's stand-in), the caller's words are classified as soon as they are final.

    The session commits the turn only after the VAD's silence window, so the intent model's answer is ready
    before the graph turn starts. A turn's finals are joined as the session joins them, and the partial
    words' classification is dropped once more words come.
    """
    said = "I need to book a technician visit"
    prefetch = RecordedPrefetch(services.context.classifier)
    services.context.intents = prefetch
    async with DeepgramStandin() as deepgram, utils.http_context.open(), aiohttp.ClientSession() as http:
        settings = load_settings(
            data_dir=services.settings.data_dir,
            stt_provider="deepgram",
            deepgram_api_key="dg-standin-key",
            deepgram_base_url=deepgram.listen_url,
        )
        call = AudioCall(
            services, stt=build_stt(settings, vad=voice.vad, http_session=http), tts=voice.tts, vad=voice.turn_vad,
            caller_tts=caller_voice(), caller_id=CALLER, realtime_playout=False,
        )  # fmt: skip
        pcm = await call.caller_audio(said)
        # Two finals while the caller speaks, as Deepgram sends them at a short pause.
        deepgram.enqueue(
            Stream.of(
                Say("I need to book", after_bytes=len(pcm) // 3),
                Say("a technician visit", after_bytes=2 * len(pcm) // 3),
            )
        )
        try:
            turn = await call.say(said)
        finally:
            await call.aclose()

    assert turn.heard == said
    assert turn.intent == "scheduling"
    (timing,) = call.llm.turns.timings
    whole = (call.call_id, said)
    partial = (call.call_id, "I need to book")
    started: dict[tuple[str, str], float] = {}
    for at, key in prefetch.starts:  # when each was first asked for (the graph asks again: a no-op)
        started.setdefault(key, at)
    assert started[whole] < timing.started, "the model was asked before the graph turn began"
    assert started[partial] < started[whole], "a call's first words are classified whatever their length"
    assert prefetch.discarded == [partial]
    assert not prefetch.started(whole), "route took the speculated answer"


async def test_a_caller_who_hangs_up_mid_reply_heard_only_its_start(services: Services, voice: VoiceStack) -> None:
    """The call ends while the agent speaks: the checkpoint keeps the words played, as a barge-in would."""
    call = AudioCall(
        services, stt=voice.stt, tts=voice.tts, vad=voice.turn_vad, caller_tts=caller_voice(), caller_id=CALLER,
    )  # fmt: skip
    turn = asyncio.create_task(call.say("My internet keeps dropping."))
    try:
        async with asyncio.timeout(call.reply_timeout_s):
            await call.speaker.playing.wait()
        await asyncio.sleep(1.0)  # a few words into a reply of over 2.5 s
    finally:
        await call.aclose()
        turn.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await turn

    said = await first_reply(services, call)
    (caller, agent) = (await call.state())["transcript"]
    assert caller["text"] == "My internet keeps dropping"
    assert agent["interrupted"] is True
    heard = agent["text"].split()
    assert 0 < len(heard) < len(said.split())
    assert said.split()[: len(heard)] == heard
