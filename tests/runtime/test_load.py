"""Load metrics on hand-computed tracks: distance, HSR, sprints, accelerations, PlayerLoad."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fusion_edge.runtime.load import (
    STANDARD_GRAVITY,
    LoadMetrics,
    LoadThresholds,
    PlayerLoadTracker,
)

DT_NS = 100_000_000  # 10 Hz


def feed_speeds(tracker: PlayerLoadTracker, speeds: list[float], t0_ns: int = 0) -> int:
    """Feed a straight run along x whose fixes have these speeds; positions follow the
    trapezoid rule so each segment's length is 0.1 s * the mean of its end speeds."""
    x = 0.0
    t = t0_ns
    prev = None
    for v in speeds:
        if prev is not None:
            x += 0.5 * (prev + v) * DT_NS / 1e9
            t += DT_NS
        tracker.update_gnss(t, x, 0.0, v)
        prev = v
    return t


def test_straight_100m_at_6ms_is_all_high_speed_running() -> None:
    tracker = PlayerLoadTracker()
    for k in range(168):  # 6 m/s * 0.1 s = 0.6 m per fix; the last fix is clipped at 100 m
        tracker.update_gnss(k * DT_NS, min(0.6 * k, 100.0), 0.0, 6.0)
    m = tracker.snapshot()
    assert m.distance_m == pytest.approx(100.0, abs=1e-9)
    assert m.hsr_m == pytest.approx(100.0, abs=1e-9)  # 21.6 km/h > 19.8 km/h
    assert m.sprints == 0 and m.sprint_m == 0.0  # 21.6 km/h < 25.2 km/h
    assert m.accelerations == m.decelerations == 0
    assert m.top_speed_ms == pytest.approx(6.0)
    assert m.gnss_time_s == pytest.approx(16.7)


def test_jogging_is_distance_but_not_hsr() -> None:
    tracker = PlayerLoadTracker()
    feed_speeds(tracker, [5.0] * 21)  # 18 km/h for 2 s
    m = tracker.snapshot()
    assert m.distance_m == pytest.approx(10.0)
    assert m.hsr_m == 0.0


def test_sprint_counts_only_when_held_for_the_minimum_duration() -> None:
    tracker = PlayerLoadTracker()
    # 6 -> 8 m/s: the first 8 m/s segment averages 7.0 m/s, not above 25.2 km/h, so 10 fixes at
    # 8 m/s give 9 sprint segments (0.9 s: too short), 11 fixes give 10 (1.0 s: a sprint).
    speeds = [6.0] * 5 + [8.0] * 10 + [6.0] * 5 + [8.0] * 11 + [6.0] * 5
    feed_speeds(tracker, speeds)
    m = tracker.snapshot()
    assert m.sprints == 1
    assert m.sprint_m == pytest.approx(10 * 0.8)  # only the counted sprint's distance
    assert m.top_speed_ms == pytest.approx(8.0)


def test_sprint_minimum_duration_is_configurable() -> None:
    tracker = PlayerLoadTracker(LoadThresholds(sprint_min_duration_s=0.5))
    feed_speeds(tracker, [6.0] * 5 + [8.0] * 10 + [6.0] * 5 + [8.0] * 11 + [6.0] * 5)
    m = tracker.snapshot()
    assert m.sprints == 2
    assert m.sprint_m == pytest.approx(19 * 0.8)


def ramp(v0: float, rate: float, duration_s: float) -> list[float]:
    n = int(round(duration_s * 10))
    return [v0 + rate * 0.1 * j for j in range(1, n + 1)]


def test_acceleration_effort_needs_half_a_second_above_threshold() -> None:
    tracker = PlayerLoadTracker()
    # A 3 m/s^2 ramp lasting 0.8 s: the 0.5 s difference reads 3.0 on 4 fixes (0.4 s): no count.
    speeds = [2.0] * 11 + ramp(2.0, 3.0, 0.8)
    speeds += [speeds[-1]] * 10
    feed_speeds(tracker, speeds)
    assert tracker.snapshot().accelerations == 0
    # A 0.9 s ramp: above 2.5 on 5 fixes = 0.5 s: one acceleration, not 'very high' (3 < 3.5).
    tracker = PlayerLoadTracker()
    speeds = [2.0] * 11 + ramp(2.0, 3.0, 0.9)
    speeds += [speeds[-1]] * 10
    feed_speeds(tracker, speeds)
    m = tracker.snapshot()
    assert (m.accelerations, m.accelerations_very_high, m.decelerations) == (1, 0, 0)


