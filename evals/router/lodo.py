"""Leave-one-dataset-out scores of the router head: train on every source dataset but one, test on that one.

.venv/bin/python -m evals.router.lodo [--json] [--l2 0.001] [--balance label+dataset] [--groups all|none|a,b]
.venv/bin/python -m evals.router.lodo --grid      # one line per candidate, to choose L2, weighting, templates
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.ports import INTENTS
from evals.router.augment import GROUPS, SHIPPED, TEMPLATE_SOURCE, augmented_rows
from evals.router.metrics import score
from evals.router.split import DEV_PATH, EXAMPLES_PATH, Row, load_jsonl, split_rows
from evals.router.train import (
    ITERATIONS,
    ONNX_FILE,
    TOKENIZER_FILE,
    Features,
    expected_calibration_error,
    fit_softmax,
    fit_temperature,
    head_logits,
    labels_of,
    threshold_report,
)
from orchestrator.providers.intent import DEFAULT_THRESHOLD, MODEL_DIR, MiniLMEncoder, softmax

FloatArray = npt.NDArray[np.float32]
DEFAULT_CACHE = Path("/tmp/switchboard-router-embeddings.npz")
# examples.jsonl: our own hand-written Northwind utterances, the tenant's own words.
WRITTEN_SOURCE = "northwind:handwritten"
BALANCES = ("label", "label+dataset")
# The candidates `--grid` compares; the shipped head's settings are chosen from these by LODO macro-F1.
L2_GRID = (1e-4, 1e-3, 3e-3, 1e-2)
THRESHOLDS = (0.45, 0.5, 0.55, 0.6, 0.7)

Embed = Callable[[Sequence[str]], FloatArray]


class EmbeddingCache:
    """MiniLM embeddings of texts, kept in an .npz file keyed by the encoder file's digest and the text.

    Embedding the dev set takes minutes of CPU on a busy box; each training run after the first reads them back.
    """

    def __init__(self, path: Path = DEFAULT_CACHE, model_dir: Path = MODEL_DIR) -> None:
        self.path = path
        self.model_dir = model_dir
        self._encoder: MiniLMEncoder | None = None
        # The version tag changes when the way vectors are computed does (texts are now embedded one at a time).
        digest = "single-" + hashlib.sha256((model_dir / ONNX_FILE).read_bytes()).hexdigest()[:16]
        self._salt = digest
        self._vectors: dict[str, FloatArray] = {}
        if path.exists():
            with np.load(path) as stored:
                if str(stored["encoder"]) == digest:
                    self._vectors = dict(zip(stored["keys"].tolist(), stored["vectors"], strict=True))

    def _key(self, text: str) -> str:
        return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - a cache key, not a security digest

    def __call__(self, texts: Sequence[str]) -> FloatArray:
        """Unit-length embeddings, one row per text; computes and saves the ones not cached yet."""
        missing = sorted({t for t in texts if self._key(t) not in self._vectors})
        if missing:
            if self._encoder is None:
                self._encoder = MiniLMEncoder(self.model_dir / ONNX_FILE, self.model_dir / TOKENIZER_FILE)
            for start in range(0, len(missing), 64):
                chunk = missing[start : start + 64]
                for text, vec in zip(chunk, self._encoder.embed(chunk), strict=True):
                    self._vectors[self._key(text)] = vec
            self._save()
        if not texts:
            return np.zeros((0, 384), np.float32)
        return np.stack([self._vectors[self._key(t)] for t in texts])

    def _save(self) -> None:
        keys = sorted(self._vectors)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(
            tmp, encoder=np.str_(self._salt), keys=np.array(keys), vectors=np.stack([self._vectors[k] for k in keys])
        )
        tmp.replace(self.path)


@dataclass(frozen=True)
class Config:
    """One candidate head: its L2, how training rows are weighted, and which template groups it learns from.

    The defaults are the shipped head's: pooled LODO macro-F1 within 0.002 of the best `--grid` candidate, with
    the simpler weighting and the higher escalation recall.
    """

    l2: float = 1e-3
    balance: str = "label"
    groups: tuple[str, ...] = SHIPPED
    iterations: int = ITERATIONS
    template_weight: float = 0.15
    written_weight: float = 4.0

    def describe(self) -> str:
        """A one-line name for reports."""
        groups = "all" if set(self.groups) == set(GROUPS) else ",".join(self.groups) or "none"
        return (
            f"l2={self.l2:g} balance={self.balance} templates={groups} template_weight={self.template_weight:g}"
            f" written_weight={self.written_weight:g}"
        )


def sample_weights(
    rows: Sequence[Row], balance: str, template_weight: float = 1.0, written_weight: float = 1.0
) -> npt.NDArray[np.float64]:
    """Per-row training weights: every label weighs the same; with `label+dataset`, so does every source within it.

    Weighting sources equally keeps a label from being learnt as the phrasing of its biggest source (STAR's
    and SGD's scheduling, Banking77's support), which is what fails on a dataset the head has not seen.
    """
    if balance not in BALANCES:
        raise ValueError(f"unknown balance {balance!r} (known: {', '.join(BALANCES)})")
    group_of = [(r.label, r.dataset if balance == "label+dataset" else "") for r in rows]
    per_group: dict[tuple[str, str], int] = {}
    for g in group_of:
        per_group[g] = per_group.get(g, 0) + 1
    groups_per_label: dict[str, int] = {}
    for label, _ in per_group:
        groups_per_label[label] = groups_per_label.get(label, 0) + 1
    weights = np.array([1.0 / (per_group[g] * groups_per_label[g[0]]) for g in group_of], dtype=np.float64)
    if template_weight != 1.0 or written_weight != 1.0:
        # Templated rows count for less than written ones, our own written rows (the tenant's own words) for
        # more, then each label is brought back to the same total.
        templated = np.array([r.source.startswith(TEMPLATE_SOURCE) for r in rows])
        weights[templated] *= template_weight
        written = np.array([r.source == WRITTEN_SOURCE for r in rows])
        weights[written] *= written_weight
        for label in groups_per_label:
            mine = np.array([r.label == label for r in rows])
            weights[mine] /= weights[mine].sum()
    return weights


def fit_logits(embed: Embed, train: Sequence[Row], test: Sequence[Row], config: Config) -> FloatArray:
    """Fits a head on `train` with `config` and returns its raw logits on `test`."""
    head = fit_softmax(
        Features(embed([r.text for r in train]), None),
        labels_of(train),
        config.l2,
        config.iterations,
        sample_weight=sample_weights(train, config.balance, config.template_weight, config.written_weight),
    )
    return head_logits(head, Features(embed([r.text for r in test]), None))


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def fold_rows(dev: Sequence[Row], own: Sequence[Row], dataset: str) -> tuple[list[Row], list[Row]]:
    """(train, test) when `dataset` is left out: our own rows always train, and never test."""
    test = [r for r in dev if r.dataset == dataset]
    held = {_norm(r.text) for r in test}
    # A text that also appears in another source would otherwise be tested on after being trained on.
    train = [r for r in (*dev, *own) if r.dataset != dataset and _norm(r.text) not in held]
    return train, test


@dataclass
class Fold:
    """One left-out dataset's rows and the raw logits of the head trained without it."""

    dataset: str
    rows: list[Row]
    logits: FloatArray
    temperature: float = 1.0
    probs: FloatArray = field(default_factory=lambda: np.zeros((0, len(INTENTS)), np.float32))


