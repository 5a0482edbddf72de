"""PII redaction: what is masked where (caller input, stores, spans, logs); cards, SSNs, emails, phones, ZIPs, names.

Two levels, one pass each, both on text cleaned by `sanitize` first (NFKC, so full-width digits and look-alike
`＠` become plain ones; control and invisible format characters dropped, newline and tab kept):

- `redact_caller_input`, where a caller's words enter the graph (the session adapter, every turn): cards,
  SSNs, e-mail addresses and other numbers of 12 digits or more, written or spoken ("four one one one",
  "jane dot doe at gmail dot com"). Everything the graph keeps (its checkpointed state, the transcript, task
  slots, handoff notes, tool arguments, the tenant's records written from them) is built from this text.
  Phone numbers and 5-digit ZIP codes survive it: verification reads them from the turn's words. So do
  amounts, dates, times and invoice ids, which the specialists act on, and names (verification by name and
  ZIP reads them). The graph's checkpoints therefore may hold the phone number, ZIP code and name a caller
  said, and are purged with the call records.
- `redact_text`, for every copy outside the graph: call records, the console's live transcript, escalation
  ticket summaries, the tenant's free-text fields (refund and dispute reasons, credit lines), span
  attributes (ours and livekit's), every log record (`install_log_redaction`) and a failed call's error.
  On top of the above: phone numbers, ZIP codes in answer to a ZIP prompt (any five digits on their own
  where there is no dialogue: spans, the tenant's columns), other numbers of 7 digits or more (account
  numbers, codes; not dates), the verified caller's names, and the names a caller gives for themself
  ("my name is Maria Gonzalez", "it's under Priya Patel": `caller_names`, looked for in a caller's words only).

Card numbers are digit runs of 13-19 digits that pass the Luhn check, or that are grouped like a card or
said near the word "card"; SSNs are 9 digits grouped 3-2-4 or said near "social"/"SSN".
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import traceback
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

PHONE = "[PHONE]"
EMAIL = "[EMAIL]"
CARD = "[CARD]"
SSN = "[SSN]"
ZIP = "[ZIP]"
NAME = "[NAME]"
DIGITS = "[NUMBER]"

# Control (Cc), format (Cf: zero-width spaces, direction marks, soft hyphens), surrogate and private-use
# characters: never speech, and they hide a number from the patterns below (or break a PostgreSQL write: NUL).
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co"})
_KEPT_CONTROLS = frozenset("\n\t")

_TLDS = r"com|net|org|edu|gov|mil|io|co|us|uk|ca|de|fr|info|biz|me|app|dev|ai|example"
# Mail providers common enough that "at gmail" alone names an address.
_PROVIDERS = r"gmail|googlemail|yahoo|hotmail|aol|icloud|protonmail|comcast"
_EMAIL_RE = re.compile(
    rf"(?<![\w.+-])[\w.+-]+(?:@[\w-]+(?:\.[\w-]+)+"
    rf"|[ \t]*@[ \t]*[\w-]+(?:[ \t]*\.[ \t]*[\w-]+){{0,6}}[ \t]*\.[ \t]*(?:{_TLDS})\b)",
    re.IGNORECASE,
)
# Said aloud or written to dodge filters: "jane dot doe at gmail dot com", "j a n e (at) yahoo [dot] com".
_WORD = r"[a-z0-9][a-z0-9'-]*"
_SPELLED = r"(?:[a-z0-9][ \t]+){2,40}[a-z0-9]"
_JOIN = r"[ \t]*(?:\.|_|-|\+|\b(?:dot|period|underscore|dash|hyphen|plus)\b)[ \t]*"
_AT = r"[ \t]*(?:@|\(at\)|\[at\]|\{at\}|<at>)[ \t]*|[ \t]+at[ \t]+"
_DOT = r"[ \t]*(?:\.|\(dot\)|\[dot\]|\{dot\}|<dot>|\bdot\b|\bpoint\b)[ \t]*"
# Bounded repeats: a pattern tried at every word must not cost quadratic time on a long line.
_LOCAL = rf"(?<![\w.+-])(?:{_SPELLED}|{_WORD})(?:{_JOIN}(?:{_SPELLED}|{_WORD})){{0,6}}"
_SPOKEN_EMAIL_RE = re.compile(
    rf"\b{_LOCAL}(?:{_AT})(?:(?:{_WORD}{_DOT}){{1,4}}(?:{_TLDS})\b|(?:{_PROVIDERS})\b(?:{_DOT}(?:{_TLDS})\b)?)",
    re.IGNORECASE,
)

_DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "niner": "9",
}
_REPEAT_WORDS = {"double": 2, "triple": 3}
_TOKEN = r"\d+|\b(?:zero|oh|one|two|three|four|five|six|seven|eight|niner|nine|double|triple)\b"
# Between two parts of one number: spaces, a dash or dot (spaced or not), brackets, a comma and a pause, "dash".
_SEP = r"(?:[ \t]*(?:[-.()]|,(?=[ \t])|\b(?:dash|hyphen)\b)[ \t]*|[ \t]+)"
# A run of digits and digit words. Not inside an id ("INV-1001-20261126") or an amount ("$1234.50").
_RUN_RE = re.compile(rf"(?<!\w[-.])(?<![\w$])(?:\+|\()?(?:{_TOKEN})(?:{_SEP}(?:{_TOKEN}))*(?!\w)", re.IGNORECASE)
_PART_RE = re.compile(rf"{_TOKEN}|{_SEP}", re.IGNORECASE)
_CARD_CONTEXT_RE = re.compile(r"\b(card|visa|mastercard|amex|american express|discover|debit|credit)\b", re.I)
_SSN_CONTEXT_RE = re.compile(r"\b(social|ssn|s\.? ?s\.? ?n\.?|security number|tax id|taxpayer)\b", re.I)

# An agent turn that asks for the ZIP makes the caller's next turn a verification answer.
_ASKS_ZIP_RE = re.compile(r"\bzip\b", re.IGNORECASE)
# The verification dialogue names the caller once verified ("Thank you, Maria, you're verified.").
_VERIFIED_NAME_RE = re.compile(r"\bThank you, ([A-Z][\w'-]+(?: [A-Z][\w'-]+)?), you're verified")


def digits_of(number: str) -> str:
    """A phone number's digits alone, the last ten at most: "+1 (555) 010-0001" and "5550100001" match."""
    return re.sub(r"\D", "", number)[-10:]


