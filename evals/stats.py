"""Statistics for evals: percentiles, bootstrap CIs, pass^k and paired tests, on `scipy.stats`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from orchestrator.stats import percentile as shared_percentile


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100): the project's one definition (`orchestrator.stats`)."""
    return shared_percentile(values, q)


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean; 0.0 for no values."""
    return float(np.mean(values)) if len(values) else 0.0


def bootstrap_ci(
    values: Sequence[float],
    statistic: Callable[[np.ndarray], float] = lambda a: float(np.mean(a)),
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """A percentile bootstrap confidence interval of `statistic` over `values` (`scipy.stats.bootstrap`).

    Args:
        values: the sample.
        statistic: maps a resampled array to a number (the mean by default).
        resamples: bootstrap resamples.
        confidence: the interval's coverage, e.g. 0.95.
        seed: the generator seed; the same inputs always give the same interval.

    Returns:
        (low, high); (v, v) for a single value and (0, 0) for none.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return 0.0, 0.0
    if arr.size == 1:
        v = float(statistic(arr))
        return v, v
    return _percentile_bootstrap(arr, statistic, resamples, confidence, seed)


def paired_bootstrap_ci(
    n: int,
    delta: Callable[[np.ndarray], float],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """A bootstrap CI of a paired difference: `delta(indices)` recomputes it on resampled units.

    Resampling whole units (scenarios) keeps each unit's base and candidate runs together, which is
    what makes the interval paired.
    """
    if n == 0:
        return 0.0, 0.0
    if n == 1:
        v = delta(np.zeros(1, dtype=np.int64))
        return v, v
    return _percentile_bootstrap(np.arange(n), delta, resamples, confidence, seed)


def _percentile_bootstrap(
    sample: np.ndarray, statistic: Callable[[np.ndarray], float], resamples: int, confidence: float, seed: int
) -> tuple[float, float]:
    result = stats.bootstrap(
        (sample,),
        statistic,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=False,
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def pass_hat_k(trials: Sequence[tuple[int, int]], k: int) -> float:
    """τ-bench's pass^k: the chance that k independent trials of a task all succeed, averaged over tasks.

    Args:
        trials: per task, (number of trials n, number of successes c), with n >= k.
        k: how many trials must all succeed.

    Returns:
        mean over tasks of C(c, k) / C(n, k), the unbiased estimate from n trials.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    if not trials:
        return 0.0
    total = 0.0
    for n, c in trials:
        if n < k:
            raise ValueError(f"a task has {n} trials, fewer than k={k}")
        total += float(math.comb(c, k)) / float(math.comb(n, k))
    return total / len(trials)


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n fair coin flips (the sign test)."""
    if n == 0:
        return 1.0
    return float(stats.binomtest(k, n, 0.5).pvalue)


@dataclass(frozen=True)
class PairedTest:
    """The result of a paired significance test."""

    name: str
    statistic: float
    p_value: float
    n: int


def sign_test(x: Sequence[float], y: Sequence[float]) -> PairedTest:
    """Exact sign test on paired samples; ties are dropped.

    The statistic is the number of pairs where y > x.
    """
    if len(x) != len(y):
        raise ValueError("paired samples must have the same length")
    ups = sum(1 for a, b in zip(x, y, strict=True) if b > a)
    downs = sum(1 for a, b in zip(x, y, strict=True) if b < a)
    return PairedTest("sign", float(ups), binomial_two_sided(ups, ups + downs), ups + downs)


def mcnemar_exact(base: Sequence[bool], candidate: Sequence[bool]) -> PairedTest:
    """Exact McNemar test on paired pass/fail outcomes.

    The statistic is the number of discordant pairs that went from pass to fail; the p-value is the
    exact binomial test on the discordant pairs.
    """
    if len(base) != len(candidate):
        raise ValueError("paired samples must have the same length")
    lost = sum(1 for a, b in zip(base, candidate, strict=True) if a and not b)
    gained = sum(1 for a, b in zip(base, candidate, strict=True) if b and not a)
    return PairedTest("mcnemar", float(lost), binomial_two_sided(lost, lost + gained), lost + gained)


def wilcoxon_signed_rank(x: Sequence[float], y: Sequence[float]) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test of y - x, zero differences dropped (`scipy.stats.wilcoxon`).

    scipy picks the exact null distribution for small samples without ties and the normal
    approximation (tie and continuity corrected) otherwise. The statistic reported is W+, the rank
    sum of the positive differences, whichever way the difference goes.
    """
    if len(x) != len(y):
        raise ValueError("paired samples must have the same length")
    diffs = np.asarray([b - a for a, b in zip(x, y, strict=True) if b != a], dtype=np.float64)
    n = int(diffs.size)
    if n == 0:
        return PairedTest("wilcoxon", 0.0, 1.0, 0)
    w_plus = float(np.sum(stats.rankdata(np.abs(diffs))[diffs > 0]))
    p = float(stats.wilcoxon(diffs, zero_method="wilcox", correction=True).pvalue)
    return PairedTest("wilcoxon", w_plus, min(1.0, p), n)
