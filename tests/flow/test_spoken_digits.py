"""A caller verified by voice: the phone number and ZIP code they say reach the graph as the digits they said."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest

from orchestrator.config import load_settings
from orchestrator.providers.tts import FliteTTS
from orchestrator.providers.voice import VoiceStack, open_voice
from orchestrator.runtime import Services
from orchestrator.session.audio import AudioCall

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(
        shutil.which("flite") is None, reason="the caller speaks with Debian flite (apt-get install flite)"
    ),
]


@pytest.fixture
async def voice(services: Services) -> AsyncIterator[VoiceStack]:
    settings = load_settings(data_dir=services.settings.data_dir)
    stack = await open_voice(settings, phrases=services.prompts.phrases())
    yield stack
    await stack.aclose()


@pytest.mark.parametrize("telephony", [False, True], ids=["16k", "8k-ulaw"])
async def test_a_caller_with_no_caller_id_says_their_number_and_zip_and_is_verified(
    services: Services, voice: VoiceStack, telephony: bool
) -> None:
    # No caller ID: the agent asks for the number on the account, then its ZIP code. The caller reads both
    # digit by digit (flite: "five five five, zero one zero, ..."), as the demo's callers do.
    call = AudioCall(
        services, stt=voice.stt, tts=voice.tts, vad=voice.vad, caller_tts=FliteTTS(), telephony=telephony,
        realtime_playout=False,
    )  # fmt: skip
    try:
        asked = await call.say("What's my balance?")
        assert "phone number" in asked.agent, asked.agent
        number = await call.say("555 010 0001")
        assert "ZIP code" in number.agent, (number.heard, number.agent)
        zip_turn = await call.say("10027")
    finally:
        await call.aclose()
    assert "5550100001" in number.heard
    assert "10027" in zip_turn.heard
    assert call.result.account_id == "NW-1001", (zip_turn.heard, zip_turn.agent)