def keyed_hash(value: str, key: str) -> str:
    """A value as stored where it must be matched but never read back: 32 hex digits of an HMAC-SHA256."""
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


def number_key(number: str, key: str) -> str:
    """The stored key of a phone number (call records, failed verifications): a keyed hash of its digits.

    Without the key, the ten-digit space cannot be walked offline to turn a stored key back into a number.
    """
    return keyed_hash(digits_of(number), key)


# A caller giving their own name. After a strong cue a name is taken however the STT cased it ("my name is
# maria gonzalez"). After "this is", capitalised words only ("this is ridiculous" names nobody). After the
# weak cues ("I'm", "it's", "it's under", "speaking with"), which precede adjectives, holidays and brands as
# often ("I'm Italian", "it's Christmas"), a first and last name, or one name the caller goes on from
# ("it's Nate, I had a visit booked", "I'm Karen, the account holder"). Any of them in lower case counts when
# "speaking", "calling" or "here" follows.
_SEP = r"(?:\s*,\s*|\s+)"
_STRONG_CUE_RE = re.compile(
    r"\b(?:my (?:full |first |last )?name(?: is|'s| was)|(?:the |first |last )?name(?:'s| is)|"
    rf"(?:under|in) the name(?: of)?|you can call me|call me|i go by|account holder(?: is|'s)){_SEP}",
    re.IGNORECASE,
)
_THIS_IS_RE = re.compile(rf"\bthis is{_SEP}", re.IGNORECASE)
_WEAK_CUE_RE = re.compile(
    rf"\b(?:(?:it|the account)(?:'s| is| should be) (?:under|in)|it's|it is|i'm|i am|speaking (?:with|to)){_SEP}",
    re.IGNORECASE,
)
# A name said with nothing before it: "Maria Gonzalez here", "Henry Adams speaking", at the start of a sentence.
_NAME_FIRST_RE = re.compile(r"(?:^|[.!?,]\s*)((?:[A-Z][a-z'’-]+ ){0,2}[A-Z][a-z'’-]+)(?= (?:here|speaking)\b)")
_GOES_ON_RE = re.compile(
    r"\s*(?:,\s*)?(?:speaking|calling|here|from|the account holder|account holder|that's me|"
    r"i had|i have|i booked|i called|i've)\b",
    re.IGNORECASE,
)
_NAME_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'’-]*\.?")
_FIRST_GAP_RE = re.compile(r"[ \t]*,?[ \t]*")
_GAP_RE = re.compile(r"[ \t]+")
# Fillers between a cue and the name ("my name is, um, Chen Wei") and titles before it ("Dr. Helen Park").
_FILLERS = frozenset({"um", "uh", "er", "erm", "like"})
_TITLES = frozenset({"mr", "mrs", "ms", "miss", "dr", "mx"})
_PARTICLES = frozenset({"de", "la", "del", "da", "di", "van", "von", "der", "le", "bin", "al", "el"})
_SPEAKING = re.compile(r"\s*,?\s*(?:speaking|calling|here)\b", re.IGNORECASE)
# Words that end a name, or show there is none: function words, what callers say after a cue, and the
# tenant's and common brands' names (a caller's plan or router is no name).
_NOT_NAME = frozenset(
    """a about actually again all also already am an and any are as at back be because been being both but by can
    calling call could did do does done down even ever for from fault frustrated get go going got had has have he
    her here hers him his how i i'm if in is isn't it it's its just last let like listed me mine more most much my
    no not now of off on one only or other our out over please really right same second she should so some
    speaking spelled still such than thank thanks that that's the their them then there these they third this those
    to too under up upset us very was wasn't we well were what when where which while who why will with without
    would wrong yes yet you your yours sorry sure okay ok hi hello hey yeah yep nope going taking trying waiting
    urgent ridiculous unbelievable happy unhappy angry annoyed confused customer account holder bill billing
    invoice name number plan router modem internet service outage technician appointment refund question problem
    issue warranty sofa couch table desk business company wife husband son daughter mother father mom dad
    partner family home office hundred thousand dollars dollar canadian american not first new old
    northwind broadband fiber gig verizon comcast xfinity spectrum att at&t netgear nighthawk eero linksys tp-link
    google apple samsung monday tuesday wednesday thursday friday saturday sunday january february march april
    may june july august september october november december brooklyn queens manhattan bronx nobody somebody
    someone everyone everybody anyone anybody everything nothing something christmas thanksgiving easter you're
    we're they're he's she's who's what's there's i've i'd i'll""".split()  # noqa: SIM905 - a word list reads and edits best as text
)
_MAX_NAME_WORDS = 4


