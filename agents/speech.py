"""Numbers written for the ear: amounts, clock times and phone numbers as a voice should say them."""

from __future__ import annotations

import re

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((1_000_000_000, "billion"), (1_000_000, "million"), (1_000, "thousand"))
_DIGITS = dict(enumerate(_ONES[:10]))


def number_words(n: int) -> str:
    """A whole number in words: 144 -> "one hundred forty-four", 2005 -> "two thousand five"."""
    if n < 0:
        return "minus " + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")
    for size, name in _SCALES:
        if n >= size:
            high, rest = divmod(n, size)
            return f"{number_words(high)} {name}" + (f" {number_words(rest)}" if rest else "")
    raise AssertionError("unreachable")  # pragma: no cover - the scales cover every n >= 1000


def spoken_money(cents: int) -> str:
    """Dollars and cents in words: 4900 -> "forty-nine dollars", 14498 -> "... dollars and ninety-eight cents"."""
    sign = "minus " if cents < 0 else ""
    dollars, rest = divmod(abs(cents), 100)
    parts = []
    if dollars or not rest:
        parts.append(f"{number_words(dollars)} dollar{'' if dollars == 1 else 's'}")
    if rest:
        parts.append(f"{number_words(rest)} cent{'' if rest == 1 else 's'}")
    return sign + " and ".join(parts)


def spoken_clock(hour: int, minute: int = 0) -> str:
    """A clock time as said aloud: (10, 0) -> "ten in the morning", (14, 30) -> "two thirty in the afternoon"."""
    if minute == 0 and hour in (0, 12):
        return "midnight" if hour == 0 else "noon"
    twelve = hour % 12 or 12
    if minute == 0:
        said = number_words(twelve)
    elif minute < 10:
        said = f"{number_words(twelve)} oh {number_words(minute)}"
    else:
        said = f"{number_words(twelve)} {number_words(minute)}"
    if hour < 12:
        part = "at night" if hour < 5 else "in the morning"
    else:
        part = "in the afternoon" if hour < 18 else "in the evening"
    return f"{said} {part}"


def spoken_phone(number: str) -> str:
    """A phone number digit by digit, in the usual groups: "+15550100002" -> "five five five, zero one zero, ..."."""
    digits = re.sub(r"\D", "", number)
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    groups = [digits[:3], digits[3:6], digits[6:]] if len(digits) == 10 else [digits]
    return ", ".join(" ".join(_DIGITS[int(d)] for d in group) for group in groups if group)


def spoken_account(account_id: str) -> str:
    """An account number letter by letter and digit by digit: "NW-1005" -> "N W, one zero zero five"."""
    letters = " ".join(c for c in account_id if c.isalpha())
    numbers = " ".join(_DIGITS[int(c)] for c in account_id if c.isdigit())
    return ", ".join(part for part in (letters, numbers) if part)


_AMOUNT = re.compile(r"\$\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?(?!\d)")
# The dot of "a.m." is dropped only inside a sentence; at its end it is the full stop.
_CLOCK = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s?([AaPp])\.?\s?[Mm]\b(?:\.(?=\s+[a-z]))?")
_PHONE = re.compile(
    r"(?<![\w.])(?:\+?1[-. ]?)?\(?(\d{3})\)?[-. ]?(\d{3})[-. ](\d{4})(?!\d)|(?<![\w.])\+1(\d{10})(?!\d)"
)


def for_the_ear(text: str) -> str:
    """Rewrite written amounts, clock times and phone numbers in a reply into words a voice reads well.

    Replies built by the flows are spoken already; this catches what comes from elsewhere (a tenant's
    error message, an LLM's sentence), so every reply path sounds the same.
    """

    def amount(m: re.Match[str]) -> str:
        cents = int(m.group(1).replace(",", "")) * 100 + int((m.group(2) or "0").ljust(2, "0"))
        return spoken_money(cents)

    def clock(m: re.Match[str]) -> str:
        hour, minute = int(m.group(1)), int(m.group(2) or 0)
        if not 1 <= hour <= 12 or minute > 59:
            return m.group(0)
        pm = m.group(3).lower() == "p"
        return spoken_clock(hour % 12 + (12 if pm else 0), minute)

    def phone(m: re.Match[str]) -> str:
        return spoken_phone(m.group(4) or "".join(m.group(1, 2, 3)))

    return _CLOCK.sub(clock, _PHONE.sub(phone, _AMOUNT.sub(amount, text)))


_WORD_VALUES = {w: i for i, w in enumerate(_ONES)} | {w: 10 * i for i, w in enumerate(_TENS) if i >= 2}
_SPOKEN_AMOUNT = re.compile(
    r"\b((?:(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|"
    r"thousand|and|a)[\s-]+)+)dollars?\b",
    re.IGNORECASE,
)


def words_number(text: str) -> int | None:
    """The whole number said in words ("one hundred forty-four"), or None when the words are not a number."""
    total, current, seen = 0, 0, False
    for word in re.split(r"[\s-]+", text.lower().strip()):
        if word in {"and", ""}:
            continue
        if word == "a":
            current = 1
        elif word in _WORD_VALUES:
            current += _WORD_VALUES[word]
        elif word == "hundred":
            current = max(current, 1) * 100
        elif word == "thousand":
            total, current = total + max(current, 1) * 1000, 0
        else:
            return None
        seen = True
    return total + current if seen else None


def spoken_dollars_cents(text: str) -> list[int]:
    """Every whole-dollar amount said in words in `text` ("two hundred dollars" -> 20000), in cents."""
    found = []
    for m in _SPOKEN_AMOUNT.finditer(text):
        value = words_number(m.group(1))
        if value is not None:
            found.append(value * 100)
    return found
