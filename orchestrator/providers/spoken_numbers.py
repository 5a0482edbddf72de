"""Spoken numbers to digit strings: what a speech-to-text writes for a phone number or ZIP code, read back as digits."""

from __future__ import annotations

import re

__all__ = ["digit_string", "normalise"]

# General inverse text normalisers (text2num's alpha2digit, word2number) read numbers as quantities: they
# know neither "oh" for zero nor "double five", and they split "five five five" into three numbers. An
# identifier is read digit by digit, as a caller says it, so this small reader does that instead.
_UNITS = {
    "zero": 0, "oh": 0, "o": 0, "nought": 0, "naught": 0,
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9,
}  # fmt: skip
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_REPEAT = {"double": 2, "triple": 3}
# Homophones a recogniser writes for a digit: read as digits only between other digits ("five to one").
_SOUND_ALIKE = {"to": "2", "too": "2", "for": "4", "won": "1", "ate": "8"}
_TOKEN = re.compile(r"\d+|[a-z]+|[^\sa-z\d]", re.IGNORECASE)
# Separators a recogniser puts inside a spoken digit string ("555-0100", "10,27", "Nine. One.").
_JOINERS = {"-", ",", ".", "/", "–", "—"}


def _tokens(text: str) -> list[re.Match[str]]:
    return list(_TOKEN.finditer(text))


class _Reader:
    """Reads one run of number tokens into digits; `tokens[i]` is where it stopped."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens

    def at(self, i: int) -> str:
        return self.tokens[i] if i < len(self.tokens) else ""

    def number_at(self, i: int) -> tuple[str, int] | None:
        """The digits of the number word(s) starting at `i` and the index after them, or None."""
        word = self.at(i)
        if word.isdigit():
            return word, i + 1
        if word in _REPEAT and self.at(i + 1) in _UNITS:
            return str(_UNITS[self.at(i + 1)]) * _REPEAT[word], i + 2
        if word in _UNITS or word in _TEENS or word in _TENS:
            return self._cardinal(i)
        return None

    def _cardinal(self, i: int) -> tuple[str, int]:
        """A spoken quantity: "five", "fifty five", "five hundred", "ten thousand twenty seven", "eighteen hundred"."""
        value, j = self._below_hundred(i)
        for word, scale in (("hundred", 100), ("thousand", 1000)):
            if self.at(j) != word:
                continue
            j += 1
            rest = self._tail(j, scale)
            if rest is not None:
                return f"{value * scale + rest[0]}", rest[1]
            return f"{value * scale}", j
        return f"{value}", j

    def _tail(self, j: int, scale: int) -> tuple[int, int] | None:
        """What a "hundred" or "thousand" at `j` adds up with ("five hundred fifty"), or None when the numbers
        after it are digits of their own ("eight hundred five five five" is 800 then 555)."""
        if self.at(j) in ("and",) and self._starts_cardinal(j + 1):
            j += 1
        if not self._starts_cardinal(j) or self.at(j) in ("oh", "o", "zero", "nought", "naught"):
            return None
        if scale == 1000:
            digits, k = self._cardinal(j)
            return (int(digits), k) if int(digits) < 1000 else None
        value, k = self._below_hundred(j)
        if value < 10 and self.number_at(k) is not None:
            return None
        return value, k

    def _starts_cardinal(self, i: int) -> bool:
        return self.at(i) in _UNITS or self.at(i) in _TEENS or self.at(i) in _TENS

    def _below_hundred(self, i: int) -> tuple[int, int]:
        word = self.at(i)
        if word in _TENS:
            unit = self.at(i + 1)
            if unit in _UNITS and _UNITS[unit] != 0:
                return _TENS[word] + _UNITS[unit], i + 2
            return _TENS[word], i + 1
        if word in _TEENS:
            return _TEENS[word], i + 1
        return _UNITS[word], i + 1


def normalise(text: str, *, expect_digits: bool = False) -> str:
    """Rewrite the spoken numbers in `text` as digit strings, leaving the other words as they were.

    With `expect_digits` (the caller was asked for a phone number or ZIP code), every run of numbers joins
    into one digit string across the pauses and separators a recogniser writes ("five five five, oh one
    oh" and "555-010-0001" both give "5550100001"). Without it, only what can be nothing but an identifier
    is rewritten: three or more digit words in a row, or numerals split by a hyphen or comma that hold five
    digits or more, so "one question" and "$42.50" are left alone.
    """
    found = _tokens(text)
    reader = _Reader([m.group(0).lower() for m in found])
    out: list[str] = []
    kept = 0  # the end of the text copied so far
    i = 0
    while i < len(found):
        run, j = _run(reader, i, expect_digits=expect_digits)
        if run and (expect_digits or _identifier(reader.tokens[i:j])):
            out += [text[kept : found[i].start()], run]
            kept = found[j - 1].end()
            # A full stop after the digits would glue onto them for a reader that splits on spaces.
            while expect_digits and j < len(found) and reader.tokens[j] in _JOINERS:
                kept = found[j].end()
                j += 1
            i = j
        else:
            i += 1
    out.append(text[kept:])
    return "".join(out)


def _run(reader: _Reader, i: int, *, expect_digits: bool) -> tuple[str, int]:
    """The digits of the run of numbers starting at `i` and the index after it."""
    digits: list[str] = []
    j = i
    while True:
        got = reader.number_at(j)
        if got is None and digits and reader.at(j) in _SOUND_ALIKE and reader.number_at(j + 1) is not None:
            got = (_SOUND_ALIKE[reader.at(j)], j + 1)
        if got is None:
            break
        digits.append(got[0])
        j = got[1]
        # Separators inside the run: "555-0100", "10,27", "nine. one. four." (a recogniser's pauses).
        k = j
        while reader.at(k) in _JOINERS or (expect_digits and reader.at(k) in {"and", "then"}):
            k += 1
        if k > j and reader.number_at(k) is not None:
            if reader.at(j) == "." and not expect_digits and reader.at(k).isdigit() and len(reader.at(k)) <= 2:
                break  # a decimal point ("42.50"), not a pause
            j = k
    if not digits:
        return "", i
    return "".join(digits), j


def _identifier(tokens: list[str]) -> bool:
    """Whether a run read without a question for digits can only be an identifier, never a quantity."""
    words = [t for t in tokens if t.isalpha()]
    numerals = [t for t in tokens if t.isdigit()]
    if len(words) + sum(len(t) == 1 for t in numerals) >= 3 or any(t in _REPEAT for t in tokens):
        return True
    return len(numerals) >= 2 and sum(len(t) for t in numerals) >= 5 and any(t in {"-", ","} for t in tokens)


def digit_string(text: str) -> str:
    """Every digit said in `text`, in order, read as an identifier ("double five oh one" -> "5501")."""
    return "".join(re.findall(r"\d", normalise(text, expect_digits=True)))
