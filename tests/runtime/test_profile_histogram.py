"""The HDR latency histogram against numpy on random data, and its merge/JSON/memory contracts."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_edge.errors import ConfigError
from fusion_edge.runtime.profile.histogram import LatencyHistogram

QS = [50.0, 90.0, 99.0, 99.9]


@pytest.mark.parametrize(
    "name,make",
    [
        ("lognormal", lambda r: r.lognormal(0.0, 1.5, 50_000)),
        ("exponential", lambda r: r.exponential(5.0, 50_000)),
        ("uniform-wide", lambda r: r.uniform(0.01, 5_000.0, 20_000)),
        (
            "bimodal",
            lambda r: np.concatenate([r.normal(2.0, 0.1, 30_000), r.normal(80.0, 5.0, 3_000)]),
        ),
    ],
)
def test_percentiles_match_numpy_within_three_digits(name: str, make) -> None:
    data = np.abs(make(np.random.default_rng(7)))
    h = LatencyHistogram(significant_digits=3)
    for v in data.tolist():
        h.record_ms(v)
    got = np.array(h.percentiles_ms(QS))
    ref = np.percentile(data, QS)
    # 3 significant digits: a bucket is 1/1024 of its value wide, so the middle is within 0.05%;
    # 0.2% leaves room for the interpolation between neighbouring order statistics.
    np.testing.assert_allclose(got, ref, rtol=2e-3, err_msg=name)
    assert h.max_ms == pytest.approx(data.max(), rel=1e-6)
    assert h.count == data.size
    assert h.mean_ms == pytest.approx(data.mean(), rel=1e-4)


def test_two_digit_histogram_is_coarser_but_within_one_percent() -> None:
    data = np.random.default_rng(3).lognormal(1.0, 1.0, 20_000)
    h = LatencyHistogram(significant_digits=2)
    h.record_many_ms(data)
    np.testing.assert_allclose(h.percentiles_ms(QS), np.percentile(data, QS), rtol=1e-2)


def test_small_samples_interpolate_like_numpy() -> None:
    h = LatencyHistogram()
    for v in (1.0, 2.0):
        h.record_ms(v)
    assert h.percentiles_ms([0, 50, 90, 100]) == pytest.approx([1.0, 1.5, 1.9, 2.0], rel=1e-3)
    assert LatencyHistogram().summary()["p99_ms"] == 0.0  # empty: zeros, not an error


def test_merge_equals_recording_everything_in_one() -> None:
    rng = np.random.default_rng(1)
    a_data, b_data = rng.exponential(3.0, 5_000), rng.exponential(30.0, 7_000)
    a, b, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    a.record_many_ms(a_data)
    b.record_many_ms(b_data)
    both.record_many_ms(np.concatenate([a_data, b_data]))
    a.merge(b)
    assert a.summary() == both.summary()
    with pytest.raises(ConfigError, match="same significant_digits"):
        a.merge(LatencyHistogram(significant_digits=2))


def test_memory_is_constant_and_overflow_is_counted() -> None:
    h = LatencyHistogram(highest_ms=1_000.0)
    size = h._counts.size
    h.record_many_ms(np.random.default_rng(0).exponential(10.0, 100_000))
    h.record_ms(5_000.0)  # above the highest trackable value
    assert h._counts.size == size
    assert len(h._pending) < 4096
    assert h.saturated == 1
    assert h.max_ms == pytest.approx(1_000.0)


def test_json_round_trip_keeps_every_figure() -> None:
    h = LatencyHistogram()
    h.record_many_ms(np.random.default_rng(5).gamma(2.0, 4.0, 3_000))
    again = LatencyHistogram.from_json(h.to_json())
    assert again.summary() == h.summary()
    mids, counts = again.buckets_ms()
    assert counts.sum() == 3_000 and np.all(np.diff(mids) > 0)


def test_bad_layouts_are_refused_with_what_to_do() -> None:
    with pytest.raises(ConfigError, match="give 1 to 4"):
        LatencyHistogram(significant_digits=6)
    with pytest.raises(ConfigError, match="outside 0-100"):
        LatencyHistogram().percentiles_ms([101.0])
