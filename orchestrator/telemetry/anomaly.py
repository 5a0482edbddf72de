"""Transcript anomaly detection: off-script replies, loops, rising frustration, long calls, tool failures."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator.redact import redact_text
from orchestrator.results import AnomalyFlag

MIN_WORDS = 4
KINDS = ("off_script", "loop", "frustration", "long_call", "tool_failure", "error")

_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")
_FIELD_RE = re.compile(r"\{[^{}]*\}")
_WORD_RE = re.compile(r"[a-z0-9']+")
# What callers say when they are losing patience; each hit adds to the turn's frustration score.
_FRUSTRATION_TERMS = {
    "ridiculous": 2,
    "useless": 2,
    "unacceptable": 2,
    "terrible": 2,
    "awful": 2,
    "stupid": 2,
    "worst": 2,
    "angry": 2,
    "furious": 3,
    "again": 1,
    "already": 1,
    "still": 1,
    "seriously": 1,
    "listen": 1,
    "not working": 1,
    "doesn't work": 1,
    "told you": 2,
    "not what i said": 2,
    "real person": 1,
    "human": 1,
    "manager": 1,
    "cancel my": 1,
    "lawyer": 2,
    "damn": 2,
    "hell": 1,
}


def _ngrams(text: str, n: int = 3) -> Counter[str]:
    norm = " " + " ".join(_WORD_RE.findall(text.lower())) + " "
    return Counter(norm[i : i + n] for i in range(max(len(norm) - n + 1, 0)))


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    if not a or not b:
        return 0.0
    dot = sum(v * b.get(k, 0) for k, v in a.items())
    na = math.sqrt(sum(v * v for v in a.values()))
    nb = math.sqrt(sum(v * v for v in b.values()))
    return dot / (na * nb) if na and nb else 0.0


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_RE.split(text.strip()) if s.strip()]


class OffScriptScorer:
    """How close a reply is to what the agents are meant to say: templates, cached phrases, prompts.

    A reply is first stripped of every span that a reply template (fields as wildcards) matches
    exactly; what is left is compared sentence by sentence to the nearest template or prompt
    sentence with character-trigram cosine. The score is that of the least similar leftover
    sentence (1.0 when nothing is left), so one invented sentence in an otherwise scripted reply
    is still caught.
    """

    def __init__(self, templates: Iterable[str], *, threshold: float = 0.38) -> None:
        self.threshold = threshold
        self._patterns: list[re.Pattern[str]] = []
        self._references: list[Counter[str]] = []
        for template in dict.fromkeys(t.strip() for t in templates if t and t.strip()):
            literal = _FIELD_RE.sub("", template)
            if len(literal.strip()) >= 8:
                parts = _FIELD_RE.split(template)
                self._patterns.append(re.compile(r"\s*" + r".+?".join(re.escape(p) for p in parts) + r"\s*"))
            for sentence in _sentences(_FIELD_RE.sub(" ", template)):
                grams = _ngrams(sentence)
                if len(sentence) >= 8 and grams:
                    self._references.append(grams)
        # Longest first, so a template that contains a shorter one wins.
        self._patterns.sort(key=lambda p: len(p.pattern), reverse=True)

    @classmethod
    def from_prompts(cls, prompts_dir: Path, *, threshold: float = 0.38) -> OffScriptScorer:
        """Templates from `replies.yaml` and `phrases.txt`, and the sentences of each agent prompt (`*.md`)."""
        texts: list[str] = []
        replies = prompts_dir / "replies.yaml"
        if replies.is_file():
            texts.extend(_flatten(yaml.safe_load(replies.read_text(encoding="utf-8")) or {}))
        phrases = prompts_dir / "phrases.txt"
        if phrases.is_file():
            texts.extend(
                ln.strip() for ln in phrases.read_text(encoding="utf-8").splitlines() if ln.strip() and ln[0] != "#"
            )
        for prompt in sorted(prompts_dir.glob("*.md")):
            texts.extend(ln.strip("- ").strip() for ln in prompt.read_text(encoding="utf-8").splitlines())
        return cls(texts, threshold=threshold)

    def score(self, reply: str) -> tuple[float, str]:
        """Similarity in [0, 1] of the reply's least scripted sentence, and that sentence ('' if none)."""
        rest = reply
        for pattern in self._patterns:
            rest = pattern.sub(" ", rest)
        worst, worst_sentence = 1.0, ""
        for sentence in _sentences(rest):
            # Short fragments ("Sure!", "Does that work?") say too little to judge.
            if len(_WORD_RE.findall(sentence.lower())) < MIN_WORDS:
                continue
            grams = _ngrams(sentence)
            best = max((_cosine(grams, ref) for ref in self._references), default=0.0)
            if best < worst:
                worst, worst_sentence = best, sentence
        return worst, worst_sentence


