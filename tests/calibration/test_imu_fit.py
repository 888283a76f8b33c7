"""The whole IMU calibration from a recording or from given poses, and its refusals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fusion_edge.calibration.imu_fit import (
    ImuCalibrationConfig,
    calibrate_from_poses,
    calibrate_imu,
)
from fusion_edge.calibration.recording import ImuRecording
from fusion_edge.calibration.simulate import record_poses, six_position_orientations
from fusion_edge.calibration.stillness import find_still_segments
from fusion_edge.errors import CalibrationError


def test_random_pose_recording_calibrates_all_three_sensors(pod, random_pose_recording) -> None:
    cal = calibrate_imu(random_pose_recording, "pod-07")
    assert cal.pod_id == "pod-07" and cal.has_magnetometer
    assert cal.quality["accel"]["method"] == "sphere"
    assert cal.quality["accel"]["poses"] >= 12
    np.testing.assert_allclose(cal.gyro_bias, pod.gyro_bias, atol=2e-4)
    # Corrected still samples have |a| = g and zero rate; corrected mag has |m| = B.
    still, _ = find_still_segments(random_pose_recording)
    s = still[3]
    raw = np.hstack(
        [random_pose_recording.accel, random_pose_recording.gyro, random_pose_recording.mag]
    )[s.start : s.stop]
    out = cal.apply(raw)
    assert np.linalg.norm(out[:, 0:3].mean(axis=0)) == pytest.approx(9.80665, abs=0.01)
    assert np.abs(out[:, 3:6].mean(axis=0)).max() < 1e-3
    field = cal.quality["mag"]["field_strength_ut"]
    assert np.linalg.norm(out[:, 6:9], axis=1).mean() == pytest.approx(field, rel=0.01)


def test_six_position_recording_uses_the_six_position_method(six_position_recording) -> None:
    cal = calibrate_imu(six_position_recording, "pod-07")
    assert cal.quality["accel"]["method"] == "six_position"
    assert cal.quality["accel"]["faces"] == ["+X", "-X", "+Y", "-Y", "+Z", "-Z"]


def test_magnetometer_can_be_skipped_or_required(six_position_recording) -> None:
    no_mag = dataclasses.replace(six_position_recording, mag=None)
    cal = calibrate_imu(no_mag, "p")
    assert not cal.has_magnetometer and "mag" not in cal.quality
    cal = calibrate_imu(six_position_recording, "p", ImuCalibrationConfig(use_magnetometer=False))
    assert not cal.has_magnetometer
    with pytest.raises(CalibrationError, match="the recording has no mx,my,mz columns"):
        calibrate_imu(no_mag, "p", ImuCalibrationConfig(use_magnetometer=True))


def test_magnetometer_refusal_refuses_the_whole_calibration(six_position_recording) -> None:
    # The magnetometer only ever turned about one axis (a pod spun flat on a table).
    n = six_position_recording.n
    phi = np.linspace(0, 4 * np.pi, n)
    mag = np.column_stack([20 * np.cos(phi), 20 * np.sin(phi), np.full(n, -44.0)]) + 10.0
    mag += np.random.default_rng(37).normal(0, 0.3, mag.shape)
    rec = dataclasses.replace(six_position_recording, mag=mag)
    with pytest.raises(CalibrationError, match=r"magnetometer readings cover \d+% of directions"):
        calibrate_imu(rec, "p")


def test_pod_that_never_stood_still(pod) -> None:
    rng = np.random.default_rng(32)
    from fusion_edge.calibration.rotation import random_rotation

    rec = record_poses(pod, [random_rotation(rng) for _ in range(12)], rng, hold_s=0.0, move_s=1.0)
    with pytest.raises(
        CalibrationError, match=r"the pod never stood still for 1 s \(quietest 0.5 s"
    ):
        calibrate_imu(rec, "p")


def test_noisy_gyro_with_still_accelerometer_suggests_degrees(random_pose_recording) -> None:
    rng = np.random.default_rng(33)
    gyro = random_pose_recording.gyro + rng.normal(0, 0.2, random_pose_recording.gyro.shape)
    rec = dataclasses.replace(random_pose_recording, gyro=gyro)
    with pytest.raises(
        CalibrationError,
        match=r"the gyroscope never goes quiet .* If the gyro columns are in deg/s",
    ):
        calibrate_imu(rec, "p")


def test_gyro_in_degrees_is_refused_before_anything_else(random_pose_recording) -> None:
    rec = dataclasses.replace(random_pose_recording, gyro=np.degrees(random_pose_recording.gyro))
    with pytest.raises(CalibrationError, match="look like deg/s"):
        calibrate_imu(rec, "p")


def test_accel_in_g_is_refused(random_pose_recording) -> None:
    rec = dataclasses.replace(random_pose_recording, accel=random_pose_recording.accel / 9.80665)
    with pytest.raises(CalibrationError, match="gravity in g"):
        calibrate_imu(rec, "p")


def test_single_pose_recording(pod) -> None:
    rng = np.random.default_rng(34)
    rec = record_poses(pod, [np.eye(3)], rng, hold_s=5.0, with_mag=False)
    with pytest.raises(CalibrationError, match=r"single still pose \(face \+Z up\)"):
        calibrate_imu(rec, "p")


def test_sliding_pod_is_reported_as_moved(pod) -> None:
    # The pod creeps (tilts 2 deg/s) during every "still" pose: quiet, but not still.
    n = 400
    t = np.arange(n) / 100.0
    ang = np.radians(2.0) * t
    up = np.column_stack([np.sin(ang), np.zeros(n), np.cos(ang)]) * 9.80665
    rec = ImuRecording(t, up @ pod.accel_response.T + pod.accel_bias, np.zeros((n, 3)) + 0.001)
    with pytest.raises(CalibrationError, match="the pod moved during every still-looking period"):
        calibrate_imu(rec, "p")


def _pose(pod, face: str, t0: float, rng, *, shake: float = 0.0) -> ImuRecording:
    rot = dict(six_position_orientations())[face]
    n = 200
    t = t0 + np.arange(n) / 100.0
    f = rot.T @ [0, 0, 9.80665]
    accel = f @ pod.accel_response.T + pod.accel_bias + rng.normal(0, 0.03, (n, 3))
    accel += shake * np.sin(2 * np.pi * 3 * t)[:, None]
    gyro = pod.gyro_bias + rng.normal(0, 0.003, (n, 3))
    return ImuRecording(t, accel, gyro, None, source=f"pose {face}")


def test_calibrate_from_given_poses(pod) -> None:
    rng = np.random.default_rng(35)
    poses = [
        _pose(pod, f, 5.0 * i, rng) for i, f in enumerate(["+Z", "-Z", "+X", "-X", "+Y", "-Y"])
    ]
    cal = calibrate_from_poses(poses, "pod-3")
    assert cal.quality["accel"]["method"] == "six_position"
    np.testing.assert_allclose(cal.accel_bias, pod.accel_bias, atol=0.02)
    np.testing.assert_allclose(cal.gyro_bias, pod.gyro_bias, atol=1e-3)


def test_given_pose_that_moved_is_refused_by_name(pod) -> None:
    rng = np.random.default_rng(36)
    faces = ["+Z", "-Z", "+X", "-X", "+Y", "-Y"]
    poses = [
        _pose(pod, f, 5.0 * i, rng, shake=0.5 if f == "+X" else 0.0) for i, f in enumerate(faces)
    ]
    with pytest.raises(
        CalibrationError,
        match=r"pose 3 \(\+X up, t=10.0 s\) was not still: .* the pod moved during it",
    ):
        calibrate_from_poses(poses, "pod-3")
