"""Numbers written for the ear: amounts, clock times and phone numbers in words, in every reply."""

from __future__ import annotations

import pytest

from agents.speech import (
    for_the_ear,
    number_words,
    spoken_clock,
    spoken_dollars_cents,
    spoken_money,
    spoken_phone,
    words_number,
)
from agents.supervisor import _refund_promise_cents, reply_breach

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("n", "said"),
    [
        (0, "zero"),
        (7, "seven"),
        (15, "fifteen"),
        (40, "forty"),
        (49, "forty-nine"),
        (100, "one hundred"),
        (144, "one hundred forty-four"),
        (2005, "two thousand five"),
        (12_500, "twelve thousand five hundred"),
    ],
)
def test_numbers_in_words_read_back_to_themselves(n: int, said: str) -> None:
    assert number_words(n) == said
    assert words_number(said) == n


@pytest.mark.parametrize(
    ("cents", "said"),
    [
        (4900, "forty-nine dollars"),
        (14498, "one hundred forty-four dollars and ninety-eight cents"),
        (100, "one dollar"),
        (1, "one cent"),
        (50, "fifty cents"),
        (0, "zero dollars"),
        (1501, "fifteen dollars and one cent"),
    ],
)
def test_amounts_are_dollars_and_cents_in_words(cents: int, said: str) -> None:
    assert spoken_money(cents) == said


@pytest.mark.parametrize(
    ("hour", "minute", "said"),
    [
        (10, 0, "ten in the morning"),
        (14, 30, "two thirty in the afternoon"),
        (12, 0, "noon"),
        (0, 0, "midnight"),
        (8, 5, "eight oh five in the morning"),
        (18, 0, "six in the evening"),
        (12, 15, "twelve fifteen in the afternoon"),
    ],
)
def test_clock_times_are_said_as_people_say_them(hour: int, minute: int, said: str) -> None:
    assert spoken_clock(hour, minute) == said


def test_a_phone_number_is_read_digit_by_digit_in_groups() -> None:
    assert spoken_phone("+15550100002") == "five five five, zero one zero, zero zero zero two"


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("I can refund at most $50 myself.", "I can refund at most fifty dollars myself."),
        ("Your balance is $144.98.", "Your balance is one hundred forty-four dollars and ninety-eight cents."),
        ("A charge of $1,200.5 was made.", "A charge of one thousand two hundred dollars and fifty cents was made."),
        ("We'll be there at 2:30 PM.", "We'll be there at two thirty in the afternoon."),
        ("Fixed by 10 a.m. tomorrow.", "Fixed by ten in the morning tomorrow."),
        ("Call us on 555-010-0002.", "Call us on five five five, zero one zero, zero zero zero two."),
        ("Call +15550100002 now.", "Call five five five, zero one zero, zero zero zero two now."),
        # Nothing to say differently: ordinary numbers, ZIP codes, ids and dates stay as they are.
        ("Step 2: unplug it for 30 seconds.", "Step 2: unplug it for 30 seconds."),
        ("Invoice INV-1001-20261126 on November 26.", "Invoice INV-1001-20261126 on November 26."),
    ],
)
def test_written_numbers_in_a_reply_are_rewritten_for_the_ear(written: str, said: str) -> None:
    assert for_the_ear(written) == said


def test_a_refund_promise_said_in_words_is_caught_like_a_written_one() -> None:
    assert spoken_dollars_cents("a refund of two hundred dollars, and forty-nine dollars more") == [20000, 4900]
    assert _refund_promise_cents("I've refunded two hundred dollars to your card.") == 20000
    assert _refund_promise_cents("Your balance is forty dollars.") is None
    assert reply_breach("I'll refund a hundred and fifty dollars today.", max_refund_cents=5000, refund_granted=False)
    assert not reply_breach("I'll refund forty-nine dollars today.", max_refund_cents=5000, refund_granted=False)
