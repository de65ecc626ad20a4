"""Numbers derived from telemetry traces for the figures (no plotting here, so they are testable).

Samples stop at different lengths, so a mean curve over positions is taken over the samples still
generating at each position (and that count is returned with it): padding finished samples with
zeros would drag the tail of the curve down and fake a "macro-exploitation" phase.

The EMA and the switch coefficient α are never recomputed by a rule of their own here: they come
from the row (recorded by the decode loop), or from replaying the recorded entropies through the
decode loop's own :class:`lmms_vreason.core.objective.EntropyTracker` with the β the row records.
torch is imported only when such a replay is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmms_vreason.analysis.runs import RunInputError
from lmms_vreason.telemetry import SampleTrace


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


def ema(entropy: Sequence[float], *, beta: float) -> np.ndarray:
    """The EMA the tracker computes from an entropy series: ``E_1 = H_1``, ``E_t = β E_{t-1} + (1-β) H_t``."""
    from lmms_vreason.core.objective import replay

    return replay(entropy, beta)[0].double().numpy()


def ema_of(trace: SampleTrace) -> np.ndarray:
    """The recorded EMA, or the one the tracker makes from the row's entropy with the row's β."""
    if trace.ema or not trace.entropy:  # a failed sample (media error) has neither
        return np.asarray(trace.ema, dtype=np.float64)
    if trace.ema_beta is None:
        raise RunInputError(
            f"{trace.task} doc {trace.doc_id}: the row has neither an EMA nor the ema_beta to compute one"
        )
    return ema(trace.entropy, beta=trace.ema_beta)


def peak_index(values: Sequence[float] | np.ndarray) -> int | None:
    """Index of the first maximum (NaNs ignored), or ``None`` for an empty or all-NaN series."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or np.all(np.isnan(arr)):
        return None
    return int(np.nanargmax(arr))


def switch_alpha(ema_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Eq. 4 at every step of an EMA series, as the tracker decides it: +1 where the EMA is at or
    above its maximum so far, else -1; 0 at t = 1, where there is no earlier value to compare with.

    The tracker is fed the EMA itself with β = 0, which makes its EMA the input series unchanged.
    """
    from lmms_vreason.core.objective import replay

    return replay(np.asarray(ema_values, dtype=np.float64).tolist(), 0.0, "switch")[1].numpy().astype(int)


def alpha_segments(trace: SampleTrace) -> tuple[list[tuple[int, int, int]], bool]:
    """Runs of constant alpha as ``(start, stop, alpha)`` index ranges, and whether they are derived.

    With optimisation steps recorded, each step's alpha holds until the next step (that is the
    coefficient steering the controller in between). A sample without any (a baseline run) gets
    the alpha the switch rule *would* have used at every step, computed from its EMA; the first
    step has none (the tracker's α is 0 there), so no segment covers it.
    """
    steps = [i for i, on in enumerate(trace.optimized) if on and i < len(trace.alpha) and trace.alpha[i] != 0]
    length = max(len(trace.ema), len(trace.entropy))
    if steps:
        bounds = [*steps, length]
        return [(bounds[j], bounds[j + 1], int(trace.alpha[s])) for j, s in enumerate(steps)], False
    derived = switch_alpha(ema_of(trace))
    segments: list[tuple[int, int, int]] = []
    for i, a in enumerate(derived):
        if a == 0:
            continue
        if segments and segments[-1][2] == a and segments[-1][1] == i:
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
