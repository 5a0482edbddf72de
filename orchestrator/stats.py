"""The one percentile every report, alert, benchmark and eval uses, so their figures agree."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (q in 0..100) by linear interpolation between ranks (numpy's default); 0 for none."""
    data = np.fromiter(values, dtype=np.float64)
    if data.size == 0:
        return 0.0
    return float(np.percentile(data, q))


def percentiles(
    values: Sequence[float], qs: Iterable[int] = (50, 95, 99), *, digits: int = 1
) -> dict[str, float | None]:
    """``{"p50": …, "p95": …, "p99": …}`` of :func:`percentile`, rounded as the benchmarks report; None for none."""
    return {f"p{q}": round(percentile(values, q), digits) if len(values) else None for q in qs}
