"""Trains the supervisor's trigger head: softmax regression over the router's MiniLM sentence embedding.

.venv/bin/python -m evals.supervisor.train_head    # writes intent_model/triggers.npz and prints its figures

It trains on triggers.jsonl and holdout.jsonl, plus router-dev's requests for a person (as requested_human) and its
other turns (as none); holdout2.jsonl and holdout3.jsonl stay test sets. The threshold is chosen on five-fold
out-of-fold probabilities: the lowest at which the head alone reads no more than MAX_FALSE_ESCALATION of the
labelled non-escalation turns as a trigger. Deterministic: fixed folds, the optimiser starts from zeros.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from evals.router.split import DEV_PATH
from evals.supervisor.bench import MAX_FALSE_ESCALATION, TRIGGERS, TRIGGERS_PATH
from orchestrator.providers.intent import MODEL_DIR, TRIGGER_HEAD_FILE, MiniLMEncoder, softmax

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
LABELS = (*TRIGGERS, "none")
NONE = LABELS.index("none")
TRAIN_SETS = (TRIGGERS_PATH, TRIGGERS_PATH.with_name("holdout.jsonl"))
# router-dev intents left out: a payment "not recognised" may be theft, and "how do I complain" is no trigger.
ROUTER_LEFT_OUT = {"direct_debit_payment_not_recognised", "complaint"}
# router-dev rows are templated (Bitext) or from other domains, so each counts less than one of our written rows.
ROUTER_WEIGHT = 0.1
L2 = 1e-4
ITERATIONS = 800
FOLDS = 5


def written_rows() -> list[tuple[str, int]]:
    """Our labelled caller turns: (text, label index)."""
    rows = []
    for path in TRAIN_SETS:
        for line in path.read_text().splitlines():
            if line.strip():
                raw = json.loads(line)
                rows.append((str(raw["text"]), LABELS.index(raw["label"])))
    return rows


def router_rows(path: Path = DEV_PATH) -> list[tuple[str, int]]:
    """router-dev's turns: a request for a person is requested_human, the rest (other intents) none."""
    rows = []
    for line in path.read_text().splitlines():
        raw = json.loads(line)
        intent = str(raw.get("source", "")).rsplit(":", 1)[-1]
        if intent in ROUTER_LEFT_OUT:
            continue
        rows.append((str(raw["text"]), LABELS.index("requested_human") if intent == "contact_human_agent" else NONE))
    return rows


def fit(x: FloatArray, y: IntArray, weight: npt.NDArray[np.float64]) -> tuple[FloatArray, FloatArray]:
    """L2-regularised multinomial logistic regression by full-batch Adam with a cosine-decayed step."""
    k = len(LABELS)
    w = np.zeros((x.shape[1], k), np.float32)
    b = np.zeros(k, np.float32)
    onehot = np.eye(k, dtype=np.float32)[y]
    share = (weight / weight.sum()).astype(np.float32)[:, None]
    params = [w, b]
    firsts = [np.zeros_like(w), np.zeros_like(b)]
    seconds = [np.zeros_like(w), np.zeros_like(b)]
    for step in range(1, ITERATIONS + 1):
        g = (softmax(x @ w + b) - onehot) * share
        rate = 0.05 * 0.5 * (1 + math.cos(math.pi * step / ITERATIONS))
        grads = [x.T @ g + L2 * w, g.sum(axis=0)]
        for param, grad, m, v in zip(params, grads, firsts, seconds, strict=True):
            m *= 0.9
            m += 0.1 * grad
            v *= 0.999
            v += 0.001 * grad**2
            param -= rate * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return w, b


def weights(y: IntArray, written: int) -> npt.NDArray[np.float64]:
    """Our rows balanced by label (escalation triggers are few beside none), router-dev's at ROUTER_WEIGHT."""
    counts = np.bincount(y[:written], minlength=len(LABELS)).astype(np.float64)
    own = (written / (len(LABELS) * np.maximum(counts, 1)))[y[:written]]
    return np.concatenate([own, np.full(len(y) - written, ROUTER_WEIGHT)])


def out_of_fold(x: FloatArray, y: IntArray, written: int) -> FloatArray:
    """Each written row's probabilities from a head trained without its fold (router-dev rows always train)."""
    fold = np.arange(written) % FOLDS
    out = np.zeros((written, len(LABELS)), np.float32)
    for f in range(FOLDS):
        keep = np.concatenate([np.flatnonzero(fold != f), np.arange(written, len(y))])
        w, b = fit(x[keep], y[keep], weights(y[keep], int((fold != f).sum())))
        out[fold == f] = softmax(x[:written][fold == f] @ w + b)
    return out


def choose_threshold(probs: FloatArray, y: IntArray) -> float:
    """The lowest probability at which the head's top trigger reads few enough non-escalation rows as one."""
    top = probs[:, :NONE].max(axis=1)
    negatives = np.sort(top[y == NONE])[::-1]
    allowed = math.floor(MAX_FALSE_ESCALATION * len(negatives))
    return float(max(0.5, negatives[allowed] + 1e-4)) if len(negatives) > allowed else 0.5


def recalls(probs: FloatArray, y: IntArray, threshold: float) -> dict[str, float]:
    top = probs[:, :NONE]
    read = np.where(top.max(axis=1) >= threshold, top.argmax(axis=1), NONE)
    return {t: round(float(np.mean(read[y == k] == k)), 3) for k, t in enumerate(TRIGGERS)}


def embed(texts: Sequence[str], model_dir: Path) -> FloatArray:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    encoder = MiniLMEncoder(model_dir / manifest["files"]["onnx"], model_dir / manifest["files"]["tokenizer"])
    return encoder.embed(texts)


def main() -> None:
    """Trains the head, chooses its threshold out of fold, writes triggers.npz."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--router-dev", type=Path, default=DEV_PATH)
    args = parser.parse_args()
    written = written_rows()
    rows = written + router_rows(args.router_dev)
    x = embed([text for text, _ in rows], args.model_dir)
    y = np.array([label for _, label in rows], dtype=np.int64)
    oof = out_of_fold(x, y, len(written))
    threshold = choose_threshold(oof, y[: len(written)])
    print(
        f"threshold {threshold:.4f}; out-of-fold recall of the head alone: {recalls(oof, y[: len(written)], threshold)}"
    )
    w, b = fit(x, y, weights(y, len(written)))
    np.savez(
        args.model_dir / TRIGGER_HEAD_FILE,
        w=w,
        bias=b,
        labels=np.array(LABELS),
        threshold=np.float32(threshold),
    )
    extra = len(rows) - len(written)
    print(f"wrote {args.model_dir / TRIGGER_HEAD_FILE} ({len(written)} written rows, {extra} router-dev)")


if __name__ == "__main__":
    main()
