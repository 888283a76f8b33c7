"""The one DSP implementation: moving average, gap interpolation, resampling, z-score, jumps."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_edge.runtime.dsp import (
    interpolate_gaps,
    moving_average,
    reject_jumps,
    resample_linear,
    zscore,
)


def naive_moving_average(x: np.ndarray, w: int) -> np.ndarray:
    """S(t) = mean of X(t-i), i = 0..w-1, over the samples that exist so far."""
    out = np.empty_like(x, dtype=float)
    for t in range(x.shape[0]):
        out[t] = x[max(0, t - w + 1) : t + 1].mean(axis=0)
    return out


# ------------------------------------------------------------------ moving average


@pytest.mark.parametrize("width", [1, 2, 5, 17, 64, 100])
def test_moving_average_matches_a_naive_loop(width: int) -> None:
    x = np.random.default_rng(width).normal(size=(64, 3))
    np.testing.assert_allclose(moving_average(x, width), naive_moving_average(x, width), atol=1e-12)


def test_moving_average_one_dimensional() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(moving_average(x, 2), [1.0, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(moving_average(x, 3), [1.0, 1.5, 2.0, 3.0, 4.0])


def test_moving_average_is_causal() -> None:
    x = np.random.default_rng(0).normal(size=(200, 2))
    before = moving_average(x, 7)
    changed = x.copy()
    changed[120:] += 100.0  # the future changes
    after = moving_average(changed, 7)
    np.testing.assert_array_equal(after[:120], before[:120])
    assert not np.allclose(after[120:], before[120:])


def test_moving_average_keeps_length_and_does_not_modify_its_input() -> None:
    x = np.arange(10.0)
    keep = x.copy()
    y = moving_average(x, 4)
    assert y.shape == x.shape
    np.testing.assert_array_equal(x, keep)
    assert moving_average(np.zeros((0, 3)), 5).shape == (0, 3)


def test_moving_average_of_a_constant_is_the_constant() -> None:
    np.testing.assert_allclose(moving_average(np.full((50, 2), 3.5), 9), 3.5)


def test_moving_average_refuses_a_zero_width() -> None:
    with pytest.raises(ValueError, match="moving-average width must be >= 1, got 0"):
        moving_average(np.zeros(4), 0)


# ------------------------------------------------------------------ gap interpolation


def test_interpolate_gaps_is_linear_between_neighbours() -> None:
    x = np.array([0.0, np.nan, np.nan, np.nan, 4.0, 5.0])
    filled, missing = interpolate_gaps(x)
    np.testing.assert_allclose(filled, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert missing.tolist() == [False, True, True, True, False, False]


def test_interpolate_gaps_uses_the_time_between_fixes() -> None:
    # P(t) = P1 + (t - t1) / (t2 - t1) * (P2 - P1) per channel.
    x = np.array([[10.0, -2.0], [np.nan, np.nan], [16.0, 4.0]])
    filled, _ = interpolate_gaps(x)
    np.testing.assert_allclose(filled[1], [13.0, 1.0])


def test_interpolate_gaps_holds_the_ends() -> None:
    filled, missing = interpolate_gaps(np.array([np.nan, np.nan, 2.0, 3.0, np.nan]))
    np.testing.assert_allclose(filled, [2.0, 2.0, 2.0, 3.0, 3.0])
    assert missing.sum() == 3


def test_interpolate_gaps_treats_a_row_with_any_nan_as_missing() -> None:
    x = np.array([[0.0, 0.0], [np.nan, 7.0], [2.0, 2.0]])
    filled, missing = interpolate_gaps(x)
    assert missing.tolist() == [False, True, False]
    np.testing.assert_allclose(filled[1], [1.0, 1.0])  # the whole row is rebuilt


def test_max_gap_leaves_long_runs_nan() -> None:
    x = np.arange(20.0)
    x[2:4] = np.nan  # 2 samples: filled
    x[8:14] = np.nan  # 6 samples: too long
    filled, missing = interpolate_gaps(x, max_gap=3)
    np.testing.assert_allclose(filled[2:4], [2.0, 3.0])
    assert np.isnan(filled[8:14]).all()
    np.testing.assert_allclose(filled[14:], np.arange(14.0, 20.0))
    assert missing.sum() == 8
    filled, _ = interpolate_gaps(x, max_gap=6)  # a run exactly max_gap long is filled
    np.testing.assert_allclose(filled, np.arange(20.0))


def test_interpolate_gaps_without_gaps_or_without_data() -> None:
    x = np.arange(5.0)
    filled, missing = interpolate_gaps(x)
    np.testing.assert_array_equal(filled, x)
    assert not missing.any()
    filled, missing = interpolate_gaps(np.full(4, np.nan))
    assert np.isnan(filled).all() and missing.all()


def test_interpolate_gaps_does_not_modify_its_input() -> None:
    x = np.array([1.0, np.nan, 3.0])
    interpolate_gaps(x)
    assert np.isnan(x[1])


# ------------------------------------------------------------------ resampling


def test_resample_to_the_same_length_is_the_identity() -> None:
    x = np.random.default_rng(1).normal(size=(37, 4))
    y = resample_linear(x, 37)
    np.testing.assert_array_equal(y, x)
    assert y is not x


@pytest.mark.parametrize(("n", "length"), [(100, 40), (250, 100), (40, 40), (10, 25)])
def test_resample_a_linear_signal_exactly(n: int, length: int) -> None:
    t = np.arange(n)
    x = np.column_stack([2.0 * t + 1.0, -0.5 * t])
    y = resample_linear(x, length)
    assert y.shape == (length, 2)
    pos = np.arange(length) * n / length  # X'(t) = X(t * L / T)
    pos = np.minimum(pos, n - 1)  # past the last sample it holds
    np.testing.assert_allclose(y[:, 0], 2.0 * pos + 1.0, atol=1e-9)
    np.testing.assert_allclose(y[:, 1], -0.5 * pos, atol=1e-9)


def test_resample_downsamples_a_100hz_sine_to_40hz() -> None:
    t = np.arange(600) / 100.0
    x = np.sin(2 * np.pi * 1.5 * t)
    y = resample_linear(x, 240)
    t40 = np.arange(240) / 40.0
    np.testing.assert_allclose(y, np.sin(2 * np.pi * 1.5 * t40), atol=0.01)


def test_resample_refuses_an_empty_length() -> None:
    with pytest.raises(ValueError, match="resample length must be >= 1, got 0"):
        resample_linear(np.zeros(10), 0)


# ------------------------------------------------------------------ z-score, jumps


def test_zscore_per_channel_and_guards_a_zero_std() -> None:
    x = np.array([[1.0, 10.0], [3.0, 10.0]])
    z = zscore(x, np.array([2.0, 10.0]), np.array([1.0, 0.0]))
    np.testing.assert_allclose(z, [[-1.0, 0.0], [1.0, 0.0]])
    assert np.isfinite(z).all()


def test_reject_jumps_removes_a_15_m_multipath_jump() -> None:
    t = np.arange(50) * 0.1
    xy = np.column_stack([4.0 * t, np.zeros(50)])  # running at 4 m/s, 10 Hz
    xy[20] += [0.0, 15.0]
    xy[21] += [10.6, 10.6]  # 15 m diagonally, two fixes long
    out = reject_jumps(xy, 0.1, 12.0)
    assert np.isnan(out[20]).all() and np.isnan(out[21]).all()
    keep = np.ones(50, bool)
    keep[[20, 21]] = False
    np.testing.assert_array_equal(out[keep], xy[keep])  # the real track is untouched


def test_reject_jumps_keeps_fast_but_possible_running_and_skips_gaps() -> None:
    t = np.arange(30) * 0.1
    xy = np.column_stack([9.0 * t, 2.0 * t])  # ~9.2 m/s sprint
    xy[10:15] = np.nan  # a dropout: the next fix is judged over the whole gap
    out = reject_jumps(xy, 0.1, 12.0)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(xy))
    assert np.isnan(xy[10:15]).all()  # the input is not modified