def run_folds(embed: Embed, dev: Sequence[Row], own: Sequence[Row], config: Config) -> list[Fold]:
    """Trains one head per left-out source dataset; our own rows train every head and test none.

    Each fold's temperature is fitted on the other folds' predictions, so its calibration is measured on
    predictions it was not fitted on.
    """
    folds: list[Fold] = []
    for dataset in sorted({r.dataset for r in dev}):
        train, test = fold_rows(dev, own, dataset)
        folds.append(Fold(dataset, test, fit_logits(embed, train, test, config)))
    # Each fold's temperature comes from the other folds' predictions, so calibration is measured out of sample.
    for fold in folds:
        others = [f for f in folds if f is not fold]
        if others:
            fold.temperature = fit_temperature(
                np.concatenate([f.logits for f in others]), labels_of([r for f in others for r in f.rows])
            )
        fold.probs = softmax(fold.logits / fold.temperature)
    return folds


def summary(rows: Sequence[Row], probs: FloatArray, threshold: float) -> dict[str, Any]:
    """Macro-F1 and recall per label present, plus how the confidence threshold splits right from wrong."""
    gold = [r.label for r in rows]
    pred: list[str] = [INTENTS[int(i)] for i in probs.argmax(1)]
    scored = score(gold, pred, [])
    conf = probs.max(1)
    correct = [g == p for g, p in zip(gold, pred, strict=True)]
    wrong = ~np.asarray(correct, dtype=bool)
    return {
        "n": len(rows),
        "macro_f1": scored["macro_f1"],
        "accuracy": scored["accuracy"],
        "recall": {
            label: scored["per_label"][label]["recall"] for label in INTENTS if scored["per_label"][label]["support"]
        },
        "ece": expected_calibration_error(conf.tolist(), correct),
        "confident_errors": float((conf[wrong] >= threshold).mean()) if wrong.any() else 0.0,
        **threshold_report(conf.tolist(), correct, threshold),
    }