def _flatten(node: Any) -> list[str]:
    if isinstance(node, Mapping):
        return [s for v in node.values() for s in _flatten(v)]
    return [node] if isinstance(node, str) else []


def frustration_score(utterance: str) -> int:
    """A cheap per-utterance frustration score: lexicon hits, shouting, repeated exclamation marks."""
    text = utterance.lower()
    score = 0
    for term, weight in _FRUSTRATION_TERMS.items():
        if re.search(rf"\b{re.escape(term)}\b", text):
            score += weight
    letters = [c for c in utterance if c.isalpha()]
    if len(letters) >= 8 and sum(c.isupper() for c in letters) / len(letters) > 0.7:
        score += 2
    if "!!" in utterance:
        score += 1
    return score


@dataclass(frozen=True)
class DetectorLimits:
    """Thresholds of the detector; each flag's `why` quotes the one it crossed."""

    # Trigram cosine: paraphrases of the templates score 0.41-0.85, invented content 0.25-0.35
    # (tests/unit/test_telemetry_anomaly.py holds the examples it was tuned on).
    off_script: float = 0.38
    repeat_reply: int = 3
    repeat_caller: int = 3
    pingpong: int = 2
    frustration_peak: int = 3
    frustration_rises: int = 2
    max_turns: int = 14
    max_duration_s: float = 900.0
    tool_failures: int = 2


