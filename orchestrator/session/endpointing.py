"""When the caller has finished: a turn whose words are a whole answer ends at a short pause, one left midway waits."""

from __future__ import annotations

from livekit.agents import llm

from agents import parsing
from orchestrator.providers.stt import EXPECTS_DIGITS_KEY, asks_for_digits

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
    endpointing's `min_delay`; an unfinished one waits up to its `max_delay` for the rest. It is a few string
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
        expects_digits = False
        for item in reversed(chat_ctx.items):
            if not isinstance(item, llm.ChatMessage):
                continue
            if item.role == "user" and said is None:
                said = item.text_content or ""  # the turn so far, as the session adds it for the detector
            elif item.role == "assistant":
                # The call graph says whether its reply asked for digits; the wording is the guess without one.
                told = (item.extra or {}).get(EXPECTS_DIGITS_KEY)
                expects_digits = told if isinstance(told, bool) else asks_for_digits(item.text_content or "")
                break
        return FINISHED if sounds_finished(said or "", expects_digits=expects_digits) else UNFINISHED