def _name_after(text: str, pos: int, *, any_case: bool) -> tuple[int, int] | None:
    """The span of the name that starts at ``pos`` (after a cue), or None."""
    words: list[tuple[int, int]] = []
    while len(words) < _MAX_NAME_WORDS:
        gap = (_FIRST_GAP_RE if not words else _GAP_RE).match(text, pos)
        m = _NAME_WORD_RE.match(text, gap.end() if gap else pos)
        if m is None:
            break
        word = m.group().rstrip(".")
        possessive = word.lower().endswith(("'s", "’s"))
        low = word.lower()[:-2] if possessive else word.lower()
        if not words and (low in _FILLERS or low in _TITLES):
            pos = m.end()
            continue
        if low in _PARTICLES and words:
            pos = m.end()  # "de la Cruz": part of the name only if a name word follows
            continue
        single = len(word) == 1
        if low in _NOT_NAME or (single and not words) or (single and not word.isupper()):
            break
        if not any_case and not word[0].isupper():
            break
        if m.group().endswith(".") and not single:
            words.append((m.start(), m.end() - 1))
            break  # "Maria Gonzalez." ends the sentence
        end = m.end() - 2 if possessive else m.end()
        words.append((m.start(), end))
        pos = m.end()
        if possessive:
            break  # "Sofia Rossi's name": the name ends at the possessive
    if not words:
        return None
    return words[0][0], words[-1][1]


