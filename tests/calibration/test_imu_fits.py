"""Still-period detection, the sphere/ellipsoid fits and the accelerometer methods."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_edge.calibration.accelerometer import (
    AccelMethod,
    fit_accelerometer,
    misalignment_angles,
    scale_factors,
)
from fusion_edge.calibration.ellipsoid import (
    fit_ellipsoid_algebraic,
    fit_sphere_mapping,
    symmetric_polar_factor,
)
from fusion_edge.calibration.recording import STANDARD_GRAVITY
from fusion_edge.calibration.rotation import random_rotation
from fusion_edge.calibration.simulate import SimulatedImu, six_position_orientations
from fusion_edge.calibration.stillness import find_still_segments, group_poses, moving_std
from fusion_edge.errors import CalibrationError

G = STANDARD_GRAVITY


def test_moving_std_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)) + 50.0
    got = moving_std(x, 11)
    for i in (5, 50, 194):
        w = x[i - 5 : i + 6]
        assert got[i] == pytest.approx(np.sqrt(w.var(axis=0).sum()), rel=1e-9)


def test_six_position_recording_has_six_still_poses(six_position_recording) -> None:
    still, moved = find_still_segments(six_position_recording)
    assert len(still) == 6 and not moved
    poses = group_poses(still)
    assert len(poses) == 6
    for seg in still:
        assert 2.0 < seg.duration_s <= 3.0


def _true_points(imu: SimulatedImu, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    up = np.array([random_rotation(rng).T @ [0, 0, G] for _ in range(k)])
    return up @ imu.accel_response.T + imu.accel_bias


def test_sphere_mapping_recovers_a_known_ellipsoid(pod: SimulatedImu) -> None:
    pts = _true_points(pod, 40, 1)
    fit = fit_sphere_mapping(pts, G)
    np.testing.assert_allclose(fit.center, pod.accel_bias, atol=1e-6)
    # M is determined up to a rotation: compare the rotation-free parts.
    np.testing.assert_allclose(fit.matrix, symmetric_polar_factor(pod.true_accel_matrix), atol=1e-8)
    assert fit.residual_rms < 1e-8
    assert np.all(np.isfinite(fit.param_std))


def test_algebraic_ellipsoid_fit_is_exact_without_noise(pod: SimulatedImu) -> None:
    pts = _true_points(pod, 30, 2)
    center, shape = fit_ellipsoid_algebraic(pts)
    np.testing.assert_allclose(center, pod.accel_bias, atol=1e-8)
    d = np.einsum("ni,ij,nj->n", pts - center, shape, pts - center)
    np.testing.assert_allclose(d, 1.0, atol=1e-9)


def test_points_in_a_plane_leave_the_fit_undetermined() -> None:
    phi = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    pts = G * np.column_stack([np.cos(phi), np.sin(phi), np.zeros_like(phi)])
    fit = fit_sphere_mapping(pts, G)
    assert not np.all(np.isfinite(fit.param_std))


def test_scale_and_misalignment_are_rotation_independent(pod: SimulatedImu) -> None:
    m = pod.true_accel_matrix
    q = random_rotation(np.random.default_rng(3))
    np.testing.assert_allclose(scale_factors(q @ m), scale_factors(m), atol=1e-12)
    np.testing.assert_allclose(misalignment_angles(q @ m), misalignment_angles(m), atol=1e-12)
    np.testing.assert_allclose(scale_factors(m), np.linalg.norm(pod.accel_response, axis=1))


def _errors(fit, imu: SimulatedImu) -> tuple[float, float, float]:
    scale = np.abs(scale_factors(fit.matrix) / np.linalg.norm(imu.accel_response, axis=1) - 1)
    mis = np.abs(misalignment_angles(fit.matrix) - misalignment_angles(imu.true_accel_matrix))
    bias = np.abs(fit.bias - imu.accel_bias)
    return float(scale.max()), float(mis.max()), float(bias.max())


def test_sphere_method_meets_the_targets(pod, random_pose_recording) -> None:
    still, _ = find_still_segments(random_pose_recording)
    poses = group_poses(still)
    fit = fit_accelerometer(np.array([p.accel_mean for p in poses]))
    assert fit.method is AccelMethod.SPHERE
    scale, mis, bias = _errors(fit, pod)
    assert scale < 0.01 and mis < 0.01 and bias < 0.005 * 16 * G
    assert fit.coverage == 1.0 and fit.residual_rms < 0.01


def test_six_position_method_meets_the_targets(pod, six_position_recording) -> None:
    still, _ = find_still_segments(six_position_recording)
    fit = fit_accelerometer(np.array([p.accel_mean for p in group_poses(still)]))
    assert fit.method is AccelMethod.SIX_POSITION
    scale, mis, bias = _errors(fit, pod)
    assert scale < 0.01 and mis < 0.02 and bias < 0.005 * 16 * G
    assert fit.max_pose_tilt_deg < 1.0


def _face_means(imu: SimulatedImu, faces: list[str]) -> np.ndarray:
    rot = dict(six_position_orientations())
    return np.array([imu.accel_response @ (rot[f].T @ [0, 0, G]) + imu.accel_bias for f in faces])


def test_single_pose_is_refused(pod) -> None:
    with pytest.raises(CalibrationError, match=r"single still pose \(face \+Z up\)"):
        fit_accelerometer(_face_means(pod, ["+Z"]))


def test_no_pose_is_refused() -> None:
    with pytest.raises(CalibrationError, match="no still pose was found"):
        fit_accelerometer(np.empty((0, 3)))


def test_too_few_poses_names_found_needed_and_missing_faces(pod) -> None:
    with pytest.raises(
        CalibrationError,
        match=r"found 4 distinct still pose\(s\), but the calibration needs at least 12 varied "
        r"poses, or all six faces up \(faces missing or not within 20 deg of level: -X, -Y\)",
    ):
        fit_accelerometer(_face_means(pod, ["+Z", "-Z", "+X", "+Y"]))


def test_poses_in_one_hemisphere_are_refused(pod) -> None:
    rng = np.random.default_rng(4)
    pts = []
    while len(pts) < 15:
        up = random_rotation(rng).T @ [0, 0, G]
        if up[2] > 3.0:  # only +Z-ish faces up: bias and scale along z are not separable
            pts.append(pod.accel_response @ up + pod.accel_bias)
    with pytest.raises(
        CalibrationError, match="do not span enough directions.*faces never up: .*-Z"
    ):
        fit_accelerometer(np.array(pts))


def test_tilted_six_position_pose_is_refused(pod) -> None:
    means = _face_means(pod, ["+Z", "-Z", "+X", "-X", "+Y", "-Y"])
    tilt = np.radians(4.0)
    # -X pose held 4 deg off level: rotate its gravity vector about y.
    up = np.array([-np.cos(tilt), 0.0, np.sin(tilt)]) * G
    means[3] = pod.accel_response @ up + pod.accel_bias
    with pytest.raises(CalibrationError, match=r"pose -X up \(pose 4\) was held .* from level"):
        fit_accelerometer(means)


def test_six_position_cannot_see_a_push_along_gravity(pod) -> None:
    # Documented limit: 6 poses have no redundancy along gravity; only the stillness checks
    # (std and drift inside each pose) protect the six-position method from a pushed pose.
    means = _face_means(pod, ["+Z", "-Z", "+X", "-X", "+Y", "-Y"])
    means[4] = (means[4] - pod.accel_bias) * 1.04 + pod.accel_bias
    fit = fit_accelerometer(means)
    assert fit.residual_rms < 0.1  # mostly absorbed: accepted, not refused


def test_a_moving_pose_shows_as_residual(pod) -> None:
    rng = np.random.default_rng(5)
    pts = np.array([pod.accel_response @ (random_rotation(rng).T @ [0, 0, G]) for _ in range(16)])
    pts += pod.accel_bias
    pts[7] *= 1.05  # 0.5 m/s^2 of linear acceleration during a "still" pose
    with pytest.raises(CalibrationError, match=r"worst is pose 8 \(still from t=7.0 s\)"):
        fit_accelerometer(pts, pose_times=[float(i) for i in range(16)])
