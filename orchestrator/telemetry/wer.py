"""Word error rate of what speech recognition heard against what was said: one definition for calls and benchmarks."""

from __future__ import annotations

import re

import jiwer

__all__ = ["word_error_rate"]

_NUMBERS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four",
    "5": "five", "6": "six", "7": "seven", "8": "eight", "9": "nine",
}  # fmt: skip


def _words(text: str) -> list[str]:
    text = text.lower().replace("’", "'")
    # "10027", "10,027", "1-0-0-2-7" and "one oh oh two seven" are the same ZIP code: compare digit by digit.
    text = re.sub(r"(?<=\d)[-,. ](?=\d)", "", text)
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    out: list[str] = []
    for word in text.split():
        word = word.strip("'")
        if word.isdigit():
            out.extend(_NUMBERS[d] for d in word)
        elif word == "oh":
            out.append(_NUMBERS["0"])
        elif word:
            out.append(word)
    return out


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER (jiwer) on normalised words (lower case, punctuation dropped, single digits spelled out)."""
    ref, hyp = _words(reference), _words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    if not hyp:
        return 1.0  # every reference word deleted (jiwer refuses an empty hypothesis)
    return float(jiwer.wer(" ".join(ref), " ".join(hyp)))
