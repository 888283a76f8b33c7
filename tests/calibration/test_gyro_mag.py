"""Gyroscope bias and unit check; magnetometer hard/soft iron and its refusals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fusion_edge.calibration.gyroscope import check_gyro_units, fit_gyro_bias
from fusion_edge.calibration.magnetometer import check_saturation, fit_magnetometer
from fusion_edge.calibration.simulate import random_imu, record_poses, six_position_orientations
from fusion_edge.calibration.stillness import find_still_segments
from fusion_edge.errors import CalibrationError


def test_gyro_bias_is_recovered(pod, random_pose_recording) -> None:
    still, _ = find_still_segments(random_pose_recording)
    fit = fit_gyro_bias(random_pose_recording, still)
    np.testing.assert_allclose(fit.bias, pod.gyro_bias, atol=2e-4)
    assert fit.periods == 20
    assert fit.consistency_deg < 10.0  # the corrected gyro carries gravity from pose to pose


def test_fast_gyro_in_degrees_is_caught_by_range(random_pose_recording) -> None:
    rec = dataclasses.replace(random_pose_recording, gyro=np.degrees(random_pose_recording.gyro))
    with pytest.raises(
        CalibrationError, match=r"look like deg/s, not rad/s; multiply gx, gy, gz by pi/180"
    ):
        check_gyro_units(rec, find_still_segments(rec, use_gyro=False)[0])


def test_slow_gyro_in_degrees_is_caught_by_pose_to_pose_rotation() -> None:
    rng = np.random.default_rng(21)
    imu = random_imu(rng)
    faces = [r for _, r in six_position_orientations()]
    # 12 s per 90-180 degree turn stays under 34.9 deg/s: the range check cannot see it.
    rec = record_poses(imu, faces, rng, hold_s=2.0, move_s=12.0, with_mag=False)
    deg = dataclasses.replace(rec, gyro=np.degrees(rec.gyro))
    assert np.abs(deg.gyro).max() < 34.9
    still = find_still_segments(deg, use_gyro=False)[0]
    with pytest.raises(
        CalibrationError,
        match=r"looks like it is in deg/s, not rad/s: integrated as rad/s it misses",
    ):
        check_gyro_units(deg, still)
    ok = check_gyro_units(rec, find_still_segments(rec, use_gyro=False)[0])
    assert ok.transitions == 5 and ok.error_as_rad_deg < 10.0


def test_gyro_bias_that_changes_between_periods_is_refused(random_pose_recording) -> None:
    gyro = random_pose_recording.gyro.copy()
    gyro[random_pose_recording.n // 2 :] += 0.05  # a step: warming up, or a slow turn
    rec = dataclasses.replace(random_pose_recording, gyro=gyro)
    with pytest.raises(
        CalibrationError, match=r"still reading changes between still periods by 0.0\d+ rad/s"
    ):
        fit_gyro_bias(rec, find_still_segments(rec)[0])


def test_no_still_period_for_gyro_bias(random_pose_recording) -> None:
    with pytest.raises(CalibrationError, match="no still period to measure the gyroscope bias"):
        fit_gyro_bias(random_pose_recording, [])


def test_magnetometer_hard_and_soft_iron_are_recovered(pod, random_pose_recording) -> None:
    fit = fit_magnetometer(random_pose_recording.mag, field_strength_ut=pod.field_strength_ut)
    err = np.abs(fit.hard_iron - pod.mag_hard_iron).max() / pod.field_strength_ut
    assert err < 0.02
    np.testing.assert_allclose(fit.soft_iron, np.linalg.inv(pod.mag_soft_iron), atol=0.01)
    corrected = (random_pose_recording.mag - fit.hard_iron) @ fit.soft_iron.T
    norms = np.linalg.norm(corrected, axis=1)
    assert abs(norms.mean() - pod.field_strength_ut) < 0.1
    assert fit.coverage > 0.6 and fit.field_given


def test_field_strength_is_estimated_when_not_given(pod, random_pose_recording) -> None:
    fit = fit_magnetometer(random_pose_recording.mag)
    assert not fit.field_given
    assert np.linalg.det(fit.soft_iron) == pytest.approx(1.0, abs=1e-3)
    assert fit.field_strength_ut == pytest.approx(
        pod.field_strength_ut * np.cbrt(np.linalg.det(pod.mag_soft_iron)), rel=0.01
    )


def test_saturated_magnetometer_is_refused(random_pose_recording) -> None:
    mag = random_pose_recording.mag.copy()
    mag[:, 1] = np.minimum(mag[:, 1], np.percentile(mag[:, 1], 90))
    with pytest.raises(
        CalibrationError, match=r"y axis sits at .* uT in \d+ readings .*: it saturated"
    ):
        check_saturation(mag)


def test_rotation_about_one_axis_is_not_enough_for_the_magnetometer(pod) -> None:
    rng = np.random.default_rng(22)
    yaw = [
        np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        for a in np.linspace(0, 2 * np.pi, 13)
    ]
    rec = record_poses(pod, yaw, rng, hold_s=0.2, move_s=1.0)
    with pytest.raises(CalibrationError, match=r"cover \d+% of directions \(need 50%\)"):
        fit_magnetometer(rec.mag)


def test_magnetometer_in_gauss_is_detected(random_pose_recording) -> None:
    with pytest.raises(CalibrationError, match="It looks like gauss: multiply mx, my, mz by 100"):
        fit_magnetometer(random_pose_recording.mag / 100.0)


def test_field_that_changes_during_recording_is_refused(random_pose_recording) -> None:
    mag = random_pose_recording.mag.copy()
    mag[::2] += 15.0  # something magnetic moving with the pod half the time
    with pytest.raises(CalibrationError, match="do not lie on an ellipsoid"):
        fit_magnetometer(mag, field_strength_ut=48.0)


def test_a_field_bent_by_steel_is_refused_with_what_to_do(random_pose_recording) -> None:
    """Next to a goal post the fit came out squashed and was refused as 'not a plausible
    correction ... calibrate the pod again', which failed the same way in the same place; a
    field inflated by steel was accepted against --field-ut, scaling the soft iron silently."""
    raw = random_pose_recording.mag
    center = raw.mean(axis=0)
    squashed = (raw - center) * np.array([1.0, 1.0, 0.45]) + center
    with pytest.raises(CalibrationError, match=r"squashed far out of round \(soft-iron condition "
                                               r"2\.\d+, limit 2;.*steel or a magnet.*--no-mag"):
        fit_magnetometer(squashed, field_strength_ut=48.0 * 0.8)
    inflated = (raw - center) * 1.5 + center
    with pytest.raises(CalibrationError, match=r"show a field of 7\d\.\d uT where the local field "
                                               r"is 48\.0 uT \(\d+% off, limit 20%\).*goal posts"):
        fit_magnetometer(inflated, field_strength_ut=48.0)
    assert fit_magnetometer(raw, field_strength_ut=48.0).field_strength_ut == 48.0
