"""The supervisor's escalation triggers on the labelled sets: recall and false escalations within the goals."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.supervisor.bench import MAX_FALSE_ESCALATION, MIN_RECALL, TRIGGERS, TRIGGERS_PATH, evaluate, load

pytestmark = pytest.mark.unit

HOLDOUT_PATH = TRIGGERS_PATH.with_name("holdout.jsonl")


@pytest.mark.parametrize("path", [TRIGGERS_PATH, HOLDOUT_PATH], ids=["triggers", "holdout"])
def test_every_trigger_is_caught_and_innocent_words_are_left_alone(path: Path) -> None:
    result = evaluate(load(path))
    recalls = {t: s["recall"] for t, s in result["per_trigger"].items()}
    assert all(result["per_trigger"][t]["support"] > 0 for t in TRIGGERS), "every trigger has labelled rows"
    missed = [e for e in result["errors"] if e["label"] != "none"]
    assert all(r >= MIN_RECALL for r in recalls.values()), (recalls, missed)
    false = [e for e in result["errors"] if e["label"] == "none"]
    assert result["false_escalation_rate"] <= MAX_FALSE_ESCALATION, false


def test_the_sets_hold_hundreds_of_rows_with_hard_negatives() -> None:
    rows = load(TRIGGERS_PATH)
    assert len(rows) >= 500
    negatives = {r.text for r in rows if r.label == "none"}
    assert {"My Fire TV stick keeps buffering", "My wife Sue is the account holder"} <= negatives
    assert "My account manager said I'd get a discount" in negatives


def test_an_unknown_label_is_refused_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "hello", "label": "none"}\n{"text": "x", "label": "angry"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: unknown label 'angry'"):
        load(bad)
