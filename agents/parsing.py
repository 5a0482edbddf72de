"""Cheap, deterministic readers for what callers say: yes/no, digits, amounts, choices, days and times."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

_DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "o": "0",
    "one": "1",
    "two": "2",
    "to": "2",
    "too": "2",
    "three": "3",
    "four": "4",
    "for": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_YES = re.compile(
    r"\b(yes|yeah|yep|yup|sure|correct|right|ok(ay)?|please do|go ahead|do it|that'?s right|sounds good|"
    r"perfect|confirm(ed)?|absolutely|definitely|fine|great)\b"
)
# A no in more words than one; a yes word inside one ("not right now") is no yes.
_NO_PHRASE = re.compile(
    r"\b(?:not really|cancel that|rather not|i'?ll pass|not necessary|not today|not right now|not at the moment|"
    r"maybe (?:later|another time)|skip (?:it|that))\b"
)
_NO = re.compile(rf"\b(no|nope|nah|don'?t|do not|never ?mind|wrong|stop|negative)\b|{_NO_PHRASE.pattern}")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ORDINALS = {"first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2, "last": -1}
_CARDINALS = {"one": 0, "two": 1, "three": 2}


def normalize(text: str) -> str:
    """Lower-case, collapse whitespace, drop most punctuation (keeps $ . : for amounts and times)."""
    text = text.lower().replace("’", "'")
    text = re.sub(r"[^a-z0-9$.:'@+ -]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def yes_no(text: str) -> bool | None:
    """True for an affirmative, False for a negative, None when the caller said neither."""
    t = normalize(text)
    no = bool(_NO.search(t))
    yes = bool(_YES.search(_NO_PHRASE.sub(" ", t)))
    if no and not yes:
        return False
    if yes and not no:
        return True
    return None


def digits(text: str) -> str:
    """All digits the caller said, whether as numerals or as digit words ("one oh one" -> "101")."""
    out = []
    for token in normalize(text).replace("-", " ").split():
        if token.isdigit():
            out.append(token)
        elif token in _DIGIT_WORDS:
            out.append(_DIGIT_WORDS[token])
        elif token.startswith("+") and token[1:].isdigit():
            out.append(token[1:])
    return "".join(out)


def zip_code(text: str) -> str | None:
    """A 5-digit ZIP code, if the utterance holds exactly one."""
    found = re.findall(r"(?<!\d)\d{5}(?!\d)", normalize(text))
    if len(found) == 1:
        return str(found[0])
    d = digits(text)
    if len(d) == 5:
        return d
    # "account N W one zero zero two and my zip is one oh four five three": the digits after "zip" are it.
    after = re.split(r"\bzip(?: code)?\b", normalize(text))
    if len(after) > 1:
        d = digits(after[-1])
        return d if len(d) == 5 else None
    return None


def phone_number(text: str) -> str | None:
    """An E.164 US number (+1 and ten digits) from what the caller said, if any."""
    d = digits(text)
    if len(d) == 11 and d.startswith("1"):
        return "+" + d
    if len(d) == 10:
        return "+1" + d
    return None


def amount_cents(text: str) -> int | None:
    """A money amount: "$42.50", "42 dollars", "forty" is not understood (ASR gives numerals)."""
    t = normalize(text)
    m = re.search(r"\$\s?(\d+(?:\.\d{1,2})?)", t) or re.search(r"(\d+(?:\.\d{1,2})?)\s*(?:dollars?|bucks|usd)\b", t)
    if not m:
        m = re.fullmatch(r"(?:pay\s+)?(\d+(?:\.\d{1,2})?)", t)
    if not m:
        return None
    return round(float(m.group(1)) * 100)


def wants_everything(text: str) -> bool:
    t = normalize(text)
    return bool(re.search(r"\b(all|everything|full|whole|entire|in full|the balance|total)\b", t))


def ordinal_choice(text: str, n: int) -> int | None:
    """Index of "the first / second / last one", "option 2" or a bare "two" among n options."""
    t = normalize(text)
    m = re.search(r"\b(?:option|number|#)\s*(\d)\b", t) or re.fullmatch(r"(\d)", t)
    if m and 1 <= int(m.group(1)) <= n:
        return int(m.group(1)) - 1
    for word, idx in _ORDINALS.items():
        if re.search(rf"\b{word}\b", t):
            resolved = idx if idx >= 0 else n - 1
            return resolved if resolved < n else None
    m = re.fullmatch(r"(?:(?:option|number) )?(one|two|three)(?: please)?", t)
    if m and _CARDINALS[m.group(1)] < n:
        return _CARDINALS[m.group(1)]
    return None


def weekday(text: str, today: date) -> date | None:
    """The date meant by "tomorrow", "today", or a weekday name (the next such day after today)."""
    t = normalize(text)
    if "tomorrow" in t:
        return today + timedelta(days=1)
    if re.search(r"\btoday\b", t):
        return today
    for idx, name in enumerate(_WEEKDAYS):
        if re.search(rf"\b{name}s?\b", t):
            ahead = (idx - today.weekday()) % 7 or 7
            if "next week" in t and ahead < 7:
                ahead += 7 if ahead <= (6 - today.weekday()) else 0
            return today + timedelta(days=ahead)
    if "next week" in t:
        return today + timedelta(days=(7 - today.weekday()))
    return None


def hour_of_day(text: str) -> int | None:
    """A clock hour (0-23) from "10", "10 am", "3pm", "15:00", "at 1"; afternoon hours 1-6 mean pm."""
    t = normalize(text).replace("a.m.", "am").replace("p.m.", "pm")
    m = re.search(r"\b(\d{1,2})(?::(\d{2}))?\s*(am|pm)?\b", t)
    if not m:
        return None
    hour = int(m.group(1))
    if hour > 23:
        return None
    suffix = m.group(3)
    if suffix == "pm" and hour < 12:
        hour += 12
    elif suffix == "am" and hour == 12:
        hour = 0
    elif suffix is None and 1 <= hour <= 6:
        hour += 12
    return hour


def part_of_day(text: str) -> str | None:
    t = normalize(text)
    if "morning" in t:
        return "morning"
    if "afternoon" in t or "evening" in t:
        return "afternoon"
    return None


def choose(text: str, options: list[datetime], today: date) -> int | None:
    """Pick one of several offered times from what the caller said ("the second", "Tuesday at 10")."""
    if not options:
        return None
    idx = ordinal_choice(text, len(options))
    day = weekday(text, today)
    hour = hour_of_day(text)
    matches = [
        i
        for i, start in enumerate(options)
        if (day is None or start.date() == day) and (hour is None or start.hour == hour)
    ]
    if (day is not None or hour is not None) and len(matches) == 1:
        return matches[0]
    if idx is not None:
        return idx
    if len(options) == 1 and yes_no(text):
        return 0
    return None


def mentions(text: str, *words: str) -> bool:
    t = normalize(text)
    return any(re.search(rf"\b{re.escape(w)}", t) for w in words)


_LEADS = (
    "it's", "it is", "this is", "my name is", "my name's", "the name is", "the name's", "name's", "name is", "i'm",
    "i am", "the account is under", "the account's under", "it's under", "it is under", "under",
    "the name on the account is", "the account holder is", "account holder", "the account is in the name of",
    "in the name of",
)  # fmt: skip
# Longest first, so "it's under" is taken whole rather than as "it's" before a name "under ...".
_NAME_LEAD = re.compile(
    r"^(?:(?:yes|yeah|yep|sure|ok|okay|um|uh|erm|well|so|oh|right)\s+)*"
    rf"(?:(?:{'|'.join(sorted(_LEADS, key=len, reverse=True))})\s+)?"
)
# Words that do not occur in a person's name but do in what callers say instead of one.
_NOT_NAME = frozenset((
    "a", "an", "the", "i", "me", "my", "mine", "your", "our", "it", "its", "it's", "is", "am", "are", "was", "be",
    "not", "no", "yes", "don't", "dont", "do", "know", "remember", "sure", "number", "phone", "account", "zip",
    "code", "order", "what", "why", "how", "who", "where", "when", "have", "has", "had", "got", "this", "that",
    "there", "here", "wife", "husband", "mother", "father", "mom", "dad", "son", "daughter", "partner", "work",
    "name", "balance", "bill", "help", "please", "thanks", "thank", "you", "just", "really", "sorry", "can't",
    "cant", "cannot", "idea", "forgot", "lost", "and", "or", "but", "with", "for", "from", "of", "on", "in", "at",
    "to", "by", "up", "northwind", "internet", "service", "technician", "visit", "pay", "payment", "under",
))  # fmt: skip
_ACCOUNT = re.compile(r"\bn\s?\.?\s?w\b\.?\s?-?\s?((?:\d|\s|-)+)")
_ACCOUNT_SAID = re.compile(r"\baccount(?: number)?(?: is| it's)?\s+((?:\d|\s|-)+)")


def clauses(text: str) -> list[str]:
    """A turn cut at its commas and sentence ends, as a caller's clauses ("It's Aisha Khan, zip 11375")."""
    return [part.strip() for part in re.split(r"[,;?!]|\.(?:\s|$)", text) if part.strip()]


