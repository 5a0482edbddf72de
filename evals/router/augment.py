"""Templated Northwind utterances for the router's weak spots, written from its leave-one-dataset-out failures."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from evals.router.split import Row

# Each group is (label, templates, slot values). A template's {a}, {b} are filled with every combination of the
# group's slot lists, so a few lines give a few dozen phrasings. Escalation is the one label the dev set has
# from a single synthetic source, so most groups are escalation as real callers say it: short, indirect, angry.
Group = tuple[str, Sequence[str], Sequence[Sequence[str]]]

_PERSON = (
    "someone",
    "somebody",
    "a person",
    "a real person",
    "a human",
    "an actual person",
    "a manager",
    "your supervisor",
)

GROUPS: dict[str, Group] = {
    # "Is there someone I could speak with": a person asked for without the words agent or representative.
    "indirect_person": (
        "escalation",
        (
            "is there {a} I could speak with",
            "could I possibly talk to {a}",
            "I'd rather deal with {a} if that's all right",
            "can you put me through to {a}",
            "I'd like to speak with {a} about this",
            "is there {a} there who can actually help me",
            "who can I talk to about this, {a}",
            "I think I need to speak to {a}",
            "can I get {a} on the phone",
            "I'd prefer to talk to {a}",
            "please just get me {a}",
            "I want {a}, not a machine",
        ),
        (_PERSON,),
    ),
    # One or two words of anger with no topic ("useless", "ridiculous").
    "one_word_complaint": (
        "escalation",
        ("{a}", "this is {a}", "{a}, absolutely {a}", "that's {a}", "you're {a}", "{a} service"),
        (("useless", "ridiculous", "unbelievable", "pathetic", "terrible", "awful", "disgraceful", "a joke"),),
    ),
    # Urgency with no topic ("it's urgent, I need someone now").
    "urgent_no_topic": (
        "escalation",
        (
            "this is urgent, I need {a} now",
            "it's an emergency, get me {a}",
            "I need {a} urgently",
            "it's really urgent, please put me through to {a}",
            "I need to speak to {a} right away, it can't wait",
            "please hurry, I need {a} immediately",
        ),
        (("someone", "somebody", "a person", "help", "a human"),),
    ),
    # Complaints that nobody answers or calls back.
    "nobody_answers": (
        "escalation",
        (
            "nobody ever answers your {a}",
            "I've called {b} and no one picks up",
            "no one ever gets back to me",
            "I've been waiting {b} for a call back",
            "I keep getting cut off and nobody answers your {a}",
            "I've left messages {b} and nobody has returned them",
            "your {a} just ring and ring",
            "why does nobody answer your {a}",
        ),
        (("phones", "line", "emails", "chat"), ("five times", "all week", "for days", "every day this week")),
    ),
    # Account access and things that stopped working: the support a caller means when it is not an outage.
    "access_and_broken": (
        "support",
        (
            "I can't {a}",
            "I'm unable to {a}",
            "it won't let me {a}",
            "my {b} stopped working",
            "my {b} keeps crashing",
            "the {b} isn't working since the update",
            "something's wrong with my {b}",
        ),
        (
            ("log in to my account", "sign in online", "reset my password", "get into my email", "change my PIN"),
            ("account", "app", "router", "modem", "email", "wifi"),
        ),
    ),
    # Finance questions outside an internet provider: exchange rates, share prices, markets.
    "finance_elsewhere": (
        "out_of_scope",
        (
            "what's the exchange rate for {a}",
            "how much is one dollar in {a}",
            "convert a hundred dollars to {a}",
            "what is the share price of {b}",
            "how are {b} shares doing today",
            "should I buy {b} stock",
            "what's the {b} stock price",
            "how did the stock market close today",
        ),
        (("euros", "yen", "pounds", "pesos", "bitcoin"), ("Apple", "Tesla", "Amazon", "Microsoft")),
    ),
    # Appointments with other kinds of specialists, which a broadband provider does not book.
    "other_appointments": (
        "out_of_scope",
        (
            "I need to book an appointment with my {a}",
            "can you make me a {a} appointment for Tuesday",
            "schedule a visit to the {a} next week",
            "I have to see the {a} tomorrow, can you book it",
            "reschedule my {a} appointment",
            "cancel my appointment with the {a}",
        ),
        (("doctor", "dentist", "optician", "vet", "hairdresser", "physiotherapist"),),
    ),
}


def expand(group: Group) -> list[str]:
    """Every distinct filling of the group's templates, in a stable order."""
    _, templates, slots = group
    texts: list[str] = []
    for template in templates:
        for values in itertools.product(*slots):
            filled = template.format(a=values[0], b=values[1] if len(values) > 1 else "")
            if filled not in texts:
                texts.append(filled)
    return texts


def augmented_rows(groups: Iterable[str] = tuple(GROUPS)) -> list[Row]:
    """The templated rows of the named groups, `source` `northwind:template:<group>`."""
    rows: list[Row] = []
    for name in groups:
        label = GROUPS[name][0]
        rows.extend(Row(text, label, f"northwind:template:{name}") for text in expand(GROUPS[name]))
    return rows
