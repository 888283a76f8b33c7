"""`calibrate`, `bundle`, `engine`, `pods` and `gnss` with an operator's mistakes: one-line errors
(exit 2, no traceback) that say what is wrong and what to do, and nothing good lost or
half-written.

No trained model, radio or receiver is needed: bundles are written with `BundleWriter` from
stand-in files, receivers are pseudo-terminals.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from fusion_edge.calibration.imu import ImuCalibration, save_calibration
from fusion_edge.calibration.quant_sets import CalibrationSet
from fusion_edge.calibration.recording import ImuRecording, write_imu_csv
from fusion_edge.cli.app import app
from fusion_edge.errors import CalibrationError
from fusion_edge.runtime.bundle import BundleWriter

runner = CliRunner()


def invoke(*args: Any):
    r = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    r.text = " ".join(r.output.split())  # the error console wraps long lines
    return r


def assert_clean_error(r: Any, *fragments: str) -> None:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    for fragment in fragments:
        assert fragment in r.text, r.text


# ------------------------------------------------------------------------------ bundles


def make_bundle(root: Path) -> Path:
    """A schema-valid bundle with stand-in model files (enough for verify and engine build)."""
    out = root / "bundle"
    with BundleWriter(out) as w:
        for name in ("fp32", "int8_qdq_tensorrt"):
            w.path(f"model_{name}.onnx").write_bytes(name.encode() * 10)
            w.add_variant(
                {
                    "name": name,
                    "file": f"model_{name}.onnx",
                    "precision": "int8" if "int8" in name else "fp32",
                    "format": "onnx",
                    "metrics": {},
                    "latency_ms": {},
                }
            )
        w.commit(
            {
                "model_name": "stand-in",
                "fusion_edge_version": "0",
                "inputs": [
                    {
                        "name": "imu",
                        "channels": ["ax", "ay"],
                        "sample_rate_hz": 40.0,
                        "window_samples": 80,
                        "hop_seconds": 1.0,
                    }
                ],
                "preprocessing": {},
                "normalization": {"imu": {"mean": [0.0, 0.0], "std": [1.0, 1.0]}},
                "tasks": [{"name": "activity", "kind": "class"}],
                "fallback": {"variant": "fp32", "file": "model_fp32.onnx", "escalation_threshold": 0.6},
                "export_config": {},
            }
        )
    return out


def edit_manifest(bundle: Path, change: Any) -> None:
    path = bundle / "manifest.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d["variants"][0].update(precision=["fp32"]), "variants[0].precision must be a non-empty string"),
        (lambda d: d["variants"][1].update(name={"n": 1}), "variants[1].name must be a non-empty string"),
        (lambda d: d["fallback"].update(variant=["fp32"]), "fallback.variant must be a non-empty string"),
        (lambda d: d["inputs"][0].update(name=["imu"]), "inputs[0].name must be a non-empty string"),
        (lambda d: d["variants"][0].update(size_bytes=str(d["variants"][0]["size_bytes"])),
         "variants[0].size_bytes must be a whole number of bytes"),
    ],
)
def test_bundle_verify_refuses_wrong_types_in_the_manifest(tmp_path: Path, change: Any, fragment: str) -> None:
    """A list or dict where a name belongs used to end in `TypeError: unhashable type`, and a
    size written as a string in 'has 40 bytes, the manifest says 40'."""
    bundle = make_bundle(tmp_path)
    assert invoke("bundle", "verify", bundle).exit_code == 0
    edit_manifest(bundle, change)
    r = invoke("bundle", "verify", bundle)
    assert_clean_error(r, fragment, "re-export the bundle")


def test_bundle_verify_says_when_a_file_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fusion_edge.runtime.bundle as rb

    bundle = make_bundle(tmp_path)

    def denied(path: Any) -> str:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(rb, "sha256_file", denied)
    r = invoke("bundle", "verify", bundle)
    assert_clean_error(r, "variant 'fp32'", "cannot be read (Permission denied)", "permissions")


@pytest.fixture()
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """`import tensorrt` fails, as on a machine without it (None in sys.modules: ImportError)."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def test_engine_build_without_tensorrt_shows_the_whole_install_command(tmp_path: Path, no_tensorrt: None) -> None:
    """Rich markup ate '[gpu]': the operator was told to `pip install 'fusion-edge'`."""
    r = invoke("engine", "build", make_bundle(tmp_path), "--cache", tmp_path / "cache")
    assert r.exit_code == 2
    assert "pip install 'fusion-edge[gpu]'" in r.text
    # ...and not on a Jetson, where TensorRT comes with JetPack (pyproject.toml says so too).
    assert "sudo apt install nvidia-jetpack" in " ".join(r.text.split())
    assert r.text.count("engine_fp16: skipped") == 1


