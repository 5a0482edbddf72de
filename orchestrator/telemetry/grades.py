"""The Acceptable/Good/Excellent table the production report grades against.

The numbers live in one file, `evals/grades.yaml`, which the eval suites grade against too, so the
report and the evals can never disagree about what "good" means.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from orchestrator.config import REPO_ROOT

Grade = Literal["excellent", "good", "acceptable", "below"]


@dataclass(frozen=True)
class Band:
    """Thresholds of one metric; `higher` says which direction is better."""

    higher: bool
    excellent: float
    good: float
    acceptable: float

    def grade(self, value: float | None) -> Grade:
        if value is None:
            return "below"
        for name, bound in (("excellent", self.excellent), ("good", self.good), ("acceptable", self.acceptable)):
            if (value >= bound) if self.higher else (value <= bound):
                return name  # type: ignore[return-value]  # the loop names are the Grade literals
        return "below"


GRADES_FILE = REPO_ROOT / "evals" / "grades.yaml"


def _load(path: Path) -> dict[str, Band]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {
        name: Band(
            higher=row["direction"] == "higher",
            excellent=float(row["excellent"]),
            good=float(row["good"]),
            acceptable=float(row["acceptable"]),
        )
        for name, row in raw["metrics"].items()
    }


GRADES: dict[str, Band] = _load(GRADES_FILE)


def grade_all(values: dict[str, float | None]) -> dict[str, Grade]:
    """Grade every metric of `GRADES` present in `values`."""
    return {name: band.grade(values.get(name)) for name, band in GRADES.items() if name in values}
