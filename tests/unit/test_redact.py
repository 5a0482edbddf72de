"""PII redaction: the variant corpus at both levels, ZIPs after a ZIP prompt, names, log records and exceptions."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.redact import (
    RedactingFilter,
    describe_error,
    install_log_redaction,
    luhn_ok,
    names_in,
    redact_caller_input,
    redact_text,
    redact_turns,
    sanitize,
)

pytestmark = pytest.mark.unit

CORPUS: dict[str, Any] = yaml.safe_load((Path(__file__).parent / "data" / "pii_corpus.yaml").read_text("utf-8"))
_WORDS = {
    "zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip


def digits_said(text: str) -> str:
    """Every digit left in a text, as numerals or as digit words, in order ("triple" counts once: strict)."""
    return "".join(_WORDS.get(t, t) for t in re.findall(r"\d|[a-z]+", text.lower()) if t.isdigit() or t in _WORDS)


def leaks(out: str, secret: str) -> bool:
    if secret.isdigit():
        return secret in digits_said(out)
    return secret.lower() in out.lower()


@pytest.mark.parametrize("case", CORPUS["redacted"], ids=lambda c: c["text"][:40])
@pytest.mark.parametrize("level", [redact_caller_input, redact_text], ids=["input", "full"])
def test_pii_variants_are_masked_at_both_levels(case: dict[str, Any], level: Any) -> None:
    out = level(case["text"])
    assert case["tag"] in out, out
    assert not [s for s in case["secret"] if leaks(out, s)], out


@pytest.mark.parametrize("case", CORPUS["kept"], ids=lambda c: c["text"][:40])
def test_numbers_the_graph_needs_survive_its_input_and_only_pii_is_masked_outside_it(case: dict[str, Any]) -> None:
    assert redact_caller_input(case["text"]) == sanitize(case["text"])
    full = redact_text(case["text"])
    if case["full"] == "same":
        assert full == sanitize(case["text"])
    else:
        assert case["full"] in full, full
        assert not re.search(r"\d{3}", full), full


@pytest.mark.parametrize("text", CORPUS["zip_answers"])
def test_a_zip_answer_is_masked_outside_the_graph(text: str) -> None:
    out = redact_text(text, zip_expected=True)
    assert "[ZIP]" in out
    assert "10027" not in digits_said(out)


def test_the_corpus_is_big_enough_to_mean_something() -> None:
    tags = [c["tag"] for c in CORPUS["redacted"]]
    assert min(tags.count(t) for t in ("[CARD]", "[SSN]", "[EMAIL]")) >= 10
    assert len(CORPUS["kept"]) >= 40


def test_sanitize_keeps_newline_and_tab_and_drops_other_controls() -> None:
    assert sanitize("a\x00b\x07c\r\nd\te\u200bf\u202eg\ufeff") == "abc\nd\tefg"
    assert sanitize("ＡＢＣ１２３＠") == "ABC123@"


def test_luhn() -> None:
    assert luhn_ok("4111111111111111")
    assert luhn_ok("378282246310005")
    assert not luhn_ok("4111111111111112")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call me on 555 010 0002", "call me on [PHONE]"),
        ("it's +1 (555) 010-0002", "it's [PHONE]"),
        ("+15550100001", "[PHONE]"),
        ("mail maria.g@example.com please", "mail [EMAIL] please"),
        ("card 4111 1111 1111 1111 exp 12/29", "card [CARD] exp 12/29"),
        ("my balance is $79.99 due on December 4", "my balance is $79.99 due on December 4"),
        ("step 10027 means nothing here", "step 10027 means nothing here"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_zip_codes_are_masked_only_when_they_answer_a_zip_prompt() -> None:
    turns = [
        ("What's my balance?", "First, for your security, what's the ZIP code on your account?"),
        ("10027", "Thank you, Maria, you're verified. Your balance is $79.99."),
        ("pay 10027 dollars? no", "Okay."),
    ]
    out = redact_turns(turns)
    assert out[1].caller == "[ZIP]"
    assert out[2].caller == "pay 10027 dollars? no"
    assert out[1].agent == "Thank you, [NAME], you're verified. Your balance is $79.99."


def test_names_spoken_after_verification_are_found_and_masked_everywhere() -> None:
    assert names_in(["Thank you, Maria Garcia, you're verified."]) == {"Maria Garcia", "Maria"}
    out = redact_turns([("this is Maria", "Thank you, Maria, you're verified.")])
    assert out[0].caller == "this is [NAME]"


def test_logging_filter_masks_messages() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "caller %s said %s", ("+15550100001", "hi"), None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "caller [PHONE] said hi"


def test_logging_filter_replaces_an_exceptions_message_with_its_type() -> None:
    said = "my card is 4111 1111 1111 1111"
    try:
        raise ValueError(f"could not store {said!r}")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "turn failed", (), __import__("sys").exc_info())
    assert RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "4111" not in text
    assert "ValueError" in text
    assert "test_logging_filter_replaces_an_exceptions_message_with_its_type" in text  # the frames stay


def test_describe_error_keeps_only_a_database_errors_type_and_sqlstate() -> None:
    class DataError(Exception):
        sqlstate = "22P05"

    exc = DataError("unsupported Unicode escape sequence\nCONTEXT: JSON data, line 1: ...card is 4111 1111 1111 1111")
    assert describe_error(exc) == "DataError, SQLSTATE 22P05"
    assert describe_error(ValueError("no slot for +1 555 010 0002")) == "ValueError: no slot for [PHONE]"


def test_once_installed_every_log_record_is_redacted_whoever_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    said = "card 4111 1111 1111 1111, call 555 010 0002"
    try:
        raise RuntimeError(f"could not store {said!r}")
    except RuntimeError:
        logging.getLogger("some.library").exception("write failed for %s", said)
    assert "write failed for card [CARD], call [PHONE]" in caplog.text
    assert "RuntimeError" in caplog.text
    assert "4111" not in caplog.text
    assert "010 0002" not in caplog.text
