"""The shipped local intent classifier: loads offline, routes obvious turns, survives odd input; the scorer is exact."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from agents.ports import INTENTS
from evals.router.metrics import evaluate_file, score
from orchestrator.providers.intent import DEFAULT_THRESHOLD, MODEL_DIR, OnnxIntentClassifier, load_classifier

pytestmark = pytest.mark.unit


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
