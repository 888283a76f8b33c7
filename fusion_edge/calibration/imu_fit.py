"""From a recording (or from hand-cut still poses) to an :class:`ImuCalibration`.

The order of the checks matters: units first (a g-unit accelerometer would look "still"
everywhere and a deg/s gyroscope never still), then still periods, then the three fits. Every
refusal is a :class:`~fusion_edge.errors.CalibrationError` whose message names the problem and
what to record instead; nothing is returned unless every requested part is trustworthy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from fusion_edge.calibration.accelerometer import (
    AccelFit,
    AccelLimits,
    face_of,
    fit_accelerometer,
)
from fusion_edge.calibration.gyroscope import (
    GYRO_RANGE_RAD_S,
    GyroFit,
    check_gyro_units,
    fit_gyro_bias,
)
from fusion_edge.calibration.imu import ImuCalibration
from fusion_edge.calibration.magnetometer import MagLimits, check_field_strength, fit_magnetometer
from fusion_edge.calibration.recording import STANDARD_GRAVITY, ImuRecording, check_accel_units
from fusion_edge.calibration.stillness import (
    StillnessConfig,
    find_still_segments,
    group_poses,
    quietest_window,
    segment_drift_deg,
)
from fusion_edge.errors import CalibrationError

__all__ = ["ImuCalibrationConfig", "calibrate_imu", "calibrate_from_poses"]


@dataclass(frozen=True)
class ImuCalibrationConfig:
    """How to calibrate.

    Attributes:
        stillness: Still-period detection thresholds.
        accel: Accelerometer acceptance limits.
        mag: Magnetometer acceptance limits.
        use_magnetometer: ``None``: calibrate the magnetometer when the recording has it;
            ``True``: require it; ``False``: skip it.
        field_strength_ut: Local magnetic field strength (from a geomagnetic model); estimated
            from the readings when ``None``.
        gravity: Local gravity, m/s^2.
        max_gyro_bias_spread: Largest disagreement of the gyroscope between still periods, rad/s.
    """

    stillness: StillnessConfig = field(default_factory=StillnessConfig)
    accel: AccelLimits = field(default_factory=AccelLimits)
    mag: MagLimits = field(default_factory=MagLimits)
    use_magnetometer: bool | None = None
    field_strength_ut: float | None = None
    gravity: float = STANDARD_GRAVITY
    max_gyro_bias_spread: float = 0.02

    def __post_init__(self) -> None:
        # Checked here, before a recording is fitted or a pod is streamed, not at the end.
        if self.field_strength_ut is not None:
            check_field_strength(self.field_strength_ut, self.mag)


def _wants_mag(rec: ImuRecording, cfg: ImuCalibrationConfig) -> bool:
    if cfg.use_magnetometer and not rec.has_mag:
        raise CalibrationError(
            f"{rec.source}: magnetometer calibration was requested but the recording has no "
            "mx,my,mz columns; record with the magnetometer on, or calibrate without it"
        )
    return rec.has_mag if cfg.use_magnetometer is None else cfg.use_magnetometer


def _assemble(
    pod_id: str,
    rec: ImuRecording,
    cfg: ImuCalibrationConfig,
    accel: AccelFit,
    gyro: GyroFit,
    extra: Mapping[str, object],
) -> ImuCalibration:
    quality: dict[str, object] = {
        "source": rec.source,
        "samples": rec.n,
        "duration_s": round(float(rec.t[-1] - rec.t[0]), 3),
        "rate_hz": round(rec.rate_hz, 3),
        **extra,
        "accel": accel.quality(),
        "gyro": gyro.quality(),
    }
    hard = soft = None
    if _wants_mag(rec, cfg) and rec.mag is not None:
        mag = fit_magnetometer(
            rec.mag, field_strength_ut=cfg.field_strength_ut, limits=cfg.mag, source=rec.source
        )
        hard, soft = mag.hard_iron, mag.soft_iron
        quality["mag"] = mag.quality()
    return ImuCalibration(
        pod_id=pod_id,
        accel_bias=accel.bias,
        accel_matrix=accel.matrix,
        gyro_bias=gyro.bias,
        mag_hard_iron=hard,
        mag_soft_iron=soft,
        quality=quality,
    )


def calibrate_imu(
    rec: ImuRecording, pod_id: str, config: ImuCalibrationConfig | None = None
) -> ImuCalibration:
    """Calibrate a pod from one recording of still poses (and, for the magnetometer, rotation).

    Args:
        rec: The recording: the pod resting still in several orientations, moved between them.
        pod_id: The pod's id, stored in the calibration.
        config: Thresholds and options; defaults when ``None``.

    Raises:
        CalibrationError: The recording cannot determine the calibration (see the module
            docstrings of :mod:`~fusion_edge.calibration.recording`, ``stillness``,
            ``accelerometer``, ``gyroscope`` and ``magnetometer`` for the cases).
    """
    cfg = config or ImuCalibrationConfig()
    check_accel_units(rec)
    accel_still, _ = find_still_segments(rec, cfg.stillness, use_gyro=False)
    check_gyro_units(rec, accel_still)
    still, moved = find_still_segments(rec, cfg.stillness)
    sc = cfg.stillness
    if not still:
        if moved:
            worst = max(moved, key=lambda s: s.drift_deg)
            raise CalibrationError(
                f"{rec.source}: the pod moved during every still-looking period ({len(moved)} "
                f"found; at t={worst.t_start:.1f} s gravity turned {worst.drift_deg:.1f} deg, "
                f"limit {sc.max_drift_deg}); rest the pod on a steady surface for 2-3 s in each "
                "pose"
            )
        if accel_still:
            gyro_std = float(
                np.median(
                    [np.sqrt(rec.gyro[s.start : s.stop].var(axis=0).sum()) for s in accel_still]
                )
            )
            raise CalibrationError(
                f"{rec.source}: the accelerometer shows {len(accel_still)} still period(s) but "
                f"the gyroscope never goes quiet (std {gyro_std:.3g} while still, limit "
                f"{sc.gyro_std_max} rad/s). If the gyro columns are in deg/s, multiply them by "
                "pi/180 = 0.0174533; otherwise rest the pod on a steady surface, away from "
                "vibration, for 2-3 s in each pose"
            )
        qa, qg = quietest_window(rec, sc)
        raise CalibrationError(
            f"{rec.source}: the pod never stood still for {sc.min_duration_s:g} s (quietest "
            f"{sc.window_s:g} s: accel std {qa:.3f} m/s^2, gyro std {qg:.3f} rad/s; limits "
            f"{sc.accel_std_max} and {sc.gyro_std_max}); record the pod resting still for 2-3 s "
            "in each of several orientations (or each face up), moving it only between poses"
        )
    poses = group_poses(still, sc)
    gyro = fit_gyro_bias(rec, still, max_bias_spread=cfg.max_gyro_bias_spread)
    try:
        accel = fit_accelerometer(
            np.array([p.accel_mean for p in poses]),
            pose_times=[p.t_start for p in poses],
            limits=cfg.accel,
            gravity=cfg.gravity,
        )
    except CalibrationError as exc:
        if not moved:
            raise
        times = ", ".join(f"{s.t_start:.1f}" for s in moved[:5])
        raise CalibrationError(
            f"{exc} ({len(moved)} more still-looking period(s), at t={times} s, were left out "
            "because the pod moved during them)"
        ) from None
    extra = {"still_periods": len(still), "moved_periods_rejected": len(moved)}
    return _assemble(pod_id, rec, cfg, accel, gyro, extra)


def calibrate_from_poses(
    poses: Sequence[ImuRecording],
    pod_id: str,
    *,
    rotation: ImuRecording | None = None,
    config: ImuCalibrationConfig | None = None,
) -> ImuCalibration:
    """Calibrate from still poses cut by the caller (a guided procedure, a GUI).

    Every pose must really be still: one that moved is refused, naming it.

    Args:
        poses: One recording per pose, each the pod held still.
        pod_id: The pod's id.
        rotation: Readings while turning the pod through all orientations, for the
            magnetometer (ignored for 6-axis pods).
        config: Thresholds and options.

    Raises:
        CalibrationError: A pose moved, units are wrong, or the poses cannot determine it.
    """
    cfg = config or ImuCalibrationConfig()
    sc = cfg.stillness
    if not poses:
        raise CalibrationError("no poses were given; record the pod still in each pose")
    means, gyro_means, counts, times = [], [], [], []
    for k, pose in enumerate(poses):
        check_accel_units(pose)
        peak = float(np.abs(pose.gyro).max())
        if peak > GYRO_RANGE_RAD_S:
            raise CalibrationError(
                f"pose {k + 1}: the gyroscope reads {peak:.1f}, beyond any rad/s range: it looks "
                "like deg/s; multiply gx, gy, gz by pi/180 = 0.0174533"
            )
        a_std = float(np.sqrt(pose.accel.var(axis=0).sum()))
        g_std = float(np.sqrt(pose.gyro.var(axis=0).sum()))
        drift = segment_drift_deg(pose.accel)
        if a_std > sc.accel_std_max or g_std > sc.gyro_std_max or drift > sc.max_drift_deg:
            face, _ = face_of(pose.accel.mean(axis=0))
            raise CalibrationError(
                f"pose {k + 1} ({face} up, t={pose.t[0]:.1f} s) was not still: accel std "
                f"{a_std:.3f} m/s^2 (limit {sc.accel_std_max}), gyro std {g_std:.3f} rad/s (limit "
                f"{sc.gyro_std_max}), gravity turned {drift:.1f} deg (limit {sc.max_drift_deg}); "
                "the pod moved during it. Rest the pod still and record that pose again"
            )
        means.append(pose.accel.mean(axis=0))
        gyro_means.append(pose.gyro.mean(axis=0))
        counts.append(pose.n)
        times.append(float(pose.t[0]))
    w = np.asarray(counts, dtype=np.float64)
    gm = np.asarray(gyro_means)
    bias = (gm * w[:, None]).sum(0) / w.sum()
    dev = np.linalg.norm(gm - bias, axis=1)
    if dev.max() > cfg.max_gyro_bias_spread:
        k = int(np.argmax(dev))
        raise CalibrationError(
            f"pose {k + 1}: the gyroscope's still reading differs from the other poses by "
            f"{dev[k]:.4f} rad/s (limit {cfg.max_gyro_bias_spread}): the pod was turning slowly, "
            "or warming up. Let it run 5 minutes, then record that pose again"
        )
    gyro = GyroFit(
        bias=bias,
        still_s=float(sum(p.t[-1] - p.t[0] for p in poses)),
        periods=len(poses),
        spread=float(dev.max()),
        consistency_deg=float("nan"),
    )
    source = rotation if rotation is not None else poses[0]
    if rotation is None and cfg.use_magnetometer:
        raise CalibrationError(
            "magnetometer calibration needs the pod turned through all orientations; record "
            "the rotation step as well"
        )
    if rotation is None:
        cfg = replace(cfg, use_magnetometer=False)
    accel = fit_accelerometer(
        np.array(means), pose_times=times, limits=cfg.accel, gravity=cfg.gravity
    )
    return _assemble(pod_id, source, cfg, accel, gyro, {"poses_given": len(poses)})
