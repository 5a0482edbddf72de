"""Statistics for evals with numpy and the stdlib only: percentiles, bootstrap CIs, pass^k, paired tests."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from orchestrator.telemetry.stats import percentile as shared_percentile

# Exact null distributions are cheap up to here; beyond it the normal approximation is accurate.
EXACT_WILCOXON_MAX_N = 30


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100): the project's one definition (`orchestrator.telemetry.stats`)."""
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
    """A percentile bootstrap confidence interval of `statistic` over `values`.

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
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(resamples, arr.size))
    stats = np.array([statistic(arr[row]) for row in idx])
    alpha = (1 - confidence) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


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
    rng = np.random.default_rng(seed)
    stats = np.array([delta(rng.integers(0, n, size=n)) for _ in range(resamples)])
    alpha = (1 - confidence) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


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
    tail = min(k, n - k)
    p = float(sum(math.comb(n, i) for i in range(tail + 1))) / float(2**n)
    return min(1.0, 2 * p)


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


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties getting their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _exact_wilcoxon_p(w_plus: float, n: int) -> float:
    # counts[s] = number of sign patterns whose positive ranks sum to s (ranks 1..n, no ties).
    top = n * (n + 1) // 2
    counts = [0] * (top + 1)
    counts[0] = 1
    for r in range(1, n + 1):
        for s in range(top, r - 1, -1):
            counts[s] += counts[s - r]
    total = float(2**n)
    w = min(w_plus, top - w_plus)
    p = float(sum(counts[s] for s in range(int(math.floor(w)) + 1))) / total
    return min(1.0, 2 * p)


def wilcoxon_signed_rank(x: Sequence[float], y: Sequence[float]) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test of y - x (zero differences dropped).

    Exact null distribution for up to 30 non-zero pairs without ties; otherwise the normal
    approximation with tie and continuity corrections. The statistic is W+, the rank sum of the
    positive differences.
    """
    if len(x) != len(y):
        raise ValueError("paired samples must have the same length")
    diffs = [b - a for a, b in zip(x, y, strict=True) if b != a]
    n = len(diffs)
    if n == 0:
        return PairedTest("wilcoxon", 0.0, 1.0, 0)
    ranks = _ranks([abs(d) for d in diffs])
    w_plus = sum(r for r, d in zip(ranks, diffs, strict=True) if d > 0)
    ties = len(set(abs(d) for d in diffs)) != n
    if n <= EXACT_WILCOXON_MAX_N and not ties:
        return PairedTest("wilcoxon", w_plus, _exact_wilcoxon_p(w_plus, n), n)
    mu = n * (n + 1) / 4
    tie_groups: dict[float, int] = {}
    for r in ranks:
        tie_groups[r] = tie_groups.get(r, 0) + 1
    var = n * (n + 1) * (2 * n + 1) / 24 - sum(t**3 - t for t in tie_groups.values()) / 48
    if var <= 0:
        return PairedTest("wilcoxon", w_plus, 1.0, n)
    z = (abs(w_plus - mu) - 0.5) / math.sqrt(var)
    p = math.erfc(max(z, 0.0) / math.sqrt(2))
    return PairedTest("wilcoxon", w_plus, min(1.0, p), n)