def person_name(text: str) -> str | None:
    """A caller's first and last name ("It's James Carter" -> "James Carter"), when that is what they said.

    Only two or three plain words after a lead-in ("my name is", "it's under") count, so a sentence such as
    "I don't know the number" is never taken for a name; anything after a comma or a number is left out.
    """
    # "the account is in my name, Robert Chen", "What's my balance? It's Aisha Khan": the name may come in any
    # part of the turn (normalize() drops the punctuation, so the parts are cut first).
    for raw in clauses(text):
        part = re.split(r"\bzip\b|\bpostcode\b|\band\b|\d", normalize(raw).replace(".", " "), maxsplit=1)[0]
        words = _NAME_LEAD.sub("", part.strip()).split()
        if 2 <= len(words) <= 3 and not any(not_a_name(w) for w in words):
            return " ".join("-".join(p.capitalize() for p in w.split("-")) for w in words)
    return None


def not_a_name(word: str) -> bool:
    """Whether ``word`` (lower case) cannot be part of a person's name: a common word, a digit, a number word."""
    return word in _NOT_NAME or word in _DIGIT_WORDS or not re.fullmatch(r"[a-z][a-z'-]*", word)


def account_number(text: str) -> str | None:
    """An account number as printed on the bill ("NW-1003"), said as "N W one zero zero three" or "account 1003"."""
    t = normalize(text)
    spelled = " ".join(_DIGIT_WORDS.get(w, w) if w not in {"o", "oh"} or i else w for i, w in enumerate(t.split()))
    for pattern in (_ACCOUNT, _ACCOUNT_SAID):
        m = pattern.search(spelled)
        if m:
            found = re.sub(r"\D", "", m.group(1))
            if len(found) == 4:
                return f"NW-{found}"
    return None