class AnomalyDetector:
    """Flags the calls a human should read, each flag with its reason."""

    def __init__(self, scorer: OffScriptScorer, limits: DetectorLimits | None = None) -> None:
        self.scorer = scorer
        self.limits = limits or DetectorLimits()

    @classmethod
    def from_prompts(cls, prompts_dir: Path, limits: DetectorLimits | None = None) -> AnomalyDetector:
        limits = limits or DetectorLimits()
        return cls(OffScriptScorer.from_prompts(prompts_dir, threshold=limits.off_script), limits)

    def detect(
        self,
        call_id: str,
        turns: Sequence[tuple[str, str]],
        *,
        agents: Sequence[str] = (),
        tool_events: Sequence[Mapping[str, Any]] = (),
        errors: Sequence[str] = (),
        duration_s: float | None = None,
    ) -> list[AnomalyFlag]:
        """Check one call.

        Args:
            call_id: The call.
            turns: `(caller, agent)` text per turn (raw or redacted; reasons are redacted either way).
            agents: Which agent answered each turn (for handoff ping-pong).
            tool_events: The call's tool events (`name`, `ok`, `result`, `turn`).
            errors: Errors the session recorded.
            duration_s: Wall-clock length of the call.
        """
        lim = self.limits
        flags: list[AnomalyFlag] = []
        for i, (_, reply) in enumerate(turns, start=1):
            if not reply:
                continue
            similarity, sentence = self.scorer.score(reply)
            if similarity < lim.off_script:
                quoted = redact_text(sentence)[:100]
                flags.append(
                    AnomalyFlag(
                        call_id,
                        "off_script",
                        f'turn {i}: reply sentence "{quoted}" is far from every template and prompt '
                        f"(similarity {similarity:.2f} < {lim.off_script:.2f})",
                        turn=i,
                        score=round(similarity, 3),
                    )
                )
        flags.extend(self._loops(call_id, turns, agents))
        flags.extend(self._frustration(call_id, [c for c, _ in turns]))
        if len(turns) > lim.max_turns:
            flags.append(
                AnomalyFlag(
                    call_id, "long_call", f"{len(turns)} caller turns (limit {lim.max_turns})", score=len(turns)
                )
            )
        elif duration_s is not None and duration_s > lim.max_duration_s:
            flags.append(
                AnomalyFlag(
                    call_id,
                    "long_call",
                    f"call lasted {duration_s:.0f} s (limit {lim.max_duration_s:.0f} s)",
                    score=round(duration_s, 1),
                )
            )
        failed = [e for e in tool_events if not e.get("ok")]
        if len(failed) >= lim.tool_failures:
            what = ", ".join(f"{e.get('name')} ({str(e.get('result') or '').split(':', 1)[0]})" for e in failed[:5])
            flags.append(
                AnomalyFlag(
                    call_id,
                    "tool_failure",
                    f"{len(failed)} failed tool calls (limit {lim.tool_failures}): {what}",
                    score=len(failed),
                )
            )
        if errors:
            kinds = ", ".join(sorted({e.split(":", 1)[0] for e in errors}))
            flags.append(AnomalyFlag(call_id, "error", f"{len(errors)} turn error(s) in the session: {kinds}"))
        return flags

    def _loops(self, call_id: str, turns: Sequence[tuple[str, str]], agents: Sequence[str]) -> list[AnomalyFlag]:
        lim = self.limits
        out: list[AnomalyFlag] = []
        replies = Counter(" ".join(_WORD_RE.findall(a.lower())) for _, a in turns if a)
        reply, count = replies.most_common(1)[0] if replies else ("", 0)
        if count >= lim.repeat_reply:
            out.append(
                AnomalyFlag(
                    call_id,
                    "loop",
                    f"the agent gave the same reply {count} times (limit {lim.repeat_reply}):"
                    f' "{redact_text(reply)[:80]}"',
                    score=count,
                )
            )
        # A caller saying the same thing is only a loop when the agent answers the same way too: "done",
        # "done", "done" through a walkthrough is progress.
        run, longest = 1, 1
        pairs = [(" ".join(_WORD_RE.findall(c.lower())), " ".join(_WORD_RE.findall(a.lower()))) for c, a in turns]
        for prev, cur in zip(pairs, pairs[1:], strict=False):
            run = run + 1 if cur[0] and cur == prev else 1
            longest = max(longest, run)
        if longest >= lim.repeat_caller and longest < count:
            out.append(
                AnomalyFlag(
                    call_id,
                    "loop",
                    f"the caller said the same thing {longest} turns in a row and got the same answer"
                    f" (limit {lim.repeat_caller})",
                    score=longest,
                )
            )
        changes = [(a, b) for a, b in zip(agents, agents[1:], strict=False) if a != b]
        backs = sum(1 for (a, b), (c, d) in zip(changes, changes[1:], strict=False) if a == d and b == c)
        if backs >= lim.pingpong:
            out.append(
                AnomalyFlag(
                    call_id,
                    "loop",
                    f"the call bounced between agents {backs} times ({' > '.join(agents)})",
                    score=backs,
                )
            )
        return out

    def _frustration(self, call_id: str, utterances: Sequence[str]) -> list[AnomalyFlag]:
        lim = self.limits
        scores = [frustration_score(u) for u in utterances]
        if len(scores) < 2:
            return []
        rises = sum(1 for a, b in zip(scores, scores[1:], strict=False) if b > a)
        peak = max(scores)
        if peak >= lim.frustration_peak and rises >= lim.frustration_rises and scores[-1] >= scores[0]:
            trail = "→".join(str(s) for s in scores)
            return [
                AnomalyFlag(
                    call_id,
                    "frustration",
                    f"caller frustration rose over the call ({trail}; peak {peak} >= {lim.frustration_peak},"
                    f" {rises} rises >= {lim.frustration_rises})",
                    score=peak,
                )
            ]
        return []
