"""Report charts drawn by matplotlib as inline SVG strings: self-contained, no script, no fonts to fetch."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import matplotlib as mpl
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["PALETTE", "Marker", "bars", "forest", "histogram", "time_series"]

# Colour-blind safe (Okabe-Ito), in the order series take them.
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

# Typed loosely: matplotlib types rc keys as one long Literal.
_STYLE: dict[Any, Any] = {
    # Text stays text, so the page's own sans-serif draws it and the SVG embeds no glyph paths.
    "svg.fonttype": "none",
    # Ids (clip paths, markers) from the content, not random: the same data gives the same SVG.
    "svg.hashsalt": "switchboard",
    "font.family": "sans-serif",
    "font.size": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titlesize": 10.0,
    "axes.titleweight": "bold",
    "legend.fontsize": 8.0,
    "legend.frameon": False,
}

_XML_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)


@dataclass(frozen=True)
class Marker:
    """A point drawn over a time series, linked to a page (an anomaly and the call behind it)."""

    at: datetime
    value: float
    label: str
    href: str = ""


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _svg(fig: Figure, title: str) -> str:
    buf = io.StringIO()
    with mpl.rc_context(_STYLE):
        fig.savefig(buf, format="svg", metadata={"Title": title, "Date": None, "Creator": None})
    text = _XML_PROLOGUE.sub("", buf.getvalue(), count=1)
    # Scales with the page instead of a fixed point size; the viewBox keeps the aspect.
    text = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 width="100%"', text, count=1)
    return text.replace("<svg", f'<svg role="img" aria-label="{_attr(title)}"', 1)


def _attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def _empty(ax: Axes, message: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#666666")


def histogram(
    values: Sequence[float],
    *,
    title: str,
    xlabel: str,
    bins: int = 30,
    lines: Mapping[str, float] | None = None,
    log_x: bool = False,
    width: float = 7.0,
    height: float = 3.0,
) -> str:
    """A distribution as an SVG string.

    Args:
        values: The observations (e.g. every turn's latency in ms).
        title: Drawn above the chart and used as its accessible label.
        xlabel: The x axis label, with its unit.
        bins: Number of bins.
        lines: Vertical reference lines by label, e.g. `{"P50": 120.0, "P95": 410.0}`.
        log_x: Logarithmic bins and axis (long-tailed latencies).
        width: Figure width in inches (the SVG scales to the page; this sets the aspect and text size).
        height: Figure height in inches.
    """
    with mpl.rc_context(_STYLE):
        fig, ax = _figure(width, height)
        ax.set_title(title, loc="left")
        finite = [float(v) for v in values if v is not None and math.isfinite(v)]
        if not finite:
            _empty(ax, "no data")
            return _svg(fig, title)
        edges: int | list[float] = bins
        if log_x and min(finite) > 0:
            lo, hi = math.log10(min(finite)), math.log10(max(finite))
            hi = hi if hi > lo else lo + 1
            edges = [10 ** (lo + (hi - lo) * i / bins) for i in range(bins + 1)]
            ax.set_xscale("log")
        ax.hist(finite, bins=edges, color=PALETTE[0], alpha=0.85, edgecolor="white", linewidth=0.5)
        for i, (label, x) in enumerate((lines or {}).items()):
            colour = PALETTE[(i + 1) % len(PALETTE)]
            ax.axvline(x, color=colour, linestyle="--", linewidth=1.2, label=f"{label} {x:,.0f}")
        if lines:
            ax.legend(loc="upper right")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count")
        return _svg(fig, title)


def time_series(
    times: Sequence[datetime],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    ylabel: str,
    stacked: bool = False,
    markers: Sequence[Marker] = (),
    thresholds: Mapping[str, float] | None = None,
    width: float = 7.0,
    height: float = 3.0,
) -> str:
    """Values over time as an SVG string, with a date axis that reads at any span (minutes to weeks).

    Args:
        times: The x positions (timezone-aware; naive ones are taken as UTC). Axis labels are in UTC.
        series: One line (or stacked band) per name, aligned with `times`; None is a gap.
        title: Drawn above the chart and used as its accessible label.
        ylabel: The y axis label, with its unit.
        stacked: Stacked bars (counts per interval, e.g. outcomes) instead of lines.
        markers: Points drawn over the lines; each with an `href` is a link in the SVG.
        thresholds: Horizontal reference lines by label (targets, alert thresholds).
        width: Figure width in inches.
        height: Figure height in inches.
    """
    with mpl.rc_context(_STYLE):
        fig, ax = _figure(width, height)
        ax.set_title(title, loc="left")
        xs = [t if t.tzinfo else t.replace(tzinfo=UTC) for t in times]
        if not xs or not series:
            _empty(ax, "no data")
            return _svg(fig, title)
        # Matplotlib's date numbers (days), so the types hold and bar widths are in days.
        xn = list(mdates.date2num(xs))  # type: ignore[no-untyped-call]  # matplotlib leaves it untyped
        ax.xaxis_date(tz=UTC)
        if stacked:
            span = (max(xs) - min(xs)).total_seconds() if len(xs) > 1 else 3600.0
            bar_days = 0.8 * span / max(len(xs) - 1, 1) / 86400
            bottom = [0.0] * len(xs)
            for i, (name, ys) in enumerate(series.items()):
                heights = [float(y or 0.0) for y in ys]
                ax.bar(xn, heights, width=bar_days, bottom=bottom, label=name, color=PALETTE[i % len(PALETTE)])
                bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        else:
            for i, (name, ys) in enumerate(series.items()):
                points = [math.nan if y is None else float(y) for y in ys]
                ax.plot(xn, points, label=name, color=PALETTE[i % len(PALETTE)], linewidth=1.5, marker=".")
        for label, y in (thresholds or {}).items():
            ax.axhline(y, color="#999999", linestyle=":", linewidth=1.0)
            ax.annotate(label, (1.0, y), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=7)
        if markers:
            dots = ax.scatter(
                mdates.date2num([m.at if m.at.tzinfo else m.at.replace(tzinfo=UTC) for m in markers]),  # type: ignore[no-untyped-call]  # as above
                [m.value for m in markers],
                color=PALETTE[3],
                marker="D",
                s=28,
                zorder=5,
                label="anomaly",
            )
            # The SVG backend wraps each point in <a xlink:href>: a click opens the call behind it.
            dots.set_urls([m.href or None for m in markers])
        locator = mdates.AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]  # matplotlib leaves it untyped
        ax.xaxis.set_major_locator(locator)
        formatter = mdates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]  # as above
        ax.xaxis.set_major_formatter(formatter)
        ax.set_xlabel("time (UTC)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left", ncols=min(len(series) + bool(markers), 4))
        return _svg(fig, title)


def bars(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    value_format: str = "{:,.0f}",
    links: Mapping[str, str] | None = None,
    width: float = 7.0,
    height: float | None = None,
) -> str:
    """Horizontal bars, one group per label and one bar per series, as an SVG string.

    Args:
        labels: The categories, top to bottom (e.g. escalation reasons, intents, hours).
        series: Values per series, aligned with `labels`; one series draws plain bars.
        title: Drawn above the chart and used as its accessible label.
        xlabel: The value axis label, with its unit.
        value_format: How each bar's value is written at its end.
        links: A page per label; the label's bars become links in the SVG.
        width: Figure width in inches.
        height: Figure height in inches; by default it grows with the number of bars.
    """
    with mpl.rc_context(_STYLE):
        n_series = max(len(series), 1)
        rows = max(len(labels), 1)
        fig, ax = _figure(width, height or min(1.2 + 0.22 * rows * n_series, 12.0))
        ax.set_title(title, loc="left")
        if not labels or not series:
            _empty(ax, "no data")
            return _svg(fig, title)
        band = 0.8 / n_series
        positions = list(range(len(labels)))
        top = max((float(v) for vs in series.values() for v in vs), default=0.0)
        for i, (name, values) in enumerate(series.items()):
            ys = [p + (i - (n_series - 1) / 2) * band for p in positions]
            drawn = ax.barh(ys, [float(v) for v in values], height=band, label=name, color=PALETTE[i % len(PALETTE)])
            if links:
                for rect, label in zip(drawn.patches, labels, strict=True):
                    rect.set_url(links.get(label))
            for y, v in zip(ys, values, strict=True):
                ax.annotate(
                    value_format.format(v),
                    (float(v), y),
                    xytext=(3, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=7,
                )
        ax.set_yticks(positions, list(labels))
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.grid(axis="y", visible=False)
        if top > 0:
            ax.set_xlim(0, top * 1.15)
        if len(series) > 1:
            ax.legend(loc="lower right")
        return _svg(fig, title)


def forest(
    rows: Sequence[tuple[str, float, float, float]],
    *,
    title: str,
    xlabel: str,
    highlight: Sequence[str] = (),
    value_format: str = "{:+.3f}",
    width: float = 7.0,
) -> str:
    """Estimates with their intervals, one row each, around a line at zero (a forest plot), as an SVG string.

    Args:
        rows: (label, estimate, interval low, interval high), top to bottom (e.g. metric deltas).
        title: Drawn above the chart and used as its accessible label.
        xlabel: The value axis label, with its unit.
        highlight: Labels drawn in the alert colour (e.g. regressions); the others in the first colour.
        value_format: How each estimate is written at the right of its row.
        width: Figure width in inches.
    """
    with mpl.rc_context(_STYLE):
        fig, ax = _figure(width, min(1.0 + 0.3 * max(len(rows), 1), 12.0))
        ax.set_title(title, loc="left")
        if not rows:
            _empty(ax, "no data")
            return _svg(fig, title)
        ax.axvline(0.0, color="#666666", linewidth=0.8)
        for y, (label, est, lo, hi) in enumerate(rows):
            colour = PALETTE[3] if label in highlight else PALETTE[0]
            ax.errorbar(
                [est], [y], xerr=[[est - lo], [hi - est]], fmt="o", color=colour, capsize=3, markersize=5, linewidth=1.5
            )
            ax.annotate(
                value_format.format(est),
                (1.0, y),
                xycoords=("axes fraction", "data"),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
        ax.set_yticks(range(len(rows)), [r[0] for r in rows])
        ax.set_ylim(len(rows) - 0.5, -0.5)
        span = max((abs(v) for r in rows for v in r[1:]), default=0.0) or 1.0
        ax.set_xlim(-span * 1.1, span * 1.1)
        ax.set_xlabel(xlabel)
        ax.grid(axis="y", visible=False)
        return _svg(fig, title)
