"""Calibration CSVs as operators hand them over: exported by Excel (BOM), or the wrong file."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusion_edge.calibration.clock import read_clock_csv
from fusion_edge.calibration.recording import ImuRecording, read_imu_csv, write_imu_csv
from fusion_edge.errors import CalibrationError

CLOCK_CSV = "device,boot_id,device_time_us,host_time_ns\na,1,0,1000\na,1,1000000,1000002000\n"


def test_imu_csv_with_a_byte_order_mark_reads(tmp_path: Path, random_pose_recording: ImuRecording) -> None:
    plain = tmp_path / "plain.csv"
    write_imu_csv(plain, random_pose_recording)
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert read_imu_csv(bom).n == read_imu_csv(plain).n


def test_clock_csv_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    path = tmp_path / "clock.csv"
    path.write_bytes(b"\xef\xbb\xbf" + CLOCK_CSV.encode())
    assert [o.device for o in read_clock_csv(path)] == ["a", "a"]


@pytest.mark.parametrize("reader", [read_imu_csv, read_clock_csv])
def test_binary_file_is_a_calibration_error(tmp_path: Path, reader) -> None:
    path = tmp_path / "pod.csv"
    path.write_bytes(b"\x00\x01\xff\xfe\x89PNG")
    with pytest.raises(CalibrationError, match="is not a text CSV"):
        reader(path)


@pytest.mark.parametrize("reader", [read_imu_csv, read_clock_csv])
def test_folder_is_named_as_a_folder(tmp_path: Path, reader) -> None:
    with pytest.raises(CalibrationError, match="is a folder"):
        reader(tmp_path)
