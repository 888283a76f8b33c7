"""IMU calibration and device-clock alignment (numpy only).

- :func:`calibrate_imu` / :func:`calibrate_from_poses` / :class:`GuidedImuCalibration`: gyroscope
  bias, accelerometer bias/scale/misalignment, magnetometer hard and soft iron, each with quality
  figures, refused with a :class:`~fusion_edge.errors.CalibrationError` when the data cannot
  determine them.
- :class:`ImuCalibration`: the per-pod result, ``apply``-able to ``[n, 6]``/``[n, 9]`` samples and
  kept in a versioned JSON file (:func:`save_calibration`, :func:`load_calibration`).
- :class:`ClockMapper` / :class:`ClockAlignment`: online lower-envelope mapping of pod and GNSS
  clocks onto the host monotonic clock.

Choices are written down in ``docs/calibration.md``.
"""

from __future__ import annotations

from fusion_edge.calibration.accelerometer import AccelFit, AccelLimits, AccelMethod
from fusion_edge.calibration.clock import (
    ClockAlignment,
    ClockConfig,
    ClockEstimate,
    ClockMapper,
    ClockObservation,
    fit_clock_observations,
    read_clock_csv,
)
from fusion_edge.calibration.guided import GuidedImuCalibration, Prompt, PromptKind
from fusion_edge.calibration.imu import (
    ImuCalibration,
    calibration_path,
    load_calibration,
    save_calibration,
)
from fusion_edge.calibration.imu_fit import (
    ImuCalibrationConfig,
    calibrate_from_poses,
    calibrate_imu,
)
from fusion_edge.calibration.magnetometer import MagLimits
from fusion_edge.calibration.recording import ImuRecording, read_imu_csv, write_imu_csv
from fusion_edge.calibration.stillness import StillnessConfig

__all__ = [
    "AccelFit",
    "AccelLimits",
    "AccelMethod",
    "ClockAlignment",
    "ClockConfig",
    "ClockEstimate",
    "ClockMapper",
    "ClockObservation",
    "GuidedImuCalibration",
    "ImuCalibration",
    "ImuCalibrationConfig",
    "ImuRecording",
    "MagLimits",
    "Prompt",
    "PromptKind",
    "StillnessConfig",
    "calibrate_from_poses",
    "calibrate_imu",
    "calibration_path",
    "fit_clock_observations",
    "load_calibration",
    "read_clock_csv",
    "read_imu_csv",
    "save_calibration",
    "write_imu_csv",
]
