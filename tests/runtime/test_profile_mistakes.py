"""The profiler library with a user's mistakes: configs refused with the flag to fix, runs that
measure nothing refused rather than reported as 0 ms, warm-up kept out of the figures, reports
that cannot be read or written named as such, and recordings closed after a replay."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from fusion_edge.errors import ConfigError, FusionEdgeError
from fusion_edge.runtime.bundle_model import BundleModel
from fusion_edge.runtime.profile.histogram import LatencyHistogram
from fusion_edge.runtime.profile.modes import ProfileConfig, ProfileResult, run_profile
from fusion_edge.runtime.profile.report import compare_reports, load_report, write_outputs
from fusion_edge.runtime.profile.stages import ResourceUsage, StageRecorder


@pytest.fixture(scope="module")
def model(kit_bundle: Path):
    m = BundleModel(kit_bundle, preference=["onnxruntime-cpu"])
    yield m
    m.close()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"mode": "offline", "queries": 10}, "--queries is for --mode single-stream"),
        ({"mode": "offline", "rate": 5.0}, "--rate and --burst are for --mode server"),
        ({"mode": "single-stream", "burst": 3.0}, "--rate and --burst are for --mode server"),
        ({"mode": "single-stream", "players": 4}, "single-stream always profiles one player"),
        ({"mode": "offline", "players": 0}, "--players 0"),
        ({"mode": "offline", "deadline_ms": 0.0}, "--deadline-ms 0.0"),
        ({"mode": "offline", "deadline_ms": -1.0}, "--deadline-ms -1.0"),
        ({"mode": "offline", "hop_s": -1.0}, "--hop -1.0"),
    ],
)
def test_configs_a_mode_would_ignore_or_misread_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ProfileConfig(**kwargs)


def test_the_options_each_mode_uses_are_still_accepted() -> None:
    ProfileConfig(mode="single-stream", queries=10, deadline_ms=50.0, hop_s=1.0)
    ProfileConfig(mode="server", rate=5.0, burst=3.0, players=4)
    ProfileConfig(mode="offline", players=4, duration_s=30.0)


def test_a_run_that_measures_nothing_is_an_error_and_leaves_no_folder(
    model, tmp_path: Path
) -> None:
    # A 1 s session is shorter than a window: it used to give a report of 0.000 ms latencies
    # (and exit 0), with the output folder and an empty events file left behind.
    out = tmp_path / "new" / "p"
    with pytest.raises(ConfigError, match="nothing was measured.*longer --duration"):
        run_profile(
            ProfileConfig(mode="offline", duration_s=1.0, hop_s=1.0, sinks_dir=str(out)), model
        )
    assert not (tmp_path / "new").exists()


def test_a_failed_run_keeps_the_previous_events(model, tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text('{"player": "p1"}\n')
    with pytest.raises(FusionEdgeError, match="unknown scenario"):
        run_profile(
            ProfileConfig(scenario="5vv5", mode="offline", duration_s=9.0, sinks_dir=str(tmp_path)),
            model,
        )
    assert (tmp_path / "events.jsonl").read_text() == '{"player": "p1"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl"]


def test_a_successful_run_replaces_the_events(model, tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text("old\n")
    r = run_profile(
        ProfileConfig(mode="offline", duration_s=12.0, hop_s=1.0, sinks_dir=str(tmp_path)), model
    )
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert r.windows > 0 and len(lines) == r.windows and "old" not in lines
    assert not (tmp_path / "events.jsonl.partial").exists()


def test_single_stream_keeps_warm_up_out_of_stages_and_throughput(model) -> None:
    # The 32 warm-up queries used to be counted in every stage (37 inference timings for 5
    # queries) and in the windows and wall time behind the throughput.
    r = run_profile(ProfileConfig(mode="single-stream", queries=5, hop_s=1.0, seed=3), model)
    assert r.end_to_end.count == r.queries == 5
    assert r.stages["inference"].count == 5
    assert r.windows == 5
    assert r.usage.wall_s < 5 * r.end_to_end.max_ms / 1e3 + 1.0


def test_stage_recorder_reset_forgets_everything() -> None:
    rec = StageRecorder()
    rec("dsp", 1.0)
    rec("end_to_end", 3.0)
    rec.reset()
    assert rec.ordered() == {} and rec.end_to_end.count == 0 and rec.calls == 0


def _empty_result(tmp_path: Path) -> ProfileResult:
    return ProfileResult(
        config=ProfileConfig(mode="offline"),
        scenario="5v5",
        players=1,
        backend="x/int8",
        stages={},
        end_to_end=LatencyHistogram(),
        queries=0,
        windows=0,
        usage=ResourceUsage(1.0, 1.0, 100.0, 1.0, 1.0),
    )


def test_write_outputs_to_a_path_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FusionEdgeError, match="cannot write the report into"):
        write_outputs(_empty_result(tmp_path), blocker / "out", plots=False)


def test_load_report_refuses_cut_and_edited_reports(tmp_path: Path) -> None:
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"format": "fusion-edge-profile", "version": "2"}))
    with pytest.raises(FusionEdgeError, match="not a number"):
        load_report(p)
    p.write_text(json.dumps({"format": "fusion-edge-profile", "version": 1, "stages": {}}))
    with pytest.raises(FusionEdgeError, match="no valid 'end_to_end'"):
        load_report(p)


def test_compare_treats_an_empty_row_as_unmeasured_and_names_what_differs() -> None:
    row = {"p50_ms": 2.0, "p90_ms": 3.0, "p99_ms": 4.0, "p999_ms": 4.0, "max_ms": 4.0, "count": 9}
    empty = {k: 0.0 for k in row} | {"count": 0}
    a = {"mode": "offline", "players": 10, "scenario": "5v5", "queries": 9,
         "end_to_end": row, "stages": {"dsp": row}, "throughput": {"windows_per_s": 10.0}}
    b = {"mode": "server", "players": 10, "scenario": "5v5", "queries": 0,
         "end_to_end": empty, "stages": {"dsp": empty}, "throughput": {"windows_per_s": 0.0}}
    cmp = compare_reports(a, b)
    assert cmp["differs"] == ["mode"]
    assert cmp["latency"]["end_to_end"]["p99_ms"] == {"a": 4.0, "b": None, "ratio": None}
    assert cmp["latency"]["dsp"]["p50_ms"]["b"] is None
    assert cmp["throughput"]["windows_per_s"] == {"a": 10.0, "b": None, "ratio": None}


def test_replay_session_closes_the_recording_when_it_refuses_it(tmp_path: Path) -> None:
    # The reader was never closed: the recording's -wal/-shm files stayed next to it.
    from fusion_edge.runtime.kit_runner import replay_session
    from fusion_edge.runtime.recording import SessionRecorder

    path = tmp_path / "s.sqlite"
    with SessionRecorder(path, {}):
        pass
    con = sqlite3.connect(path)
    con.execute("DELETE FROM sessions")
    con.commit()
    con.close()
    with pytest.raises(FusionEdgeError, match="holds no session") as err:
        replay_session(path, model=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.sqlite"], err.value


def test_more_players_than_the_recording_has_are_refused(model, monkeypatch) -> None:
    # --players 50 on a 2-player recording used to profile 2 players without a word.
    import fusion_edge.runtime.profile.modes as modes
    from fusion_edge.runtime.profile.streams import generate_stream

    two = generate_stream("5v5", players=2, seconds=1.0, seed=1)
    monkeypatch.setattr(modes, "stream_from_recording", lambda path: two)
    monkeypatch.setattr(modes, "recorded_hop_s", lambda path: None)  # no file behind rec.sqlite
    with pytest.raises(ConfigError, match="--players 50: the recording rec.sqlite has only 2"):
        run_profile(ProfileConfig(mode="offline", session="rec.sqlite", players=50), model)


class _OtherSensors:
    """A bundle of a user's own sensors (a belt stream, no position): what profile was given."""

    root = "bundles/belt"

    def __init__(self, kit: BundleModel) -> None:
        inputs = json.loads(json.dumps(kit.manifest["inputs"][:1]))
        inputs[0].update(name="belt", channels=["hr", "acc_x", "acc_y", "acc_z"])
        self.manifest = {**kit.manifest, "inputs": inputs}


@pytest.mark.parametrize("mode", ["offline", "single-stream", "multi-stream", "server"])
def test_a_bundle_of_other_sensors_is_refused_naming_the_input_not_a_keyerror(model, mode: str) -> None:
    from fusion_edge.errors import BundleError

    with pytest.raises(BundleError, match=r"bundles/belt: the model wants an input 'belt' that this kit"):
        run_profile(ProfileConfig(mode=mode), _OtherSensors(model))


def test_capacity_search_refuses_a_bundle_of_other_sensors(model) -> None:
    from fusion_edge.errors import BundleError
    from fusion_edge.runtime.profile.capacity import CapacityConfig, search_capacity

    with pytest.raises(BundleError, match="the model wants an input 'belt'"):
        search_capacity(CapacityConfig(), _OtherSensors(model))