# A question about what the account is ("what's my account number?", "what plan am I on?"), answered from the
# verified account; not an account number given ("my account number is N W 1002").
_ACCOUNT_INFO = re.compile(
    r"\b(?:what(?:'s| is)|tell me|give me|need|know|find|get|read me|remind me of) (?:my|our|the) account number\b"
    r"|\b(?:what|which) (?:plan|speed|package)\b|\bplan (?:am i|i'm|i am|we're|we are) on\b"
)


def asks_about_account(text: str) -> bool:
    """Whether the caller asks for their account number or which plan they have."""
    return bool(_ACCOUNT_INFO.search(normalize(text)))


# Changes to how the account pays or what it has, which the tenant's tools cannot make: a person can.
_ACCOUNT_CHANGES = ("autopay", "auto pay", "auto-pay", "automatic payment", "direct debit", "card on file",
                    "payment method", "new card", "update my card", "change my card", "credit card details",
                    "bank details", "paperless", "billing address", "change my plan", "upgrade", "downgrade",
                    "switch plan", "switch my plan", "cheaper plan", "faster plan", "payment plan",
                    "payment arrangement", "payment extension", "more time to pay")  # fmt: skip


# Ending the service itself ("cancel my internet", "I want to close my account", "we're switching providers"):
# a person does it (and may keep the customer); not a technician visit or a payment called off.
_CANCEL_SERVICE = re.compile(
    r"\b(?:cancel\w*|terminat\w*|discontinu\w*|disconnect\w*|end|ending|close|closing|shut off|stop|quit)"
    r"(?: [\w']+){0,3}? (?:service|internet|account|subscription|contract|plan|broadband|wi-?fi|connection|"
    r"membership)\b|\b(?:switch\w*|mov\w*|go\w*) (?:to|over to) (?:another|a different|a new|a cheaper) "
    r"(?:provider|company|isp)\b|\bswitching (?:providers|companies)\b|\bleave northwind\b|\bleaving northwind\b"
)
_NOT_SERVICE = re.compile(r"\b(?:appointment|visit|technician|tech|booking|payment|dispute|refund|order)\b")


