"""The one percentile every report, alert, benchmark and eval uses, so their figures agree."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (q in 0..100) by linear interpolation between ranks (numpy's default); 0 for none."""
    data = np.fromiter(values, dtype=np.float64)
    if data.size == 0:
        return 0.0
    return float(np.percentile(data, q))
