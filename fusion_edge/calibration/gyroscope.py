"""Gyroscope bias from still periods, and the deg/s-instead-of-rad/s check.

The bias is the sample-weighted mean gyroscope reading over every still period. It is refused
when the still periods disagree with each other by more than ``max_bias_spread`` (the pod was
turning slowly while "still", or warming up).

The unit check cannot rely on the still periods alone (a bias of 1 deg/s is as plausible as
1 rad/s is not, but noise levels overlap across parts). It uses the motion *between* still
poses instead: the rotation integrated from the gyroscope must carry the gravity direction of
one pose onto that of the next. Read as rad/s, a deg/s gyroscope turns the pod 57 times too far;
read as deg/s it fits. A reading beyond a 2000 deg/s part's full range (34.9 rad/s) is also
taken as deg/s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion_edge.calibration.recording import ImuRecording
from fusion_edge.calibration.rotation import integrate_body_rates
from fusion_edge.calibration.stillness import StillSegment
from fusion_edge.errors import CalibrationError

__all__ = ["GyroFit", "GyroUnitCheck", "check_gyro_units", "fit_gyro_bias", "GYRO_RANGE_RAD_S"]

#: Full-scale range of the widest common MEMS gyroscope setting (2000 deg/s), rad/s.
GYRO_RANGE_RAD_S = float(np.radians(2000.0))

_CONVERT = "multiply gx, gy, gz by pi/180 = 0.0174533 (or export in rad/s) and run it again"


@dataclass(frozen=True)
class GyroUnitCheck:
    """What the transitions between still poses say about the gyroscope's unit.

    Attributes:
        transitions: Rotations between poses large enough to judge (>= 20 deg of gravity turn).
        error_as_rad_deg: Median miss of the gravity direction when integrating as rad/s, deg.
        error_as_deg_deg: Same when integrating as deg/s, deg.
    """

    transitions: int
    error_as_rad_deg: float
    error_as_deg_deg: float


@dataclass(frozen=True, eq=False)
class GyroFit:
    """A gyroscope bias and how far to trust it.

    Attributes:
        bias: ``[3]`` rad/s.
        still_s: Total still time averaged over, s.
        periods: Number of still periods.
        spread: Largest deviation of one period's mean from the bias, rad/s.
        consistency_deg: Median miss of the gravity direction when integrating the corrected
            gyroscope between poses, deg (``nan`` with no usable transition).
    """

    bias: np.ndarray
    still_s: float
    periods: int
    spread: float
    consistency_deg: float

    def quality(self) -> dict[str, object]:
        """JSON-ready quality figures."""
        return {
            "still_s": round(self.still_s, 3),
            "still_periods": self.periods,
            "bias_spread_rad_s": float(f"{self.spread:.6g}"),
            "transition_consistency_deg": None
            if np.isnan(self.consistency_deg)
            else round(self.consistency_deg, 3),
        }


def _angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    c = float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def _transition_errors(
    rec: ImuRecording, segments: list[StillSegment], bias: np.ndarray, scale: float
) -> list[float]:
    errors = []
    for a, b in zip(segments, segments[1:], strict=False):
        g0, g1 = a.accel_mean, b.accel_mean
        if _angle_deg(g0, g1) < 20.0:
            continue
        i0, i1 = a.stop - 1, b.start
        dt = np.diff(rec.t[i0 : i1 + 1])
        rot = integrate_body_rates((rec.gyro[i0:i1] - bias) * scale, dt)
        errors.append(_angle_deg(rot.T @ g0, g1))
    return errors


def check_gyro_units(rec: ImuRecording, segments: list[StillSegment]) -> GyroUnitCheck:
    """Refuse a gyroscope recorded in deg/s.

    Args:
        rec: The recording (accelerometer already checked to be m/s^2).
        segments: Still periods found from the accelerometer alone, in time order.

    Raises:
        CalibrationError: The gyroscope is in deg/s.
    """
    peak = float(np.abs(rec.gyro).max())
    if peak > GYRO_RANGE_RAD_S:
        raise CalibrationError(
            f"{rec.source}: the gyroscope reads up to {peak:.1f}, beyond the range of a "
            f"2000 deg/s sensor in rad/s ({GYRO_RANGE_RAD_S:.1f}): the gyro columns look like "
            f"deg/s, not rad/s; {_CONVERT}"
        )
    if not segments:
        return GyroUnitCheck(0, float("nan"), float("nan"))
    weights = np.array([s.n for s in segments], dtype=np.float64)
    bias = (np.array([s.gyro_mean for s in segments]) * weights[:, None]).sum(0) / weights.sum()
    as_rad = _transition_errors(rec, segments, bias, 1.0)
    as_deg = _transition_errors(rec, segments, bias, np.pi / 180.0)
    if not as_rad:
        return GyroUnitCheck(0, float("nan"), float("nan"))
    check = GyroUnitCheck(len(as_rad), float(np.median(as_rad)), float(np.median(as_deg)))
    if check.error_as_deg_deg < 10.0 and check.error_as_rad_deg > 3 * check.error_as_deg_deg + 10:
        raise CalibrationError(
            f"{rec.source}: the gyroscope looks like it is in deg/s, not rad/s: integrated as "
            f"rad/s it misses the pose-to-pose turn of gravity by {check.error_as_rad_deg:.0f} deg "
            f"(median of {check.transitions} turns), as deg/s by only "
            f"{check.error_as_deg_deg:.1f} deg; {_CONVERT}"
        )
    return check


def fit_gyro_bias(
    rec: ImuRecording,
    segments: list[StillSegment],
    *,
    max_bias_spread: float = 0.02,
) -> GyroFit:
    """Gyroscope bias from the still periods.

    Args:
        rec: The recording.
        segments: Still periods (accelerometer and gyroscope quiet), in time order.
        max_bias_spread: Largest allowed deviation of one period's mean from the bias, rad/s.

    Raises:
        CalibrationError: No still period, or the periods disagree.
    """
    if not segments:
        raise CalibrationError(
            f"{rec.source}: no still period to measure the gyroscope bias; put the pod down "
            "and keep it still for at least 2 s"
        )
    weights = np.array([s.n for s in segments], dtype=np.float64)
    means = np.array([s.gyro_mean for s in segments])
    bias = (means * weights[:, None]).sum(0) / weights.sum()
    dev = np.linalg.norm(means - bias, axis=1)
    worst = int(np.argmax(dev))
    if dev[worst] > max_bias_spread:
        raise CalibrationError(
            f"{rec.source}: the gyroscope's still reading changes between still periods by "
            f"{dev[worst]:.4f} rad/s (limit {max_bias_spread}; worst at "
            f"t={segments[worst].t_start:.1f} s): the pod was turning slowly while it should have "
            "been still, or it was warming up. Let the pod run for 5 minutes, then record again "
            "with it resting still"
        )
    errors = _transition_errors(rec, segments, bias, 1.0)
    return GyroFit(
        bias=bias,
        still_s=float(sum(s.duration_s for s in segments)),
        periods=len(segments),
        spread=float(dev.max()),
        consistency_deg=float(np.median(errors)) if errors else float("nan"),
    )