def cancels_service(text: str) -> bool:
    """Whether the caller wants to end their service ("cancel my internet"), not a visit or a payment."""
    t = normalize(text)
    return bool(_CANCEL_SERVICE.search(t)) and not _NOT_SERVICE.search(t)


def asks_account_change(text: str) -> bool:
    """Whether the caller asks to change how the account pays or what plan it has ("set up autopay"), or to end
    the service."""
    return mentions(text, *_ACCOUNT_CHANGES) or cancels_service(text)


def names_another_reference(text: str) -> bool:
    """Whether the caller offers a number that is not one verification can use (an order, a ticket, a case)."""
    return mentions(text, "order", "confirmation", "reference", "ticket", "case number", "tracking", "invoice number")


# Leading words that answer a yes/no question or join it to what follows ("no wait", "yes please, and").
_ANSWER_LEAD = re.compile(
    r"^(?:(?:yes|yeah|yep|yup|sure|ok|okay|no|nope|nah|not really|not now|not yet|please|thanks|thank you|that's fine|"
    r"that's all|wait|hang on|hold on|one second|actually|oh|um|uh|well|but|and|also|though|then|first|great|"
    r"perfect|fine|alright|all right|correct|right|go ahead|do it|sounds good|never ?mind|cancel that)"
    r"\b[\s,.!;:-]*)+"
)
_REQUEST_START = re.compile(
    r"^(?:what|what's|whats|when|when's|where|why|how|how's|who|which|is|isn't|are|can|could|would|will|do|does|"
    r"did|there's|send|book|tell|check|cancel|pay|give|put|get|let|i need|i want|i'd like|i would like|"
    r"i have a question|i also|my)\b"
)


def request_after_answer(text: str) -> str:
    """The new request a caller adds to a yes or no ("no wait, what's my balance?" -> "what's my balance?").

    Empty when the turn is only an answer, or what follows the answer is not a request of its own ("yes, that
    works for me", "no, I don't"): it must open like a question or a request and hold three words or more.
    """
    t = normalize(text)
    lead = _ANSWER_LEAD.match(t)
    if lead is None or yes_no(t[: lead.end()]) is None:
        return ""
    rest = t[lead.end() :].strip(" .,")
    if len(rest.split()) < 3 or not (_REQUEST_START.match(rest) or "?" in text):
        return ""
    return rest


# Words that join a question to what was said before it ("and when is it due?", "oh, so why is it so high?").
_JOINING_LEAD = re.compile(r"^(?:(?:and|oh|so|um|uh|well|but|also|actually|sorry|hang on|wait|hmm)\b[\s,.!;:-]*)+")


def new_request(text: str) -> str:
    """A question or request that stands on its own, said where a yes or no was asked for ("how come there's a
    late fee?", "and when is it due?"), without its joining words; empty for anything else.

    Like `request_after_answer`'s, it must open like a question or a request and hold three words or more, so
    a short reaction ("why not?", "hmm, really?") or an answer in other words ("sounds good") is never one.
    """
    if yes_no(text) is not None:
        return ""
    t = normalize(text)
    lead = _JOINING_LEAD.match(t)
    rest = (t[lead.end() :] if lead else t).strip(" .,")
    if len(rest.split()) < 3 or not _REQUEST_START.match(rest):
        return ""
    return rest


# Turning the whole task down ("no thanks", "never mind", "leave it as it is"), as opposed to a "no" to one option.
_DECLINE = re.compile(
    r"^(?:(?:no|nah|nope|oh|um|uh|ok|okay|well|actually)\b[\s,.!]*)*(?:thanks|thank you|that'?s (?:all|it|fine))\b"
    r"|\b(?:never ?mind|forget (?:it|about it)|don'?t bother|leave it|keep it|i'?ll keep|keep (?:my|the) (?:visit|"
    r"appointment|booking)|i'?ve changed my mind|i changed my mind|changed my mind|i'?ll (?:call|ring) (?:back|later)|"
    r"not (?:any ?more|anymore|now)|(?:don'?t|do not) (?:want|need) (?:to (?:move|change|book|cancel|reschedule)|"
    r"(?:a|the|any) (?:visit|appointment|technician)))\b"
)
# Words that ask for other options, so a "no thanks" beside them is not a refusal ("no thanks, anything later?").
_OTHER_OPTIONS = re.compile(
    r"\b(?:other|another|else|different|none|neither|later|earlier|sooner|any (?:other )?(?:time|day)|instead)\b"
)


