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