def test_engine_build_dedupes_precisions_and_refuses_a_zero_batch(tmp_path: Path, no_tensorrt: None) -> None:
    bundle = make_bundle(tmp_path)
    r = invoke("engine", "build", bundle, "--precision", "fp16,fp16")
    assert r.text.count("engine_fp16: skipped") == 1
    r = invoke("engine", "build", bundle, "--max-batch", "0")
    assert_clean_error(r, "--max-batch 0 must be at least 1", "player count")
    assert "skipped" not in r.text


def test_engine_build_into_an_unwritable_cache_says_which_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With tensorrt present a cache path under a file ended in a NotADirectoryError traceback."""
    import fusion_edge.export.tensorrt as trt_mod

    monkeypatch.setattr(trt_mod, "_trt", lambda: SimpleNamespace(__version__="10.0"))
    monkeypatch.setattr(trt_mod, "build_engine", lambda *a, **k: pytest.fail("must not build"))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    r = invoke("engine", "build", make_bundle(tmp_path), "--cache", blocker / "engines")
    assert_clean_error(r, "engine cache folder", "cannot be written", "--cache", "FUSION_EDGE_ENGINE_CACHE")


# ------------------------------------------------------------------------- calibration


def still_recording(path: Path) -> Path:
    """A short CSV that parses (the checks under test come first)."""
    n = 200
    t = np.arange(n) / 100.0
    accel = np.tile([0.0, 0.0, 9.81], (n, 1))
    write_imu_csv(path, ImuRecording(t, accel, np.zeros((n, 3)), np.tile([20.0, 0, 40.0], (n, 1))))
    return path


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("48000", "looks like nanotesla (what the WMM prints): give 48"), ("nan", "not a positive number")],
)
def test_calibrate_imu_refuses_an_implausible_field_strength(tmp_path: Path, value: str, fragment: str) -> None:
    """48000 (nT from the WMM) was used as uT; nan ended in a LinAlgError traceback."""
    csv = still_recording(tmp_path / "pod.csv")
    out = tmp_path / "cal.json"
    r = invoke("calibrate", "imu", "--recording", csv, "--field-ut", value, "--out", out)
    assert_clean_error(r, fragment)
    assert not out.exists()


def test_calibrate_imu_refuses_an_unwritable_out_before_the_live_procedure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad --out was only found after the whole guided procedure (FileExistsError traceback)."""
    import fusion_edge.cli.calibrate_commands as cc

    monkeypatch.setattr(cc, "run_guided_over_ble", lambda *a, **k: pytest.fail("pod was streamed"))
    blocker = tmp_path / "cal.json"
    blocker.write_text("{}")
    r = invoke("calibrate", "imu", "--pod", "AA:BB:CC:DD:EE:FF", "--out", blocker / "x.json")
    assert_clean_error(r, "cannot write the calibration to", "give --out a file in a writable folder")
    assert blocker.read_text() == "{}"


def test_calibrate_imu_refuses_a_negative_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fusion_edge.cli.calibrate_commands as cc

    monkeypatch.setattr(cc, "run_guided_over_ble", lambda *a, **k: pytest.fail("pod was streamed"))
    monkeypatch.chdir(tmp_path)
    r = invoke("calibrate", "imu", "--pod", "AA:BB", "--hold", "-1")
    assert_clean_error(r, "--hold -1.0 must be a positive number of seconds")