def test_hard_deceleration_counts_as_very_high() -> None:
    tracker = PlayerLoadTracker()
    speeds = [7.0] * 11 + ramp(7.0, -4.0, 1.5)  # 7 -> 1 m/s at -4 m/s^2
    speeds += [speeds[-1]] * 10
    feed_speeds(tracker, speeds)
    m = tracker.snapshot()
    assert (m.decelerations, m.decelerations_very_high, m.accelerations) == (1, 1, 0)


def test_two_separate_accelerations_count_twice() -> None:
    tracker = PlayerLoadTracker()
    speeds = [1.0] * 11 + ramp(1.0, 3.0, 1.0)
    speeds += [speeds[-1]] * 10
    speeds += ramp(speeds[-1], -3.0, 1.0) + [1.0] * 10 + ramp(1.0, 3.0, 1.0)
    feed_speeds(tracker, speeds)
    m = tracker.snapshot()
    assert (m.accelerations, m.decelerations) == (2, 1)


def test_gap_joins_nothing_and_ends_efforts() -> None:
    tracker = PlayerLoadTracker()
    tracker.update_gnss(0, 0.0, 0.0, 8.0)
    tracker.update_gnss(2_000_000_000, 20.0, 0.0, 8.0)  # 2 s later: beyond max_gnss_gap_s
    m = tracker.snapshot()
    assert m.distance_m == 0.0 and m.gnss_time_s == 0.0
    tracker.update_gnss(2_100_000_000, 20.0, float("nan"), 8.0)  # no position: breaks the track
    tracker.update_gnss(2_200_000_000, 20.8, 0.0, 8.0)
    assert tracker.snapshot().distance_m == 0.0


def test_missing_speed_is_derived_from_positions() -> None:
    tracker = PlayerLoadTracker()
    tracker.update_gnss(0, 0.0, 0.0, 6.0)
    tracker.update_gnss(DT_NS, 0.0, 0.6, float("nan"))
    m = tracker.snapshot()
    assert m.speed_ms == pytest.approx(6.0)
    assert m.hsr_m == pytest.approx(0.6)


def test_fixes_out_of_order_are_rejected() -> None:
    tracker = PlayerLoadTracker()
    tracker.update_gnss(DT_NS, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="time order"):
        tracker.update_gnss(DT_NS, 0.1, 0.0, 1.0)


def test_acceleration_history_stays_bounded() -> None:
    tracker = PlayerLoadTracker()
    feed_speeds(tracker, [3.0 + math.sin(k / 7) for k in range(5000)])
    assert len(tracker._speeds) <= 7  # constant work: 0.5 s of 10 Hz fixes plus one


def test_player_load_is_catapult_formula_in_g() -> None:
    g = STANDARD_GRAVITY
    # Alternate between 1 g and a 1 g step on x: every difference has magnitude 1 g.
    acc = np.array([[0.0, 0.0, g], [g, 0.0, g]] * 50)
    whole = PlayerLoadTracker()
    whole.update_imu(0, acc)
    assert whole.snapshot().player_load == pytest.approx(99 / 100)
    chunked = PlayerLoadTracker()  # same samples in batches of 7: differenced across batches
    for i in range(0, 100, 7):
        chunked.update_imu(i * 10_000_000, acc[i:i + 7])
    assert chunked.snapshot().player_load == pytest.approx(99 / 100)
    # 3-4-5 triangle: sqrt(3^2 + 4^2) m/s^2 = 5 m/s^2 per step.
    tri = PlayerLoadTracker()
    tri.update_imu(0, np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]]))
    assert tri.snapshot().player_load == pytest.approx(5.0 / g / 100)


def test_player_load_not_differenced_across_gaps_or_nan() -> None:
    g = STANDARD_GRAVITY
    t = PlayerLoadTracker()
    t.update_imu(0, np.array([[0.0, 0.0, g]]))
    t.update_imu(2_000_000_000, np.array([[g, 0.0, g]]))  # 2 s later: link dropped
    assert t.snapshot().player_load == 0.0
    t.update_imu(2_010_000_000, np.array([[np.nan, 0.0, g], [0.0, 0.0, g], [g, 0.0, g]]))
    assert t.snapshot().player_load == pytest.approx(1 / 100)
    with pytest.raises(ValueError, match=r"\[n, 3\]"):
        t.update_imu(0, np.zeros((4, 6)))


def test_metrics_round_trip_json() -> None:
    tracker = PlayerLoadTracker()
    feed_speeds(tracker, [6.0] * 20)
    m = tracker.snapshot()
    again = LoadMetrics.from_dict(json.loads(m.to_json()))
    assert again == m


def test_thresholds_are_validated() -> None:
    with pytest.raises(ValueError, match="positive"):
        LoadThresholds(sprint_min_duration_s=0.0)
    with pytest.raises(ValueError, match="subset"):
        LoadThresholds(sprint_speed_ms=5.0)
