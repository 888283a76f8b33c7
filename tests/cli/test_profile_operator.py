"""`fusion-edge profile` (and its `capacity` / `compare`) and `fusion-edge replay` with an
operator's mistakes: one-line errors with exit code 2, options no mode uses refused rather than
ignored, and nothing good lost (the last profile's events, the bundle's own report, a recording).

No trained model is needed: where a command must stop before loading the bundle, loading it
fails the test; where it must fail part-way, a stand-in model carries just a manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fusion_edge.cli.app import app
from fusion_edge.runtime.field_kit import KIT_IMU_CHANNELS
from fusion_edge.runtime.profile.histogram import LatencyHistogram
from fusion_edge.runtime.profile.modes import ProfileConfig, ProfileResult
from fusion_edge.runtime.profile.report import build_report, write_report
from fusion_edge.runtime.profile.stages import ResourceUsage
from fusion_edge.runtime.team_context import POSITION_CHANNELS

runner = CliRunner()

MANIFEST = {
    "inputs": [
        {"name": "imu", "channels": list(KIT_IMU_CHANNELS), "sample_rate_hz": 40.0,
         "window_samples": 240, "hop_seconds": 3.0},
        {"name": "position", "channels": list(POSITION_CHANNELS), "sample_rate_hz": 10.0,
         "window_samples": 60, "hop_seconds": 3.0},
    ],
    "preprocessing": {},
}


def invoke(*args: Any):
    r = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    r.text = " ".join(r.output.split())  # the error console wraps long lines
    return r


class _ManifestOnlyModel:
    """A bundle that loads: enough for a run to start and fail on its input."""

    class chain:  # noqa: N801
        name = "onnxruntime-cpu"

        class active:  # noqa: N801
            precision = "int8"

    manifest = MANIFEST

    def __init__(self, *a: Any, **k: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _never_loaded(*a: Any, **k: Any) -> None:
    raise AssertionError("the bundle was loaded before the mistake was refused")


@pytest.fixture()
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import fusion_edge.runtime.bundle_model as bm

    monkeypatch.setattr(bm, "BundleModel", _never_loaded)


@pytest.fixture()
def manifest_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import fusion_edge.runtime.bundle_model as bm

    monkeypatch.setattr(bm, "BundleModel", _ManifestOnlyModel)


def _report(folder: Path, *, mode: str = "offline", queries: int = 1500) -> Path:
    h = LatencyHistogram()
    if queries:
        h.record_many_ms([1.0, 2.0, 3.0, 4.0])
    result = ProfileResult(
        config=ProfileConfig(scenario="5v5", mode=mode),
        scenario="5v5",
        players=10,
        backend="onnxruntime-cpu/int8",
        stages={"inference": h},
        end_to_end=h,
        queries=queries,
        windows=queries * 10,
        usage=ResourceUsage(10.0, 5.0, 50.0, 80.0, 90.0),
    )
    return write_report(build_report(result, hardware={"cpu_model": "x"}), folder)


# ------------------------------------------------------------------------------ profile


def test_failed_profile_keeps_the_last_events_and_creates_no_folder(
    manifest_model: None, tmp_path: Path
) -> None:
    # A typo in the scenario used to empty the report folder's events.jsonl (the last good
    # run's) before failing, and to leave new folders holding an empty events file.
    last = tmp_path / "last"
    _report(last)
    (last / "events.jsonl").write_text('{"player": "p1"}\n')
    r = invoke("profile", "-b", tmp_path, "--mode", "offline", "--scenario", "5vv5", "-o", last)
    assert r.exit_code == 2, r.output
    assert "unknown scenario '5vv5'" in r.text and "Traceback" not in r.output
    assert (last / "events.jsonl").read_text() == '{"player": "p1"}\n'
    assert not (last / "events.jsonl.partial").exists()

    fresh = tmp_path / "new" / "deep"
    r = invoke("profile", "-b", tmp_path, "--mode", "offline", "--scenario", "5vv5", "-o", fresh)
    assert r.exit_code == 2, r.output
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--mode", "offline", "--queries", "10"], "--queries is for --mode single-stream"),
        (["--mode", "multi-stream", "--rate", "5"], "--rate and --burst are for --mode server"),
        (["--mode", "offline", "--burst", "4"], "--rate and --burst are for --mode server"),
        (["--mode", "single-stream", "--players", "3"], "single-stream always profiles one"),
        (["--mode", "offline", "--players", "0"], "--players 0: give at least one player"),
        (["--mode", "offline", "--deadline-ms", "0"], "--deadline-ms 0.0: give a positive"),
        (["--mode", "server", "--deadline-ms", "-5"], "--deadline-ms -5.0: give a positive"),
        (["--mode", "offline", "--hop", "0"], "--hop 0.0: give a positive"),
    ],
)
def test_profile_refuses_options_its_mode_would_ignore_or_misread(
    no_model: None, tmp_path: Path, args: list[str], expected: str
) -> None:
    r = invoke("profile", "-b", tmp_path, "-o", tmp_path / "p", *args)
    assert r.exit_code == 2, r.output
    assert expected in r.text and "Traceback" not in r.output
    assert not (tmp_path / "p").exists()


def test_profile_out_that_is_a_file_is_refused_before_the_run(
    no_model: None, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    r = invoke("profile", "-b", tmp_path, "--mode", "offline", "-o", notes)
    assert r.exit_code == 2, r.output
    assert "is a file; give a folder" in r.text
    r = invoke("profile", "-b", tmp_path, "--mode", "offline", "-o", notes / "sub")
    assert r.exit_code == 2 and "is a file, not a folder" in r.text
    assert notes.read_text() == "keep me"


def test_profile_will_not_write_over_the_bundles_report_or_a_kit_runs_events(
    no_model: None, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps(MANIFEST))
    (bundle / "report.json").write_text('{"rows": []}')  # export's report
    r = invoke("profile", "-b", bundle, "--mode", "offline", "-o", bundle)
    assert r.exit_code == 2, r.output
    assert "inside the bundle" in r.text
    assert (bundle / "report.json").read_text() == '{"rows": []}'

    other = tmp_path / "exported"
    other.mkdir()
    (other / "report.json").write_text('{"rows": []}')
    r = invoke("profile", "-b", bundle, "--mode", "offline", "-o", other)
    assert r.exit_code == 2 and "not a profile report" in r.text

    field = tmp_path / "field"
    field.mkdir()
    (field / "events.jsonl").write_text('{"player": "p1"}\n')
    r = invoke("profile", "-b", bundle, "--mode", "offline", "-o", field)
    assert r.exit_code == 2 and "events.jsonl that no profile wrote" in r.text
    assert (field / "events.jsonl").read_text() == '{"player": "p1"}\n'


# ------------------------------------------------------------------------------ capacity


def test_options_before_a_subcommand_are_refused_not_ignored(
    monkeypatch: pytest.MonkeyPatch, no_model: None, tmp_path: Path
) -> None:
    # `profile --deadline-ms 50 capacity ...` used to search with the default deadline.
    import fusion_edge.runtime.profile.capacity as cap

    monkeypatch.setattr(cap, "search_capacity", _never_loaded)
    r = invoke("profile", "--deadline-ms", "50", "capacity", "-b", tmp_path)
    assert r.exit_code == 2, r.output
    assert "--deadline-ms before 'capacity' would be ignored" in r.text
    a = _report(tmp_path / "a")
    r = invoke("profile", "-b", tmp_path, "compare", a, a)
    assert r.exit_code == 2 and "--bundle before 'compare'" in r.text, r.output
    r = invoke("profile", "compare", a, a)
    assert r.exit_code == 0, r.output


def test_capacity_refuses_a_misspelt_second_backend_before_searching_the_first(
    monkeypatch: pytest.MonkeyPatch, no_model: None, tmp_path: Path
) -> None:
    import fusion_edge.runtime.profile.capacity as cap

    monkeypatch.setattr(cap, "search_capacity", _never_loaded)
    r = invoke(
        "profile", "capacity", "-b", tmp_path, "-o", tmp_path / "cap",
        "--backend", "onnxruntime-cpu", "--backend", "onnxruntime-cdua",
    )
    assert r.exit_code == 2, r.output
    assert "--backend 'onnxruntime-cdua' is unknown; did you mean 'onnxruntime-cuda'" in r.text
    assert not (tmp_path / "cap").exists()


def test_capacity_out_that_is_a_file_is_refused_before_searching(
    no_model: None, tmp_path: Path
) -> None:
    # It used to run the whole search (minutes) and then fail with a traceback.
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    r = invoke("profile", "capacity", "-b", tmp_path, "-o", notes)
    assert r.exit_code == 2, r.output
    assert "is a file; give a folder" in r.text and notes.read_text() == "keep me"


@pytest.mark.parametrize("command", [("profile",), ("profile", "capacity")])
def test_a_misspelt_scenario_is_refused_before_the_bundle_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: tuple[str, ...]
) -> None:
    """'--scenario 5vs5' used to be found only after the backends had loaded (minutes on a
    TensorRT box)."""
    import fusion_edge.runtime.bundle_model as bm

    monkeypatch.setattr(bm, "BundleModel", _never_loaded)
    r = invoke(*command, "-b", tmp_path, "--scenario", "5vs5", "-o", tmp_path / "p")
    assert r.exit_code == 2, r.output
    assert "unknown scenario '5vs5'. Did you mean '5v5'?" in r.text and "Traceback" not in r.output


# ------------------------------------------------------------------------------ compare


def test_compare_out_mistakes_are_one_line_errors_and_keep_the_reports(tmp_path: Path) -> None:
    a = _report(tmp_path / "a")
    b = _report(tmp_path / "b")
    before = a.read_text()
    r = invoke("profile", "compare", a, b, "--out", tmp_path / "a")
    assert r.exit_code == 2 and "is a folder; give a file name" in r.text, r.output
    r = invoke("profile", "compare", a, b, "--out", a)
    assert r.exit_code == 2 and "is a profile report" in r.text, r.output
    assert a.read_text() == before
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    r = invoke("profile", "compare", a, b, "--out", blocker / "cmp.json")
    assert r.exit_code == 2 and "cannot write into" in r.text, r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize(
    "doc,expected",
    [
        ({"format": "fusion-edge-profile", "version": 1}, "incomplete profile report"),
        ({"format": "fusion-edge-profile", "version": "x"}, "has version 'x', not a number"),
        (
            {"format": "fusion-edge-profile", "version": 1, "end_to_end": {}, "stages": [],
             "throughput": {}},
            "no valid 'stages'",
        ),
    ],
)
def test_compare_of_a_cut_or_edited_report_is_an_error(
    tmp_path: Path, doc: dict, expected: str
) -> None:
    a = _report(tmp_path / "a")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    r = invoke("profile", "compare", a, bad)
    assert r.exit_code == 2, r.output
    assert expected in r.text and "Traceback" not in r.output


def test_compare_says_when_the_loads_differ_and_shows_no_zeros_for_an_empty_run(
    tmp_path: Path,
) -> None:
    a = _report(tmp_path / "a", mode="offline")
    b = _report(tmp_path / "b", mode="server", queries=0)
    r = invoke("profile", "compare", a, b, "--out", tmp_path / "cmp.json")
    assert r.exit_code == 0, r.output
    assert "differ in mode" in r.text and "B measured no queries" in r.text
    cmp = json.loads((tmp_path / "cmp.json").read_text())
    e2e = cmp["latency"]["end_to_end"]["p50_ms"]
    assert e2e["b"] is None and e2e["ratio"] is None  # was 0.0 and a ratio of 0
    assert cmp["throughput"]["windows_per_s"]["b"] is None
    assert cmp["differs"] == ["mode"]


# ------------------------------------------------------------------------------ replay


@pytest.fixture()
def recording(tmp_path: Path) -> Path:
    from fusion_edge.runtime.recording import SessionRecorder

    path = tmp_path / "session.sqlite"
    with SessionRecorder(path, {"scenario": "t"}) as rec:
        rec.record_packet("AA", 1, b"\x00\x01")
    return path


@pytest.mark.parametrize("option", ["--events", "--stats"])
def test_replay_will_not_write_over_the_recording_it_reads(
    no_model: None, recording: Path, tmp_path: Path, option: str
) -> None:
    # `replay S --events S` used to replace the recording (the only copy of the raw field
    # data) with the replay's events, and exit 0.
    before = recording.read_bytes()
    r = invoke("replay", recording, "-b", tmp_path, option, recording)
    assert r.exit_code == 2, r.output
    assert "is the recording being replayed" in r.text
    other = tmp_path / "other.sqlite"
    other.write_bytes(before)
    r = invoke("replay", recording, "-b", tmp_path, option, other)
    assert r.exit_code == 2 and "is a SQLite file" in r.text, r.output
    assert recording.read_bytes() == before and other.read_bytes() == before


def test_replay_will_not_write_into_the_bundle_or_twice_to_one_file(
    no_model: None, recording: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    r = invoke("replay", recording, "-b", bundle, "--stats", bundle / "manifest.json")
    assert r.exit_code == 2 and "inside the bundle" in r.text, r.output
    assert (bundle / "manifest.json").read_text() == "{}"
    out = tmp_path / "out.json"
    r = invoke("replay", recording, "-b", bundle, "--stats", out, "--events", out)
    assert r.exit_code == 2 and "name the same file" in r.text, r.output


def test_replay_of_a_folder_or_a_report_says_what_it_was_given(
    manifest_model: None, tmp_path: Path
) -> None:
    r = invoke("replay", tmp_path, "-b", tmp_path)
    assert r.exit_code == 2 and "is a folder, not a recording" in r.text, r.output
    report = _report(tmp_path / "p")
    r = invoke("replay", report, "-b", tmp_path)
    assert r.exit_code == 2 and "not a SQLite file" in r.text, r.output
    assert "salvage" not in r.text


def test_replay_that_scored_nothing_says_its_zeros_are_not_latencies(
    monkeypatch: pytest.MonkeyPatch, manifest_model: None, recording: Path, tmp_path: Path
) -> None:
    # A recording shorter than a window used to print 0.0 ms latencies without a word.
    import fusion_edge.runtime.kit_runner as kr
    from fusion_edge.runtime.simulated_kit import RunSummary, percentiles

    empty = RunSummary(10, 0, 0, percentiles([]), 0, 0, 100.0, 80.0, 0.1, counters={"recorded_s": 2.5})
    monkeypatch.setattr(kr, "replay_session", lambda *a, **k: (None, empty))
    r = invoke("replay", recording, "-b", tmp_path, "--stats", tmp_path / "s.json")
    assert r.exit_code == 0, r.output
    assert "no window was scored" in r.text and "not measurements" in r.text
    # It says why in numbers, not "see 'not scored' above" over a line that was not printed.
    assert "the session holds 2.5 s of sensor data and the bundle's window is" in r.text
    assert "'not scored' above" not in r.text and "answered by:" not in r.text
    assert json.loads((tmp_path / "s.json").read_text())["scored"] == 0
