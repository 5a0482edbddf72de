"""PII redaction: phones, emails, cards, ZIPs after a ZIP prompt, the verified caller's name, log records."""

from __future__ import annotations

import logging

import pytest

from orchestrator.telemetry.redact import RedactingFilter, names_in, redact_text, redact_turns

pytestmark = pytest.mark.unit


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
