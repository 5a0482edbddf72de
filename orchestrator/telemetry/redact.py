"""PII redaction for transcripts, span attributes and logs: phones, emails, cards, ZIPs, the caller's name."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PHONE = "[PHONE]"
EMAIL = "[EMAIL]"
CARD = "[CARD]"
ZIP = "[ZIP]"
NAME = "[NAME]"
DIGITS = "[NUMBER]"

_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# 13-19 digits, optionally grouped by spaces or dashes: card-like, whatever the issuer.
_CARD_RE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
# North American numbers as callers say or type them: +1 555 010 0002, (555) 010-0002, 5550100002.
_PHONE_RE = re.compile(r"(?<![\d+])(?:\+?1[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}(?!\d)")
_ZIP_RE = re.compile(r"(?<!\d)\d{5}(?:-\d{4})?(?!\d)")
# Long digit runs left after the patterns above (account numbers, codes read out digit by digit).
_LONG_DIGITS_RE = re.compile(r"(?<!\d)\d(?:[ -]?\d){6,}(?!\d)")
# An agent turn that asks for the ZIP makes the caller's next turn a verification answer.
_ASKS_ZIP_RE = re.compile(r"\bzip\b", re.IGNORECASE)
# The verification dialogue names the caller once verified ("Thank you, Maria, you're verified.").
_VERIFIED_NAME_RE = re.compile(r"\bThank you, ([A-Z][\w'-]+(?: [A-Z][\w'-]+)?), you're verified")


def redact_text(text: str, *, names: Iterable[str] = (), zip_expected: bool = False) -> str:
    """Mask PII in one piece of text.

    Args:
        text: A caller utterance, an agent reply or a log line.
        names: Names to mask (the verified caller's first and full name).
        zip_expected: The text answers a ZIP prompt, so five-digit numbers in it are ZIP codes. Outside
            that context a five-digit number is left alone (it may be an amount or a step number).

    Returns:
        The text with each PII span replaced by a bracketed tag such as `[PHONE]`.
    """
    if not text:
        return text
    out = _EMAIL_RE.sub(EMAIL, text)
    out = _CARD_RE.sub(lambda m: CARD if len(re.sub(r"\D", "", m.group())) >= 13 else m.group(), out)
    out = _PHONE_RE.sub(PHONE, out)
    if zip_expected:
        out = _ZIP_RE.sub(ZIP, out)
    out = _LONG_DIGITS_RE.sub(DIGITS, out)
    for name in sorted({n.strip() for n in names if n and len(n.strip()) >= 2}, key=len, reverse=True):
        out = re.sub(rf"\b{re.escape(name)}\b", NAME, out)
    return out


def names_in(agent_replies: Iterable[str]) -> set[str]:
    """Caller names the agent spoke back after verification (first name and full name)."""
    found: set[str] = set()
    for reply in agent_replies:
        for match in _VERIFIED_NAME_RE.finditer(reply or ""):
            full = match.group(1)
            found.add(full)
            found.add(full.split()[0])
    return found


@dataclass(frozen=True)
class RedactedTurn:
    """One caller turn and the agent's answer, both redacted."""

    caller: str
    agent: str


def redact_turns(turns: Sequence[tuple[str, str]], *, names: Iterable[str] = ()) -> list[RedactedTurn]:
    """Redact a call's transcript, using the dialogue for context.

    A caller turn is treated as a ZIP answer when the agent's previous reply asked for a ZIP code, and
    the caller's name is masked everywhere once the agent has said it after verification.

    Args:
        turns: `(caller, agent)` pairs in order.
        names: Extra names to mask (e.g. the verified account holder's name from the state).
    """
    all_names = set(names) | names_in(agent for _, agent in turns)
    out: list[RedactedTurn] = []
    asked_zip = False
    for caller, agent in turns:
        out.append(
            RedactedTurn(
                caller=redact_text(caller, names=all_names, zip_expected=asked_zip),
                agent=redact_text(agent, names=all_names),
            )
        )
        asked_zip = bool(_ASKS_ZIP_RE.search(agent or ""))
    return out


class RedactingFilter(logging.Filter):
    """A logging filter that masks PII in messages before any handler sees them.

    Install on handlers (not loggers) so records from every library are covered:
    `handler.addFilter(RedactingFilter())`.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True
