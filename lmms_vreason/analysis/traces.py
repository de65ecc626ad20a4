"""Numbers derived from telemetry traces for the figures (no plotting here, so they are testable).

Samples stop at different lengths, so a mean curve over positions is taken over the samples still
generating at each position (and that count is returned with it): padding finished samples with
zeros would drag the tail of the curve down and fake a "macro-exploitation" phase.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmms_vreason.telemetry import SampleTrace

EMA_BETA = 0.98


def ragged_mean(series: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean at each position over the series that reach it (NaNs count as absent), and that count."""
    longest = max((len(s) for s in series), default=0)
    if longest == 0:
        return np.empty(0), np.empty(0, dtype=int)
    mat = np.full((len(series), longest), np.nan)
    for i, s in enumerate(series):
        mat[i, : len(s)] = np.asarray(s, dtype=np.float64)
    alive = np.sum(~np.isnan(mat), axis=0)
    total = np.nansum(mat, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(alive > 0, total / np.maximum(alive, 1), np.nan)
    return mean, alive


def ema(entropy: Sequence[float], beta: float = EMA_BETA) -> np.ndarray:
    """The spec's EMA: ``E_1 = H_1``, ``E_t = beta E_{t-1} + (1 - beta) H_t``."""
    h = np.asarray(entropy, dtype=np.float64)
    out = np.empty_like(h)
    for t, value in enumerate(h):
        out[t] = value if t == 0 else beta * out[t - 1] + (1.0 - beta) * value
    return out


def ema_of(trace: SampleTrace) -> np.ndarray:
    """The recorded EMA, or one recomputed from the entropy when the row has none."""
    if trace.ema:
        return np.asarray(trace.ema, dtype=np.float64)
    return ema(trace.entropy)


def peak_index(values: Sequence[float] | np.ndarray) -> int | None:
    """Index of the first maximum (NaNs ignored), or ``None`` for an empty or all-NaN series."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or np.all(np.isnan(arr)):
        return None
    return int(np.nanargmax(arr))


def switch_alpha(ema_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Eq. 4 at every step: +1 where the EMA is at or above its running maximum so far, else -1."""
    e = np.asarray(ema_values, dtype=np.float64)
    if e.size == 0:
        return np.empty(0, dtype=int)
    previous_max = np.concatenate(([-np.inf], np.maximum.accumulate(e)[:-1]))
    return np.where(e >= previous_max, 1, -1)


def alpha_segments(trace: SampleTrace) -> tuple[list[tuple[int, int, int]], bool]:
    """Runs of constant alpha as ``(start, stop, alpha)`` index ranges, and whether they are derived.

    With optimisation steps recorded, each step's alpha holds until the next step (that is the
    coefficient steering the controller in between). A sample without any (a baseline run) gets
    the alpha the switch rule *would* have used at every step, computed from its EMA.
    """
    steps = [i for i, on in enumerate(trace.optimized) if on and i < len(trace.alpha) and trace.alpha[i] != 0]
    length = max(len(trace.ema), len(trace.entropy))
    if steps:
        bounds = [*steps, length]
        return [(bounds[j], bounds[j + 1], int(trace.alpha[s])) for j, s in enumerate(steps)], False
    derived = switch_alpha(ema_of(trace))
    segments: list[tuple[int, int, int]] = []
    for i, a in enumerate(derived):
        if segments and segments[-1][2] == a:
            segments[-1] = (segments[-1][0], i + 1, int(a))
        else:
            segments.append((i, i + 1, int(a)))
    return segments, True


def alpha_counts_before_peak(trace: SampleTrace) -> tuple[int, int]:
    """(# alpha=+1, # alpha=-1) over the optimisation steps strictly before the sample's EMA maximum.

    Fig. 5 of the paper: how many micro-exploration vs micro-exploitation updates happen during the
    macro-exploration phase. Steps at or after the first EMA maximum are not counted.
    """
    peak = peak_index(ema_of(trace))
    if peak is None:
        return 0, 0
    plus = minus = 0
    for i, on in enumerate(trace.optimized[:peak]):
        if on and i < len(trace.alpha):
            plus += trace.alpha[i] > 0
            minus += trace.alpha[i] < 0
    return int(plus), int(minus)