def self_named(text: str) -> list[str]:
    """The names a caller gives for themself in ``text``: "my name is Maria Gonzalez", "this is John Smith
    speaking", "it's under Priya Patel", "I'm Daniel Kim". Only for a caller's words: an agent saying "this is
    Sam from Northwind" names itself, not the caller.
    """
    if not text:
        return []
    spans: list[tuple[int, int]] = []
    for cue, strength in ((_STRONG_CUE_RE, "strong"), (_THIS_IS_RE, "this is"), (_WEAK_CUE_RE, "weak")):
        for m in cue.finditer(text):
            span = _name_after(text, m.end(), any_case=strength == "strong")
            if span is not None and strength == "weak" and " " not in text[span[0] : span[1]]:
                span = span if _GOES_ON_RE.match(text, span[1]) else None
            if span is None and strength != "strong":
                # "this is john smith speaking": lower-case words count when the caller goes on to say so.
                lower = _name_after(text, m.end(), any_case=True)
                span = lower if lower is not None and _SPEAKING.match(text, lower[1]) else None
            if span is not None:
                spans.append(span)
    for m in _NAME_FIRST_RE.finditer(text):
        if not any(w.lower() in _NOT_NAME for w in m.group(1).split()):
            spans.append(m.span(1))
    found: list[str] = []
    for start, end in sorted(spans):
        name = text[start:end]
        if len(name) >= 2 and name not in found:
            found.append(name)
    return found


def caller_names(text: str) -> set[str]:
    """The names a caller gives for themself in their words (`self_named`), each with its first name alone, as
    the agent may say it back: what to mask in the caller's words and in the replies to them."""
    found = self_named(sanitize(text))
    return {*found, *(name.split()[0] for name in found)}


def sanitize(text: str) -> str:
    """The text in NFKC form without control or invisible format characters (newline and tab are kept)."""
    if not text:
        return text
    text = unicodedata.normalize("NFKC", text)
    if text.isprintable():
        return text
    return "".join(ch for ch in text if ch in _KEPT_CONTROLS or unicodedata.category(ch) not in _DROPPED_CATEGORIES)


def luhn_ok(digits: str) -> bool:
    """Whether a digit string passes the Luhn check that every payment card number carries."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    digits: str
    # This token opens a new written group ("4111 1111", "123-45"); digit words said in a row do not.
    new_group: bool


def _tokens(run: str, offset: int) -> list[_Token]:
    out: list[_Token] = []
    repeat, repeat_at = 1, -1
    split = True  # a pause, a dash or a numeral came last: the next digit word starts a new group
    for m in _PART_RE.finditer(run):
        part = m.group()
        low = part.lower()
        start = repeat_at if repeat_at >= 0 else m.start()
        if low.isdigit():
            out.append(_Token(offset + start, offset + m.end(), low, True))
            split, repeat, repeat_at = True, 1, -1
        elif low in _REPEAT_WORDS:
            repeat, repeat_at = _REPEAT_WORDS[low], m.start()
        elif low in _DIGIT_WORDS:
            # Digit words said in a row are one group, as a caller reads a card out in fours.
            out.append(_Token(offset + start, offset + m.end(), _DIGIT_WORDS[low] * repeat, split))
            split, repeat, repeat_at = False, 1, -1
        elif part.strip():  # punctuation or "dash": a written group boundary
            split = True
    return out


def _groups(tokens: Sequence[_Token]) -> list[int]:
    sizes: list[int] = []
    for t in tokens:
        if t.new_group or not sizes:
            sizes.append(len(t.digits))
        else:
            sizes[-1] += len(t.digits)
    return sizes


def _card_like(sizes: Sequence[int]) -> bool:
    return (len(sizes) >= 3 and all(s == 4 for s in sizes[:-1]) and 1 <= sizes[-1] <= 4) or list(sizes) == [4, 6, 5]


def _is_date(sizes: Sequence[int]) -> bool:
    return list(sizes) in ([4, 2, 2], [2, 2, 4]) or (len(sizes) == 3 and sizes[2] == 4 and max(sizes[:2]) <= 2)


@dataclass(frozen=True)
class _Level:
    full: bool
    zip_expected: bool
    card_context: bool
    ssn_context: bool


def _classify(tokens: Sequence[_Token], level: _Level) -> str | None:
    """The tag for a whole run of number tokens, or None to leave it."""
    digits = "".join(t.digits for t in tokens)
    n = len(digits)
    sizes = _groups(tokens)
    if 13 <= n <= 19 and (luhn_ok(digits) or _card_like(sizes) or level.card_context):
        return CARD
    if n == 9 and (sizes == [3, 2, 4] or level.ssn_context):
        return SSN
    if n >= 12:
        return DIGITS
    if not level.full:
        return None
    if n == 10 or (n == 11 and digits[0] == "1"):
        return PHONE
    if level.zip_expected and (n == 5 or sizes == [5, 4]):
        return ZIP
    if n >= 7 and not _is_date(sizes):
        return DIGITS
    return None


_INNER_LENGTHS = frozenset({9, *range(13, 20)})


def _inner(tokens: Sequence[_Token], digits: str, level: _Level) -> str | None:
    """CARD or SSN for a part of a longer run, on evidence that does not need the run's ends."""
    if 13 <= len(digits) <= 19 and luhn_ok(digits):
        return CARD
    if len(digits) == 9 and (_groups(tokens) == [3, 2, 4] or level.ssn_context):
        return SSN
    return None


