"""Paired statistics for comparing two runs on the same docs.

Gains in the paper are 1-4 points on a few hundred items, which is inside the noise of a single
run, so every comparison comes with a paired bootstrap interval and a paired test:

* binary per-doc scores (accuracy): McNemar's test on the discordant pairs -- the exact two-sided
  binomial test when there are fewer than :data:`MCNEMAR_EXACT_BELOW` discordant pairs (where the
  chi-square approximation is poor), otherwise the chi-square statistic with Edwards' continuity
  correction ``(|b - c| - 1)^2 / (b + c)`` on 1 degree of freedom;
* graded per-doc scores (MRA): a sign-flip permutation test of the mean paired difference
  (``scipy.stats.permutation_test``) -- exact enumeration of all sign patterns when there are no
  more of them than permutations asked for, otherwise Monte Carlo with a fixed seed and the
  ``(1 + hits) / (1 + n)`` estimate, which never reports p = 0.

All randomness comes from ``numpy.random.default_rng(seed)`` so reruns give identical numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

MCNEMAR_EXACT_BELOW = 25
_CHUNK_ELEMENTS = 2_000_000
"""Resample matrices are drawn in chunks of about this many entries to bound memory."""


@dataclass(frozen=True)
class PairedTest:
    """A p-value, the name of the test that produced it, and its statistic (test-specific)."""

    p_value: float
    method: str
    statistic: float | None = None


def _as_1d(values: np.ndarray | list[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("expected a non-empty 1-D array of per-doc values")
    if not np.all(np.isfinite(arr)):
        raise ValueError("per-doc values must be finite")
    return arr


def bootstrap_means(diff: np.ndarray | list[float], n_resamples: int, seed: int) -> np.ndarray:
    """Means of ``n_resamples`` resamples (with replacement) of the paired differences.

    Resampling the per-doc differences is resampling docs with their pair intact. Rows are drawn
    in order from one generator, so the result equals drawing ``rng.integers(0, n, n)`` per
    resample in a loop.
    """
    d = _as_1d(diff)
    if n_resamples < 1:
        raise ValueError("n_resamples must be >= 1")
    n = d.size
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - start)
        means[start : start + k] = d[rng.integers(0, n, size=(k, n))].mean(axis=1)
    return means


def paired_bootstrap_ci(
    diff: np.ndarray | list[float], *, n_resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean paired difference."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    means = bootstrap_means(diff, n_resamples, seed)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def discordant_counts(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> tuple[int, int]:
    """(A right and B wrong, A wrong and B right) for binary per-doc scores."""
    x, y = _as_1d(a), _as_1d(b)
    if x.shape != y.shape:
        raise ValueError("paired arrays must have the same length")
    if not (np.isin(x, (0.0, 1.0)).all() and np.isin(y, (0.0, 1.0)).all()):
        raise ValueError("McNemar's test needs binary (0/1) per-doc scores")
    return int(np.sum((x == 1) & (y == 0))), int(np.sum((x == 0) & (y == 1)))


def mcnemar(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> PairedTest:
    """McNemar's test of equal accuracy for paired binary scores (see the module docstring)."""
    n10, n01 = discordant_counts(a, b)
    total = n10 + n01
    if total == 0:
        return PairedTest(p_value=1.0, method="mcnemar (no discordant pairs)", statistic=0.0)
    if total < MCNEMAR_EXACT_BELOW:
        p = sps.binomtest(n10, total, 0.5, alternative="two-sided").pvalue
        return PairedTest(p_value=float(p), method="mcnemar exact binomial", statistic=float(n10))
    stat = max(abs(n10 - n01) - 1, 0) ** 2 / total
    return PairedTest(p_value=float(sps.chi2.sf(stat, df=1)), method="mcnemar chi2 (cc)", statistic=stat)


def sign_flip_test(
    diff: np.ndarray | list[float], *, n_permutations: int = 10_000, seed: int = 0
) -> PairedTest:
    """Two-sided sign-flip permutation test of mean(diff) = 0 for paired graded scores.

    Under the null each doc's difference is as likely to have either sign; zero differences are
    unaffected by flipping and are left out. scipy enumerates every sign pattern when there are at
    most ``n_permutations`` of them, and otherwise samples with the ``(1 + hits) / (1 + n)`` estimate.
    """
    d = _as_1d(diff)
    d = d[d != 0.0]
    if d.size == 0:
        return PairedTest(p_value=1.0, method="sign-flip (no differing docs)", statistic=0.0)
    if n_permutations < 1:
        raise ValueError("n_permutations must be >= 1")
    result = sps.permutation_test(
        (d,),
        np.mean,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_permutations,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    method = "sign-flip exact" if 2**d.size <= n_permutations else f"sign-flip MC (n={n_permutations})"
    return PairedTest(p_value=float(result.pvalue), method=method, statistic=float(abs(d.sum())))


def is_binary(*arrays: np.ndarray) -> bool:
    """Whether every value is exactly 0 or 1 (then McNemar applies)."""
    return all(np.isin(np.asarray(a, dtype=np.float64), (0.0, 1.0)).all() for a in arrays)
