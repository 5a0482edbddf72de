"""Tiny inline-SVG plots for the HTML reports (no JavaScript, no CDN)."""

from __future__ import annotations

import html
from collections.abc import Sequence

from evals.grading import GradeTable

GRADE_COLOR = {"excellent": "#18794e", "good": "#48bb78", "acceptable": "#d69e2e", "below": "#c0392b", "n/a": "#999"}


def bar_chart(bars: Sequence[tuple[str, float, str]], table: GradeTable, width: int = 640) -> str:
    """Horizontal bars of 0..1 metrics coloured by grade, with the acceptable threshold as a tick."""
    row, label_w = 24, 190
    h = row * len(bars) + 20
    inner = width - label_w - 60
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{h}' font-size='12'>"]
    for i, (name, value, grade) in enumerate(bars):
        y = 10 + i * row
        w = max(0.0, min(1.0, value)) * inner
        parts.append(f"<text x='0' y='{y + 14}'>{html.escape(name)}</text>")
        parts.append(f"<rect x='{label_w}' y='{y + 2}' width='{inner}' height='16' fill='#eee'/>")
        parts.append(f"<rect x='{label_w}' y='{y + 2}' width='{w:.1f}' height='16' fill='{GRADE_COLOR[grade]}'/>")
        band = table.metrics.get(name)
        if band is not None:
            x = label_w + band.acceptable * inner
            parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{y}' y2='{y + 20}' stroke='#222' stroke-dasharray='2'/>")
        parts.append(f"<text x='{label_w + inner + 6}' y='{y + 14}'>{value:.3f}</text>")
    parts.append("</svg>")
    return "".join(parts)


def histogram(values: Sequence[float], label: str, bins: int = 20, width: int = 640, height: int = 160) -> str:
    """A histogram of `values`."""
    if not values:
        return "<p>no data</p>"
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / span * bins))] += 1
    top = max(counts)
    bw = (width - 40) / bins
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height + 30}' font-size='11'>"]
    for i, c in enumerate(counts):
        bh = c / top * height
        parts.append(
            f"<rect x='{20 + i * bw:.1f}' y='{height - bh:.1f}' width='{bw - 1:.1f}' height='{bh:.1f}' fill='#4a6fa5'/>"
        )
    parts.append(f"<text x='20' y='{height + 14}'>{lo:.0f}</text>")
    parts.append(f"<text x='{width - 60}' y='{height + 14}'>{hi:.0f}</text>")
    parts.append(f"<text x='{width / 2 - 50:.0f}' y='{height + 26}'>{html.escape(label)}</text></svg>")
    return "".join(parts)


def delta_chart(rows: Sequence[tuple[str, float, float, float, bool]], width: int = 640) -> str:
    """Per-metric deltas (candidate − base) with CI whiskers; regressions in red.

    Each row is (metric, delta, ci_low, ci_high, is_regression); deltas are drawn on a shared
    symmetric scale.
    """
    if not rows:
        return "<p>no metrics</p>"
    row_h, label_w = 26, 190
    scale = max([abs(v) for r in rows for v in r[1:4]] + [1e-9])
    inner = width - label_w - 70
    mid = label_w + inner / 2
    h = row_h * len(rows) + 20
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{h}' font-size='12'>"]
    parts.append(f"<line x1='{mid}' x2='{mid}' y1='0' y2='{h}' stroke='#999'/>")

    def x(v: float) -> float:
        return mid + v / scale * (inner / 2)

    for i, (name, d, lo, hi, bad) in enumerate(rows):
        y = 10 + i * row_h
        color = "#c0392b" if bad else "#4a6fa5"
        parts.append(f"<text x='0' y='{y + 14}'>{html.escape(name)}</text>")
        parts.append(
            f"<line x1='{x(lo):.1f}' x2='{x(hi):.1f}' y1='{y + 10}' y2='{y + 10}' stroke='{color}' stroke-width='2'/>"
        )
        parts.append(f"<circle cx='{x(d):.1f}' cy='{y + 10}' r='5' fill='{color}'/>")
        parts.append(f"<text x='{label_w + inner + 8}' y='{y + 14}'>{d:+.3f}</text>")
    parts.append("</svg>")
    return "".join(parts)