def _mask_run(tokens: list[_Token], level: _Level) -> list[tuple[int, int, str]]:
    """Masks (start, end, tag) for one run; a card or SSN inside a longer run ("one, 219 09 9999") is found too.

    One pass from the left, trying at most 19 digits from each group start, so a long run costs linear time.
    """
    if _classify(tokens, level) in (CARD, SSN):
        return _whole(tokens, level)
    masks: list[tuple[int, int, str]] = []
    rest = 0  # first token not yet masked or passed on
    i = 0
    while i < len(tokens):
        found: tuple[int, str] | None = None
        if i == 0 or tokens[i].new_group:
            digits = ""
            for j in range(i, len(tokens)):
                digits += tokens[j].digits
                if len(digits) > 19:
                    break
                if (j + 1 == len(tokens) or tokens[j + 1].new_group) and len(digits) in _INNER_LENGTHS:
                    tag = _inner(tokens[i : j + 1], digits, level)
                    found = (j, tag) if tag is not None else found
        if found is None:
            i += 1
            continue
        if rest < i:
            masks.extend(_whole(tokens[rest:i], level))
        masks.append((tokens[i].start, tokens[found[0]].end, found[1]))
        i = rest = found[0] + 1
    if rest < len(tokens):
        masks.extend(_whole(tokens[rest:], level))
    return masks


def _whole(tokens: list[_Token], level: _Level) -> list[tuple[int, int, str]]:
    tag = _classify(tokens, level)
    if tag is None and level.full and level.zip_expected:
        # "Oh, 10027", "yes 10027 9": the five-digit group is the answer to the ZIP prompt.
        return [(t.start, t.end, ZIP) for t in tokens if t.new_group and len(t.digits) == 5]
    return [(tokens[0].start, tokens[-1].end, tag)] if tag is not None else []


def _mask_numbers(text: str, level: _Level) -> str:
    masks: list[tuple[int, int, str]] = []
    for m in _RUN_RE.finditer(text):
        tokens = _tokens(m.group(), m.start())
        if sum(len(t.digits) for t in tokens) >= 5:
            masks.extend(_mask_run(tokens, level))
    if not masks:
        return text
    out: list[str] = []
    at = 0
    for start, end, tag in sorted(masks):
        if text[start - 1 : start] in "+(" and start > 0 and tag == PHONE:
            start -= 1
        out.append(text[at:start])
        out.append(tag)
        at = end
    out.append(text[at:])
    return "".join(out)


def _redact(text: str, *, full: bool, zip_expected: bool) -> str:
    out = _EMAIL_RE.sub(EMAIL, text)
    out = _SPOKEN_EMAIL_RE.sub(EMAIL, out)
    level = _Level(
        full=full,
        zip_expected=zip_expected,
        card_context=bool(_CARD_CONTEXT_RE.search(out)),
        ssn_context=bool(_SSN_CONTEXT_RE.search(out)),
    )
    return _mask_numbers(out, level)


def redact_caller_input(text: str) -> str:
    """A caller's words as the graph may keep them: sanitised; cards, SSNs, e-mails and long numbers masked.

    Phone numbers and 5-digit ZIP codes stay (verification reads them), as do amounts, dates, times and ids.
    """
    if not text:
        return text
    return _redact(sanitize(text), full=False, zip_expected=False)


