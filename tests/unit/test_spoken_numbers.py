"""Spoken numbers read as digit strings, and the STT told by the agent's question that digits come next."""

from __future__ import annotations

import pytest
from livekit.agents import llm
from livekit.agents.stt import StreamAdapter
from livekit.agents.voice.events import ConversationItemAddedEvent
from livekit.plugins import silero

from agents import parsing
from orchestrator.providers.spoken_numbers import digit_string, normalise
from orchestrator.providers.stt import WhisperSTT, asks_for_digits

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("heard", "digits"),
    [
        # What Whisper wrote for numbers that callers said digit by digit.
        ("555-010-0001", "5550100001"),
        ("Nine. One. Four. One. Seven.", "91417"),
        ("eight, eight, three, six, zero.", "88360"),
        ("5-3-3-7-4", "53374"),
        ("690 743 9150", "6907439150"),
        ("1 5 8 6 8 3 4 4 9 7", "1586834497"),
        # How callers say them.
        ("five five five, oh one oh, double oh oh one", "5550100001"),
        ("triple five oh one oh o o o one", "5550100001"),
        ("one oh oh two seven", "10027"),
        ("ten oh two seven", "10027"),
        ("ten thousand twenty seven", "10027"),
        ("eight hundred five five five one two one two", "8005551212"),
        ("five hundred fifty five, zero one zero", "555010"),
        ("fifty five fifty five", "5555"),
        ("five five five to one two", "555212"),
        ("It's 1 0 0 2 7, thanks", "10027"),
        ("I don't know it", ""),
    ],
)
def test_digit_string(heard: str, digits: str) -> None:
    assert digit_string(heard) == digits


@pytest.mark.parametrize(
    ("heard", "expected"),
    [
        ("My number is five five five, oh one oh, double oh oh one.", "My number is 5550100001."),
        ("My number is 555-010-0001, thanks", "My number is 5550100001, thanks"),
        ("Call me on 5 5 5 0 1 0 0 0 0 1", "Call me on 5550100001"),
        # Nothing that can be a quantity or ordinary words is touched without a question for digits.
        ("I have one question about two bills", "I have one question about two bills"),
        ("I want to pay $42.50 for it", "I want to pay $42.50 for it"),
        ("Can I pay 1,250 dollars?", "Can I pay 1,250 dollars?"),
        ("It's 10,27 I think", "It's 10,27 I think"),
    ],
)
def test_without_a_question_for_digits_only_identifiers_are_rewritten(heard: str, expected: str) -> None:
    assert normalise(heard) == expected


def test_with_a_question_for_digits_every_number_joins_into_one_string() -> None:
    assert normalise("Yes, it's five five five. Oh one oh. Zero zero zero one.", expect_digits=True) == (
        "Yes, it's 5550100001"
    )
    assert normalise("Ten, twenty seven.", expect_digits=True) == "1027"


@pytest.mark.parametrize(
    "heard",
    [
        "five five five oh one oh double oh oh one",
        "555-010-0001",
        "Five. Five. Five. Zero. One. Zero. Zero. Zero. Zero. One.",
    ],
)
def test_the_graphs_reader_finds_the_phone_number_in_the_normalised_words(heard: str) -> None:
    assert parsing.phone_number(normalise(heard, expect_digits=True)) == "+15550100001"


@pytest.mark.parametrize(
    ("question", "digits"),
    [
        ("I can help with that. First, for your security, what's the ZIP code on your account?", True),
        ("I can help with that. First, I need to find your account. What's the phone number on the account?", True),
        ("Sorry, I need the five-digit ZIP code of your service address.", True),
        ("How can I help you today?", False),
        ("Your balance is $42.50. Would you like to pay it now?", False),
    ],
)
def test_asks_for_digits(question: str, digits: bool) -> None:
    assert asks_for_digits(question) is digits


def test_the_agents_question_reaches_whisper_through_the_stream_adapter() -> None:
    whisper = WhisperSTT()
    adapter = StreamAdapter(stt=whisper, vad=silero.VAD.load())
    assert adapter.capabilities.chat_context, "the session forwards conversation items only to an STT that takes them"

    def said(role: str, text: str) -> ConversationItemAddedEvent:
        return ConversationItemAddedEvent(item=llm.ChatMessage(role=role, content=[text]))  # type: ignore[arg-type]  # role is a Literal

    adapter._push_conversation_item(said("assistant", "What's the phone number on the account?"))
    assert whisper.expecting_digits
    adapter._push_conversation_item(said("user", "It's five five five"))
    assert whisper.expecting_digits, "the caller's own words do not change what was asked"
    adapter._push_conversation_item(said("assistant", "Thanks, Maria. How can I help?"))
    assert not whisper.expecting_digits