def test_calibration_file_is_readable_by_the_kit(tmp_path: Path) -> None:
    """mkstemp's 0600 made a calibration written under sudo unreadable to the kit's user."""
    cal = ImuCalibration("pod-1", np.zeros(3), np.eye(3), np.zeros(3))
    old = os.umask(0o022)
    try:
        path = save_calibration(cal, tmp_path / "pod-1.imu-calibration.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # umask 022, set above
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_calibrate_clock_simulate_zero_says_how_many_pods(tmp_path: Path) -> None:
    """--simulate 0 was told 'the kit's allow-list of pods is empty'."""
    r = invoke("calibrate", "clock", "--simulate", "0", "--seconds", "1")
    assert_clean_error(r, "--simulate 0 is not a number of pods: give 1 or more")
    assert "allow-list" not in r.text


def test_calibrate_clock_warns_when_the_drift_is_not_measured(tmp_path: Path) -> None:
    csv = tmp_path / "clock.csv"
    csv.write_text(
        "device,boot_id,device_time_us,host_time_ns\n"
        + "".join(f"pod1,1,{k * 100_000},{k * 100_000_000 + 5_000_000}\n" for k in range(30))
    )
    r = invoke("calibrate", "clock", "--recording", csv)
    assert r.exit_code == 0, r.output
    assert "heard for less than 20 s: their drift is not yet measured" in r.text


def test_calibrate_clock_without_a_source_is_an_error_on_stderr() -> None:
    r = invoke("calibrate", "clock")
    assert_clean_error(r, "give one of --recording FILE.csv, --kit KIT.toml or --simulate N")
    assert "give one of" in r.stderr and "give one of" not in r.stdout


def test_quant_set_save_into_a_folder_leaves_nothing_behind(tmp_path: Path) -> None:
    """Saving to a folder was an IsADirectoryError traceback that left `<out>.tmp.npz`."""
    cset = CalibrationSet({"imu": np.zeros((16, 2, 8), np.float32)}, np.arange(16))
    folder = tmp_path / "sets"
    folder.mkdir()
    with pytest.raises(CalibrationError, match="is a folder; give the .npz file"):
        cset.save(folder)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(CalibrationError, match="cannot write the calibration set"):
        cset.save(tmp_path / "file.txt" / "q.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "sets"]


# -------------------------------------------------------------------------------- pods


def test_pods_scan_prints_advertised_names_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """A neighbour's pod advertising '[/]' crashed the table with a rich MarkupError."""
    import fusion_edge.cli.bridge_commands as bc

    monkeypatch.setattr(
        bc, "scan_pods", lambda *a, **k: [bc.ScannedPod("C0:FE:00:00:00:01", "[/]pod[b]", -50, None)]
    )
    r = invoke("pods", "scan", "--seconds", "1")
    assert r.exit_code == 0, r.output
    assert "[/]pod[b]" in r.output


def test_pods_scan_refuses_a_non_finite_time() -> None:
    """nan listened for no time at all; inf (not tested: it would hang) never ends."""
    r = invoke("pods", "scan", "--simulate", "1", "--seconds", "nan")
    assert_clean_error(r, "must be a positive number: give how long to listen")


# -------------------------------------------------------------------------------- gnss


class Pty:
    """A pseudo-terminal whose master side writes ``data`` every 50 ms while open."""

    def __init__(self, data: bytes) -> None:
        import tty

        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.port = os.ttyname(self.slave)
        self.data = data
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                os.write(self.master, self.data)
            except OSError:
                pass

    def __enter__(self) -> Pty:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        os.close(self.master)
        os.close(self.slave)


def test_gnss_read_of_a_missing_port_keeps_the_last_fixes_file(tmp_path: Path) -> None:
    """The --out file was truncated before the port was opened: last session's fixes lost."""
    out = tmp_path / "fixes.jsonl"
    out.write_text('{"last": "session"}\n')
    r = invoke("gnss", "read", tmp_path / "ttyNOPE", "--seconds", "0.3", "--out", out)
    assert_clean_error(r, "could not be opened")
    assert out.read_text() == '{"last": "session"}\n'


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--baud", "0"], "--baud 0 is not a line speed"),
        (["--show", "-1"], "--show -1 must be 0"),
        (["--out", "BLOCKER/x.jsonl"], "--out BLOCKER/x.jsonl cannot be written"),
        (["--stats", "."], "is a folder; give the file to write"),
    ],
)
def test_gnss_read_refuses_bad_options_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], fragment: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("BLOCKER").write_text("x")
    r = invoke("gnss", "read", tmp_path / "ttyNOPE", "--seconds", "0.3", *args)
    assert_clean_error(r, fragment)