def redact_text(text: str, *, names: Iterable[str] = (), zip_expected: bool = False) -> str:
    """Mask PII in one piece of text for any store, span or log outside the graph.

    Args:
        text: A caller utterance, an agent reply or a log line.
        names: Names to mask (the verified caller's first and full name; `caller_names` of a caller's words).
        zip_expected: The text answers a ZIP prompt, so five-digit numbers in it are ZIP codes. Outside
            that context a five-digit number is left alone (it may be an amount or a step number).

    Returns:
        The sanitised text with each PII span replaced by a bracketed tag such as `[PHONE]`.
    """
    if not text:
        return text
    out = _redact(sanitize(text), full=True, zip_expected=zip_expected)
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


def asks_zip(agent_reply: str) -> bool:
    """Whether an agent reply asks for a ZIP code (the caller's answer to it is a verification factor)."""
    return bool(_ASKS_ZIP_RE.search(agent_reply or ""))


@dataclass(frozen=True)
class RedactedTurn:
    """One caller turn and the agent's answer, both redacted."""

    caller: str
    agent: str


def redact_turns(turns: Sequence[tuple[str, str]], *, names: Iterable[str] = ()) -> list[RedactedTurn]:
    """Redact a call's transcript, using the dialogue for context.

    A caller turn is treated as a ZIP answer when the agent's previous reply asked for a ZIP code, and
    the caller's name is masked everywhere once the agent has said it after verification, or once the caller
    gave it ("my name is Maria Gonzalez": `self_named`, looked for in the caller's turns only).

    Args:
        turns: `(caller, agent)` pairs in order.
        names: Extra names to mask (e.g. the verified account holder's name from the state).
    """
    all_names = set(names) | names_in(agent for _, agent in turns)
    all_names.update(name for caller, _ in turns for name in caller_names(caller))
    out: list[RedactedTurn] = []
    asked_zip = False
    for caller, agent in turns:
        out.append(
            RedactedTurn(
                caller=redact_text(caller, names=all_names, zip_expected=asked_zip),
                agent=redact_text(agent, names=all_names),
            )
        )
        asked_zip = asks_zip(agent)
    return out


def describe_error(exc: BaseException) -> str:
    """An exception as a log line or a call record may carry it, without the caller's words.

    A database error's text quotes the data it refused (PostgreSQL's message, DETAIL and CONTEXT lines; the
    SQL parameters), so only its type and SQLSTATE are kept. Any other exception's first line is redacted.
    """
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error
    inner = orig if isinstance(orig, BaseException) else exc
    sqlstate = getattr(inner, "sqlstate", None) or getattr(getattr(inner, "diag", None), "sqlstate", None)
    if isinstance(sqlstate, str) or inner is not exc or type(exc).__module__.startswith(_DATABASE_MODULES):
        kind = type(exc).__name__ if inner is exc else f"{type(exc).__name__} ({type(inner).__name__})"
        return f"{kind}, SQLSTATE {sqlstate}" if isinstance(sqlstate, str) else kind
    message = str(exc).split("\n", 1)[0]
    return f"{type(exc).__name__}: {redact_text(message)[:200]}" if message else type(exc).__name__


_DATABASE_MODULES = ("psycopg", "sqlalchemy", "sqlite3", "aiosqlite", "asyncpg")


def describe_traceback(exc: BaseException) -> str:
    """Where an exception was raised (file, line, code) and `describe_error`'s line, with no exception message."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    return f"Traceback (most recent call last):\n{frames}{describe_error(exc)}"


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed record is the logging module's to report, not ours
        return
    redacted = redact_text(message)
    if redacted != message:
        record.msg = redacted
        record.args = None
    if record.exc_info and record.exc_info[1] is not None:
        # The formatter uses `exc_text` when set: frames and a safe line instead of the exception's message.
        record.exc_text = describe_traceback(record.exc_info[1])


class RedactingFilter(logging.Filter):
    """A logging filter that masks PII in messages, and exception texts, before a handler sees them.

    `install_log_redaction` covers every record of the process; this is for one handler of one's own.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


_installed = False


def install_log_redaction() -> None:
    """Make every log record of this process PII-free as it is made, whichever library logs it and whichever
    handlers (ours, livekit's, uvicorn's) write it: the message is redacted and an exception is described by its
    frames and `describe_error`, never by its message (a store's error quotes the caller's words).

    Done through the record factory, which sees each record that passes its logger's level, once. Idempotent.
    """
    global _installed
    if _installed:
        return
    make = logging.getLogRecordFactory()

    def redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        _redact_record(record)
        return record

    logging.setLogRecordFactory(redacted_record)
    _installed = True
