"""`fusion-edge run --simulate` and `fusion-edge replay` end to end: simulated pods over bumble
BLE through bleak, simulated receivers on ptys, the session's tiny bundle (shared with
tests/runtime through tests/runtime/conftest.py), and a kill -9 in the middle of a recording.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fusion_edge.cli.app import app

runner = CliRunner()
STATS_KEYS = {"players", "events", "latency_ms", "lost_samples", "escalated", "cpu_percent", "rss_mb"}
EVENT_KEYS = {"player", "window_end_ns", "predictions", "backend", "escalated", "latency_ms"}


def invoke(*args: Any):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def _runtime_conftest(config: pytest.Config) -> Any:
    """tests/runtime/conftest.py, which owns the shared bundle (loaded by path when only the
    CLI tests run)."""
    path = Path(__file__).resolve().parents[1] / "runtime" / "conftest.py"
    for plugin in config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) and Path(plugin.__file__).resolve() == path:
            return plugin
    spec = importlib.util.spec_from_file_location("fusion_edge_tests_runtime_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kit_bundle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, trained_run: Any) -> Path:
    """The same bundle tests/runtime use (built once per session)."""
    return _runtime_conftest(request.config).shared_kit_bundle(
        request.config, tmp_path_factory, trained_run.path, trained_run.data)


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _predictions(events: list[dict]) -> dict[tuple[str, int], dict]:
    return {(e["player"], e["window_end_ns"]): e["predictions"] for e in events}


@pytest.fixture(scope="module")
def live(kit_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One short simulated field session through the CLI, recorded."""
    d = tmp_path_factory.mktemp("live")
    out = {"events": d / "e.jsonl", "stats": d / "s.json", "record": d / "r.sqlite"}
    r = invoke("run", "--simulate", "5v5", "--players", 4, "--seconds", 8, "--bundle", kit_bundle,
               "--backend", "onnxruntime-cpu", "--events", out["events"], "--stats", out["stats"],
               "--record", out["record"], "--no-table")
    assert r.exit_code == 0, r.output
    out["output"] = r.output
    return out


def test_live_events_have_the_required_keys(live: dict) -> None:
    events = _events(live["events"])
    assert events, live["output"]
    assert {e["player"] for e in events} == {f"5v5-s1-p{i:02d}" for i in range(4)}
    for e in events:
        assert EVENT_KEYS <= set(e)
    scored = [e for e in events if e["status"] == "scored"]
    assert scored, "an 8 s session with a 6 s window scores at least one hop"
    for e in scored:
        assert {"action", "tactic"} <= set(e["predictions"])
        assert e["backend"].startswith("onnxruntime-cpu/")
        assert e["latency_ms"] > 0
        # `quality` is the model's training-quality head.
        assert e["quality"] == pytest.approx(e["predictions"]["quality"]["value"])


def test_live_stats_file(live: dict) -> None:
    stats = json.loads(live["stats"].read_text())
    assert STATS_KEYS <= set(stats)
    assert {"p50", "p90", "p99", "max"} <= set(stats["latency_ms"])
    assert stats["players"] == 4
    assert stats["events"] == len(_events(live["events"]))
    assert stats["lost_samples"] == 0
    assert 0 < stats["rss_mb"] < 2000 and stats["cpu_percent"] > 0
    assert stats["latency_ms"]["p50"] <= stats["latency_ms"]["p99"] <= stats["latency_ms"]["max"]
    assert "faults" in stats and stats["faults"]["recording_errors"] == 0
    flat = "".join(live["output"].split())
    assert f"stats:{live['stats']}" in flat, "the run says where its statistics went"


def test_replay_twice_gives_the_live_predictions(live: dict, kit_bundle: Path, tmp_path: Path) -> None:
    runs = []
    for i in range(2):
        out = tmp_path / f"replay{i}.jsonl"
        r = invoke("replay", live["record"], "--bundle", kit_bundle, "--events", out)
        assert r.exit_code == 0, r.output
        assert "replaying session 1 (closed)" in r.output and f"events:{out}" in "".join(r.output.split())
        runs.append(_predictions(_events(out)))
    assert runs[0] == runs[1]
    assert runs[0] == _predictions(_events(live["events"]))


