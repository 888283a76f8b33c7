"""Streaming DSP against the batch DSP: same numbers, whatever the chunking; bounded state."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_edge.runtime.dsp import interpolate_gaps, moving_average, resample_linear
from fusion_edge.runtime.streaming import (
    EpochAligner,
    GapFiller,
    GnssStreamConfig,
    GnssStreamPipeline,
    ImuStreamConfig,
    ImuStreamPipeline,
    StreamingMovingAverage,
    StreamingResampler,
)
from fusion_edge.runtime.team_context import clean_gnss_track

TOL = {"rtol": 1e-9, "atol": 1e-9}


def _chunks(n: int, rng: np.random.Generator, most: int = 37):
    """Random chunk boundaries (including empty chunks and single samples)."""
    i = 0
    while i < n:
        k = int(rng.integers(0, most + 1))
        yield i, min(n, i + k)
        i += k


def _with_gaps(x: np.ndarray, rng: np.random.Generator, lengths: tuple[int, ...]) -> np.ndarray:
    x = x.copy()
    n = x.shape[0]
    for length in lengths:
        s = int(rng.integers(0, n - length))
        x[s : s + length] = np.nan
    return x


def _imu_batch(imu: np.ndarray, cfg: ImuStreamConfig) -> np.ndarray:
    """The batch preprocessing of toolkit.scenario_dataset, through its own function."""
    from fusion_edge.toolkit.scenario_dataset import WindowingConfig, _preprocess_imu

    wcfg = WindowingConfig(
        imu_rate_hz=cfg.model_rate_hz,
        moving_average=cfg.moving_average,
        imu_max_gap_s=cfg.max_gap_s,
    )
    return _preprocess_imu(imu, cfg.source_rate_hz, wcfg)


@pytest.mark.parametrize("width", [1, 3, 5, 12])
def test_moving_average_matches_batch_in_random_chunks(width: int) -> None:
    rng = np.random.default_rng(width)
    x = rng.normal(5.0, 3.0, size=(1000, 3))
    ma = StreamingMovingAverage(width, 3)
    out = [ma.push(x[s:e]) for s, e in _chunks(len(x), rng)]
    np.testing.assert_allclose(np.concatenate(out), moving_average(x, width), **TOL)
    assert ma.buffered <= width - 1


def test_moving_average_warm_up_and_reset() -> None:
    ma = StreamingMovingAverage(4, 1)
    np.testing.assert_allclose(ma.push(np.array([[4.0], [8.0]]))[:, 0], [4.0, 6.0])
    np.testing.assert_allclose(ma.push(np.array([[0.0], [4.0], [12.0]]))[:, 0], [4.0, 4.0, 6.0])
    ma.reset()
    np.testing.assert_allclose(ma.push(np.array([[10.0]]))[:, 0], [10.0])


def test_moving_average_nan_spoils_only_its_windows() -> None:
    x = np.arange(10, dtype=float)[:, None]
    x[4] = np.nan
    y = StreamingMovingAverage(3, 1).push(x)[:, 0]
    assert np.isnan(y[4:7]).all()
    assert np.isfinite(y[:4]).all() and np.isfinite(y[7:]).all()
    assert y[7] == pytest.approx((5 + 6 + 7) / 3)


@pytest.mark.parametrize(
    ("src", "dst", "n"),
    [
        (100.0, 40.0, 1000),
        (100.0, 25.0, 800),
        (40.0, 100.0, 400),
        (50.0, 50.0, 300),
        (100.0, 30.0, 900),
    ],
)
def test_resampler_matches_batch_in_random_chunks(src: float, dst: float, n: int) -> None:
    rng = np.random.default_rng(int(src + dst))
    x = rng.normal(size=(n, 2))
    times = np.int64(10**12) + np.round(np.arange(n) * 1e9 / src).astype(np.int64)
    rs = StreamingResampler(src, dst, 2)
    parts = [rs.push(x[s:e], times[s:e]) for s, e in _chunks(n, rng)]
    parts.append(rs.flush())
    y = np.concatenate([p[0] for p in parts])
    t = np.concatenate([p[1] for p in parts])
    length = int(round(n * dst / src))
    np.testing.assert_allclose(y, resample_linear(x, length), **TOL)
    expected_t = 10**12 + np.arange(length) * 1e9 / dst
    np.testing.assert_allclose(t, expected_t, rtol=0, atol=1)
    assert rs.buffered <= 1


def test_resampler_emits_as_soon_as_neighbours_are_known() -> None:
    rs = StreamingResampler(100.0, 40.0, 1)
    y, _ = rs.push(np.arange(3, dtype=float)[:, None])  # positions 0 and 2.5 need inputs 0..1, 2..3
    assert y[:, 0].tolist() == [0.0]
    y, _ = rs.push(np.array([[3.0]]))
    assert y[:, 0].tolist() == [2.5]


@pytest.mark.parametrize("max_gap", [0, 1, 5, 50])
def test_gap_filler_matches_interpolate_gaps(max_gap: int) -> None:
    rng = np.random.default_rng(100 + max_gap)
    x = np.cumsum(rng.normal(size=(2000, 3)), axis=0)
    x = _with_gaps(x, rng, (1, 2, 3, 5, 8, 49, 50, 51, 120))
    x[:4] = np.nan  # a leading gap
    x[-3:] = np.nan  # a trailing gap
    x[700, 1] = np.nan  # one channel lost: the whole row is missing
    gf = GapFiller(max_gap, 3)
    parts = [gf.push(x[s:e]) for s, e in _chunks(len(x), rng)]
    assert gf.buffered <= max_gap
    parts.append(gf.flush())
    got = np.concatenate([p[0] for p in parts])
    missing = np.concatenate([p[2] for p in parts])
    want, want_missing = interpolate_gaps(x, max_gap=max_gap)
    np.testing.assert_allclose(got, want, equal_nan=True, **TOL)
    np.testing.assert_array_equal(missing, want_missing)


def test_gap_filler_delay_is_at_most_max_gap() -> None:
    gf = GapFiller(3, 1)
    assert gf.push(np.array([[0.0]]))[0].shape[0] == 1
    assert gf.push(np.full((3, 1), np.nan))[0].shape[0] == 0  # held: the gap may still close
    rows, _, missing = gf.push(np.array([[4.0]]))
    assert rows[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0] and missing.tolist() == [True] * 3 + [False]
    gf.push(np.full((3, 1), np.nan))
    rows, _, _ = gf.push(np.full((1, 1), np.nan))  # the 4th missing sample: a long gap, let go
    assert rows.shape[0] == 4 and np.isnan(rows).all()
    rows, _, _ = gf.push(np.full((2, 1), np.nan))  # the rest of a long gap passes straight through
    assert rows.shape[0] == 2


def test_epoch_aligner_inserts_missed_epochs_and_drops_duplicates() -> None:
    al = EpochAligner(10.0, 1)
    t = np.array([0, 100, 400, 400, 510], dtype=np.int64) * 1_000_000
    rows, times = al.push(np.arange(5, dtype=float)[:, None], t)
    assert times.tolist() == [0, 100_000_000, 200_000_000, 300_000_000, 400_000_000, 510_000_000]
    assert np.isnan(rows[2:4, 0]).all() and rows[4, 0] == 2.0 and rows[5, 0] == 4.0
    assert al.duplicates == 1 and al.inserted == 2


def _imu_signal(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / 100.0
    base = np.column_stack(
        [np.sin(2 * np.pi * f * t) * (i + 1) for i, f in enumerate(np.linspace(0.3, 7, 9))]
    )
    return (base + rng.normal(0, 0.2, size=(n, 9))).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_imu_pipeline_matches_batch_preprocessing(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 6000  # 60 s at 100 Hz
    imu = _imu_signal(rng, n)
    imu = _with_gaps(imu, rng, (1, 3, 20, 50, 51, 80, 300))
    if seed == 1:
        imu[:70] = np.nan  # starts with a long gap
    cfg = ImuStreamConfig()
    times = 5 * 10**9 + np.arange(n, dtype=np.int64) * 10_000_000
    pipe = ImuStreamPipeline(cfg)
    parts = []
    for s, e in _chunks(n, rng, most=60):
        parts.append(pipe.push(imu[s:e], times[s:e]))
        assert pipe.buffered <= cfg.max_gap_samples + 2 * cfg.moving_average + 1
    parts.append(pipe.flush())
    got = np.concatenate([p[0] for p in parts])
    got_t = np.concatenate([p[1] for p in parts])
    want = _imu_batch(imu, cfg)
    assert got.shape == want.shape
    assert np.isnan(want).any()  # the long gaps are there
    np.testing.assert_allclose(got, want, equal_nan=True, **TOL)
    np.testing.assert_array_equal(got_t, 5 * 10**9 + np.arange(want.shape[0]) * 25_000_000)


def test_imu_state_stays_bounded_over_a_long_stream() -> None:
    """Constant work per sample: nothing inside grows with the length of the stream."""
    rng = np.random.default_rng(5)
    pipe = ImuStreamPipeline()
    chunk = _imu_signal(rng, 1200)
    most = 0
    for k in range(100):  # 120,000 samples, 20 minutes
        c = chunk.copy()
        if k % 7 == 3:
            c[100:400] = np.nan  # long gaps now and then
        y, _ = pipe.push(c)
        most = max(most, pipe.buffered)
        assert y.shape[0] in (479, 480, 481)
    assert most <= 50 + 11
    assert pipe._resample.samples_out == pytest.approx(120_000 * 0.4, abs=1)


def _gnss_fixes(rng: np.random.Generator, k: int) -> np.ndarray:
    t = np.arange(k) / 10.0
    x = 20 * np.sin(t / 7) + rng.normal(0, 0.3, k)
    y = 10 * np.cos(t / 5) + rng.normal(0, 0.3, k)
    speed = np.abs(rng.normal(3, 1, k))
    course = rng.uniform(-np.pi, np.pi, k)
    return np.column_stack([x, y, speed, course]).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
def test_gnss_pipeline_matches_clean_gnss_track(seed: int) -> None:
    rng = np.random.default_rng(seed + 10)
    k = 3000
    fixes = _gnss_fixes(rng, k)
    for i in rng.choice(k, 25, replace=False):
        fixes[i, :2] += rng.choice([-1, 1], 2) * 40  # multipath jumps
    fixes = _with_gaps(fixes, rng, (1, 4, 10, 30, 31, 45, 200))
    fixes[-12:] = np.nan
    cfg = GnssStreamConfig()
    pipe = GnssStreamPipeline(cfg, align_epochs=False)
    parts = []
    for s, e in _chunks(k, rng, most=15):
        parts.append(pipe.push(fixes[s:e]))
        assert pipe.buffered <= 30 + cfg.moving_average
    parts.append(pipe.flush())
    got = np.concatenate([p[0] for p in parts])
    want = clean_gnss_track(fixes, 10.0)
    assert pipe.rejected > 0 and np.isnan(want).any()
    np.testing.assert_allclose(got, want, equal_nan=True, **TOL)


def test_gnss_pipeline_aligns_missed_epochs_from_time() -> None:
    rng = np.random.default_rng(3)
    fixes = _gnss_fixes(rng, 600)
    times = np.arange(600, dtype=np.int64) * 100_000_000 + 7
    lost = np.zeros(600, bool)
    lost[[50, 51, 52, 300, 301]] = True
    lost[400:460] = True
    want_in = fixes.copy()
    want_in[lost] = np.nan
    pipe = GnssStreamPipeline(GnssStreamConfig())
    a = pipe.push(fixes[~lost][:250], times[~lost][:250])
    b = pipe.push(fixes[~lost][250:], times[~lost][250:])
    c = pipe.flush()
    got = np.concatenate([a[0], b[0], c[0]])
    got_t = np.concatenate([a[1], b[1], c[1]])
    np.testing.assert_array_equal(got_t, times)
    np.testing.assert_allclose(got, clean_gnss_track(want_in, 10.0), equal_nan=True, **TOL)


def test_gnss_pipeline_needs_times_to_align() -> None:
    with pytest.raises(ValueError, match="times_ns"):
        GnssStreamPipeline().push(np.zeros((2, 4)))


def test_wrong_shape_is_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match=r"\[n, 3\]"):
        StreamingMovingAverage(3, 3).push(np.zeros((4, 2)))


def test_config_from_preprocessing_block() -> None:
    from fusion_edge.toolkit.scenario_dataset import WindowingConfig

    block = WindowingConfig().preprocessing_json(100.0, 10.0)
    imu = ImuStreamConfig.from_preprocessing(block["imu"])
    gnss = GnssStreamConfig.from_preprocessing(block["position"])
    assert imu == ImuStreamConfig() and imu.max_gap_samples == 50
    assert gnss.rate_hz == 10.0 and gnss.max_gap_s == 3.0 and gnss.moving_average == 3
