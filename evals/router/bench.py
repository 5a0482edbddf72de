"""Prints the shipped classifier's held-out metrics and single-utterance latency P50/P99 as JSON.

.venv/bin/python -m evals.router.bench [--model-dir DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from evals.router.split import EXAMPLES_PATH, dev_split, load_jsonl
from evals.router.train import evaluate, predictor
from orchestrator.providers.intent import MODEL_DIR, OnnxIntentClassifier


def main() -> None:
    """Loads the classifier, scores the held-out part and times single utterances (1 thread)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--repeat", type=int, default=3, help="latency passes over the held-out texts")
    args = parser.parse_args()

    start = time.perf_counter()
    clf = OnnxIntentClassifier(args.model_dir)
    load_ms = (time.perf_counter() - start) * 1000
    _, held_out = dev_split()
    result = evaluate(predictor(clf), held_out)
    latencies: list[float] = []
    for _ in range(args.repeat):
        for row in held_out:
            t0 = time.perf_counter()
            clf.classify(row.text)
            latencies.append((time.perf_counter() - t0) * 1000)
    examples = load_jsonl(EXAMPLES_PATH)
    train_fit = evaluate(predictor(clf), examples)
    size = sum(f.stat().st_size for f in args.model_dir.iterdir() if f.is_file())
    print(
        json.dumps(
            {
                "held_out": result,
                "latency_ms_repeated": {
                    "n": len(latencies),
                    "p50": float(np.percentile(latencies, 50)),
                    "p99": float(np.percentile(latencies, 99)),
                },
                "load_ms": load_ms,
                "artifact_bytes": size,
                "examples_jsonl_fit (in training, sanity only)": {
                    "accuracy": train_fit["accuracy"],
                    "macro_f1": train_fit["macro_f1"],
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
