"""Series derived from telemetry for the figures, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from lmms_vreason.analysis import traces as tr
from lmms_vreason.analysis.runs import RunInputError
from lmms_vreason.telemetry import SampleTrace


def test_ragged_mean_averages_only_samples_still_alive() -> None:
    mean, alive = tr.ragged_mean([[1.0, 2.0, 3.0], [3.0], [2.0, 4.0]])
    # position 1: (1+3+2)/3, position 2: (2+4)/2, position 3: 3/1
    assert mean == pytest.approx([2.0, 3.0, 3.0])
    assert alive.tolist() == [3, 2, 1]


def test_ragged_mean_of_nothing_is_empty() -> None:
    mean, alive = tr.ragged_mean([[], []])
    assert mean.size == 0 and alive.size == 0


def test_ema_follows_the_spec_recursion() -> None:
    # E1 = H1; E2 = 0.98 * 1 + 0.02 * 3 = 1.04; E3 = 0.98 * 1.04 + 0.02 * 0 = 1.0192
    assert tr.ema([1.0, 3.0, 0.0], beta=0.98) == pytest.approx([1.0, 1.04, 1.0192])
    # E2 = 0.5 * 1 + 0.5 * 3 = 2; E3 = 0.5 * 2 + 0.5 * 0 = 1
    assert tr.ema([1.0, 3.0, 0.0], beta=0.5) == pytest.approx([1.0, 2.0, 1.0])


def test_ema_of_a_row_without_one_uses_the_rows_own_beta() -> None:
    row = SampleTrace(task="mmvu", doc_id=0, entropy=[1.0, 3.0, 0.0], ema_beta=0.5)
    assert tr.ema_of(row) == pytest.approx([1.0, 2.0, 1.0])
    with pytest.raises(RunInputError, match="ema_beta"):  # no β recorded: nothing is assumed
        tr.ema_of(SampleTrace(task="mmvu", doc_id=0, entropy=[1.0, 3.0]))


def test_switch_alpha_is_plus_one_at_or_above_running_max() -> None:
    # The tracker's α at t = 1 is 0: there is no earlier EMA to compare with, and the decode loop
    # never optimises on the prefill token. From t = 2 on: +1 at or above the running max, else -1.
    assert tr.switch_alpha([1.0, 1.2, 1.1, 1.2, 1.3, 0.5]).tolist() == [0, 1, -1, 1, 1, -1]


def test_peak_index_ignores_nan_and_takes_first_max() -> None:
    assert tr.peak_index([1.0, np.nan, 3.0, 3.0, 2.0]) == 2
    assert tr.peak_index([]) is None


def _trace(ema: list[float], alpha: list[int], optimized: list[bool]) -> SampleTrace:
    return SampleTrace(task="mmvu", doc_id=0, entropy=list(ema), ema=ema, alpha=alpha, optimized=optimized)


def test_alpha_counts_before_peak_counts_only_optimisation_steps_before_the_ema_max() -> None:
    ema = [1.0, 1.3, 1.2, 1.4, 1.35, 1.5, 1.45, 1.3]  # first maximum at index 5
    alpha = [0, 1, -1, 1, -1, 1, -1, -1]
    optimized = [False, True, True, True, True, True, True, True]
    # before index 5: optimised indices 1 (+1), 2 (-1), 3 (+1), 4 (-1) -> 2 and 2;
    # the peak step itself (index 5, +1) and the steps after it are not counted.
    assert tr.alpha_counts_before_peak(_trace(ema, alpha, optimized)) == (2, 2)


def test_alpha_counts_are_zero_without_optimisation() -> None:
    assert tr.alpha_counts_before_peak(_trace([1.0, 2.0, 1.0], [], [])) == (0, 0)


def test_alpha_segments_hold_each_step_until_the_next() -> None:
    ema = [1.0, 1.1, 1.2, 1.1, 1.0, 0.9]
    trace = _trace(ema, [0, 1, 0, -1, 0, -1], [False, True, False, True, False, True])
    segments, derived = tr.alpha_segments(trace)
    assert not derived
    assert segments == [(1, 3, 1), (3, 5, -1), (5, 6, -1)]


def test_alpha_segments_are_derived_from_the_ema_for_baselines() -> None:
    segments, derived = tr.alpha_segments(_trace([1.0, 1.2, 1.1, 1.3, 1.0], [], []))
    assert derived
    # switch alpha per step: 0 +1 -1 +1 -1 (0 at t = 1, as in the tracker: no segment covers it)
    assert segments == [(1, 2, 1), (2, 3, -1), (3, 4, 1), (4, 5, -1)]
