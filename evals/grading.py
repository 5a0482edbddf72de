"""Grades metrics against the benchmark table (evals/grades.yaml) and checks CI gates (evals/gates.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

EVALS_DIR = Path(__file__).resolve().parent
GRADES_FILE = EVALS_DIR / "grades.yaml"
GATES_FILE = EVALS_DIR / "gates.yaml"
GRADES = ("excellent", "good", "acceptable", "below")


class ConfigError(ValueError):
    """A grades or gates file that cannot be used; the message names the file and the field."""


class Band(BaseModel):
    """One metric's thresholds."""

    model_config = ConfigDict(extra="forbid")

    direction: Literal["higher", "lower"]
    excellent: float
    good: float
    acceptable: float

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        seq = [self.excellent, self.good, self.acceptable]
        ok = seq == sorted(seq, reverse=True) if self.direction == "higher" else seq == sorted(seq)
        if not ok:
            raise ValueError(f"thresholds must get {'lower' if self.direction == 'higher' else 'higher'} "
                             "from excellent to acceptable")  # fmt: skip
        return self

    def grade(self, value: float) -> str:
        for name in ("excellent", "good", "acceptable"):
            bar = float(getattr(self, name))
            if (value >= bar) if self.direction == "higher" else (value <= bar):
                return name
        return "below"


class GradeTable(BaseModel):
    """The benchmark table."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    metrics: dict[str, Band]

    def grade_all(self, flat: dict[str, float]) -> dict[str, str]:
        """Grade every metric of `flat` that the table knows."""
        return {name: band.grade(flat[name]) for name, band in self.metrics.items() if name in flat}


class GateSection(BaseModel):
    """Thresholds for one run."""

    model_config = ConfigDict(extra="forbid")

    max_failed: int | None = Field(default=None, ge=0)
    min: dict[str, float] = Field(default_factory=dict)
    max: dict[str, float] = Field(default_factory=dict)


class CompareGates(BaseModel):
    """What counts as a regression in `eval compare`."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(default=0.05, gt=0, lt=1)
    max_scenario_regressions: int = Field(default=0, ge=0)
    max_drop: dict[str, float] = Field(default_factory=dict)
    max_rise: dict[str, float] = Field(default_factory=dict)


class Gates(BaseModel):
    """The gates file: a default section, per-suite sections and the compare rules."""

    model_config = ConfigDict(extra="allow")

    version: int = 1
    default: GateSection = Field(default_factory=GateSection)
    compare: CompareGates = Field(default_factory=CompareGates)

    def for_suites(self, names: list[str]) -> GateSection:
        """The section that applies: a suite's own when exactly that suite runs, else the default."""
        extra = self.model_extra or {}
        if len(names) == 1 and names[0] in extra:
            try:
                return GateSection.model_validate(extra[names[0]])
            except ValidationError as exc:
                raise ConfigError(f"gates section {names[0]!r}: {exc}") from None
        return self.default


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def load_grades(path: Path | None = None) -> GradeTable:
    """Load the benchmark table (evals/grades.yaml by default)."""
    p = path or GRADES_FILE
    try:
        return GradeTable.model_validate(_read(p))
    except ValidationError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def load_gates(path: Path | None = None) -> Gates:
    """Load the CI gates (evals/gates.yaml by default)."""
    p = path or GATES_FILE
    try:
        return Gates.model_validate(_read(p))
    except ValidationError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def check_gates(section: GateSection, flat: dict[str, float], failed: int) -> list[str]:
    """The breached gates, each as a sentence; empty when the run may ship."""
    breaches = []
    if section.max_failed is not None and failed > section.max_failed:
        breaches.append(f"{failed} scenario(s) failed (at most {section.max_failed} allowed)")
    for name, bar in section.min.items():
        if name in flat and flat[name] < bar:
            breaches.append(f"{name} {flat[name]:.3f} is below the gate {bar}")
    for name, bar in section.max.items():
        if name in flat and flat[name] > bar:
            breaches.append(f"{name} {flat[name]:.3f} is above the gate {bar}")
    return breaches
