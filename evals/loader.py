"""Loads suite files; a malformed one raises an error naming the file, the scenario and the field."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from evals.schema import Scenario, Suite


class SuiteError(ValueError):
    """A suite file that cannot be used. The message names the file, the scenario and the field."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        super().__init__("\n".join(f"{self.path}: {p}" for p in problems))


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(scenario)"


def _problems(prefix: str, exc: ValidationError) -> list[str]:
    problems = []
    for e in exc.errors():
        # Drop pydantic's union-branch tags so the path reads like the YAML the author wrote.
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        problems.append(f"{prefix}field {_where(loc)}: {e['msg']}")
    return problems


def load_suite(path: Path | str) -> Suite:
    """Read and validate one suite file.

    Args:
        path: a YAML suite file.

    Returns:
        The validated suite.

    Raises:
        SuiteError: the file is missing, not YAML, or a scenario is malformed (every problem is listed).
    """
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SuiteError(p, ["no such file"]) from None
    except yaml.YAMLError as exc:
        raise SuiteError(p, [f"not valid YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise SuiteError(p, ["the file must be a mapping with `suite` and `scenarios`"])
    problems: list[str] = []
    scenarios_raw = raw.get("scenarios")
    if not isinstance(scenarios_raw, list) or not scenarios_raw:
        problems.append("field scenarios: must be a non-empty list")
        scenarios_raw = []
    scenarios: list[Scenario] = []
    for i, item in enumerate(scenarios_raw):
        name = item.get("id") if isinstance(item, dict) else None
        prefix = f"scenario {name!r} (#{i + 1}): " if name else f"scenario #{i + 1}: "
        if not isinstance(item, dict):
            problems.append(f"{prefix}must be a mapping")
            continue
        try:
            scenarios.append(Scenario.model_validate(item))
        except ValidationError as exc:
            problems.extend(_problems(prefix, exc))
    if problems:
        raise SuiteError(p, problems)
    head: dict[str, Any] = {k: v for k, v in raw.items() if k != "scenarios"}
    try:
        return Suite.model_validate({**head, "scenarios": scenarios})
    except ValidationError as exc:
        raise SuiteError(p, _problems("", exc)) from None


def load_suites(paths: Iterable[Path | str]) -> list[Suite]:
    """Load several suite files; scenario ids must be unique across them.

    Raises:
        SuiteError: on the first malformed file, or when two files share a scenario id.
    """
    suites: list[Suite] = []
    owner: dict[str, str] = {}
    for path in paths:
        suite = load_suite(path)
        for s in suite.scenarios:
            if s.id in owner:
                raise SuiteError(path, [f"scenario {s.id!r}: field id: already used in {owner[s.id]}"])
            owner[s.id] = str(path)
        suites.append(suite)
    return suites
