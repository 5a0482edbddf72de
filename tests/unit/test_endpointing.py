"""The answer-aware turn detector: a turn ends at a short pause when its words are whole, and waits when not."""

from __future__ import annotations

import asyncio

import pytest
from livekit.agents import llm

from orchestrator.providers.stt import EXPECTS_DIGITS_KEY, TURN_SILENCE_S
from orchestrator.session.endpointing import (
    CONFIRMATION_SILENCE_S,
    CONFIRMS_EFFECT_KEY,
    AnswerAwareTurnDetector,
    sounds_finished,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("said", "expects_digits", "finished"),
    [
        ("What's my balance?", False, True),
        ("I need to reschedule my technician appointment", False, True),
        ("yes", False, True),
        ("no thanks", False, True),
        ("I'd like to pay and", False, False),
        ("My zip code is", True, False),
        ("It's um", False, False),
        ("I was charged for the", False, False),
        # Digits the agent asked for: whole at a ZIP code, a phone number or an account number.
        ("10027", True, True),
        ("one oh oh two seven", True, True),
        ("555 010 0001", True, True),
        ("five five five zero one zero zero zero zero one", True, True),
        ("1 555 010 0001", True, True),
        ("NW 1002", True, True),
        ("account 1002", True, True),
        ("my account number is one oh oh two", True, True),
        ("1002", True, False),
        ("account one oh", True, False),
        ("555", True, False),
        ("five five five, zero one zero", True, False),
        ("one oh oh", True, False),
        # Words that sound like digits are not counted as digits, and digits unasked for hold nothing.
        ("I want to give you my name instead", True, True),
        ("It's James Carter", True, True),
        ("I was charged 49 dollars", False, True),
        ("double five five, zero one zero", True, True),
        ("", False, True),
    ],
)
def test_a_turn_sounds_finished_when_its_words_are_a_whole_answer(
    said: str, expects_digits: bool, finished: bool
) -> None:
    assert sounds_finished(said, expects_digits=expects_digits) is finished


def _context(agent: str, caller: str, *, told: bool | None = None, confirms: bool | None = None) -> llm.ChatContext:
    extra: dict[str, bool] = {}
    if told is not None:
        extra[EXPECTS_DIGITS_KEY] = told
    if confirms is not None:
        extra[CONFIRMS_EFFECT_KEY] = confirms
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content="What's my balance?")
    ctx.add_message(role="assistant", content=agent, extra=extra)
    ctx.add_message(role="user", content=caller)
    return ctx


async def test_the_detector_reads_the_turn_against_what_the_agent_asked() -> None:
    detector = AnswerAwareTurnDetector()
    threshold = await detector.unlikely_threshold("en")
    asked = "I can help with that. What's the phone number on the account?"

    async def finished(ctx: llm.ChatContext) -> bool:
        return await detector.predict_end_of_turn(ctx) >= threshold

    assert not await finished(_context(asked, "five five five, zero one zero"))
    assert await finished(_context(asked, "five five five, zero one zero, zero zero zero one"))
    # The graph's word on what it asked wins over the wording (a tenant's own question for digits).
    assert not await finished(_context("Which number is the account under?", "555 010", told=True))
    assert await finished(_context(asked, "555 010", told=False))
    # Only the caller's latest words count, not an earlier turn's.
    assert await finished(_context("Is there anything else?", "no thanks"))


@pytest.mark.looptime
async def test_a_yes_to_an_effect_ends_only_after_the_longer_silence_and_speech_meanwhile_cancels_it() -> None:
    """A "yes" to "Shall I charge...?" is the turn that moves money: it is given the time a "yes, but..." needs."""
    detector = AnswerAwareTurnDetector()
    loop = asyncio.get_running_loop()
    asked = "Your balance is forty-nine dollars. Shall I charge it to the card on file?"

    async def ended_after(ctx: llm.ChatContext) -> float:
        start = loop.time()
        assert await detector.predict_end_of_turn(ctx) >= await detector.unlikely_threshold("en")
        return loop.time() - start

    assert await ended_after(_context("Is there anything else I can help you with?", "yes")) == 0.0
    assert await ended_after(_context(asked, "yes", confirms=True)) == pytest.approx(
        CONFIRMATION_SILENCE_S - TURN_SILENCE_S
    )
    # Without the graph's word (an LLM's own question), the wording says it asks for a go-ahead.
    assert await ended_after(_context(asked, "yes")) > 0.0
    assert await ended_after(_context(asked, "yes", confirms=False)) == 0.0

    # The caller goes on ("yes, but...") before the wait is over: the session cancels the turn's end.
    waiting = asyncio.create_task(detector.predict_end_of_turn(_context(asked, "yes", confirms=True)))
    await asyncio.sleep((CONFIRMATION_SILENCE_S - TURN_SILENCE_S) / 2)
    assert not waiting.done()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
