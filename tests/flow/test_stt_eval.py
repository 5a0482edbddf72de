"""The speech-to-text eval runs on the recorded prompts and spoken numbers and reports every line and reading."""

from __future__ import annotations

import json

import pytest

from evals.stt import corpus, digits

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(
        not corpus.TRANSCRIPTS.is_file(), reason="the Asterisk English prompts: run bash deploy/dev/system.sh"
    ),
]


def test_a_small_run_has_every_line_source_and_reading() -> None:
    result = digits.run(prompts=1, numbers=1, lines=["16k", "8k-ulaw"])
    assert result["data"]["prompts"]["count"] == 1
    assert "CC-BY-SA-3.0" in result["data"]["prompts"]["licence"]
    assert list(result["lines"]) == ["16k", "8k-ulaw"]
    for row in result["lines"].values():
        assert row["prompts_wer"] >= 0.0
        assert row["prompts_words"] > 0
        assert set(row["numbers"]) == {"recorded", "flite"}
        for readings in row["numbers"].values():
            assert list(readings) == ["before", "normalised", "digit decoding"]
            for cell in readings.values():
                assert cell["total"] == 1
                assert 0 <= cell["right"] <= 1
    text = digits.table(result)
    assert text.splitlines()[0].startswith("line")
    assert len(text.splitlines()) == 4  # a header, a row per line, the data's note
    json.dumps(result)


def test_bad_lines_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert digits.main(["--lines", "44k"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--lines" in err


def test_wer_reads_numbers_the_same_whichever_way_they_are_written() -> None:
    wer, words = digits.corpus_wer(
        [("Dial 500 now.", "dial five hundred now"), ("press 1", "Press one."), ("At 8 A.M.", "at eight AM")]
    )
    assert wer == 0.0
    assert words == 10
    assert digits.corpus_wer([("Call-Forward on Busy.", "call forward on bus")]) == (0.25, 4)
