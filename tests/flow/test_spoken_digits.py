"""A caller verified by voice: the phone number and ZIP code they say reach the graph as the digits they said."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from orchestrator.config import PROMPTS_DIR, load_settings
from orchestrator.providers.tts import FliteTTS
from orchestrator.providers.voice import VoiceStack, open_voice
from orchestrator.runtime import Services
from orchestrator.session.audio import AudioCall
from tests.flow.conftest import fixed_clock

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


async def says_number_and_zip(
    services: Services,
    voice: VoiceStack,
    *,
    telephony: bool = False,
    asks: tuple[str, str] = ("phone number", "ZIP code"),
) -> None:
    """A caller with no caller ID reads the number on the account and its ZIP code, digit by digit, as the demo's
    callers do (flite: "five five five, zero one zero, ..."); ``asks`` are words of the two questions."""
    call = AudioCall(
        services, stt=voice.stt, tts=voice.tts, vad=voice.turn_vad, caller_tts=FliteTTS(), telephony=telephony,
        realtime_playout=False,
    )  # fmt: skip
    try:
        asked = await call.say("What's my balance?")
        assert asks[0] in asked.agent, asked.agent
        number = await call.say("555 010 0001")
        assert asks[1] in number.agent, (number.heard, number.agent)
        zip_turn = await call.say("10027")
    finally:
        await call.aclose()
    assert "5550100001" in number.heard
    assert "10027" in zip_turn.heard
    assert call.result.account_id == "NW-1001", (zip_turn.heard, zip_turn.agent)


async def test_a_number_read_out_in_groups_with_pauses_is_one_answer(services: Services, voice: VoiceStack) -> None:
    """Pauses between the groups of a phone number, longer than the silence that ends a finished turn, do not
    end the turn: the digits stop short of a phone number, so the session waits for the rest, and the STT
    decodes the groups together (a lone "five five five" came back as "5555", and the turn ended there)."""
    call = AudioCall(
        services, stt=voice.stt, tts=voice.tts, vad=voice.turn_vad, caller_tts=FliteTTS(), realtime_playout=False
    )
    try:
        asked = await call.say("What's my balance?")
        assert "phone number" in asked.agent, asked.agent
        number = await call.say_in_parts(["555", "010", "0001"], pause_s=0.7)
    finally:
        await call.aclose()
    digits = "".join(c for c in number.heard if c.isdigit())
    said = [m.text_content for m in call.session.history.messages() if m.role == "user"]
    assert len(said) == 2, said
    # tiny.en at times drops one of a run of zeros ("zero zero zero one"): the groups are whole and in order.
    assert digits.startswith("555010"), number.heard
    assert digits.endswith("01"), number.heard
    assert len(digits) >= 9, number.heard


@pytest.mark.parametrize("telephony", [False, True], ids=["16k", "8k-ulaw"])
async def test_a_caller_with_no_caller_id_says_their_number_and_zip_and_is_verified(
    services: Services, voice: VoiceStack, telephony: bool
) -> None:
    await says_number_and_zip(services, voice, telephony=telephony)


async def test_digits_are_heard_as_digits_whatever_words_the_tenant_asks_for_them_with(
    tmp_path: Path, voice: VoiceStack
) -> None:
    # A tenant's own wording names neither a phone number nor a ZIP code: the graph's state, not the words,
    # tells the STT that the answer is a digit string.
    prompts = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, prompts)
    replies = yaml.safe_load((prompts / "replies.yaml").read_text())
    replies["verify"]["ask_phone"] = "Sure. Which number is the account under?"
    replies["verify"]["ask_zip_after_phone"] = "Thanks. And the postcode of the service address?"
    (prompts / "replies.yaml").write_text(yaml.safe_dump(replies, sort_keys=False))
    settings = load_settings(data_dir=tmp_path / "data", prompts_dir=prompts)
    async with await Services.open(settings, clock=fixed_clock) as services:
        await says_number_and_zip(services, voice, asks=("Which number", "postcode"))
