"""The chart helpers: self-contained SVG, the same bytes for the same data, links where asked, readable axes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.telemetry import charts

pytestmark = pytest.mark.unit

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def _texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return ["".join(t.itertext()).strip() for t in root.iter(f"{SVG}text")]


def _self_contained(svg: str) -> None:
    assert svg.startswith("<svg"), svg[:80]
    ET.fromstring(svg)  # well-formed on its own, ready to inline in HTML
    for forbidden in ("<script", "http://", "https://", "@font-face"):
        # The SVG and xlink namespace URIs are names, not fetches.
        stripped = svg.replace("http://www.w3.org/2000/svg", "").replace("http://www.w3.org/1999/xlink", "")
        stripped = stripped.replace("http://purl.org/dc/", "").replace("http://creativecommons.org/ns#", "")
        stripped = stripped.replace("http://www.w3.org/1999/02/22-rdf-syntax-ns#", "")
        assert forbidden not in stripped, forbidden


def test_histogram_is_deterministic_self_contained_and_labelled() -> None:
    values = [50.0 + (i * 37) % 400 for i in range(200)]
    first = charts.histogram(values, title="Turn latency", xlabel="ms", lines={"P50": 250.0, "P95": 430.0})
    second = charts.histogram(values, title="Turn latency", xlabel="ms", lines={"P50": 250.0, "P95": 430.0})
    assert first == second
    _self_contained(first)
    texts = _texts(first)
    assert "Turn latency" in texts
    assert "ms" in texts
    assert "P50 250" in texts
    assert "P95 430" in texts
    assert 'aria-label="Turn latency"' in first


def test_empty_data_draws_a_labelled_placeholder() -> None:
    for svg in (
        charts.histogram([], title="Latency", xlabel="ms"),
        charts.time_series([], {}, title="Volume", ylabel="calls"),
        charts.bars([], {}, title="Reasons", xlabel="calls"),
    ):
        _self_contained(svg)
        assert "no data" in _texts(svg)


def test_time_series_axis_reads_as_times_and_markers_link_to_calls() -> None:
    times = [T0 + timedelta(minutes=30 * i) for i in range(8)]
    markers = [charts.Marker(at=times[3], value=900.0, label="latency spike", href="/console/calls/c-3")]
    svg = charts.time_series(
        times,
        {"P50": [100.0, 110, 120, None, 130, 140, 150, 160], "P95": [300.0, 310, 320, 900, 330, 340, 350, 360]},
        title="Turn latency over time",
        ylabel="ms",
        markers=markers,
        thresholds={"target 500 ms": 500.0},
    )
    _self_contained(svg)
    texts = _texts(svg)
    # Concise date ticks: clock times, not day fractions or raw numbers.
    assert any(t in texts for t in ("10:00", "11:00", "12:00")), texts
    assert "time (UTC)" in texts
    assert "target 500 ms" in texts
    assert 'href="/console/calls/c-3"' in svg


def test_stacked_time_series_and_bars_with_links() -> None:
    times = [T0 + timedelta(hours=i) for i in range(4)]
    svg = charts.time_series(
        times, {"resolved": [3, 4, 5, 6], "escalated": [1, 0, 2, 1]}, title="Calls", ylabel="calls", stacked=True
    )
    _self_contained(svg)
    assert {"resolved", "escalated"} <= set(_texts(svg))

    svg = charts.bars(
        ["billing", "support"],
        {"as run": [0.01, 0.02], "reference cloud": [0.05, 0.06]},
        title="Cost per call by intent",
        xlabel="USD",
        value_format="${:.3f}",
        links={"billing": "#intent-billing"},
    )
    _self_contained(svg)
    texts = _texts(svg)
    assert {"billing", "support", "$0.010", "$0.060", "as run", "reference cloud"} <= set(texts)
    assert 'href="#intent-billing"' in svg