def in_distribution(
    embed: Embed, dev: Sequence[Row], own: Sequence[Row], config: Config, threshold: float
) -> dict[str, Any]:
    """The project's standard split (20 % held out, stratified by label and source), for comparison."""
    train, held_out = split_rows(dev)
    logits = fit_logits(embed, [*train, *own], held_out, config)
    temperature = fit_temperature(fit_logits(embed, [*train, *own], train, config), labels_of(train))
    return summary(held_out, softmax(logits / temperature), threshold)


def report(
    embed: Embed, dev: Sequence[Row], own: Sequence[Row], config: Config, threshold: float = DEFAULT_THRESHOLD
) -> dict[str, Any]:
    """The LODO report: per left-out dataset, overall (pooled), the in-distribution split, the temperatures."""
    folds = run_folds(embed, dev, own, config)
    rows = [r for f in folds for r in f.rows]
    pooled = np.concatenate([f.probs for f in folds])
    all_logits = np.concatenate([f.logits for f in folds])
    temperature = fit_temperature(all_logits, labels_of(rows))
    uncalibrated = summary(rows, softmax(all_logits), threshold)
    return {
        "config": {
            "l2": config.l2,
            "balance": config.balance,
            "templates": list(config.groups),
            "template_weight": config.template_weight,
            "threshold": threshold,
        },
        "datasets": {f.dataset: summary(f.rows, f.probs, threshold) | {"temperature": f.temperature} for f in folds},
        "overall": summary(rows, pooled, threshold),
        "thresholds": {f"{t:g}": summary(rows, pooled, t) for t in THRESHOLDS},
        "calibration": {
            "temperature": temperature,
            "ece_uncalibrated": uncalibrated["ece"],
            "confident_errors_uncalibrated": uncalibrated["confident_errors"],
        },
        "in_distribution": in_distribution(embed, dev, own, config, threshold),
    }


def render(result: dict[str, Any]) -> str:
    """The report as a Markdown table, one line per left-out dataset, then overall and the split."""
    head = ["left out", "n", "macro-F1", *INTENTS, "coverage", "confident errors"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]

    def line(name: str, s: dict[str, Any]) -> str:
        recalls = [f"{s['recall'][label]:.3f}" if label in s["recall"] else "" for label in INTENTS]
        cells = [
            name,
            str(s["n"]),
            f"{s['macro_f1']:.3f}",
            *recalls,
            f"{s['coverage']:.3f}",
            f"{s['confident_errors']:.2f}",
        ]
        return "| " + " | ".join(cells) + " |"

    for name, s in result["datasets"].items():
        lines.append(line(name, s))
    lines.append(line("**all (pooled)**", result["overall"]))
    lines.append(line("in-distribution split", result["in_distribution"]))
    cal = result["calibration"]
    lines.append("")
    lines.append(
        f"{result['config']} | temperature {cal['temperature']:.2f} | ECE {cal['ece_uncalibrated']:.3f} -> "
        f"{result['overall']['ece']:.3f} | confident errors {cal['confident_errors_uncalibrated']:.2f} -> "
        f"{result['overall']['confident_errors']:.2f}"
    )
    return "\n".join(lines)


def parse_groups(value: str) -> tuple[str, ...]:
    """`all`, `none` or a comma-separated list of template group names."""
    if value == "all":
        return tuple(GROUPS)
    if value == "none":
        return ()
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise ValueError(f"unknown template group {unknown[0]!r} (known: {', '.join(GROUPS)})")
    return names


