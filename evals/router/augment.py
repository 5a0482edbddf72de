"""Templated Northwind utterances for the router's weak spots, written from its leave-one-dataset-out failures."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from evals.router.split import Row

# Each group is (label, templates, slot values). A template's {a}, {b} are filled with every combination of the
# group's slot lists, so a few lines give a few dozen phrasings. Escalation is the one label the dev set has
# from a single synthetic source, so most groups are escalation as real callers say it: short, indirect, angry.
Group = tuple[str, Sequence[str], Sequence[Sequence[str]]]

TEMPLATE_SOURCE = "northwind:template:"
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
    # Complaints as a request to complain, which callers make before they say what about.
    "make_complaint": (
        "escalation",
        (
            "how do I make a complaint about {a}",
            "I'd like to lodge a formal complaint about {a}",
            "where do I send a complaint about {a}",
            "I need to report {a}, it's not good enough",
            "I want to put in a complaint about {a}",
        ),
        (("the service", "your company", "the engineer", "the way I was treated", "your staff"),),
    ),
    # A locked or suspended account is an access problem for support, not a question about money.
    "account_locked": (
        "support",
        (
            "why is my account {a}",
            "my account has been {a}",
            "someone {a} my account",
            "can you tell me why my account got {a}",
        ),
        (("locked", "frozen", "suspended", "blocked", "put on hold"),),
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
    # Appointments with other kinds of specialists, which a broadband provider does not book. Not in the shipped
    # head: router-dev labels doctor, dentist and salon bookings (SGD, STAR) as scheduling. At a written row's
    # weight these templates cost 1.3 points of leave-one-dataset-out macro-F1 (scheduling recall 0.94 to 0.88);
    # at the templates' weight they change nothing, and "book me in with the dentist" still reads as scheduling.
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


# The groups the shipped head learns from (chosen leave-one-dataset-out; see `evals.router.lodo`).
SHIPPED = tuple(name for name in GROUPS if name != "other_appointments")


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
        rows.extend(Row(text, label, f"{TEMPLATE_SOURCE}{name}") for text in expand(GROUPS[name]))
    return rows
