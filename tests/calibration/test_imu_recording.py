"""CSV reading and the checks every recording passes before any fit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from fusion_edge.calibration.recording import (
    ImuRecording,
    check_accel_units,
    read_imu_csv,
    write_imu_csv,
)
from fusion_edge.errors import CalibrationError


def _tiny(n: int = 50) -> ImuRecording:
    t = np.arange(n) / 100.0
    accel = np.tile([0.0, 0.0, 9.81], (n, 1))
    return ImuRecording(t, accel, np.zeros((n, 3)), None, source="tiny.csv")


def test_csv_round_trip_keeps_every_column(tmp_path: Path, random_pose_recording) -> None:
    path = tmp_path / "rec.csv"
    write_imu_csv(path, random_pose_recording)
    back = read_imu_csv(path)
    assert back.n == random_pose_recording.n
    assert back.has_mag
    np.testing.assert_allclose(back.accel, random_pose_recording.accel, rtol=1e-8)
    np.testing.assert_allclose(back.mag, random_pose_recording.mag, rtol=1e-8)
    assert back.source == "rec.csv"


def test_csv_columns_in_any_order_and_mag_optional(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    rows = "\n".join(f"{9.81},{i / 100},0,0,0,0,0" for i in range(30))
    path.write_text("az,t,ax,ay,gx,gy,gz\n" + rows + "\n")
    rec = read_imu_csv(path)
    assert not rec.has_mag
    np.testing.assert_allclose(rec.accel[:, 2], 9.81)
    assert rec.rate_hz == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("t,ax,ay,az,gx,gy\n", "the header lacks column(s) gz"),
        ("t,ax,ay,az,gx,gy,gz,mx\n0,0,0,9.8,0,0,0,1\n", "only some magnetometer columns"),
        ("t,ax,ay,az,gx,gy,gz\n0,0,0,abc,0,0,0\n", "line 2, column 'az' holds 'abc', not a number"),
        ("", "the file is empty"),
    ],
)
def test_csv_problems_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_imu_csv(path)


def test_missing_file_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="does not exist; give the path of a CSV"):
        read_imu_csv(tmp_path / "nope.csv")


def test_nan_is_refused_with_column_and_sample() -> None:
    rec = _tiny()
    gyro = rec.gyro.copy()
    gyro[17, 1] = np.nan
    with pytest.raises(CalibrationError, match=r"first in column 'gy' at sample 17"):
        dataclasses.replace(rec, gyro=gyro)


def test_empty_cell_in_csv_becomes_a_nan_refusal(tmp_path: Path) -> None:
    path = tmp_path / "gap.csv"
    rows = [f"{i / 100},0,0,9.81,0,0,0" for i in range(30)]
    rows[5] = "0.05,0,,9.81,0,0,0"
    path.write_text("t,ax,ay,az,gx,gy,gz\n" + "\n".join(rows) + "\n")
    with pytest.raises(CalibrationError, match=r"gap\.csv: line 7, column 'ay' is empty or NaN"):
        read_imu_csv(path)  # the file's line, not the sample's index


def test_a_truncated_last_line_is_named_as_such(tmp_path: Path) -> None:
    """A copy cut short used to read 'NaN/missing value(s) ... at sample 29'."""
    path = tmp_path / "cut.csv"
    rows = [f"{i / 100},0,0,9.81,0,0,0" for i in range(30)]
    path.write_text("t,ax,ay,az,gx,gy,gz\n" + "\n".join(rows)[:-6])
    with pytest.raises(CalibrationError, match=r"cut\.csv: the last line \(31\) is cut short \(it "
                                               r"has no 'gx'\): the file was truncated"):
        read_imu_csv(path)


def test_time_going_backwards_is_refused() -> None:
    rec = _tiny()
    t = rec.t.copy()
    t[10] = t[8]
    with pytest.raises(CalibrationError, match="time does not strictly increase at sample 10"):
        dataclasses.replace(rec, t=t)


def test_duplicate_timestamps_are_refused() -> None:
    rec = _tiny()
    t = rec.t.copy()
    t[21] = t[20]
    with pytest.raises(CalibrationError, match="sort the samples by time and remove duplicates"):
        dataclasses.replace(rec, t=t)


def test_too_few_samples() -> None:
    with pytest.raises(CalibrationError, match="only 5 samples"):
        ImuRecording(np.arange(5.0), np.zeros((5, 3)), np.zeros((5, 3)))


def test_shape_mismatch() -> None:
    with pytest.raises(CalibrationError, match=r"gyro must have shape \(30, 3\)"):
        ImuRecording(np.arange(30.0), np.zeros((30, 3)), np.zeros((29, 3)))


def test_accelerometer_in_g_is_detected(random_pose_recording) -> None:
    rec = dataclasses.replace(random_pose_recording, accel=random_pose_recording.accel / 9.80665)
    with pytest.raises(
        CalibrationError, match=r"gravity in g, not m/s\^2.*multiply ax, ay, az by 9.80665"
    ):
        check_accel_units(rec)


def test_accelerometer_in_milli_g_is_detected(random_pose_recording) -> None:
    rec = dataclasses.replace(
        random_pose_recording, accel=random_pose_recording.accel / 9.80665 * 1000
    )
    with pytest.raises(CalibrationError, match="gravity in milli-g"):
        check_accel_units(rec)


def test_accelerometer_and_gyroscope_columns_swapped_are_named(random_pose_recording) -> None:
    """They used to read only 'typical magnitude is 0.054, far from gravity'."""
    rec = dataclasses.replace(random_pose_recording, accel=random_pose_recording.gyro,
                              gyro=random_pose_recording.accel)
    with pytest.raises(CalibrationError, match=r"but the gyroscope's is 9\.\d+, about gravity: the "
                                               r"accelerometer and gyroscope columns look swapped"):
        check_accel_units(rec)


def test_accelerometer_in_m_s2_passes(random_pose_recording) -> None:
    assert check_accel_units(random_pose_recording) == pytest.approx(9.8, abs=0.3)


def test_arrays_are_read_only(random_pose_recording) -> None:
    with pytest.raises(ValueError):
        random_pose_recording.accel[0, 0] = 1.0
