"""When the caller has finished: a turn whose words are a whole answer ends at a short pause, one left midway waits."""

from __future__ import annotations

import asyncio
import re

from livekit.agents import llm

from agents import parsing
from orchestrator.providers.stt import EXPECTS_DIGITS_KEY, TURN_SILENCE_S, asks_for_digits

# On an assistant message (`ChatMessage.extra`): whether the reply asked the caller to confirm an effect.
CONFIRMS_EFFECT_KEY = "switchboard.confirms_effect"
# The silence that ends an answer to "Shall I charge $49 to the card on file?": a "yes" is given the time a
# "yes, but when is it due?" needs to go on, since once the turn ends the payment is made.
CONFIRMATION_SILENCE_S = 0.4
# How an LLM's reply asks for a go-ahead, when the graph's state does not say so (a model's own question).
_ASKS_GO_AHEAD = re.compile(
    r"\b(?:shall i|should i|would you like me to|do you want me to|can i go ahead|may i|is it ok(?:ay)? (?:if|to))\b",
    re.IGNORECASE,
)

# Words nobody ends on when they have finished ("my number is", "and um").
_UNFINISHED_ENDINGS = frozenset((
    "and", "or", "but", "so", "because", "cause", "um", "uh", "er", "erm", "uhm", "the", "a", "an", "my", "our",
    "your", "his", "her", "their", "to", "of", "for", "with", "from", "at", "in", "on", "by", "about", "is", "are",
    "was", "were", "am", "i", "i'm", "it's", "its", "that's", "if", "like", "plus", "also", "than", "into",
))  # fmt: skip
FINISHED, UNFINISHED = 0.95, 0.05


def sounds_finished(said: str, *, expects_digits: bool) -> bool:
    """Whether the caller's words so far read as all they meant to say.

    Not when they end on a word nobody ends on ("my ZIP is", "and um"), nor, when the agent asked for digits,
    when the digits stop short of a ZIP code, a phone number or an account number ("five five five, zero one").
    """
    words = parsing.normalize(said).replace(".", " ").replace(":", " ").split()
    if not words:
        return True
    if words[-1] in _UNFINISHED_ENDINGS:
        return False
    return not (expects_digits and parsing.stops_short_of_a_number(said))


class AnswerAwareTurnDetector:
    """A livekit turn detector (`turn_detection=`) that reads the caller's words against what the agent asked.

    The session asks it once the caller falls silent (`TURN_SILENCE_S`). A finished-sounding turn ends after the
    endpointing's `min_delay`; an unfinished one waits up to its `max_delay` for the rest; an answer to a request
    to confirm an effect ends after `CONFIRMATION_SILENCE_S`, as every turn did before. It is a few string
    checks on the transcript: no model, so it costs nothing a caller can hear. The same idea as the smart
    endpointing of hosted voice platforms (short on a complete sentence, long mid-number).
    """

    @property
    def model(self) -> str:
        return "answer-aware"

    @property
    def provider(self) -> str:
        return "switchboard"

    async def unlikely_threshold(self, language: str | None) -> float:
        return 0.5

    async def supports_language(self, language: str | None) -> bool:
        return True  # the agent speaks English; another language is answered by the graph, not held here

    async def predict_end_of_turn(
        self,
        chat_ctx: llm.ChatContext,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  # livekit's detector protocol names it; nothing here waits
    ) -> float:
        said: str | None = None
        expects_digits = confirms = False
        for item in reversed(chat_ctx.items):
            if not isinstance(item, llm.ChatMessage):
                continue
            if item.role == "user" and said is None:
                said = item.text_content or ""  # the turn so far, as the session adds it for the detector
            elif item.role == "assistant":
                # The call graph says what its reply asked for; the wording is the guess without its word.
                extra, asked = item.extra or {}, item.text_content or ""
                told = extra.get(EXPECTS_DIGITS_KEY)
                expects_digits = told if isinstance(told, bool) else asks_for_digits(asked)
                told = extra.get(CONFIRMS_EFFECT_KEY)
                confirms = told if isinstance(told, bool) else bool(_ASKS_GO_AHEAD.search(asked))
                break
        if not sounds_finished(said or "", expects_digits=expects_digits):
            return UNFINISHED
        if confirms:
            # The session asked at TURN_SILENCE_S; speech that starts meanwhile cancels this wait (and the turn's end).
            await asyncio.sleep(CONFIRMATION_SILENCE_S - TURN_SILENCE_S)
        return FINISHED
