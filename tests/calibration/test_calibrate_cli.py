"""`fusion-edge calibrate imu|clock` through typer's CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from fusion_edge.calibration.recording import write_imu_csv
from fusion_edge.calibration.simulate import SimulatedClock, simulate_arrivals
from fusion_edge.cli.calibrate_commands import calibrate_app

app = typer.Typer()
app.add_typer(calibrate_app, name="calibrate")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")


def test_imu_from_recording_writes_the_file_and_prints_quality(
    tmp_path, random_pose_recording
) -> None:
    csv = tmp_path / "pod-07.csv"
    write_imu_csv(csv, random_pose_recording)
    out = tmp_path / "cal.json"
    result = runner.invoke(
        app,
        [
            "calibrate",
            "imu",
            "--recording",
            str(csv),
            "--out",
            str(out),
            "--pod-id",
            "pod-07",
            "--field-ut",
            "48",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["format"] == "fusion-edge-imu-calibration" and doc["pod_id"] == "pod-07"
    assert doc["quality"]["mag"]["field_strength_ut"] == 48.0
    for text in ("IMU calibration of pod pod-07", "sphere", "hard iron", "residual RMS", "wrote"):
        assert text in result.output


def test_default_output_name_and_no_mag(tmp_path, six_position_recording) -> None:
    csv = tmp_path / "left-ankle.csv"
    write_imu_csv(csv, six_position_recording)
    result = runner.invoke(app, ["calibrate", "imu", "--recording", str(csv), "--no-mag"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "left-ankle.imu-calibration.json").read_text())
    assert "mag_hard_iron" not in doc and doc["quality"]["accel"]["method"] == "six_position"
    assert "not calibrated" in result.output


def test_out_with_a_trailing_slash_is_a_folder_to_create(tmp_path, six_position_recording) -> None:
    """'--out cal/' used to write a file named 'cal' (the path type dropped the '/')."""
    csv = tmp_path / "left-ankle.csv"
    write_imu_csv(csv, six_position_recording)
    result = runner.invoke(app, ["calibrate", "imu", "--recording", str(csv), "--no-mag",
                                 "--out", f"{tmp_path / 'cal'}/"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cal" / "left-ankle.imu-calibration.json").is_file()
    (tmp_path / "taken").write_text("notes")
    result = runner.invoke(app, ["calibrate", "imu", "--recording", str(csv), "--no-mag",
                                 "--out", f"{tmp_path / 'taken'}/"])
    assert result.exit_code == 2 and "names a folder, but" in " ".join(result.output.split())
    assert (tmp_path / "taken").read_text() == "notes"


def test_bad_recording_exits_2_with_the_message_and_writes_nothing(
    tmp_path, random_pose_recording
) -> None:
    import dataclasses

    csv = tmp_path / "g.csv"
    write_imu_csv(
        csv, dataclasses.replace(random_pose_recording, accel=random_pose_recording.accel / 9.80665)
    )
    out = tmp_path / "cal.json"
    result = runner.invoke(app, ["calibrate", "imu", "--recording", str(csv), "--out", str(out)])
    assert result.exit_code == 2
    assert "gravity in g, not m/s^2" in " ".join(result.output.split())
    assert not out.exists()


def test_imu_needs_exactly_one_source() -> None:
    result = runner.invoke(app, ["calibrate", "imu"])
    assert result.exit_code == 2
    assert "give either --recording FILE.csv" in " ".join(result.output.split())


def test_live_mode_without_ble_transport_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fusion_edge.firmware_bridge.ble", None)
    result = runner.invoke(app, ["calibrate", "imu", "--pod", "AA:BB:CC:DD:EE:FF"])
    assert result.exit_code == 2
    assert "live calibration needs the BLE transport" in " ".join(result.output.split())


def test_clock_report(tmp_path) -> None:
    rng = np.random.default_rng(51)
    lines = ["device,boot_id,device_time_us,host_time_ns"]
    for name, drift in (("pod-1", 35.0), ("pod-2", -12.0)):
        d, h, _ = simulate_arrivals(SimulatedClock(2_000_000_000, drift), rng, duration_s=60.0)
        lines += [f"{name},1,{a},{b}" for a, b in zip(d.tolist(), h.tolist(), strict=True)]
    csv = tmp_path / "clock.csv"
    csv.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["calibrate", "clock", "--recording", str(csv)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines() if "pod-" in line}
    assert set(rows) == {"pod-1", "pod-2"}
    drift1 = float(rows["pod-1"].split()[-4].replace("+", ""))
    assert drift1 == pytest.approx(35.0, abs=12.0)
    assert "estimated cross-device alignment error" in result.output


def test_clock_bad_csv(tmp_path) -> None:
    csv = tmp_path / "clock.csv"
    csv.write_text("device,boot\n")
    result = runner.invoke(app, ["calibrate", "clock", "--recording", str(csv)])
    assert result.exit_code == 2
    assert "lacks column(s) boot_id, device_time_us, host_time_ns" in " ".join(
        result.output.split()
    )


def test_calibration_package_stays_light() -> None:
    code = (
        "import sys, fusion_edge.calibration, fusion_edge.cli.calibrate_commands; "
        "heavy = [m for m in ('torch', 'bleak', 'bumble', 'serial', 'scipy') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
