"""A supervisor's typed lines in a voice call: spoken to the caller at once, in the agent's voice."""

from __future__ import annotations

import asyncio
import functools
import shutil
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from livekit.agents.voice import SpeechCreatedEvent, SpeechHandle

from orchestrator.config import load_settings
from orchestrator.live import LiveFeed
from orchestrator.providers.tts import piper_available
from orchestrator.providers.voice import VoiceStack, open_voice
from orchestrator.runtime import Services
from orchestrator.session.room import LocalLine, VoiceCall
from tests.conftest import REDIS_TEST_URL

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(
        not piper_available() and shutil.which("flite") is None,
        reason="no local TTS: install Debian flite (apt-get install -y flite) or the piper extra",
    ),
]


@pytest.fixture
async def voice(services: Services) -> AsyncIterator[VoiceStack]:
    stack = await open_voice(load_settings(data_dir=services.settings.data_dir), phrases=services.prompts.phrases())
    yield stack
    await stack.aclose()


@pytest.fixture
async def feed() -> AsyncIterator[LiveFeed]:
    redis = aioredis.from_url(REDIS_TEST_URL, decode_responses=True)
    yield LiveFeed(redis, prefix=f"voice-console-{uuid.uuid4().hex[:8]}")
    await redis.aclose()


async def test_a_supervisors_line_is_spoken_to_the_caller_at_once(
    services: Services, voice: VoiceStack, feed: LiveFeed
) -> None:
    call_id = f"call-{uuid.uuid4().hex[:10]}"
    # Typed before this process took the call (a resumed call): never said twice.
    await feed.append(call_id, "human", "ada", "This was said before the call moved here.")
    line = LocalLine.open()
    call = VoiceCall(
        services,
        voice,
        call_id=call_id,
        line=line,
        human_lines=functools.partial(feed.human_lines, call_id, block_ms=200),
    )
    said: list[SpeechHandle] = []
    saying = asyncio.Event()

    def on_speech(ev: SpeechCreatedEvent) -> None:
        if ev.source == "say":
            said.append(ev.speech_handle)
            saying.set()

    call.session.on("speech_created", on_speech)
    try:
        await call.start()
        await feed.append(call_id, "agent", "billing", "An agent line is shown, not spoken again.")
        await feed.append(call_id, "human", "ada", "Hi, this is Ada from Northwind, I'm taking over your call.")
        async with asyncio.timeout(60):
            await saying.wait()  # the caller hears it with no caller turn to wait for
            await said[0].wait_for_playout()
        assert len(said) == 1
        assert not said[0].interrupted
        assert line.output.frames, "the line carried the supervisor's words in the agent's voice"
        assert not call.result.turns, "a supervisor's line is not an answer to a caller turn"
    finally:
        await call.aclose()