def test_gnss_read_of_a_regular_file_says_it_is_not_a_serial_port(tmp_path: Path) -> None:
    log = tmp_path / "fixes.log"
    log.write_text("$GPGGA,...\n")
    r = invoke("gnss", "read", log, "--seconds", "0.3")
    assert_clean_error(r, "is a regular file, not a serial port", "/dev/serial/by-id/")
    assert "dialout" not in r.text


def test_gnss_read_of_garbage_points_at_the_baud_rate() -> None:
    """Bytes but no sentence (wrong --baud) used to end quietly with exit 0 and 0 fixes."""
    with Pty(bytes(range(256))) as pty:
        r = invoke("gnss", "read", pty.port, "--seconds", "0.5")
    assert r.exit_code == 0, r.output
    assert "not one NMEA sentence or UBX frame: the line speed is probably wrong (--baud 115200)" in r.text


def test_gnss_read_show_zero_says_zero_and_tag_sources_are_text(monkeypatch: pytest.MonkeyPatch) -> None:
    import fusion_edge.cli.bridge_commands as bc

    def fake_read(port: str, *, baud: int, seconds: Any, on_fix: Any, on_open: Any = None,
                  on_link: Any = None) -> dict:
        on_open()
        on_fix({**dict.fromkeys(bc._FIX_FIELDS), "source": "[/]VEST07"})
        keys = ("sentences", "ubx_frames", "checksum_errors", "unknown", "proprietary", "malformed",
                "garbage_bytes", "bytes_read", "reconnects")
        return {"port": port, "baud": baud, "seconds": 0.1, "fixes": 1, **dict.fromkeys(keys, 0)}

    monkeypatch.setattr(bc, "read_gnss", fake_read)
    r = invoke("gnss", "read", "/dev/ttyX", "--show", "0")
    assert r.exit_code == 0, r.output
    assert "Last 0 of 1 fixes" in r.text
    r = invoke("gnss", "read", "/dev/ttyX")
    assert r.exit_code == 0, r.output
    assert "[/]VEST07" in r.output


def test_gnss_simulate_link_never_replaces_a_real_file(tmp_path: Path) -> None:
    """--link on a file replaced it with a symlink and deleted it at the end."""
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    r = invoke("gnss", "simulate", "--seconds", "0.2", "--link", precious)
    assert_clean_error(r, "exists and is not a symlink", "give a new path")
    assert precious.read_text() == "keep me"
    r = invoke("gnss", "simulate", "--seconds", "0.2", "--link", tmp_path / "no-dir" / "gnss")
    assert_clean_error(r, "does not exist or cannot be written")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--seconds", "-1"], "--seconds -1.0 must be a positive number"),
        (["--seconds", "0.2", "--players", "3"], "--players 3 needs --scenario"),
        (["--seconds", "0.2", "--scenario", "5v5", "--players", "99"], "more than the 10 players"),
        (["--seconds", "0.2", "--scenario", "5v5", "--players", "0"], "--players 0 must be 1 or more"),
    ],
)
def test_gnss_simulate_refuses_bad_options(args: list[str], fragment: str) -> None:
    start = time.monotonic()
    r = invoke("gnss", "simulate", *args)
    assert_clean_error(r, fragment)
    assert time.monotonic() - start < 30


def test_calibrate_imu_live_lets_the_pod_decide_the_magnetometer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --mag/--no-mag the live route forced 'no magnetometer' (bool(None))."""
    import fusion_edge.cli.calibrate_commands as cc

    seen: list[Any] = []

    def fake_run(guided: Any, address: str, on_prompt: Any) -> None:
        seen.append(guided.with_magnetometer)
        raise CalibrationError("stop here")

    monkeypatch.setattr(cc, "run_guided_over_ble", fake_run)
    monkeypatch.chdir(tmp_path)
    assert invoke("calibrate", "imu", "--pod", "AA:BB").exit_code == 2
    assert invoke("calibrate", "imu", "--pod", "AA:BB", "--no-mag").exit_code == 2
    assert seen == [None, False]
