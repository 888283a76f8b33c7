"""Capacity search: the gallop/bisect logic on a known box, and one real paced probe."""

from __future__ import annotations

from pathlib import Path

import pytest

import fusion_edge.runtime.profile.capacity as capacity
from fusion_edge.errors import ConfigError
from fusion_edge.runtime.bundle_model import BundleModel
from fusion_edge.runtime.field_kit import KIT_IMU_CHANNELS
from fusion_edge.runtime.profile.capacity import (
    CapacityConfig,
    CapacityPoint,
    probe,
    search_capacity,
)
from fusion_edge.runtime.profile.streams import generate_stream
from fusion_edge.runtime.team_context import POSITION_CHANNELS


class _Chain:
    name = "fake"

    class active:  # noqa: N801  (mirrors BackendChain.active)
        precision = "int8"


class _FakeModel:
    chain = _Chain()
    manifest = {
        "inputs": [
            {"name": "imu", "channels": list(KIT_IMU_CHANNELS), "sample_rate_hz": 40.0,
             "window_samples": 240, "hop_seconds": 3.0},
            {"name": "position", "channels": list(POSITION_CHANNELS), "sample_rate_hz": 10.0,
             "window_samples": 60, "hop_seconds": 3.0},
        ],
        "preprocessing": {},
    }


@pytest.mark.parametrize("true_capacity,start", [(37, 16), (300, 16), (5, 16), (16, 16)])
def test_search_brackets_the_true_capacity(monkeypatch, true_capacity: int, start: int) -> None:
    tried: list[int] = []

    def fake_probe(stream, model, *, deadline_ms, warmup_s, hop_s=None):
        n = stream.players
        tried.append(n)
        ok = n <= true_capacity
        return CapacityPoint(
            n, ok, "" if ok else "p99 over", 5, 10.0 * n, 12.0 * n, 15.0 * n, 16.0 * n, 0.0, 50.0
        )

    class _Stream:
        def __init__(self, n: int) -> None:
            self.players = n

        def only_players(self, n: int):
            return _Stream(n)

    monkeypatch.setattr(capacity, "probe", fake_probe)
    monkeypatch.setattr(capacity, "generate_stream", lambda *a, players, **k: _Stream(players))
    monkeypatch.setattr(
        capacity,
        "window_config_from_manifest",
        lambda m, hop, where: type("W", (), {"hop_s": 3.0, "window_s": 6.0})(),
        raising=False,
    )
    cfg = CapacityConfig(start=start, max_players=256, resolution=4)
    r = search_capacity(cfg, _FakeModel())
    expected = min(true_capacity, 256)
    assert expected - 4 <= r.max_players <= expected
    assert r.capped == (true_capacity >= 256)
    assert r.deadline_ms == 3000.0
    assert len(tried) == len(set(tried)) <= 12  # every count probed once, a handful of probes
    doc = r.to_json()
    assert [p["players"] for p in doc["points"]] == sorted(tried)


def test_bad_search_configs_are_refused() -> None:
    with pytest.raises(ConfigError, match="--start 0: give a player count from 1"):
        CapacityConfig(start=0)
    with pytest.raises(ConfigError, match="--seconds 0"):
        CapacityConfig(seconds=0)
    with pytest.raises(ConfigError, match="--warmup -1"):
        CapacityConfig(warmup_s=-1)
    # A deadline of 0 used to mean "the hop" silently; a negative one made every probe fail.
    for bad in (0.0, -3.0):
        with pytest.raises(ConfigError, match="--deadline-ms"):
            CapacityConfig(deadline_ms=bad)
    with pytest.raises(ConfigError, match="--hop"):
        CapacityConfig(hop_s=0.0)


def test_probes_too_short_to_measure_a_hop_are_refused_before_searching(monkeypatch) -> None:
    # --seconds 1 at a 3 s hop used to run every probe, fail them all and answer "0 players".
    monkeypatch.setattr(
        capacity, "generate_stream", lambda *a, **k: pytest.fail("searched anyway")
    )
    with pytest.raises(ConfigError, match="too short.*give --seconds 6 or more"):
        search_capacity(CapacityConfig(seconds=1.0, warmup_s=8.0), _FakeModel())
    with pytest.raises(ConfigError, match="give --seconds 12 or more"):
        search_capacity(CapacityConfig(seconds=6.0, warmup_s=0.0), _FakeModel())


def test_real_paced_probe_sustains_two_players(kit_bundle: Path) -> None:
    model = BundleModel(kit_bundle, preference=["onnxruntime-cpu"])
    try:
        stream = generate_stream("5v5", players=2, seconds=9.0, seed=4)
        point = probe(stream, model, deadline_ms=1000.0, warmup_s=6.2, hop_s=1.0)
    finally:
        model.close()
    assert point.sustained, point.reason
    assert point.players == 2 and point.hops >= 1
    assert 0.0 < point.p50_ms < 1000.0
    assert {"decoding", "dsp", "inference"} <= set(point.stages)
    # Paced: records are handed over on time, so the box's input backlog stays small.
    assert point.max_lag_ms < 1000.0
