"""Audio calls end to end on the embedded default: caller TTS → line → silero VAD → Whisper → graph → local TTS."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
from livekit.agents import tts as lk_tts

from orchestrator.config import load_settings
from orchestrator.providers.tts import FliteTTS, LocalTTSUnavailable, local_tts, piper_available
from orchestrator.providers.voice import VoiceStack, open_voice
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
        services, stt=voice.stt, tts=voice.tts, vad=voice.vad, caller_tts=caller_voice(), caller_id=CALLER,
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
        services, stt=voice.stt, tts=voice.tts, vad=voice.vad, caller_tts=caller_voice(), caller_id=CALLER,
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
        services, stt=voice.stt, tts=voice.tts, vad=voice.vad, caller_tts=caller_voice(), noise_level=30.0,
        realtime_playout=False,
    )  # fmt: skip
    try:
        await call.start()
        said = await call.silence(1.5)
    finally:
        await call.aclose()
    assert said == []
    assert call.llm.turns.timings == [], "no graph turn ran on silence"


async def test_barge_in_stops_the_agent(services: Services, voice: VoiceStack) -> None:
    call = AudioCall(
        services, stt=voice.stt, tts=voice.tts, vad=voice.vad, caller_tts=caller_voice(), caller_id=CALLER,
    )  # fmt: skip
    try:
        first = asyncio.create_task(call.say("What's my balance?"))
        try:
            async with asyncio.timeout(30):
                while not call.speaker.frames:  # noqa: ASYNC110  # polling a plain list the output appends to
                    await asyncio.sleep(0.05)
            # The agent is talking (its answer is several seconds long): the caller cuts in.
            await asyncio.sleep(0.3)
            await call.line.play(await call.caller_audio("Wait, I want to speak to a person."))
            turn = await first
        finally:
            first.cancel()
    finally:
        await call.aclose()
    assert call.speaker.interruptions >= 1, "the agent stopped talking when the caller barged in"
    assert turn.agent, "the interrupted answer is still on the record"
