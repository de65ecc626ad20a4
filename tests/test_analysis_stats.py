"""Paired statistics against hand calculations, scipy, and a direct numpy bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from lmms_vreason.analysis import stats


def _pairs(n10: int, n01: int, n11: int = 0, n00: int = 0) -> tuple[list[int], list[int]]:
    """Per-doc 0/1 scores with the given cell counts (A right/B wrong, A wrong/B right, ...)."""
    a = [1] * n10 + [0] * n01 + [1] * n11 + [0] * n00
    b = [0] * n10 + [1] * n01 + [1] * n11 + [0] * n00
    return a, b


def test_mcnemar_exact_matches_hand_binomial() -> None:
    # 5 discordant docs, all against B: two-sided exact p = 2 * 0.5**5.
    a, b = _pairs(5, 0, n11=20)
    res = stats.mcnemar(a, b)
    assert res.method == "mcnemar exact binomial"
    assert res.p_value == pytest.approx(2 * 0.5**5)
    # 7 vs 2: P(X <= 2 | n=9) = (1 + 9 + 36) / 512, doubled.
    res = stats.mcnemar(*_pairs(7, 2, n11=10, n00=3))
    assert res.p_value == pytest.approx(2 * 46 / 512)
    assert res.p_value == pytest.approx(sps.binomtest(7, 9, 0.5).pvalue)


def test_mcnemar_chi2_with_continuity_correction_above_threshold() -> None:
    # 30 vs 10 discordant (>= 25): chi2 = (|30 - 10| - 1)^2 / 40 = 9.025 on 1 df.
    res = stats.mcnemar(*_pairs(30, 10, n11=50, n00=10))
    assert res.method == "mcnemar chi2 (cc)"
    assert res.statistic == pytest.approx(9.025)
    assert res.p_value == pytest.approx(sps.chi2.sf(9.025, df=1))
    # chi2 with 1 df: sf(x) = erfc(sqrt(x / 2))
    assert res.p_value == pytest.approx(math.erfc(math.sqrt(9.025 / 2)))


def test_mcnemar_switches_at_25_discordant_pairs() -> None:
    assert stats.mcnemar(*_pairs(20, 4)).method == "mcnemar exact binomial"
    assert stats.mcnemar(*_pairs(20, 5)).method == "mcnemar chi2 (cc)"


def test_mcnemar_without_discordant_pairs_is_one() -> None:
    res = stats.mcnemar(*_pairs(0, 0, n11=5, n00=5))
    assert res.p_value == 1.0


def test_mcnemar_rejects_graded_scores() -> None:
    with pytest.raises(ValueError, match="binary"):
        stats.mcnemar([0.5, 1.0], [1.0, 0.0])


def _loop_bootstrap(diff: np.ndarray, n_resamples: int, level: float, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = [diff[rng.integers(0, diff.size, diff.size)].mean() for _ in range(n_resamples)]
    tail = 100 * (1 - level) / 2
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def test_bootstrap_ci_equals_direct_numpy_loop() -> None:
    diff = np.array([1, 0, 0, -1, 1, 1, 0, 0, 0, -1, 1, 0, 0.5, 0.25, 0, 0, 1, 0, 0, 0], dtype=float)
    got = stats.paired_bootstrap_ci(diff, n_resamples=2000, level=0.9, seed=7)
    assert got == pytest.approx(_loop_bootstrap(diff, 2000, 0.9, seed=7))


def test_bootstrap_ci_is_degenerate_for_a_constant_difference() -> None:
    assert stats.paired_bootstrap_ci([0.3] * 12, n_resamples=500) == pytest.approx((0.3, 0.3))


def test_bootstrap_ci_matches_normal_approximation_for_large_n() -> None:
    # 400 docs: 80 B-better, 40 A-better. The bootstrap mean is ~ Normal(mean, sd^2 / n).
    diff = np.array([1.0] * 80 + [-1.0] * 40 + [0.0] * 280)
    mean, se = diff.mean(), diff.std() / math.sqrt(diff.size)
    low, high = stats.paired_bootstrap_ci(diff, n_resamples=20_000, level=0.95, seed=1)
    z = sps.norm.ppf(0.975)
    assert low == pytest.approx(mean - z * se, abs=0.004)
    assert high == pytest.approx(mean + z * se, abs=0.004)


def test_bootstrap_is_reproducible_and_seed_dependent() -> None:
    diff = np.arange(30, dtype=float) % 3 - 1
    a = stats.paired_bootstrap_ci(diff, n_resamples=300, seed=3)
    assert a == stats.paired_bootstrap_ci(diff, n_resamples=300, seed=3)
    assert a != stats.paired_bootstrap_ci(diff, n_resamples=300, seed=4)


def test_bootstrap_rejects_bad_level() -> None:
    with pytest.raises(ValueError, match="level"):
        stats.paired_bootstrap_ci([1.0, 0.0], level=95)


def test_sign_flip_exact_by_hand() -> None:
    # diffs 1, 2, 3: of the 8 sign patterns only +++ and --- reach |sum| >= 6.
    res = stats.sign_flip_test([1.0, 2.0, 3.0, 0.0, 0.0])
    assert res.method == "sign-flip exact"
    assert res.p_value == pytest.approx(2 / 8)
    # diffs 3, -1: |+3-1| = 2 observed; patterns give |2|, |4|, |4|, |2| -> all 4 reach it.
    assert stats.sign_flip_test([3.0, -1.0]).p_value == pytest.approx(1.0)


def test_sign_flip_monte_carlo_agrees_with_binomial() -> None:
    # 20 diffs of +-1 with 15 positive: |sum| >= 10 under random signs is the two-sided binomial tail.
    diff = [1.0] * 15 + [-1.0] * 5
    res = stats.sign_flip_test(diff, n_permutations=20_000, seed=0)
    assert res.method.startswith("sign-flip MC")
    assert res.p_value == pytest.approx(sps.binomtest(15, 20, 0.5).pvalue, abs=0.006)


def test_sign_flip_no_difference() -> None:
    assert stats.sign_flip_test([0.0, 0.0, 0.0]).p_value == 1.0
