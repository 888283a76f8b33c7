"""Profile modes on the real processor and the tiny kit bundle: streams, stages, queries, limits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fusion_edge.errors import ConfigError
from fusion_edge.runtime.bundle_model import BundleModel
from fusion_edge.runtime.profile.modes import (
    ProfileConfig,
    ProfileMode,
    arrival_times,
    run_profile,
    trust_warnings,
)
from fusion_edge.runtime.profile.streams import GNSS, PACKET, generate_stream


@pytest.fixture(scope="module")
def model(kit_bundle: Path):
    m = BundleModel(kit_bundle, preference=["onnxruntime-cpu"])
    yield m
    m.close()


@pytest.fixture(scope="module")
def stream():
    return generate_stream("5v5", players=3, seconds=12.0, seed=2)


def test_generated_stream_is_time_ordered_raw_bytes_of_every_player(stream) -> None:
    times = [r[0] for r in stream.records]
    assert times == sorted(times)
    pods = {r[2] for r in stream.records if r[1] == PACKET}
    assert pods == {s.pod for s in stream.setups} and stream.players == 3
    assert any(r[1] == GNSS and b"RMC" in r[3] for r in stream.records)
    # ~100 Hz in notifications of ~12 samples at MTU 247: about 8 a second per pod.
    per_pod = sum(1 for r in stream.records if r[1] == PACKET) / 3 / 12.0
    assert 6.0 < per_pod < 11.0
    two = stream.only_players(2)
    assert two.players == 2 and {r[2] for r in two.records if r[1] == PACKET} == {
        s.pod for s in stream.setups[:2]
    }
    again = generate_stream("5v5", players=3, seconds=12.0, seed=2)
    assert again.records[:50] == stream.records[:50]  # deterministic


def test_offline_times_every_stage_and_counts_hops(
    model, stream, tmp_path: Path, monkeypatch
) -> None:
    import fusion_edge.runtime.profile.modes as modes

    monkeypatch.setattr(modes, "generate_stream", lambda *a, **k: stream)
    r = run_profile(
        ProfileConfig(
            scenario="5v5", mode="offline", duration_s=12.0, hop_s=1.0, sinks_dir=str(tmp_path)
        ),
        model,
    )
    for stage in (
        "decoding",
        "clock_calibration",
        "dsp",
        "gnss",
        "queueing",
        "windowing",
        "inference",
        "sinks",
    ):
        assert r.stages[stage].count > 0, stage
    assert "transport" not in r.stages  # replay has no radio
    assert r.queries == r.end_to_end.count >= 4
    assert r.windows > 0 and r.throughput["windows_per_s"] > 0
    assert r.stages["decoding"].count == sum(1 for x in stream.records if x[1] == PACKET)
    assert any("p99 needs about 1000" in w for w in r.warnings)
    assert (tmp_path / "events.jsonl").read_text().count("\n") >= r.windows


def test_single_stream_answers_exactly_the_queries_asked(model, monkeypatch) -> None:
    r = run_profile(
        ProfileConfig(scenario="5v5", mode="single-stream", queries=5, hop_s=1.0, seed=3), model
    )
    assert r.players == 1 and r.queries == 5 and r.end_to_end.count == 5
    # A query spans its bytes' decoding and its scoring: never less than its inference.
    assert r.end_to_end.percentile_ms(50) >= r.stages["inference"].percentile_ms(50)


def test_server_mode_queues_bursty_arrivals(model, stream, monkeypatch) -> None:
    import fusion_edge.runtime.profile.modes as modes

    monkeypatch.setattr(modes, "generate_stream", lambda *a, **k: stream)
    r = run_profile(
        ProfileConfig(mode="server", duration_s=1.5, rate=30.0, burst=3.0, hop_s=1.0), model
    )
    assert r.queries + r.drops["shed"] == r.extra["offered"] > 20
    assert r.stages["queueing"].count == r.queries
    assert r.end_to_end.percentile_ms(50) >= r.stages["queueing"].percentile_ms(50)


def test_arrivals_hit_the_target_rate_and_bursts_cluster() -> None:
    t = arrival_times(200.0, 20.0, 1.0, seed=1)
    assert len(t) == pytest.approx(4000, rel=0.06)
    b = arrival_times(200.0, 20.0, 5.0, seed=1)
    assert len(b) == pytest.approx(4000, rel=0.15)
    assert (np.diff(b) == 0).mean() > 0.5 > (np.diff(t) == 0).mean()


def test_bad_configs_say_what_to_do() -> None:
    with pytest.raises(ConfigError, match="positive number of seconds"):
        ProfileConfig(duration_s=0)
    with pytest.raises(ConfigError, match="--mode offline"):
        ProfileConfig(mode=ProfileMode.MULTI_STREAM, session="x.sqlite")
    with pytest.raises(ValueError):
        ProfileConfig(mode="fastest")


def test_trust_warnings_follow_loadgen_rule_of_thumb() -> None:
    assert "p99 needs" in trust_warnings(999)[0]
    assert "p99.9" in trust_warnings(1000)[0]
    assert trust_warnings(10_000) == []


def test_user_scenario_file_sets_the_squad(tmp_path: Path) -> None:
    f = tmp_path / "mine.toml"
    f.write_text(
        '[futsal]\nsport = "futsal"\ndescription = "3v3 futsal"\nteams = 2\nplayers = 3\n'
        "duration_s = 60\npitch_m = [40.0, 20.0]\nintensity = 0.8\n"
    )
    s = generate_stream("futsal", seconds=4.0, scenario_file=f)
    assert s.players == 6 and s.scenario == "futsal"


def test_profile_of_a_recording_uses_the_hop_the_recorded_kit_ran(
    model, stream, tmp_path: Path, monkeypatch
) -> None:
    """A kit file's [windows] hop_s is in the recording; replay applies it, and so must the
    profile, or it times hops the kit never made."""
    import fusion_edge.runtime.profile.modes as modes
    from fusion_edge.runtime.profile.streams import recorded_hop_s
    from fusion_edge.runtime.recording import SessionRecorder

    monkeypatch.setattr(modes, "stream_from_recording", lambda *a, **k: stream)
    plain, with_hop = tmp_path / "plain.sqlite", tmp_path / "hop.sqlite"
    for path, meta in ((plain, {}), (with_hop, {"hop_s": 2.0})):
        with SessionRecorder(path, meta) as rec:
            rec.record_packet("AA", 1, b"\x00\x01")
    assert recorded_hop_s(plain) is None and recorded_hop_s(with_hop) == 2.0

    said: list[str] = []
    runs = {
        name: run_profile(ProfileConfig(mode="offline", session=str(path)), model, on_progress=said.append)
        for name, path in (("bundle hop", plain), ("kit hop", with_hop))
    }
    assert "hop 2 s, as the recorded kit ran (--hop overrides it)" in said
    # 12 s of stream: half as many hops at 2 s as at the bundle's 1 s.
    assert runs["kit hop"].queries < 0.7 * runs["bundle hop"].queries
    # --hop still wins over the recording.
    forced = run_profile(ProfileConfig(mode="offline", session=str(with_hop), hop_s=1.0), model)
    assert forced.queries == runs["bundle hop"].queries