def load(data: Path, limit: int | None) -> list[Row]:
    """The dev rows, at most `limit` per (dataset, label) when given (for a quick look or a test)."""
    rows = load_jsonl(data, labels=INTENTS)
    if limit is None:
        return rows
    kept: dict[tuple[str, str], int] = {}
    out = []
    for row in rows:
        key = (row.dataset, row.label)
        if kept.get(key, 0) < limit:
            kept[key] = kept.get(key, 0) + 1
            out.append(row)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Prints the LODO report (a table, or JSON with `--json`); bad arguments exit 2 with one line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEV_PATH, help="router-dev-format jsonl with a source per row")
    parser.add_argument("--examples", type=Path, default=EXAMPLES_PATH, help="our own rows, in every training set")
    parser.add_argument("--l2", type=float, default=Config.l2)
    parser.add_argument("--balance", choices=BALANCES, default=Config.balance)
    parser.add_argument(
        "--groups", default=",".join(SHIPPED), help="template groups: all, none or a comma-separated list"
    )
    parser.add_argument("--iterations", type=int, default=ITERATIONS, help="optimiser steps per head")
    parser.add_argument(
        "--template-weight", type=float, default=Config.template_weight, help="a templated row's weight"
    )
    parser.add_argument(
        "--written-weight", type=float, default=Config.written_weight, help="an examples.jsonl row's weight"
    )
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--limit", type=int, default=None, help="at most this many rows per dataset and label")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="embedding cache file")
    parser.add_argument("--grid", action="store_true", help="compare the candidate settings, one line each")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        if (
            args.iterations < 1
            or args.l2 < 0
            or not 0 <= args.threshold <= 1
            or (args.limit is not None and args.limit < 1)
        ):
            raise ValueError("--iterations must be >= 1, --l2 >= 0, --threshold within 0-1 and --limit >= 1")
        groups = parse_groups(args.groups)
        dev = load(args.data, args.limit)
        if len({r.dataset for r in dev}) < 2:
            raise ValueError(f"{args.data}: leave-one-dataset-out needs rows from at least two source datasets")
        examples = load_jsonl(args.examples, labels=INTENTS)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    embed = EmbeddingCache(args.cache)
    if args.grid:
        grid(embed, dev, examples, args.threshold, args.iterations, args.json)
        return 0
    config = Config(args.l2, args.balance, groups, args.iterations, args.template_weight, args.written_weight)
    result = report(embed, dev, [*examples, *augmented_rows(groups)], config, args.threshold)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


def grid(
    embed: Embed, dev: Sequence[Row], examples: Sequence[Row], threshold: float, iterations: int, as_json: bool
) -> None:
    """One line per candidate: pooled LODO macro-F1, escalation recall, worst dataset, confident errors."""
    # L2 with and without templates (at a written row's weight and at the shipped weight), then the other
    # weighting and the held-back template group at the shipped L2: 17 candidates.
    candidates = [
        Config(l2, "label", groups, iterations, weight)
        for l2 in L2_GRID
        for groups, weight in (((), 1.0), (SHIPPED, 1.0), (SHIPPED, Config.template_weight))
    ]
    candidates += [
        Config(balance="label+dataset", iterations=iterations),
        Config(groups=tuple(GROUPS), iterations=iterations),
        Config(groups=tuple(GROUPS), iterations=iterations, template_weight=1.0),
        Config(template_weight=0.3, iterations=iterations),
        Config(iterations=iterations, l2=3e-4),
    ]
    for config in candidates:
        folds = run_folds(embed, dev, [*examples, *augmented_rows(config.groups)], config)
        rows = [r for f in folds for r in f.rows]
        overall = summary(rows, np.concatenate([f.probs for f in folds]), threshold)
        worst = min((summary(f.rows, f.probs, threshold)["macro_f1"], f.dataset) for f in folds)
        line = {
            "config": config.describe(),
            "macro_f1": overall["macro_f1"],
            "escalation_recall": overall["recall"].get("escalation"),
            "worst": f"{worst[1]} {worst[0]:.3f}",
            "confident_errors": overall["confident_errors"],
        }
        print(
            json.dumps(line)
            if as_json
            else " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in line.values())
        )
        sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
