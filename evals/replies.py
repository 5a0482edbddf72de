"""Wording checks on every agent reply, from the reply policy (evals/reply_policy.yaml): no key needed."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from evals.grading import EVALS_DIR, ConfigError
from evals.scorers import Check

REPLY_POLICY_FILE = EVALS_DIR / "reply_policy.yaml"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _compile(patterns: list[str]) -> list[str]:
    for p in patterns:
        try:
            re.compile(p)
        except re.error as exc:
            raise ValueError(f"bad pattern {p!r}: {exc}") from None
    return patterns


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PhraseRule(_Strict):
    """Phrases no reply may say, unless the caller asked about them first."""

    name: str = Field(pattern=r"^[a-z_]+$")
    why: str
    patterns: list[str] = Field(min_length=1)
    unless_caller: list[str] = Field(default_factory=list)

    _check = field_validator("patterns", "unless_caller")(_compile)


class ClosingRule(_Strict):
    """What the last reply of a call the caller ended must say."""

    why: str
    required: dict[str, str] = Field(default_factory=dict)
    min_words: int = Field(default=0, ge=0)

    @field_validator("required")
    @classmethod
    def _check(cls, value: dict[str, str]) -> dict[str, str]:
        _compile(list(value.values()))
        return value


class RepeatRule(_Strict):
    """A reply said again word for word, while the caller's words changed, tells them nothing new."""

    why: str


class Limits(_Strict):
    """Length limits for spoken replies."""

    max_words_per_reply: int | None = Field(default=None, ge=1)
    max_words_per_sentence: int | None = Field(default=None, ge=1)


class ReplyPolicy(_Strict):
    """The reply policy file."""

    version: int = 1
    forbidden: list[PhraseRule] = Field(default_factory=list)
    closing: ClosingRule | None = None
    repeats: RepeatRule | None = None
    limits: Limits = Field(default_factory=Limits)
    rubrics: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Finding:
    """One reply that breaks one rule: the turn (0-based), the rule and what was said."""

    turn: int
    rule: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_reply_policy(path: Path | None = None) -> ReplyPolicy:
    """Load the reply policy (evals/reply_policy.yaml by default); a bad file raises ConfigError naming it."""
    p = path or REPLY_POLICY_FILE
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    try:
        return ReplyPolicy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{p}: {where}: {first['msg']}") from None


@functools.cache
def default_reply_policy() -> ReplyPolicy:
    """The shipped reply policy, read once per process."""
    return load_reply_policy()


def _search(patterns: Sequence[str], text: str) -> re.Match[str] | None:
    for p in patterns:
        m = re.search(p, text, re.IGNORECASE | re.MULTILINE)
        if m:
            return m
    return None


def _quote(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _squeeze(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _sentence_at(text: str, pos: int) -> str:
    start = 0
    for part in _SENTENCE_END.finditer(text):
        if part.start() >= pos:
            return text[start : part.start()]
        start = part.end()
    return text[start:]


def check_replies(policy: ReplyPolicy, turns: Sequence[dict[str, Any]], *, closed_by_caller: bool) -> list[Finding]:
    """Every rule each reply breaks, in turn order.

    Args:
        policy: the reply policy.
        turns: the call's turns (`caller` and `agent` text).
        closed_by_caller: the caller ended the call (its last reply is the goodbye).
    """
    found: list[Finding] = []
    callers = ""
    said_before: tuple[str, str] | None = None
    for i, turn in enumerate(turns):
        caller = str(turn.get("caller") or "")
        callers += " " + caller
        reply = str(turn.get("agent") or "")
        heard = (_squeeze(caller), _squeeze(reply))
        repeated = said_before is not None and heard[1] == said_before[1] != "" and heard[0] != said_before[0]
        if policy.repeats is not None and repeated:
            found.append(Finding(i, "repeated", f"{policy.repeats.why}: {_quote(reply)}"))
        said_before = heard
        for rule in policy.forbidden:
            m = _search(rule.patterns, reply)
            if m and not (rule.unless_caller and _search(rule.unless_caller, callers)):
                said = _sentence_at(reply, m.start())
                found.append(Finding(i, rule.name, f"{rule.why}: {m.group(0)!r} in {_quote(said)}"))
        words = len(reply.split())
        lim = policy.limits
        if lim.max_words_per_reply is not None and words > lim.max_words_per_reply:
            found.append(Finding(i, "too_long", f"{words} words, at most {lim.max_words_per_reply}"))
        if lim.max_words_per_sentence is not None:
            longest = max((s for s in _SENTENCE_END.split(reply)), key=lambda s: len(s.split()), default="")
            n = len(longest.split())
            if n > lim.max_words_per_sentence:
                found.append(
                    Finding(
                        i,
                        "long_sentence",
                        f"a {n}-word sentence (at most {lim.max_words_per_sentence} for speech): {_quote(longest)}",
                    )
                )
    if policy.closing is not None and closed_by_caller and turns:
        last = str(turns[-1].get("agent") or "")
        missing = [name for name, p in policy.closing.required.items() if not re.search(p, last, re.IGNORECASE)]
        short = len(last.split()) < policy.closing.min_words
        if missing or short:
            why = [f"no {name}" for name in missing]
            if short:
                why.append(f"{len(last.split())} words, at least {policy.closing.min_words}")
            found.append(Finding(len(turns) - 1, "closing", f"{policy.closing.why}: {_quote(last)} ({', '.join(why)})"))
    return found


def findings_to_checks(findings: Sequence[Finding]) -> list[Check]:
    """One failing `reply.<rule>` check per broken rule, naming each turn (1-based) that broke it."""
    by_rule: dict[str, list[Finding]] = {}
    for f in findings:
        by_rule.setdefault(f.rule, []).append(f)
    return [
        Check(f"reply.{rule}", False, "; ".join(f"turn {f.turn + 1}: {f.detail}" for f in fs))
        for rule, fs in by_rule.items()
    ]