def test_corrupt_bundle_is_refused_with_the_file_named(kit_bundle: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bundle"
    shutil.copytree(kit_bundle, bad)
    onnx = next(bad.glob("*int8*.onnx"))
    onnx.write_bytes(onnx.read_bytes()[:-10] + b"0123456789")
    r = invoke("run", "--simulate", "5v5", "--players", 2, "--seconds", 2, "--bundle", bad, "--no-table")
    assert r.exit_code == 2
    assert onnx.name in " ".join(r.output.split()) and "copy the bundle again" in r.output


def test_kill_9_during_recording_leaves_a_replayable_file(kit_bundle: Path, tmp_path: Path) -> None:
    from fusion_edge.runtime.bundle_model import BundleModel
    from fusion_edge.runtime.kit_runner import replay_session
    from fusion_edge.runtime.recording import SessionReader

    rec = tmp_path / "killed.sqlite"
    cmd = [sys.executable, "-m", "fusion_edge", "run", "--simulate", "5v5", "--players", "2",
           "--seconds", "60", "--bundle", str(kit_bundle), "--backend", "onnxruntime-cpu",
           "--record", str(rec), "--no-table"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "COLUMNS": "200"})
    try:
        deadline = time.monotonic() + 90
        first = None
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            if rec.exists():
                try:
                    with SessionReader(rec) as r:
                        n = r.count("packet")
                except Exception:  # the file may be mid-creation
                    continue
                if n and first is None:
                    first = time.monotonic()
                if first is not None and time.monotonic() - first > 8:
                    break
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        killed_ns = time.monotonic_ns()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    with SessionReader(rec) as r:
        sessions = r.sessions()
        assert len(sessions) == 1
        last = max(rec_.host_time_ns for rec_ in r.records(kinds=("packet",)))
    # Commits happen every 0.25 s: at most about the last second is missing.
    assert killed_ns - last < 1.5e9
    model = BundleModel(kit_bundle, preference=["onnxruntime-cpu"])
    try:
        said: list[str] = []
        processor, summary = replay_session(rec, model, on_progress=said.append)
    finally:
        model.close()
    assert summary.scored >= 2  # 8 s recorded with a 6 s window: at least one hop per player
    assert said == ["replaying session 1 (not closed: the recorder stopped (crash or power cut), "
                    "replaying what it kept)"]
    assert summary.counters["recorded_s"] > 7


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_mid_session_keeps_the_stats_and_says_so(
    kit_bundle: Path, tmp_path: Path, sig: int
) -> None:
    """Ctrl-C used to end the run on 'streaming for 60 s' with no table and no stats file, and
    SIGTERM (systemctl stop) left the recording's session unended."""
    import json

    from fusion_edge.runtime.recording import SessionReader

    rec, stats, events = tmp_path / "s.sqlite", tmp_path / "st.json", tmp_path / "ev.jsonl"
    cmd = [sys.executable, "-m", "fusion_edge", "run", "--simulate", "5v5", "--players", "2",
           "--seconds", "120", "--bundle", str(kit_bundle), "--backend", "onnxruntime-cpu",
           "--record", str(rec), "--stats", str(stats), "--events", str(events), "--no-table"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "COLUMNS": "200"})
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            if events.is_file() and events.stat().st_size:  # a hop has been scored
                break
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        proc.send_signal(sig)
        out = proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = " ".join(out.split())
    assert proc.returncode == 130, text[-2000:]
    assert "stopped early" in text and "the events, stats, recording files hold the session" in text
    doc = json.loads(stats.read_text())
    assert doc["interrupted"] is True and doc["events"] >= 1 and doc["seconds"] < 100
    with SessionReader(rec) as r:
        assert r.sessions()[-1].ended_ns is not None


def test_ctrl_c_while_the_pods_connect_still_reports(kit_bundle: Path, tmp_path: Path) -> None:
    """Ctrl-C while connecting used to exit 130 with nothing but a bumble warning: no table, no
    stats file, and an empty session left in a new recording (SIGTERM: killed silently)."""
    import json

    rec, stats = tmp_path / "s.sqlite", tmp_path / "st.json"
    cmd = [sys.executable, "-m", "fusion_edge", "run", "--simulate", "5v5", "--players", "2",
           "--seconds", "60", "--bundle", str(kit_bundle), "--backend", "onnxruntime-cpu",
           "--record", str(rec), "--stats", str(stats), "--no-table"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"})
    seen = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line.decode())
            if "connecting" in seen[-1]:
                proc.send_signal(signal.SIGINT)  # at once: the pods are still connecting
                break
        out = "".join(seen) + proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = " ".join(out.split())
    assert proc.returncode == 130, text[-2000:]
    assert "stopped early" in text and "Traceback" not in text, out
    assert json.loads(stats.read_text())["interrupted"] is True
    if "stopped while connecting" in text:  # (on a slow machine the signal may land later)
        assert not rec.exists(), "a new recording into which nothing was streamed is removed"


def test_a_session_appended_to_a_recording_says_which_it_is(kit_bundle: Path, tmp_path: Path) -> None:
    """The replay hint after an appended session used to read as if the file held one session."""
    rec = tmp_path / "day.sqlite"
    outputs = []
    for _ in range(2):
        r = invoke("run", "--simulate", "5v5", "--players", 2, "--seconds", 1, "--bundle", kit_bundle,
                   "--backend", "onnxruntime-cpu", "--record", rec, "--no-table")
        assert r.exit_code == 0, r.output
        outputs.append(" ".join(r.output.split()))
    assert "session 1" not in outputs[0] and "--session-id" not in outputs[0]
    assert "session 2 (the file holds 2 sessions;" in outputs[1]
    assert "--session-id 2'" in outputs[1]
