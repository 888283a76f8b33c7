"""report.json schema, report.md, plots, comparison and loading errors (no bundle needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fusion_edge.errors import FusionEdgeError
from fusion_edge.runtime.profile.capacity import CapacityPoint, CapacityResult
from fusion_edge.runtime.profile.histogram import LatencyHistogram
from fusion_edge.runtime.profile.modes import ProfileConfig, ProfileResult
from fusion_edge.runtime.profile.report import (
    budget_lines,
    build_report,
    compare_reports,
    hardware_fingerprint,
    load_report,
    write_outputs,
)
from fusion_edge.runtime.profile.stages import ResourceUsage

LAT_KEYS = {"p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"}


def _hist(scale: float, n: int = 2000, seed: int = 0) -> LatencyHistogram:
    h = LatencyHistogram()
    h.record_many_ms(np.random.default_rng(seed).exponential(scale, n))
    return h


def _result(scale: float = 1.0) -> ProfileResult:
    return ProfileResult(
        config=ProfileConfig(scenario="5v5", mode="offline"),
        scenario="5v5",
        players=10,
        backend="onnxruntime-cpu/int8",
        stages={"decoding": _hist(0.05 * scale), "inference": _hist(5.0 * scale, seed=1)},
        end_to_end=_hist(10.0 * scale, seed=2),
        queries=2000,
        windows=20000,
        usage=ResourceUsage(
            wall_s=10.0, cpu_s=5.0, cpu_percent=50.0, rss_mb=80.0, peak_rss_mb=90.0
        ),
        drops={"lost_samples": 0, "not_scored": 1},
    )


def test_report_has_the_documented_schema() -> None:
    doc = build_report(_result())
    for key in (
        "scenario",
        "mode",
        "backend",
        "hardware",
        "stages",
        "end_to_end",
        "throughput",
        "drops",
        "cpu_percent",
        "rss_mb",
        "format",
        "version",
    ):
        assert key in doc, key
    assert doc["mode"] == "offline" and doc["format"] == "fusion-edge-profile"
    assert LAT_KEYS <= set(doc["end_to_end"])
    for row in doc["stages"].values():
        assert LAT_KEYS <= set(row)
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["p999_ms"] <= row["max_ms"]
    assert doc["throughput"]["windows_per_s"] == pytest.approx(2000.0)
    json.dumps(doc)  # JSON-able as is


def test_hardware_fingerprint_names_the_box() -> None:
    hw = hardware_fingerprint()
    for key in ("cpu_model", "cpu_cores", "memory_gb", "os", "python", "onnxruntime", "gpu"):
        assert key in hw
    assert hw["cpu_cores"] >= 1 and hw["python"].startswith("3.")


def test_outputs_are_written_with_plots(tmp_path: Path) -> None:
    cap = CapacityResult(
        96,
        3000.0,
        "onnxruntime-cpu/int8",
        "11v11",
        [
            CapacityPoint(64, True, "", 6, 50.0, 60.0, 70.0, 80.0, 5.0, 60.0),
            CapacityPoint(128, False, "p99 over", 6, 2000.0, 3000.0, 3300.0, 3400.0, 3000.0, 99.0),
            CapacityPoint(96, True, "", 6, 80.0, 90.0, 100.0, 110.0, 5.0, 80.0),
        ],
    )
    doc = write_outputs(_result(), tmp_path)
    assert json.loads((tmp_path / "report.json").read_text())["stages"] == doc["stages"]
    md = (tmp_path / "report.md").read_text()
    assert "| decoding |" in md and "end to end" in md
    png = (tmp_path / "latency_by_stage.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    capdoc = write_outputs(None, tmp_path / "cap", capacity=cap)
    assert capdoc["capacity"]["max_players"] == 96
    assert [p["players"] for p in capdoc["capacity"]["points"]] == [64, 96, 128]
    assert (tmp_path / "cap" / "latency_vs_players.png").read_bytes()[:4] == b"\x89PNG"
    assert "96 players" in (tmp_path / "cap" / "report.md").read_text()


def test_compare_gives_ratios_b_over_a(tmp_path: Path) -> None:
    a, b = build_report(_result(1.0)), build_report(_result(2.0))
    cmp = compare_reports(a, b)
    assert cmp["latency"]["end_to_end"]["p50_ms"]["ratio"] == pytest.approx(2.0, rel=0.01)
    assert cmp["latency"]["decoding"]["p99_ms"]["ratio"] == pytest.approx(2.0, rel=0.01)
    assert cmp["throughput"]["windows_per_s"]["ratio"] == pytest.approx(1.0)
    assert cmp["same_hardware"]


def test_loading_refuses_what_is_not_a_report(tmp_path: Path) -> None:
    with pytest.raises(FusionEdgeError, match="does not exist"):
        load_report(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FusionEdgeError, match="is not JSON"):
        load_report(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(FusionEdgeError, match="not a profile report"):
        load_report(other)
    future = tmp_path / "future.json"
    future.write_text(json.dumps({"format": "fusion-edge-profile", "version": 99}))
    with pytest.raises(FusionEdgeError, match="upgrade fusion-edge"):
        load_report(future)
    write_outputs(_result(), tmp_path / "ok", plots=False)
    assert load_report(tmp_path / "ok")["players"] == 10  # a folder works too


def test_the_report_says_the_headroom_and_how_much_the_full_model_answered() -> None:
    """Every window escalated to FP32 used to hide behind 'backend onnxruntime-cpu/int8', and a
    single run never said its deadline or headroom."""
    result = _result()
    result.extra = {"escalated": 20000, "backends": {"onnxruntime-cpu/fp32": 20000}}
    result.drops["late"] = 3
    doc = build_report(result)
    lines = budget_lines(doc)
    p99 = doc["end_to_end"]["p99_ms"]
    assert lines[0] == (f"deadline 1000 ms (a hop, unless --deadline-ms): end-to-end p99 {p99:.1f} ms "
                        f"is {p99 / 10:.1f}% of it, headroom {1000 - p99:.1f} ms; 3 late")
    assert lines[1].startswith("escalated 20000 of 20000 windows (100%) to the full model; answered "
                               "by onnxruntime-cpu/fp32 20000: the compressed model was unsure")
    result.extra = {"escalated": 100, "backends": {}}
    assert budget_lines(build_report(result))[1] == "escalated 100 of 20000 windows (0%) to the full model"
    from fusion_edge.runtime.profile.report import markdown_report

    assert f"- {lines[0]}" in markdown_report(doc)
