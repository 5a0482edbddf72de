"""Readers of caller words: yes/no, digits, amounts, days, times and choices."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from agents import parsing

pytestmark = pytest.mark.unit

TODAY = date(2026, 11, 24)  # a Tuesday


@pytest.mark.parametrize(
    ("text", "expected"),
    [("yes please", True), ("yeah go ahead", True), ("no thanks", False), ("nope", False), ("hmm", None), ("", None)],
)
def test_yes_no(text: str, expected: bool | None) -> None:
    assert parsing.yes_no(text) is expected


@pytest.mark.parametrize(
    "text", ["I'd rather not", "I'll pass, thanks", "not today", "not right now", "maybe later", "skip that"]
)
def test_a_no_in_other_words_is_a_no(text: str) -> None:
    assert parsing.yes_no(text) is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [("it's 10027", "10027"), ("one oh oh two seven", "10027"), ("1 0 0 2 7", "10027"), ("my zip is 1002", None)],
)
def test_zip_code(text: str, expected: str | None) -> None:
    assert parsing.zip_code(text) == expected


def test_phone_number_in_many_shapes() -> None:
    assert parsing.phone_number("555 010 0002") == "+15550100002"
    assert parsing.phone_number("+1 (555) 010-0002") == "+15550100002"
    assert parsing.phone_number("it's five five five") is None


@pytest.mark.parametrize(("text", "cents"), [("$42.50", 4250), ("pay 40 dollars", 4000), ("20", 2000), ("lots", None)])
def test_amounts(text: str, cents: int | None) -> None:
    assert parsing.amount_cents(text) == cents


def test_weekday_and_hours() -> None:
    assert parsing.weekday("tomorrow morning", TODAY) == date(2026, 11, 25)
    assert parsing.weekday("on Friday", TODAY) == date(2026, 11, 27)
    assert parsing.weekday("tuesday", TODAY) == date(2026, 12, 1)  # the next Tuesday, not today
    assert parsing.hour_of_day("at 3pm") == 15
    assert parsing.hour_of_day("10 am") == 10
    assert parsing.hour_of_day("at 1") == 13


def test_choose_by_ordinal_day_and_time() -> None:
    options = [
        datetime(2026, 11, 25, 8, tzinfo=UTC),
        datetime(2026, 11, 26, 10, tzinfo=UTC),
        datetime(2026, 11, 27, 13, tzinfo=UTC),
    ]
    assert parsing.choose("the second one", options, TODAY) == 1
    assert parsing.choose("Friday please", options, TODAY) == 2
    assert parsing.choose("the 10 o'clock", options, TODAY) == 1
    assert parsing.choose("whatever", options, TODAY) is None


@pytest.mark.parametrize(
    ("said", "name"),
    [
        ("It's James Carter", "James Carter"),
        ("james carter", "James Carter"),
        ("Sofia Rossi, ZIP code one oh three oh one", "Sofia Rossi"),
        ("yeah it's under david okafor and the zip is 10011", "David Okafor"),
        ("my name is Mary-Ann O'Brien", "Mary-Ann O'brien"),
        ("the account is in my name, Robert Chen", "Robert Chen"),
        ("I don't know the number, it's my wife's account", None),
        ("I really don't know it", None),
        ("my order number is 55812", None),
        ("10453", None),
        ("one oh", None),
        ("James", None),
    ],
)
def test_a_name_is_read_only_when_a_name_is_what_was_said(said: str, name: str | None) -> None:
    assert parsing.person_name(said) == name


@pytest.mark.parametrize(
    ("said", "account"),
    [
        ("my account number is NW-1003", "NW-1003"),
        ("N W one zero zero three", "NW-1003"),
        ("it's n.w. 1003", "NW-1003"),
        ("account number 1 0 0 3", "NW-1003"),
        ("NW-1003, zip 11375", "NW-1003"),
        ("my order number is 55812", None),
        ("555 010 0003", None),
    ],
)
def test_an_account_number_is_read_as_printed_on_the_bill(said: str, account: str | None) -> None:
    assert parsing.account_number(said) == account


@pytest.mark.parametrize(
    ("said", "asked", "held"),
    [
        ("no wait, what's my balance now?", "what's my balance now", False),
        ("yes, but when is it due?", "when is it due", True),
        ("yes please, and what's my balance?", "what's my balance", False),
        ("no, can you just send a technician?", "can you just send a technician", False),
        ("no thanks, but is there an outage in my area?", "is there an outage in my area", True),
        ("yes", "", False),
        ("no thanks", "", False),
        ("yes that works for me", "", False),
        ("yes, the first one please", "", False),
        ("no I don't", "", False),
        ("What's my balance?", "", False),
    ],
)
def test_a_request_after_a_yes_or_no_is_read_apart_from_the_answer(said: str, asked: str, held: bool) -> None:
    assert parsing.request_after_answer(said) == asked
    assert parsing.declines_first(said) is held


@pytest.mark.parametrize(
    ("said", "declined"),
    [
        ("no thanks", True),
        ("No, thank you.", True),
        ("that's fine, thanks", True),
        ("never mind, leave it as it is", True),
        ("actually I'll keep my appointment", True),
        ("I've changed my mind", True),
        ("I don't want to move it after all", True),
        ("no", False),
        ("none of those", False),
        ("no thanks, anything later in the week?", False),
        ("no, do you have another day?", False),
        ("neither, thanks", False),
        ("the first one, thanks", False),
        ("yes", False),
    ],
)
def test_turning_a_task_down_is_told_apart_from_asking_for_other_options(said: str, declined: bool) -> None:
    assert parsing.declines(said) is declined


@pytest.mark.parametrize(
    "said",
    [
        "Sorry, can you repeat that?",
        "could you say that again please",
        "please repeat",
        "What was that?",
        "sorry, what did you say?",
        "I didn't catch that",
        "Can you repeat the times?",
        "come again?",
        "Pardon?",
        "Sorry?",
        "What?",
    ],
)
def test_a_request_to_hear_the_last_reply_again_is_read_as_one(said: str) -> None:
    assert parsing.asks_to_repeat(said)


@pytest.mark.parametrize(
    "said",
    [
        "What's my balance?",
        "what about tomorrow?",
        "sorry, I gave the wrong zip, it's 10453",
        "sorry",
        "repeat my last payment",
        "can you say that my payment went through",
        "I repeat, I want a refund",
        "say hello to the technician",
    ],
)
def test_words_of_repeating_in_a_request_of_its_own_are_not_read_as_one(said: str) -> None:
    assert not parsing.asks_to_repeat(said)


def test_a_zip_code_said_after_an_account_number_is_read_from_after_the_word_zip() -> None:
    said = "My account number is N W one zero zero two and my zip is one oh four five three"
    assert parsing.account_number(said) == "NW-1002"
    assert parsing.zip_code(said) == "10453"
    assert parsing.zip_code("my zip code is 1 0 4 5 3") == "10453"


@pytest.mark.parametrize(
    ("said", "asked"),
    [
        ("how come there's a late fee?", "how come there's a late fee"),
        ("and when is it due?", "when is it due"),
        ("oh, so can I get the fee back", "can i get the fee back"),
        # Answers, reactions and yes or no are no request of their own.
        ("why not?", ""),
        ("hmm, really?", ""),
        ("the first one", ""),
        ("sounds good", ""),
        ("no wait what is my balance", ""),
    ],
)
def test_a_question_said_instead_of_a_yes_or_no_is_read_as_a_request(said: str, asked: str) -> None:
    assert parsing.new_request(said) == asked


@pytest.mark.parametrize(
    ("said", "cancels"),
    [
        ("I want to cancel my service", True),
        ("please terminate my internet contract", True),
        ("I'd like to close my account", True),
        ("we're switching to another provider", True),
        ("I need to cancel my technician appointment", False),
        ("cancel the visit on friday", False),
        ("can you cancel that payment", False),
        ("my internet service keeps dropping", False),
        ("the connection ends every evening", False),
    ],
)
def test_ending_the_service_is_told_from_cancelling_a_visit_or_a_payment(said: str, cancels: bool) -> None:
    assert parsing.cancels_service(said) is cancels


@pytest.mark.parametrize(
    ("said", "why"),
    [
        ("why?", True),
        ("why do you need my zip code?", True),
        ("what do you need that for", True),
        ("what do you mean?", True),
        ("why is my bill so high", False),
        ("what do you mean my payment failed", False),
        ("10027", False),
    ],
)
def test_a_question_about_the_question_is_the_whole_turn(said: str, why: bool) -> None:
    assert parsing.asks_why(said) is why
