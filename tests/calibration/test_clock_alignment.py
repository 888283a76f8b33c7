"""Online clock mapping: lower envelope, drift, reboots, wraps, the registry, the CSV."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from fusion_edge.calibration.clock import (
    ClockAlignment,
    ClockConfig,
    ClockMapper,
    envelope_line,
    fit_clock_observations,
    read_clock_csv,
    utc_to_us,
)
from fusion_edge.calibration.simulate import SimulatedClock, random_clock, simulate_arrivals
from fusion_edge.errors import CalibrationError


def _feed(mapper: ClockMapper, d, h, boot: int = 0) -> None:
    for di, hi in zip(d.tolist(), h.tolist(), strict=True):
        mapper.observe(di, hi, boot)


def test_envelope_line_lies_below_every_point_and_ignores_outliers() -> None:
    rng = np.random.default_rng(0)
    x = np.arange(50, dtype=float)
    y = 3.0 + 0.5 * x + rng.exponential(0.2, 50)
    y[30:40] += 20.0  # a congested stretch
    a, b = envelope_line(x, y, max_slope=10.0)
    line = a + b * (x - x.mean())
    assert np.all(y - line >= -1e-9)
    assert np.min(y - line) == pytest.approx(0.0, abs=1e-9)  # touches the lowest minimum
    assert b == pytest.approx(0.5, abs=0.02)
    assert envelope_line(x, y, max_slope=0.1)[1] == pytest.approx(0.1)  # bounded


def test_drift_and_offset_are_recovered_from_positive_delays() -> None:
    rng = np.random.default_rng(1)
    clock = SimulatedClock(offset_ns=5_000_000_000, drift_ppm=42.0)
    d, h, true = simulate_arrivals(clock, rng, duration_s=60.0)
    mapper = ClockMapper("pod-1")
    _feed(mapper, d, h, boot=3)
    est = mapper.estimate()
    assert est.drift_ppm == pytest.approx(42.0, abs=12.0)
    # Closed windows only: the 60th is still open.
    assert est.boot_id == 3 and est.observations == d.size and est.windows == 59
    errors = np.array([mapper.to_host_ns(int(x)) for x in d[-200:]]) - true[-200:]
    # The envelope sits on the smallest delay (5 ms) to within a millisecond.
    assert np.all(np.abs(errors - 5e6) < 1e6)
    assert isinstance(mapper.to_host_ns(int(d[-1])), int)


def test_envelope_beats_least_squares_when_delays_have_a_long_tail() -> None:
    rng = np.random.default_rng(2)
    clock = SimulatedClock(offset_ns=0, drift_ppm=-30.0)
    d, h, true = simulate_arrivals(clock, rng, duration_s=60.0)
    # Retransmissions: 40% of the packets wait for later connection events (mean 30 ms), more
    # of them as the session goes on.
    p_late = 0.2 + 0.4 * d / d.max()
    late = rng.random(d.size) < p_late
    h = h + np.where(late, rng.exponential(30e6, d.size), 0).astype(np.int64)
    mapper = ClockMapper("pod")
    _feed(mapper, d, h)
    env_err = mapper.to_host_ns(int(d[-1])) - true[-1]
    slope, intercept = np.polyfit(d * 1000.0, h - d * 1000.0, 1)
    ls_err = d[-1] * 1000.0 + intercept + slope * d[-1] * 1000.0 - true[-1]
    assert abs(env_err - 5e6) < 1e6
    assert abs(ls_err - 5e6) > 5e6  # plain least squares follows the congestion


def test_memory_is_bounded() -> None:
    rng = np.random.default_rng(3)
    d, h, _ = simulate_arrivals(random_clock(rng), rng, duration_s=100.0)
    mapper = ClockMapper("pod", ClockConfig(window_s=1.0, max_windows=20))
    _feed(mapper, d, h)
    est = mapper.estimate()
    assert est.windows == 20 and est.span_s == pytest.approx(19.0, abs=1.0)


def test_reboot_starts_a_new_fit_and_keeps_the_old_one() -> None:
    rng = np.random.default_rng(4)
    first = SimulatedClock(offset_ns=1_000_000_000, drift_ppm=10.0)
    d1, h1, t1 = simulate_arrivals(first, rng, duration_s=20.0)
    second = SimulatedClock(offset_ns=int(h1[-1]) + 2_000_000_000, drift_ppm=10.0)
    d2, h2, t2 = simulate_arrivals(second, rng, duration_s=20.0)
    mapper = ClockMapper("pod")
    _feed(mapper, d1, h1, boot=7)
    _feed(mapper, d2, h2, boot=8)  # device time restarts at 0: no "went backwards" error
    assert mapper.boot_id == 8
    assert abs(mapper.to_host_ns(int(d2[-1])) - t2[-1] - 5e6) < 1.5e6
    assert abs(mapper.to_host_ns(int(d1[-1]), boot_id=7) - t1[-1] - 5e6) < 1.5e6
    with pytest.raises(CalibrationError, match="boot 5 is not known"):
        mapper.to_host_ns(0, boot_id=5)


def test_clock_going_back_without_a_new_boot_is_refused() -> None:
    mapper = ClockMapper("pod-9")
    mapper.observe(10_000_000, 50_000_000_000, 1)
    mapper.observe(10_500_000, 50_500_000_000, 1)  # reordering within a second is fine
    mapper.observe(10_200_000, 50_210_000_000, 1)
    with pytest.raises(
        CalibrationError, match=r"the clock of pod-9 went back by 9.500 s within boot 1"
    ):
        mapper.observe(1_000_000, 51_000_000_000, 1)


def test_32_bit_timestamps_are_unwrapped() -> None:
    rng = np.random.default_rng(5)
    clock = SimulatedClock(offset_ns=0, drift_ppm=20.0)
    start = (1 << 32) - 10_000_000  # wraps 10 s in
    d, h, true = simulate_arrivals(clock, rng, duration_s=60.0, start_us=start)
    mapper = ClockMapper("pod", ClockConfig(wrap_bits=32))
    _feed(mapper, d % (1 << 32), h)
    assert mapper.estimate().drift_ppm == pytest.approx(20.0, abs=12.0)
    got = mapper.to_host_ns(int(d[-1] % (1 << 32)))
    assert abs(got - true[-1] - 5e6) < 1.5e6


def test_no_observation_yet() -> None:
    with pytest.raises(CalibrationError, match="no packet from pod-2 has been seen yet"):
        ClockMapper("pod-2").to_host_ns(0)
    with pytest.raises(CalibrationError, match="no packet from x has been seen yet"):
        ClockAlignment().to_host_ns("x", 0)


def test_registry_aligns_pods_and_a_gnss_receiver_within_2_ms() -> None:
    rng = np.random.default_rng(6)
    alignment = ClockAlignment()
    truths = {}
    for k in range(6):
        clock = random_clock(rng)
        d, h, true = simulate_arrivals(clock, rng, duration_s=60.0)
        for di, hi in zip(d.tolist(), h.tolist(), strict=True):
            alignment.observe(f"pod-{k}", di, hi, 1)
        truths[f"pod-{k}"] = (d, true)
    # A receiver: UTC fix times at 10 Hz, sentences arriving 20-60 ms later on the host clock.
    t0 = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
    fixes = [t0 + timedelta(milliseconds=100 * i) for i in range(600)]
    host0 = 7_000_000_000
    for i, fix in enumerate(fixes):
        alignment.observe_utc(
            "gnss", fix, host0 + i * 100_000_000 + 20_000_000 + int(rng.uniform(0, 4e7))
        )
    assert set(alignment.devices) == {"gnss"} | {f"pod-{k}" for k in range(6)}
    errs = [alignment.to_host_ns(name, int(d[-1])) - true[-1] for name, (d, true) in truths.items()]
    assert max(errs) - min(errs) < 2e6
    assert alignment.alignment_error_ns() < 3e6
    gnss = alignment.to_host_ns("gnss", utc_to_us(fixes[-1]))
    assert abs(gnss - (host0 + 599 * 100_000_000 + 20_000_000)) < 2e6


def test_naive_gnss_time_is_refused() -> None:
    with pytest.raises(CalibrationError, match="has no time zone"):
        utc_to_us(datetime(2026, 1, 1))


def test_clock_csv(tmp_path: Path) -> None:
    path = tmp_path / "clock.csv"
    rng = np.random.default_rng(7)
    clock = SimulatedClock(offset_ns=3_000_000_000, drift_ppm=-25.0)
    d, h, _ = simulate_arrivals(clock, rng, duration_s=60.0)
    lines = ["device,boot_id,device_time_us,host_time_ns"] + [
        f"pod-1,4,{a},{b}" for a, b in zip(d.tolist(), h.tolist(), strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    obs = read_clock_csv(path)
    assert len(obs) == d.size and obs[0].boot_id == 4
    est = fit_clock_observations(obs).estimates()[0]
    assert est.drift_ppm == pytest.approx(-25.0, abs=12.0)
    assert est.offset_ns == pytest.approx(3_005_000_000, abs=1_500_000)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("device,boot_id,device_time_us\n", "lacks column(s) host_time_ns"),
        ("device,boot_id,device_time_us,host_time_ns\npod,1,2.5,3\n", "line 2 is not device"),
        ("device,boot_id,device_time_us,host_time_ns\n", "no observations"),
    ],
)
def test_clock_csv_problems(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.csv"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_clock_csv(path)


def _observations(device_scale: float, host_scale: float, swap: bool = False) -> list:
    from fusion_edge.calibration.clock import ClockObservation

    out = []
    for k in range(600):  # a minute at 10 Hz; the device runs 40 ppm slow
        t_us = 1_000_000 + k * 100_000
        host_ns = 5_000_000_000 + int(t_us * 1000 * (1 + 40e-6)) + 2_000_000
        dev, host = int(t_us * device_scale), int(host_ns * host_scale)
        if swap:
            dev, host = host, dev
        out.append(ClockObservation("pod7", 1, dev, host))
    return out


@pytest.mark.parametrize(("device_scale", "host_scale", "swap", "says"), [
    (1.0, 1e-3, False, "host_time_ns looks like microseconds (multiply it by 1000)"),
    (1e-3, 1.0, False, "device_time_us looks like milliseconds (multiply it by 1000)"),
    (1.0, 1.0, True, "the two time columns look swapped"),
])
def test_clock_columns_in_the_wrong_units_are_refused(
    device_scale: float, host_scale: float, swap: bool, says: str
) -> None:
    """Host times in microseconds, device times in milliseconds or swapped columns used to fit,
    to a drift pinned at +-200 ppm and an alignment error of hours, and exit 0."""
    import re

    from fusion_edge.calibration.clock import fit_clock_observations

    with pytest.raises(CalibrationError, match="clk.csv: device 'pod7' \\(boot 1\\): .*" + re.escape(says)):
        fit_clock_observations(_observations(device_scale, host_scale, swap), where="clk.csv")
    fitted = fit_clock_observations(_observations(1.0, 1.0)).estimates()[0]
    assert fitted.drift_ppm == pytest.approx(40.0, abs=1.0)
