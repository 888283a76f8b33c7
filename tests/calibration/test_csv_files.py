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


def test_imu_csv_saved_by_excel_with_decimal_commas_reads_the_same(
    tmp_path: Path, random_pose_recording: ImuRecording
) -> None:
    """Excel in decimal-comma locales writes ';' between cells and '0,981' in them."""
    import numpy as np

    plain = tmp_path / "plain.csv"
    write_imu_csv(plain, random_pose_recording)
    europe = tmp_path / "excel-de.csv"
    europe.write_text("\n".join(line.replace(",", ";").replace(".", ",") for line in plain.read_text().splitlines()))
    a, b = read_imu_csv(plain), read_imu_csv(europe)
    np.testing.assert_array_equal(a.accel, b.accel)
    np.testing.assert_array_equal(a.t, b.t)


def test_clock_csv_with_semicolons_reads(tmp_path: Path) -> None:
    path = tmp_path / "clock.csv"
    path.write_text(CLOCK_CSV.replace(",", ";").replace("\na;", "\nC0:FE:00:00:00:01;"))
    assert [o.host_time_ns for o in read_clock_csv(path)] == [1000, 1000002000]
    assert {o.device for o in read_clock_csv(path)} == {"C0:FE:00:00:00:01"}
