"""Router scoring: accuracy, macro-F1, per-label P/R/F1, confusion matrix and latency percentiles."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.ports import INTENTS, IntentClassifier
from evals.router.split import load_jsonl
from orchestrator.stats import percentile


def score(gold: list[str], pred: list[str], latencies_ms: list[float]) -> dict[str, Any]:
    """Scores predictions against gold labels.

    Labels are the union of the five router intents and any other label seen in `gold` or `pred`;
    a label with no gold and no predicted item gets precision, recall and F1 of 0.0 and is left out
    of the macro average (macro-F1 averages the labels present in `gold`).

    Args:
        gold: the true labels.
        pred: the predicted labels, aligned with `gold`.
        latencies_ms: per-utterance classification latency; may be empty.

    Returns:
        `{"n", "accuracy", "macro_f1", "per_label": {label: {"precision", "recall", "f1", "support"}},
        "confusion": {gold: {pred: count}}, "latency_ms": {"p50", "p99"}}`.
    """
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} items but pred has {len(pred)}")
    labels = list(INTENTS) + sorted((set(gold) | set(pred)) - set(INTENTS))
    confusion = {g: dict.fromkeys(labels, 0) for g in labels}
    for g, p in zip(gold, pred, strict=True):
        confusion[g][p] += 1
    per_label: dict[str, dict[str, float | int]] = {}
    for label in labels:
        tp = confusion[label][label]
        support = sum(confusion[label].values())
        predicted = sum(confusion[g][label] for g in labels)
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    present = [label for label in labels if per_label[label]["support"]]
    n = len(gold)
    return {
        "n": n,
        "accuracy": sum(g == p for g, p in zip(gold, pred, strict=True)) / n if n else 0.0,
        "macro_f1": sum(float(per_label[label]["f1"]) for label in present) / len(present) if present else 0.0,
        "per_label": per_label,
        "confusion": confusion,
        "latency_ms": {"p50": percentile(latencies_ms, 50), "p99": percentile(latencies_ms, 99)},
    }


def evaluate_file(
    path: Path | str, classifier: IntentClassifier, on_progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Classifies every line of a router-dev-format jsonl file one at a time and scores it.

    Args:
        path: a jsonl file with `text` and a router intent as `label` on each line.
        classifier: any implementation of the `IntentClassifier` port.
        on_progress: Called with (done, total) after each line.

    Returns:
        The `score()` dict; latencies are wall-clock per single `classify()` call.

    Raises:
        ValueError: A bad line, a label that is not a router intent, or no examples (names file and line).
    """
    rows = load_jsonl(path, labels=INTENTS)
    preds: list[str] = []
    latencies: list[float] = []
    for row in rows:
        start = time.perf_counter()
        prediction = classifier.classify(row.text)
        latencies.append((time.perf_counter() - start) * 1000.0)
        preds.append(prediction.intent)
        if on_progress is not None:
            on_progress(len(preds), len(rows))
    return score([r.label for r in rows], preds, latencies)
