"""Scores the supervisor's escalation triggers on the labelled set: precision, recall and false escalations.

.venv/bin/python -m evals.supervisor.bench [--set FILE] [--errors] [--json]

The sets: triggers.jsonl (the default), then holdout.jsonl to holdout4.jsonl, each written before it was first run
against the checks of its day (see the git log for each set's first-run figures). The trigger head (train_head.py)
trains on triggers, holdout and holdout3; holdout2 and holdout4 it never sees. --patterns scores the patterns alone.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.state import CallState, Turn
from agents.supervisor import Check, check_utterance
from orchestrator.providers.intent import OnnxIntentClassifier, load_classifier

TRIGGERS_PATH = Path(__file__).resolve().parent / "triggers.jsonl"
TRIGGERS = (
    "requested_human",
    "anger",
    "abuse",
    "legal_threat",
    "emergency",
    "fraud",
    "loop",
    "repeated_failures",
)
# The goals the unit test holds the shipped checks to.
MIN_RECALL = 0.95
MAX_FALSE_ESCALATION = 0.005


@dataclass(frozen=True)
class Row:
    """One labelled utterance, with the call so far where the trigger depends on it."""

    text: str
    label: str
    state: CallState


def load(path: Path = TRIGGERS_PATH) -> list[Row]:
    """The labelled rows of a JSONL set: text, label, and optional history, failures and frustration."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        raw = json.loads(line)
        if raw["label"] not in (*TRIGGERS, "none"):
            raise ValueError(f"{path}:{number}: unknown label {raw['label']!r}")
        transcript = [Turn(role=role, agent=role, text=text) for role, text in raw.get("history", [])]
        state = CallState(transcript=transcript, failures=raw.get("failures", 0), frustration=raw.get("frustration", 0))
        rows.append(Row(text=raw["text"], label=raw["label"], state=state))
    return rows


def trigger_of(check: Check) -> str:
    """The trigger a check found in a turn: its escalation, else the trigger its words carry, else "none".

    Anger and abuse escalate only once they add up over turns, and a caller's "we're going round in circles"
    only once the call shows it; on one turn, what is scored is that the supervisor noticed them.
    """
    if check.escalate:
        return "anger" if check.escalate == "frustration" else check.escalate
    return check.cue or "none"


def evaluate(rows: list[Row], classifier: OnnxIntentClassifier | None = None, *, head: bool = True) -> dict[str, Any]:
    """Per-trigger precision and recall, the false-escalation rate on "none" rows, and the errors.

    As in `supervisor.supervise`, the trigger head is asked only about a turn in which the patterns find nothing;
    `head=False` scores the patterns alone. The head's CPU time excludes the embedding, which the router computes
    for the turn anyway.
    """
    predicted: list[str] = []
    cpu_us: list[float] = []
    head_us: list[float] = []
    model = (classifier or load_classifier()) if head else None
    for row in rows:
        # The thread's CPU time, not the wall clock: on a shared box, preemption would be most of a wall-clock P99.
        start = time.thread_time_ns()
        check = check_utterance(row.text, row.state)
        cpu_us.append((time.thread_time_ns() - start) / 1000)
        if model is not None and check == Check():
            dense = model.embed([row.text])
            start = time.thread_time_ns()
            trigger = model.triggers(dense)[0]
            head_us.append((time.thread_time_ns() - start) / 1000)
            if trigger is not None:
                check = check_utterance(row.text, row.state, trigger)
        predicted.append(trigger_of(check))
    per_trigger: dict[str, dict[str, float | int]] = {}
    for trigger in TRIGGERS:
        hits = sum(r.label == trigger and p == trigger for r, p in zip(rows, predicted, strict=True))
        support = sum(r.label == trigger for r in rows)
        flagged = sum(p == trigger for p in predicted)
        per_trigger[trigger] = {
            "precision": round(hits / flagged, 4) if flagged else 0.0,
            "recall": round(hits / support, 4) if support else 0.0,
            "support": support,
        }
    negatives = [p for r, p in zip(rows, predicted, strict=True) if r.label == "none"]
    false = sum(p != "none" for p in negatives)
    return {
        "n": len(rows),
        "per_trigger": per_trigger,
        "none": len(negatives),
        "false_escalations": false,
        "false_escalation_rate": round(false / len(negatives), 4) if negatives else 0.0,
        "cpu_us": {"p50": float(np.percentile(cpu_us, 50)), "p99": float(np.percentile(cpu_us, 99))},
        "head_cpu_us": {"p50": float(np.percentile(head_us, 50)), "p99": float(np.percentile(head_us, 99))}
        if head_us
        else None,
        "errors": [
            {"text": r.text, "label": r.label, "predicted": p}
            for r, p in zip(rows, predicted, strict=True)
            if r.label != p
        ],
    }


def main() -> None:
    """Prints the scores as a table (or JSON), with the misread rows if asked."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", type=Path, default=TRIGGERS_PATH, help="a JSONL file of labelled utterances")
    parser.add_argument("--errors", action="store_true", help="list the rows the checks misread")
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    parser.add_argument("--patterns", action="store_true", help="the patterns alone, without the trigger head")
    args = parser.parse_args()
    try:
        rows = load(args.set)
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"cannot read {args.set}: {exc}") from None
    result = evaluate(rows, head=not args.patterns)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'trigger':<18} {'precision':>9} {'recall':>7} {'n':>4}")
    for trigger, s in result["per_trigger"].items():
        print(f"{trigger:<18} {s['precision']:>9.3f} {s['recall']:>7.3f} {s['support']:>4}")
    rate = result["false_escalation_rate"]
    print(f"false escalations: {result['false_escalations']}/{result['none']} non-escalation rows ({rate:.2%})")
    cpu = result["cpu_us"]
    print(f"check_utterance CPU time: p50 {cpu['p50']:.0f} us, p99 {cpu['p99']:.0f} us ({result['n']} rows)")
    if (head := result["head_cpu_us"]) is not None:
        print(
            f"trigger head CPU time (past the router's embedding): p50 {head['p50']:.0f} us, p99 {head['p99']:.0f} us"
        )
    if args.errors:
        for e in result["errors"]:
            print(f"  {e['label']:>17} read as {e['predicted']:<17} {e['text']!r}")


if __name__ == "__main__":
    main()
