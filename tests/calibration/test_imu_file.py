"""ImuCalibration: apply, the versioned JSON file, and its validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fusion_edge.calibration.imu import (
    ImuCalibration,
    calibration_path,
    load_calibration,
    save_calibration,
)
from fusion_edge.errors import CalibrationError

GOLDEN = Path(__file__).parents[1] / "data" / "calibration" / "pod-07.imu-calibration.json"


def test_golden_file_loads_and_applies_as_documented() -> None:
    cal = load_calibration(GOLDEN, pod_id="pod-07")
    assert cal.has_magnetometer and cal.created == "2026-01-15T10:00:00Z"
    raw = np.array([[1.0, 2.0, 9.0, 0.1, 0.2, 0.3, 40.0, 10.0, -20.0]])
    out = cal.apply(raw)
    m = np.array([[1.01, 0.002, -0.001], [0.002, 0.99, 0.003], [-0.001, 0.003, 1.02]])
    s = np.array([[1.05, 0.02, 0.0], [0.02, 0.97, -0.01], [0.0, -0.01, 0.99]])
    np.testing.assert_allclose(out[0, 0:3], m @ (raw[0, 0:3] - [0.12, -0.05, 0.3]))
    np.testing.assert_allclose(out[0, 3:6], raw[0, 3:6] - [0.01, -0.02, 0.005])
    np.testing.assert_allclose(out[0, 6:9], s @ (raw[0, 6:9] - [12.5, -30.0, 4.25]))
    np.testing.assert_allclose(cal.apply(raw[0, :6]), out[0, :6])  # 1-D, 6 columns


def test_round_trip_through_a_file(tmp_path: Path, random_pose_recording) -> None:
    from fusion_edge.calibration.imu_fit import calibrate_imu

    cal = calibrate_imu(random_pose_recording, "AA:BB:CC:00:11:22")
    path = save_calibration(cal, tmp_path)
    assert path == calibration_path(tmp_path, "AA:BB:CC:00:11:22")
    assert path.name == "AA_BB_CC_00_11_22.imu-calibration.json"
    back = load_calibration(tmp_path, pod_id="AA:BB:CC:00:11:22")
    assert back.to_dict() == json.loads(path.read_text())
    for name in ("accel_bias", "accel_matrix", "gyro_bias", "mag_hard_iron", "mag_soft_iron"):
        np.testing.assert_array_equal(getattr(back, name), getattr(cal, name))
    assert back.quality == json.loads(json.dumps(cal.quality))
    x = np.hstack(
        [random_pose_recording.accel, random_pose_recording.gyro, random_pose_recording.mag]
    )[:100]
    np.testing.assert_array_equal(back.apply(x), cal.apply(x))
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left nothing behind


def test_six_axis_calibration_passes_magnetometer_columns_through() -> None:
    cal = ImuCalibration("p", np.zeros(3), np.eye(3), np.ones(3))
    x = np.arange(18.0).reshape(2, 9)
    out = cal.apply(x)
    np.testing.assert_array_equal(out[:, 6:9], x[:, 6:9])
    np.testing.assert_array_equal(out[:, 3:6], x[:, 3:6] - 1)
    assert "mag_hard_iron" not in cal.to_dict()


def test_apply_refuses_wrong_columns() -> None:
    cal = ImuCalibration("p", np.zeros(3), np.eye(3), np.zeros(3))
    with pytest.raises(CalibrationError, match=r"must be \[n, 6\] \(accel, gyro\) or \[n, 9\]"):
        cal.apply(np.zeros((4, 7)))


def _write(tmp_path: Path, **changes) -> Path:
    doc = json.loads(GOLDEN.read_text())
    for key, value in changes.items():
        if value is None:
            doc.pop(key)
        else:
            doc[key] = value
    path = tmp_path / "c.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "something-else"}, "is not a fusion-edge IMU calibration"),
        ({"version": 2}, "version 2; this fusion-edge reads version 1. Upgrade fusion-edge."),
        ({"version": 0}, "version 0; this fusion-edge reads version 1. Calibrate the pod again."),
        ({"accel_bias": [1, 2]}, "'accel_bias' must be a list of 3 finite numbers"),
        ({"gyro_bias": None}, "lacks gyro_bias"),
        ({"accel_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 0]]}, "'accel_matrix' is not a plausible"),
        ({"accel_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, "x"]]}, "must be a 3x3 list"),
        ({"mag_soft_iron": None}, "'mag_hard_iron' and 'mag_soft_iron' come together"),
        ({"mag_soft_iron": [[1, 0.1, 0], [0, 1, 0], [0, 0, 1]]}, "must be symmetric"),
        ({"pod_id": ""}, "must be a non-empty string"),
        # Hand edits that used to load without a word:
        ({"accel_bias": [-3.8, 0.1, 0.1]}, "'accel_bias' x is -3.8 m/s.2, more than any sensor"),
        ({"gyro_bias": [0.0, 0.0, 0.4962]}, "'gyro_bias' z is 0.4962 rad/s, more than any sensor"),
        ({"accel_bias": ["-0.38", 0.1, 0.1]}, "'accel_bias' must be a list of 3 finite numbers"),
        ({"gyro_bais": [0.0, 0.0, 0.0]}, "unknown key 'gyro_bais'; did you mean 'gyro_bias'?"),
    ],
)
def test_invalid_files_are_refused(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(CalibrationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_calibration(_write(tmp_path, **changes))


def test_file_for_another_pod_is_refused() -> None:
    with pytest.raises(CalibrationError, match="is the calibration of pod 'pod-07', not 'pod-08'"):
        load_calibration(GOLDEN, pod_id="pod-08")


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CalibrationError, match="is not valid JSON"):
        load_calibration(bad)
    with pytest.raises(
        CalibrationError, match="calibrate the pod with 'fusion-edge calibrate imu'"
    ):
        load_calibration(tmp_path / "none.json")


def test_nan_in_quality_is_written_as_null(tmp_path: Path) -> None:
    cal = ImuCalibration("p", np.zeros(3), np.eye(3), np.zeros(3), quality={"x": float("nan")})
    path = save_calibration(cal, tmp_path / "p.json")
    assert json.loads(path.read_text())["quality"] == {"x": None}


def test_calibration_arrays_are_read_only() -> None:
    cal = ImuCalibration("p", np.zeros(3), np.eye(3), np.zeros(3))
    with pytest.raises(ValueError):
        cal.gyro_bias[0] = 1.0
