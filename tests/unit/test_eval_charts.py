"""The eval and comparison pages draw their charts with the shared matplotlib module (telemetry.charts)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evals.compare import compare, write_compare_html
from evals.grading import load_gates, load_grades
from evals.report import build_report, write_html
from orchestrator.telemetry import charts
from tests.unit.test_eval_transcripts import runs

pytestmark = pytest.mark.unit

ALERT = charts.PALETTE[3].lower()


def test_the_forest_plot_draws_each_interval_and_marks_the_highlighted_rows() -> None:
    rows = [("success_rate", -0.5, -0.8, -0.2), ("routing_accuracy", 0.0, -0.1, 0.1)]
    plain = charts.forest(rows, title="Rates", xlabel="candidate − base")
    marked = charts.forest(rows, title="Rates", xlabel="candidate − base", highlight=["success_rate"])
    assert plain.startswith("<svg")
    assert 'aria-label="Rates"' in plain
    assert ALERT not in plain.lower()
    assert ALERT in marked.lower()
    for text in ("success_rate", "routing_accuracy", "-0.500", "+0.000", "candidate − base"):
        assert text in plain
    assert plain == charts.forest(rows, title="Rates", xlabel="candidate − base")
    assert "no data" in charts.forest([], title="Rates", xlabel="x")


def test_the_comparison_page_draws_its_forest_plots_with_matplotlib(tmp_path: Path) -> None:
    pair = runs()
    result = compare(pair, load_grades(), load_gates().compare, resamples=50)
    assert result["metrics"]["success_rate"]["regression"]
    out = tmp_path / "compare.html"
    write_compare_html(result, pair, out)
    page = out.read_text(encoding="utf-8")
    assert re.findall(r'aria-label="([^"]+)"', page) == [
        "Rates (regressions in red)",
        "Turn latency (regressions in red)",
    ]
    rates = page[page.index('aria-label="Rates') : page.index("</svg>", page.index('aria-label="Rates'))]
    assert ALERT in rates.lower()  # success fell by more than the gates allow: a regression, in red


def test_the_run_page_draws_its_bars_and_histogram_with_matplotlib(tmp_path: Path) -> None:
    pair = runs()
    report = build_report(pair.base, load_grades())
    out = tmp_path / "run.html"
    write_html(report, pair.base, load_grades(), out)
    page = out.read_text(encoding="utf-8")
    labels = re.findall(r'aria-label="([^"]+)"', page)
    assert labels == ["Rates (grades and the acceptable bars in the table above)", "Turn latency"]
    assert "<td>≥ 0.9</td>" in page  # success_rate's acceptable bar, from grades.yaml
    assert "P95 20" in page
