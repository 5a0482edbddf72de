"""The eval statistics on inputs whose answers are known by hand or from textbook tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evals.stats import (
    binomial_two_sided,
    bootstrap_ci,
    mcnemar_exact,
    paired_bootstrap_ci,
    pass_hat_k,
    percentile,
    sign_test,
    wilcoxon_signed_rank,
)
from orchestrator.stats import percentiles

pytestmark = pytest.mark.unit


def test_percentile_interpolates_like_numpy() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 50) == 25.0
    assert percentile(values, 95) == pytest.approx(38.5)
    assert percentile([], 95) == 0.0


def test_pass_hat_k_is_the_unbiased_estimate() -> None:
    # One task with 3 of 4 trials passing: C(3,2)/C(4,2) = 3/6; a perfect task scores 1.
    assert pass_hat_k([(4, 3)], 2) == pytest.approx(0.5)
    assert pass_hat_k([(4, 3), (4, 4)], 2) == pytest.approx(0.75)
    assert pass_hat_k([(5, 3)], 1) == pytest.approx(0.6)
    assert pass_hat_k([(3, 2)], 3) == 0.0
    with pytest.raises(ValueError):
        pass_hat_k([(1, 1)], 2)


def test_binomial_two_sided_matches_hand_computation() -> None:
    # 0 of 5: P = 2 * (1/32).
    assert binomial_two_sided(0, 5) == pytest.approx(2 / 32)
    # 1 of 10: 2 * (1 + 10) / 1024.
    assert binomial_two_sided(1, 10) == pytest.approx(22 / 1024)
    assert binomial_two_sided(5, 10) == 1.0
    assert binomial_two_sided(0, 0) == 1.0


def test_sign_and_mcnemar_drop_ties() -> None:
    t = sign_test([1, 1, 1, 1, 1, 1], [2, 2, 2, 2, 2, 1])
    assert (t.statistic, t.n) == (5.0, 5)
    assert t.p_value == pytest.approx(2 / 32)
    base = [True] * 8 + [False] * 2
    cand = [False] * 6 + [True] * 2 + [False, False]
    m = mcnemar_exact(base, cand)
    assert (m.statistic, m.n) == (6.0, 6)
    assert m.p_value == pytest.approx(2 / 64)


def test_wilcoxon_exact_small_sample() -> None:
    # Differences 1..6, all positive: W+ = 21, the most extreme of 2**6 patterns, two-sided p = 2/64.
    t = wilcoxon_signed_rank([0] * 6, [1, 2, 3, 4, 5, 6])
    assert t.statistic == 21.0
    assert t.p_value == pytest.approx(2 / 64)
    # Differences -1, +2, -3, +4, -5, +6 (no ties): W+ = 12; 27 of the 64 sign patterns have W+ <= 9.
    t = wilcoxon_signed_rank([0] * 6, [-1, 2, -3, 4, -5, 6])
    assert t.statistic == 12.0
    assert t.p_value == pytest.approx(2 * 27 / 64)
    assert wilcoxon_signed_rank([1, 2], [1, 2]).p_value == 1.0


def test_wilcoxon_normal_approximation_with_ties() -> None:
    x = [0.0] * 40
    y = [1.0] * 30 + [-1.0] * 10
    t = wilcoxon_signed_rank(x, y)
    # All |d| tie at rank 20.5: W+ = 30 * 20.5 = 615, mu = 410, var = (40*41*81/24) - (40**3-40)/48 = 5535 - 1332.5.
    assert t.statistic == 615.0
    z = (615 - 410 - 0.5) / math.sqrt(5535 - 1332.5)
    assert t.p_value == pytest.approx(math.erfc(z / math.sqrt(2)))


def test_bootstrap_ci_brackets_the_mean_and_is_reproducible() -> None:
    values = [0.0, 1.0] * 50
    lo, hi = bootstrap_ci(values, seed=1)
    assert lo < 0.5 < hi
    assert hi - lo < 0.25
    assert bootstrap_ci(values, seed=1) == (lo, hi)
    assert bootstrap_ci([3.0]) == (3.0, 3.0)
    assert bootstrap_ci([]) == (0.0, 0.0)


def test_paired_bootstrap_of_a_constant_shift_is_that_shift() -> None:
    base = np.arange(20, dtype=float)
    cand = base - 2.0
    lo, hi = paired_bootstrap_ci(20, lambda idx: float(np.mean(cand[idx]) - np.mean(base[idx])), seed=3)
    assert lo == pytest.approx(-2.0)
    assert hi == pytest.approx(-2.0)


def test_the_benchmarks_percentiles_are_the_one_percentile_rounded_and_none_for_no_values() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {q: round(percentile(values, int(q[1:])), 1) for q in ("p50", "p95", "p99")}
    assert percentiles([1.234, 5.678], (50,), digits=2) == {"p50": 3.46}
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}
