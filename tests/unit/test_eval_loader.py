"""Suite files: the shipped suites load, and a malformed one is reported by file, scenario and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.grading import load_gates, load_grades
from evals.loader import SuiteError, load_suite, load_suites

pytestmark = pytest.mark.unit

SUITES = sorted((Path(__file__).resolve().parents[2] / "evals" / "suites").glob("*.yaml"))
GOOD = {"id": "ok-one", "persona": "p", "goal": "g", "turns": ["hi"]}


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_suites_load_with_at_least_sixty_scenarios() -> None:
    suites = load_suites(SUITES)
    assert sum(len(s.scenarios) for s in suites) >= 60
    assert {"smoke", "scheduling", "billing", "support", "escalation", "adversarial", "noisy"} <= {
        s.suite for s in suites
    }


def test_grades_and_gates_load() -> None:
    table = load_grades()
    assert table.metrics["latency_p95_ms"].grade(450) == "good"
    assert table.metrics["escalation_rate"].grade(0.3) == "below"
    assert table.metrics["success_rate"].grade(0.99) == "excellent"
    assert load_gates().for_suites(["smoke"]).max_failed == 0


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        (
            "suite: s\nscenarios:\n"
            "  - {id: bad-tools, persona: p, goal: g, turns: [hi], expect: {tools: [{args: {}}]}}\n",
            ["scenario 'bad-tools' (#1)", "field expect.tools[0].name", "Field required"],
        ),
        (
            "suite: s\nscenarios:\n  - {id: both, persona: p, goal: g, turns: [hi], simulate: {opening: x}}\n",
            ["scenario 'both' (#1)", "exactly one of `turns`"],
        ),
        (
            "suite: s\nscenarios:\n  - {id: typo, persona: p, goal: g, turns: [hi], expect: {escalatd: true}}\n",
            ["scenario 'typo'", "field expect.escalatd", "Extra inputs"],
        ),
        (
            "suite: s\nscenarios:\n  - {id: yesno, persona: p, goal: g, turns: [hi, yes]}\n",
            ["scenario 'yesno'", "field turns[1]"],
        ),
        (
            "suite: s\nscenarios:\n"
            "  - {id: day, persona: p, goal: g, turns: [hi], expect: {db: {appointments: {weekday: Funday}}}}\n",
            ["scenario 'day'", "field expect.db.appointments.weekday", "weekday name"],
        ),
        ("suite: s\nscenarios:\n  - {persona: p, goal: g, turns: [hi]}\n", ["scenario #1", "field id"]),
        ("suite: s\nscenarios: []\n", ["field scenarios"]),
        ("suite: s\nscenarios: [\n", ["not valid YAML"]),
    ],
)
def test_malformed_suite_names_file_scenario_and_field(tmp_path: Path, body: str, needles: list[str]) -> None:
    path = write(tmp_path, body)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message, message


def test_every_problem_is_listed(tmp_path: Path) -> None:
    body = (
        "suite: s\nscenarios:\n"
        "  - {id: a, persona: p, goal: g, turns: [hi], timeout_s: -1}\n"
        "  - {id: b, persona: p, goal: g, simulate: {opening: ''}}\n"
    )
    with pytest.raises(SuiteError) as info:
        load_suite(write(tmp_path, body))
    assert len(info.value.problems) == 2
    assert "scenario 'a' (#1): field timeout_s" in str(info.value)
    assert "scenario 'b' (#2): field simulate.opening" in str(info.value)


def test_duplicate_ids_across_files_are_named(tmp_path: Path) -> None:
    one = write(tmp_path, f"suite: one\nscenarios: [{GOOD}]\n".replace("'", '"'), "one.yaml")
    two = write(tmp_path, f"suite: two\nscenarios: [{GOOD}]\n".replace("'", '"'), "two.yaml")
    with pytest.raises(SuiteError) as info:
        load_suites([one, two])
    assert "two.yaml" in str(info.value)
    assert "'ok-one'" in str(info.value)
    assert "one.yaml" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="no such file"):
        load_suite(tmp_path / "nope.yaml")
