"""The supervisor's escalation triggers on the labelled sets: recall and false escalations within the goals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.triggers import reading
from evals.supervisor.bench import MAX_FALSE_ESCALATION, MIN_RECALL, TRIGGERS, TRIGGERS_PATH, evaluate, load
from evals.supervisor.train_head import LABELS, TRAIN_SETS, ordinary_rows, written_rows
from orchestrator.providers.intent import MODEL_DIR, TRIGGER_HEAD_FILE, load_classifier

pytestmark = pytest.mark.unit

HOLDOUT_PATH = TRIGGERS_PATH.with_name("holdout.jsonl")
HOLDOUT4_PATH = TRIGGERS_PATH.with_name("holdout4.jsonl")


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


@pytest.mark.parametrize(
    ("text", "trigger"),
    [
        ("I need to ring the fire brigade and the line is dead", "emergency"),
        ("somebody has been logging into my account who isn't me", "fraud"),
        ("my neighbour is lying on the floor and won't wake up", "emergency"),
        ("there's a strange man at my door refusing to leave and I'm scared", "emergency"),
        ("someone in another country has been paying with my account", "fraud"),
        ("you heard me wrong a second time", "repeated_failures"),
        ("My Fire TV stick keeps buffering", None),
        ("What's my balance?", None),
        # Negation and idiom sit close to a trigger in the embedding.
        ("no, I'm not angry, I only want to change my plan", None),
        ("I'm not after a human, just my balance", None),
        ("the landline has been dead since Tuesday, can an engineer look", None),
    ],
)
def test_the_trigger_head_reads_what_the_patterns_miss_and_leaves_ordinary_turns_alone(
    text: str, trigger: str | None
) -> None:
    assert reading(text) is None
    assert load_classifier().classify(text).trigger == trigger


def test_the_head_adds_recall_on_a_set_it_never_trained_on_and_no_false_escalation() -> None:
    assert HOLDOUT4_PATH not in TRAIN_SETS
    rows = load(HOLDOUT4_PATH)
    with_head, patterns = evaluate(rows), evaluate(rows, head=False)
    hits = sum(s["recall"] * s["support"] for s in with_head["per_trigger"].values())
    assert hits > sum(s["recall"] * s["support"] for s in patterns["per_trigger"].values())
    assert with_head["false_escalations"] == patterns["false_escalations"]


def test_the_head_reads_no_trigger_in_our_products_ordinary_turns() -> None:
    # "can you explain the charges on my account" read as fraud would hand a billing question to a person.
    texts = [text for text, _ in ordinary_rows()]
    assert len(texts) > 300
    classifier = load_classifier()
    read = [(text, trigger) for text, trigger in zip(texts, classifier.triggers(classifier.embed(texts)), strict=True)]
    assert [(text, trigger) for text, trigger in read if trigger is not None] == []


def test_the_head_learns_words_only_from_rows_whose_words_carry_the_trigger() -> None:
    # "hmm" after three failures is repeated_failures because of the call; as words it is nothing.
    triggers_in_words = {text for text, label in written_rows() if LABELS[label] != "none"}
    assert not {"hmm", "uh", "what?", "the bill", "cancel it"} & triggers_in_words
    assert "You keep mishearing me" in triggers_in_words


def test_the_shipped_trigger_head_names_the_benchmarks_triggers_over_the_routers_embedding() -> None:
    with np.load(MODEL_DIR / TRIGGER_HEAD_FILE) as head:
        assert tuple(head["labels"]) == (*TRIGGERS, "none")
        assert head["w"].shape == (384, len(TRIGGERS) + 1)
        # Chosen out of fold at 0.5 % false escalations; a threshold near 0.5 would read any close call as a trigger.
        assert 0.5 < float(head["threshold"]) < 1
