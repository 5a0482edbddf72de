"""Word error rate: jiwer's edit distance on words normalised the way a caller's digits are heard."""

from __future__ import annotations

import pytest

from orchestrator.telemetry.wer import word_error_rate

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("reference", "hypothesis", "wer"),
    [
        ("My ZIP is 10027.", "my zip is one oh oh two seven", 0.0),
        ("my zip is 10027", "my zip is 10,027", 0.0),
        ("the cat sat", "the bat sat on", 2 / 3),
        ("hello there", "hello", 0.5),
        ("three words here", "", 1.0),
        ("", "", 0.0),
        ("", "noise", 1.0),
    ],
)
def test_word_error_rate(reference: str, hypothesis: str, wer: float) -> None:
    assert word_error_rate(reference, hypothesis) == pytest.approx(wer)
