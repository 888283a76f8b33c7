"""Per-player external and internal load, computed incrementally on the box.

From the cleaned GNSS track (x, y in metres, speed in m/s, about 10 Hz) and the IMU acceleration
(m/s^2, body frame, any rate), :class:`PlayerLoadTracker` keeps running totals of the metrics a
coach reads after a session: total distance, high-speed running, sprints, accelerations and
decelerations, and PlayerLoad. Each update does a constant amount of work per sample, so the box
can call it on every fix and every BLE notification. Definitions (docs/feedback.md):

* a GNSS **segment** joins two consecutive fixes; its distance is the straight line between them
  and its speed the mean of the two fixes' speeds. Segments longer than ``max_gnss_gap_s`` (a
  signal loss the cleaner could not bridge) count for nothing and end every effort.
* **HSR** distance sums segments faster than 19.8 km/h (5.5 m/s).
* a **sprint** is a run of consecutive segments faster than 25.2 km/h (7.0 m/s) lasting at least
  ``sprint_min_duration_s`` (1 s); sprint distance is the distance of counted sprints only.
* **acceleration** at a fix is the speed change over the last 0.5 s, ``(v_i - v_j) / (t_i - t_j)``
  with ``t_i - t_j`` the first spacing >= 0.5 s. That equals the mean of the per-fix derivative
  over 0.5 s (the sum telescopes), so it is the derivative smoothed by a 0.5 s moving average.
  An acceleration (deceleration) effort is a run of fixes above +2.5 (below -2.5) m/s^2 lasting at
  least ``accel_min_duration_s`` (0.5 s); 'very high' efforts use 3.5 m/s^2 the same way.
* **PlayerLoad** ``= sum_i sqrt((ax_i-ax_{i-1})^2 + (ay_i-ay_{i-1})^2 + (az_i-az_{i-1})^2) / 100``
  with accelerations in g (m/s^2 / 9.80665), as Catapult defines it for its 100 Hz vests.

Durations are measured on the integer nanosecond clock: a run's duration is the sum of the
intervals that end on a sample above the threshold (so 1 s at 10 Hz is 10 intervals).
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "HSR_SPEED_MS",
    "SPRINT_SPEED_MS",
    "STANDARD_GRAVITY",
    "LoadThresholds",
    "LoadMetrics",
    "PlayerLoadTracker",
]

HSR_SPEED_MS = 19.8 / 3.6  # 5.5 m/s
SPRINT_SPEED_MS = 25.2 / 3.6  # 7.0 m/s
STANDARD_GRAVITY = 9.80665  # m/s^2 per g: PlayerLoad is defined on accelerations in g
_NS = 1_000_000_000


@dataclass(frozen=True)
class LoadThresholds:
    """Thresholds, filters and minimum durations behind the load metrics.

    Attributes:
        hsr_speed_ms: High-speed running above this speed (m/s; 19.8 km/h).
        sprint_speed_ms: Sprinting above this speed (m/s; 25.2 km/h).
        sprint_min_duration_s: A sprint counts when held at least this long.
        accel_ms2: Acceleration / deceleration effort threshold (m/s^2).
        accel_very_high_ms2: 'Very high' acceleration / deceleration threshold (m/s^2).
        accel_window_s: Span of the speed difference that gives the smoothed acceleration.
        accel_min_duration_s: An acceleration effort counts when held at least this long.
        max_gnss_gap_s: Fixes further apart than this are not joined (no distance, efforts end).
        max_imu_gap_s: IMU batches further apart than this are not differenced for PlayerLoad.
    """

    hsr_speed_ms: float = HSR_SPEED_MS
    sprint_speed_ms: float = SPRINT_SPEED_MS
    sprint_min_duration_s: float = 1.0
    accel_ms2: float = 2.5
    accel_very_high_ms2: float = 3.5
    accel_window_s: float = 0.5
    accel_min_duration_s: float = 0.5
    max_gnss_gap_s: float = 1.0
    max_imu_gap_s: float = 0.5

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(
                    f"LoadThresholds.{name} must be a positive number, got {value!r}; "
                    "leave it at its default unless your club uses another convention"
                )
        if self.sprint_speed_ms < self.hsr_speed_ms:
            raise ValueError(
                f"sprint speed {self.sprint_speed_ms} m/s is below the HSR speed "
                f"{self.hsr_speed_ms} m/s: sprinting is a subset of high-speed running"
            )
        if self.accel_very_high_ms2 < self.accel_ms2:
            raise ValueError(
                f"very-high acceleration threshold {self.accel_very_high_ms2} is below "
                f"{self.accel_ms2}: set it at or above the acceleration threshold"
            )


@dataclass(frozen=True)
class LoadMetrics:
    """A player's running load totals at one instant.

    Attributes:
        distance_m: Total distance covered (m).
        hsr_m: Distance above the high-speed running speed (m).
        sprint_m: Distance covered in counted sprints (m).
        sprints: Number of sprint efforts.
        accelerations: Acceleration efforts above the threshold.
        decelerations: Deceleration efforts below minus the threshold.
        accelerations_very_high: Acceleration efforts above the very-high threshold.
        decelerations_very_high: Deceleration efforts below minus the very-high threshold.
        player_load: Accumulated PlayerLoad (arbitrary units, Catapult scaling).
        top_speed_ms: Highest segment speed seen (m/s).
        speed_ms: Speed of the latest fix (m/s), None before the first fix.
        gnss_time_s: Time covered by joined GNSS segments (s).
    """

    distance_m: float = 0.0
    hsr_m: float = 0.0
    sprint_m: float = 0.0
    sprints: int = 0
    accelerations: int = 0
    decelerations: int = 0
    accelerations_very_high: int = 0
    decelerations_very_high: int = 0
    player_load: float = 0.0
    top_speed_ms: float = 0.0
    speed_ms: float | None = None
    gnss_time_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The metrics as a plain JSON-ready dict."""
        return asdict(self)

    def to_json(self) -> str:
        """The metrics as one JSON object."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadMetrics:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"load metrics carry unknown keys {sorted(unknown)}: "
                "read them with the fusion-edge version that wrote them"
            )
        return cls(**data)


class _EffortCounter:
    """Counts runs of samples beyond a threshold that last at least a minimum duration.

    ``distance`` of a run is held back until the run qualifies, then released at once, so only
    qualifying efforts contribute (sprint distance). Constant work per sample.
    """

    __slots__ = ("min_ns", "count", "released", "_run_ns", "_pending", "_counted")

    def __init__(self, min_duration_s: float) -> None:
        self.min_ns = int(round(min_duration_s * _NS))
        self.count = 0
        self.released = 0.0
        self._run_ns = 0
        self._pending = 0.0
        self._counted = False

    def step(self, above: bool, dt_ns: int, distance: float = 0.0) -> None:
        if not above:
            self.end()
            return
        self._run_ns += dt_ns
        if self._counted:
            self.released += distance
            return
        self._pending += distance
        if self._run_ns >= self.min_ns:
            self._counted = True
            self.count += 1
            self.released += self._pending
            self._pending = 0.0

    def end(self) -> None:
        self._run_ns = 0
        self._pending = 0.0
        self._counted = False


class PlayerLoadTracker:
    """Running load metrics for one player, fed fix by fix and IMU batch by batch.

    Args:
        thresholds: Thresholds, filters and minimum durations (defaults as in docs/feedback.md).

    Example:
        >>> tracker = PlayerLoadTracker()
        >>> tracker.update_gnss(0, 0.0, 0.0, 6.0)
        >>> tracker.update_gnss(100_000_000, 0.6, 0.0, 6.0)
        >>> round(tracker.snapshot().hsr_m, 3)
        0.6
    """

    def __init__(self, thresholds: LoadThresholds | None = None) -> None:
        self.thresholds = thresholds or LoadThresholds()
        th = self.thresholds
        self._gap_ns = int(round(th.max_gnss_gap_s * _NS))
        self._imu_gap_ns = int(round(th.max_imu_gap_s * _NS))
        self._acc_window_ns = int(round(th.accel_window_s * _NS))
        self._last_fix: tuple[int, float, float, float] | None = None
        # (t_ns, speed) of recent fixes: at most accel_window / fix interval + 1 entries.
        self._speeds: deque[tuple[int, float]] = deque()
        self._sprint = _EffortCounter(th.sprint_min_duration_s)
        self._acc = _EffortCounter(th.accel_min_duration_s)
        self._acc_vh = _EffortCounter(th.accel_min_duration_s)
        self._dec = _EffortCounter(th.accel_min_duration_s)
        self._dec_vh = _EffortCounter(th.accel_min_duration_s)
        self._distance = 0.0
        self._hsr = 0.0
        self._top_speed = 0.0
        self._gnss_ns = 0
        self._speed: float | None = None
        self._player_load = 0.0
        self._last_acc: np.ndarray | None = None
        self._last_imu_ns: int | None = None

    # GNSS ---------------------------------------------------------------------------------

    def update_gnss(self, t_ns: int, x: float, y: float, speed: float) -> None:
        """Add one cleaned fix.

        Args:
            t_ns: Host-monotonic time of the fix (ns); fixes must come in time order.
            x: Position along the pitch (m).
            y: Position across the pitch (m).
            speed: Ground speed (m/s); NaN to derive it from the positions.

        A fix with a NaN position ends the current segment (no distance is guessed across it).

        Raises:
            ValueError: The fix is older than the previous one.
        """
        t_ns = int(t_ns)
        if not (math.isfinite(x) and math.isfinite(y)):
            self._break_track()
            return
        last = self._last_fix
        if last is not None and t_ns <= last[0]:
            raise ValueError(
                f"GNSS fix at {t_ns} ns is not after the previous one at {last[0]} ns: "
                "feed each player's fixes in time order, once each"
            )
        if last is None or t_ns - last[0] > self._gap_ns:
            if not math.isfinite(speed):
                speed = 0.0
            self._break_track()
            self._start_track(t_ns, x, y, speed)
            return
        dt_ns = t_ns - last[0]
        dist = math.hypot(x - last[1], y - last[2])
        if not math.isfinite(speed):
            speed = dist * _NS / dt_ns
        seg_speed = 0.5 * (speed + last[3])
        self._distance += dist
        self._gnss_ns += dt_ns
        if seg_speed > self.thresholds.hsr_speed_ms:
            self._hsr += dist
        self._top_speed = max(self._top_speed, seg_speed)
        self._sprint.step(seg_speed > self.thresholds.sprint_speed_ms, dt_ns, dist)
        self._last_fix = (t_ns, x, y, speed)
        self._speed = speed
        self._update_acceleration(t_ns, speed, dt_ns)

    def _start_track(self, t_ns: int, x: float, y: float, speed: float) -> None:
        self._last_fix = (t_ns, x, y, speed)
        self._speed = speed
        self._speeds.append((t_ns, speed))

    def _break_track(self) -> None:
        self._last_fix = None
        self._speeds.clear()
        for counter in (self._sprint, self._acc, self._acc_vh, self._dec, self._dec_vh):
            counter.end()

    def _update_acceleration(self, t_ns: int, speed: float, dt_ns: int) -> None:
        speeds = self._speeds
        speeds.append((t_ns, speed))
        # Keep the newest fix that is at least one window old at the front.
        while len(speeds) > 2 and t_ns - speeds[1][0] >= self._acc_window_ns:
            speeds.popleft()
        t0, v0 = speeds[0]
        if t_ns - t0 < self._acc_window_ns:
            return  # not a full window of history yet: no acceleration value
        acc = (speed - v0) * _NS / (t_ns - t0)
        th = self.thresholds
        self._acc.step(acc > th.accel_ms2, dt_ns)
        self._acc_vh.step(acc > th.accel_very_high_ms2, dt_ns)
        self._dec.step(acc < -th.accel_ms2, dt_ns)
        self._dec_vh.step(acc < -th.accel_very_high_ms2, dt_ns)

    # IMU ----------------------------------------------------------------------------------

    def update_imu(self, t_ns: int, acc: np.ndarray) -> None:
        """Add a batch of accelerometer samples to PlayerLoad.

        Args:
            t_ns: Host-monotonic time of the batch's first sample (ns).
            acc: ``[n, 3]`` acceleration in m/s^2 (body frame; any axis order).

        Consecutive batches are differenced across their boundary unless they start more than
        ``max_imu_gap_s`` apart (a dropped link); rows with NaN are skipped and break the chain.

        Raises:
            ValueError: ``acc`` is not shaped ``[n, 3]``.
        """
        a = np.asarray(acc, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != 3:
            raise ValueError(
                f"update_imu expects acceleration shaped [n, 3] in m/s^2, got {a.shape}; "
                "pass the three accelerometer columns only"
            )
        t_ns = int(t_ns)
        if a.shape[0] == 0:
            return
        if self._last_imu_ns is not None and t_ns - self._last_imu_ns > self._imu_gap_ns:
            self._last_acc = None
        self._last_imu_ns = t_ns
        g = a / STANDARD_GRAVITY
        if self._last_acc is not None:
            g = np.vstack([self._last_acc[None, :], g])
        diffs = np.diff(g, axis=0)
        steps = np.sqrt(np.einsum("ij,ij->i", diffs, diffs))
        self._player_load += float(np.nansum(steps)) / 100.0
        last = g[-1]
        self._last_acc = last.copy() if np.isfinite(last).all() else None

    # Output -------------------------------------------------------------------------------

    def snapshot(self) -> LoadMetrics:
        """The totals so far as a frozen :class:`LoadMetrics`."""
        return LoadMetrics(
            distance_m=self._distance,
            hsr_m=self._hsr,
            sprint_m=self._sprint.released,
            sprints=self._sprint.count,
            accelerations=self._acc.count,
            decelerations=self._dec.count,
            accelerations_very_high=self._acc_vh.count,
            decelerations_very_high=self._dec_vh.count,
            player_load=self._player_load,
            top_speed_ms=self._top_speed,
            speed_ms=self._speed,
            gnss_time_s=self._gnss_ns / _NS,
        )
