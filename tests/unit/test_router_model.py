"""The shipped local intent classifier: loads offline, routes obvious turns, survives odd input; the scorer is exact."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from agents.ports import INTENTS
from evals.router import lodo
from evals.router.augment import GROUPS, augmented_rows
from evals.router.metrics import evaluate_file, score
from evals.router.split import EXAMPLES_PATH, load_jsonl
from orchestrator.providers.intent import (
    DEFAULT_THRESHOLD,
    MODEL_DIR,
    OnnxIntentClassifier,
    load_classifier,
    neighbour_probs,
    softmax,
)

pytestmark = pytest.mark.unit

REGRESSION = [json.loads(line) for line in lodo.REGRESSION_PATH.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def classifier() -> OnnxIntentClassifier:
    return load_classifier()


def test_loads_from_the_shipped_files_and_is_cached(classifier: OnnxIntentClassifier) -> None:
    assert load_classifier() is classifier
    assert load_classifier(MODEL_DIR) is classifier
    assert set(classifier.labels) == set(INTENTS)


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("I want to cancel my appointment", "scheduling"),
        ("can the technician come on Friday instead", "scheduling"),
        ("how much do I owe this month", "billing"),
        ("I was charged twice, I want a refund", "billing"),
        ("my internet is down", "support"),
        ("is there an outage", "support"),
        ("agent", "escalation"),
        ("representative please", "escalation"),
        ("I want to speak to a manager right now", "escalation"),
        ("what's the weather like tomorrow", "out_of_scope"),
        ("can I order a large pepperoni pizza", "out_of_scope"),
    ],
)
def test_obvious_utterances(classifier: OnnxIntentClassifier, text: str, intent: str) -> None:
    prediction = classifier.classify(text)
    assert prediction.intent == intent, prediction
    assert prediction.confidence >= DEFAULT_THRESHOLD
    assert set(prediction.scores) == set(INTENTS)
    assert sum(prediction.scores.values()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_low_confidence_out_of_scope(classifier: OnnxIntentClassifier, text: str) -> None:
    prediction = classifier.classify(text)
    assert prediction.intent == "out_of_scope"
    assert prediction.confidence < DEFAULT_THRESHOLD


@pytest.mark.parametrize(
    "text",
    [
        "my internet is down " * 500,
        "Mi internet no funciona desde ayer",
        "私のインターネットが使えません",
        "🙂🙂🙂",
        "?!",
        "\x00\x01 weird bytes",
    ],
)
def test_odd_input_does_not_crash(classifier: OnnxIntentClassifier, text: str) -> None:
    prediction = classifier.classify(text)
    assert prediction.intent in INTENTS
    assert 0.0 <= prediction.confidence <= 1.0


def test_batch_matches_single(classifier: OnnxIntentClassifier) -> None:
    texts = ["agent", "", "my bill is wrong", "reschedule my install"]
    batch = classifier.classify_batch(texts)
    for text, prediction in zip(texts, batch, strict=True):
        single = classifier.classify(text)
        assert prediction.intent == single.intent
        # Dynamic int8 quantisation picks activation scales per run, so a text padded into a batch would come
        # out differently; each runs alone, so evals and training see exactly what a live turn does.
        assert prediction.scores == pytest.approx(single.scores, abs=1e-6)


def test_score_matches_hand_computed_values() -> None:
    gold = ["billing", "billing", "support", "escalation"]
    pred = ["billing", "support", "support", "billing"]
    result = score(gold, pred, [1.0, 2.0, 3.0, 4.0])

    assert set(result) == {"n", "accuracy", "macro_f1", "per_label", "confusion", "latency_ms"}
    assert result["n"] == 4
    assert result["accuracy"] == pytest.approx(0.5)
    # billing: 1 TP of 2 predicted, 2 gold. support: 1 TP of 2 predicted, 1 gold. escalation: 0 TP.
    assert result["per_label"]["billing"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert result["per_label"]["support"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert result["per_label"]["escalation"] == pytest.approx(
        {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    )
    # Labels absent from gold do not drag the macro average down.
    assert result["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    assert result["confusion"]["billing"]["support"] == 1
    assert result["confusion"]["escalation"]["billing"] == 1
    assert result["confusion"]["support"]["support"] == 1
    assert sum(sum(row.values()) for row in result["confusion"].values()) == 4
    assert result["latency_ms"] == pytest.approx({"p50": 2.5, "p99": 3.97})


def test_score_rejects_misaligned_input() -> None:
    with pytest.raises(ValueError):
        score(["billing"], [], [])


def test_evaluate_file(classifier: OnnxIntentClassifier, tmp_path: Path) -> None:
    data = tmp_path / "tiny.jsonl"
    rows = [{"text": "agent please", "label": "escalation"}, {"text": "my wifi keeps dropping", "label": "support"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = evaluate_file(data, classifier)
    assert result["n"] == 2
    assert result["accuracy"] == 1.0
    assert result["latency_ms"]["p50"] > 0


def test_manifest_sha256_matches_the_shipped_files() -> None:
    manifest = json.loads((MODEL_DIR / "manifest.json").read_text())
    assert set(manifest["sha256"]) >= {manifest["files"]["head"]}
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((MODEL_DIR / name).read_bytes()).hexdigest() == digest, name
    if "minilm" in manifest["head"]["features"]:
        assert (MODEL_DIR / manifest["files"]["onnx"]).stat().st_size <= 25 * 1024 * 1024


def test_the_shipped_head_records_its_leave_one_dataset_out_scores() -> None:
    # The figures come from heads that never saw the dataset they were scored on; a retrained head that scores
    # lower on callers unlike its training data than the one it replaces should not ship unnoticed.
    head = json.loads((MODEL_DIR / "manifest.json").read_text())["head"]
    assert head["lodo"]["n"] >= 4000
    assert head["lodo"]["macro_f1"] >= 0.93
    assert head["lodo"]["recall"]["escalation"] >= 0.95
    assert head["lodo"]["recall"]["support"] >= 0.87
    assert head["support_weight"] == 2.0
    assert head["written_weight"] == 8.0
    assert {k: head["neighbours"][k] for k in ("k", "share", "scale", "weights")} == {
        "k": 10,
        "share": 0.3,
        "scale": 0.05,
        "weights": "flat",
    }
    # And it was chosen only among heads that read every one of our own flows' clear turns right, with margin.
    assert head["regression"]["n"] == len(REGRESSION)
    assert (head["regression"]["wrong"], head["regression"]["under_margin"]) == (0, 0)
    # Share-alike sources train the head but their embeddings do not ship.
    assert head["neighbours"]["sources_left_out"] == ["bitext", "sgd"]


def test_the_nearest_rows_vote_by_weight_and_similarity() -> None:
    vectors = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]], np.float32)
    labels = np.array([0, 1, 1, 2], np.int64)
    weights = np.array([1.0, 1.0, 2.0, 1.0], np.float32)
    query = np.array([[0.6, 0.8]], np.float32)
    vote = neighbour_probs(query, vectors, labels, weights, 2, 0.1, 3)
    # The two nearest are rows 1 (cos 0.96) and 2 (cos 0.8), both label 1: the farther ones do not vote.
    assert vote[0] == pytest.approx([0.0, 1.0, 0.0])
    vote = neighbour_probs(query, vectors, labels, weights, 3, 0.1, 3)
    # Row 0 (cos 0.6, weight 1) joins: each vote is weight * exp(cos / 0.1).
    raw = np.array([np.exp(6.0), np.exp(9.6) + 2 * np.exp(8.0), 0.0])
    assert vote[0] == pytest.approx(raw / raw.sum(), rel=1e-5)


def test_confidence_blends_the_head_with_the_neighbours_vote(classifier: OnnxIntentClassifier) -> None:
    with np.load(MODEL_DIR / "head.npz") as weights:
        vectors = weights["neighbour_vectors"].astype(np.float32)
        labels = weights["neighbour_labels"].astype(np.int64)
        row_weights = weights["neighbour_weights"].astype(np.float32)
    manifest = json.loads((MODEL_DIR / "manifest.json").read_text())
    assert len(vectors) == len(labels) == len(row_weights) == manifest["head"]["neighbours"]["rows"] > 3000
    texts = ["my cable box shows no signal", "what's my balance", "can I speak to someone"]
    head = softmax(classifier.logits(texts) / classifier.temperature)
    encoder = classifier._encoder
    assert encoder is not None
    assert set(row_weights.tolist()) == {1.0}
    vote = neighbour_probs(encoder.embed(texts), vectors, labels, row_weights, 10, 0.05, len(INTENTS))
    expected = 0.7 * head + 0.3 * vote
    for text, row in zip(texts, expected, strict=True):
        prediction = classifier.classify(text)
        assert [prediction.scores[label] for label in classifier.labels] == pytest.approx(row.tolist(), abs=1e-5)


@pytest.mark.parametrize("turn", REGRESSION, ids=[t["text"][:40] for t in REGRESSION])
def test_our_own_flows_clear_turns_are_read_right_with_margin(
    classifier: OnnxIntentClassifier, turn: dict[str, str]
) -> None:
    prediction = classifier.classify(turn["text"])
    if turn["kind"] == "complaint":
        # A complaint with no topic reaches the router's "what went wrong?" unless it reads as a confident
        # escalation, which would hand the call to a person on its first angry word.
        assert prediction.scores["escalation"] < 2 * DEFAULT_THRESHOLD - lodo.REGRESSION_MARGIN, (turn, prediction)
        return
    # A clear request of our own callers read under the threshold goes to a clarifying question (or the LLM),
    # and one read as the wrong label goes to the wrong specialist: the flows break, whatever LODO says.
    assert prediction.intent == turn["label"], (turn, prediction)
    assert prediction.confidence >= lodo.REGRESSION_MARGIN, (turn, prediction)


def test_the_regression_turns_never_train_the_head() -> None:
    turns = lodo.load_regression()
    assert {t["kind"] for t in REGRESSION} == {"request", "greeting", "escalation", "complaint"}
    assert all(t["from"] for t in REGRESSION)
    # Our written rows hold none of them; a template that happens to say the same words is left out of training.
    examples = load_jsonl(EXAMPLES_PATH, labels=INTENTS)
    assert lodo.without_turns(examples, turns) == examples
    templates = augmented_rows(tuple(GROUPS))
    kept = lodo.without_turns(templates, turns)
    assert {r.text for r in templates} - {r.text for r in kept} == {"useless", "ridiculous", "terrible"}