def declines(text: str) -> bool:
    """Whether the caller turns the task down ("no thanks", "never mind"), not one option ("no, another day")."""
    t = normalize(text)
    return bool(_DECLINE.search(t)) and not _OTHER_OPTIONS.search(t)


# Digits as callers say them; not "to", "too", "for" or "o", which are words far more often than digits.
SAID_DIGITS = frozenset(_DIGIT_WORDS) - {"to", "too", "for", "o"}
_REPEATED_DIGIT = re.compile(r"\b(?:double|triple)\b")
# The lengths at which a digit string a caller is asked for is whole: a ZIP code, a phone number with or without
# its leading 1. An account number ("NW-1002", "account 1002") is whole at four, as `account_number` reads it.
_WHOLE_DIGIT_STRINGS = frozenset((5, 10, 11))


def stops_short_of_a_number(text: str) -> bool:
    """Whether the digits said so far stop short of a ZIP code, a phone number or an account number.

    False when no digit was said ("it's James Carter"): that answer is whole in another way.
    """
    t = normalize(text)
    if _REPEATED_DIGIT.search(t):
        return False  # "double five" is counted by nobody's fingers here; do not hold it
    count = sum(
        len(w) if w.isdigit() else 1
        for w in t.replace("-", " ").replace(".", " ").split()
        if w.isdigit() or w in SAID_DIGITS
    )
    if count == 0 or count in _WHOLE_DIGIT_STRINGS:
        return False
    return not (count == 4 and account_number(t) is not None)


# A whole turn that asks to hear the last reply again ("sorry, could you repeat that?", "what was that?").
_REPEAT_REQUEST = re.compile(
    r"(?:(?:sorry|i'm sorry|pardon|excuse me|um|uh|oh|hello|what|huh|hang on|wait)[\s,.]+)*(?:"
    r"(?:can|could|would|will) you (?:please )?(?:repeat|say)"
    r"(?: (?:that|it|this|the (?:question|number|options|times|last part|amount|date|address)))?"
    r"(?: again| one more time)?(?: please)?"
    r"|(?:please )?(?:repeat|say) (?:that|it|this)(?: again| one more time)?(?: please)?"
    r"|please repeat(?: that| it)?|repeat please|say again|one more time(?: please)?"
    r"|what (?:was that|did you (?:just )?say)|i didn'?t (?:catch|hear|get|understand) (?:that|you|what you said|it)"
    r"|i missed (?:that|it|what you said)|come again|pardon(?: me)?)(?: please)?"
)
# Words that ask for the last reply again only as a question on their own ("Sorry?", "What?").
_REPEAT_WORDS = frozenset(("sorry", "what", "huh", "pardon", "excuse me", "sorry what", "what sorry", "eh"))


def asks_to_repeat(text: str) -> bool:
    """Whether the whole turn asks to hear the agent's last reply again, and nothing else."""
    t = normalize(text).strip(" .,:-")
    if _REPEAT_REQUEST.fullmatch(t):
        return True
    return text.strip().endswith("?") and t in _REPEAT_WORDS


# A question about the agent's question, and nothing else: why it is asked, or what it means.
_WHY = re.compile(
    r"(?:(?:um|uh|sorry|wait|hang on|hold on|ok|okay|but|and|huh)[ ,]+)*"
    r"(?:why(?: not| is that| do you (?:need|want|ask)(?: (?:that|this|it|to know|for (?:that|it)|my [\w ]{1,20}))?"
    r"| would you need (?:that|it|to know)| does it matter)?|what for|how come|what(?:'s| is) (?:that|it|this) for|"
    r"what do you need (?:that|it|this|to know that|my [\w ]{1,20}) for|what do you mean(?: by that)?|"
    r"what does that mean|i don'?t (?:understand|get it)(?: the question)?|what are you asking(?: me)?)[ ?.!]*"
)


def asks_why(text: str) -> bool:
    """Whether the whole turn asks why the agent asked, or what its question means ("why do you need that?")."""
    return bool(_WHY.fullmatch(normalize(text).strip(" .,:-")))


def declines_first(text: str) -> bool:
    """Whether a yes is held back until a question is answered ("yes, but when is it due?")."""
    return bool(re.match(r"^(?:\w+\W+){0,3}?but\b", normalize(text)))
