"""The Acceptable/Good/Excellent table the production report grades against (one place for these numbers).

The same table lives in `evals/grades.yaml` for the eval suites; the two should become one file (read by
both) once the evals package settles. Until then, keep the numbers here equal to that file's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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


GRADES: dict[str, Band] = {
    "success_rate": Band(higher=True, excellent=0.98, good=0.95, acceptable=0.90),
    "first_call_resolution": Band(higher=True, excellent=0.90, good=0.80, acceptable=0.70),
    "escalation_rate": Band(higher=False, excellent=0.10, good=0.20, acceptable=0.25),
    "latency_p95_ms": Band(higher=False, excellent=300, good=500, acceptable=800),
    "cost_per_call": Band(higher=False, excellent=0.05, good=0.15, acceptable=0.30),
}


def grade_all(values: dict[str, float | None]) -> dict[str, Grade]:
    """Grade every metric of `GRADES` present in `values`."""
    return {name: band.grade(values.get(name)) for name, band in GRADES.items() if name in values}
