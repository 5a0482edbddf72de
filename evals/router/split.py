"""Deterministic, stratified train/held-out split of the router dev set."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV_PATH = Path("/work/shared/datasets/router-dev.jsonl")
EXAMPLES_PATH = Path(__file__).resolve().parent / "examples.jsonl"
SEED = "switchboard-router-v1"
HELD_OUT_FRACTION = 0.2


@dataclass(frozen=True)
class Row:
    """One labelled utterance in router-dev format."""

    text: str
    label: str
    source: str

    @property
    def dataset(self) -> str:
        """The source dataset name, e.g. `clinc150` in `clinc150:train:pay_bill`."""
        return self.source.split(":", 1)[0]


def load_jsonl(path: Path | str, *, labels: Iterable[str] | None = None) -> list[Row]:
    """Reads a router-dev-format jsonl file (`text`, `label`, optional `source`).

    Raises:
        ValueError: A line that is not a JSON object with a non-empty `text` and `label` (or whose label
            is not one of `labels`, when given), or a file with no rows; the message names the file and line.
    """
    known = set(labels) if labels is not None else None
    rows: list[Row] = []
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict) or not str(obj.get("text", "")).strip() or not obj.get("label"):
                raise ValueError(f"{where}: expected an object with a non-empty 'text' and 'label'")
            label = str(obj["label"])
            if known is not None and label not in known:
                raise ValueError(f"{where}: unknown label {label!r} (known: {', '.join(sorted(known))})")
            rows.append(Row(str(obj["text"]), label, str(obj.get("source", "unknown"))))
    if not rows:
        raise ValueError(f"{path}: no examples")
    return rows


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _rank(text: str, seed: str) -> str:
    return hashlib.sha256(f"{seed}\x00{_normalise(text)}".encode()).hexdigest()


def split_rows(
    rows: Iterable[Row], fraction: float = HELD_OUT_FRACTION, seed: str = SEED
) -> tuple[list[Row], list[Row]]:
    """Splits rows into (train, held_out), stratified by (label, source dataset).

    Within each stratum the distinct normalised texts are ordered by a seeded sha256 and the first
    `fraction` of them is held out. Hashing the text rather than shuffling positions keeps the split
    stable when lines are added or reordered, and puts duplicate utterances on the same side so the
    held-out score is not inflated by exact copies seen in training.

    Args:
        rows: the labelled utterances.
        fraction: share of each stratum's distinct texts to hold out.
        seed: any string; changing it gives another split.

    Returns:
        The training rows and the held-out rows, each in input order.
    """
    rows = list(rows)
    strata: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in rows:
        strata[(row.label, row.dataset)].add(_normalise(row.text))
    held: set[tuple[str, str, str]] = set()
    for (label, dataset), texts in strata.items():
        ordered = sorted(texts, key=lambda t: _rank(t, seed))
        n_held = round(len(ordered) * fraction)
        held.update((label, dataset, t) for t in ordered[:n_held])
    train = [r for r in rows if (r.label, r.dataset, _normalise(r.text)) not in held]
    test = [r for r in rows if (r.label, r.dataset, _normalise(r.text)) in held]
    return train, test


def dev_split(path: Path | str = DEV_PATH) -> tuple[list[Row], list[Row]]:
    """The project's standard (train, held_out) split of router-dev.jsonl."""
    return split_rows(load_jsonl(path))
