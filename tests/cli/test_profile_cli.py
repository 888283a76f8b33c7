"""`fusion-edge profile`, `profile capacity` and `profile compare` as thin faces over the library.

The library runs the real pipeline in tests/runtime/test_profile_*.py; here the model and the
runs are stubbed so the CLI's wiring (options -> config, files written, exit codes) is what is
tested, in well under a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from fusion_edge.cli import profile_commands
from fusion_edge.runtime.profile.capacity import CapacityPoint, CapacityResult
from fusion_edge.runtime.profile.histogram import LatencyHistogram
from fusion_edge.runtime.profile.modes import ProfileResult
from fusion_edge.runtime.profile.report import build_report, write_report
from fusion_edge.runtime.profile.stages import ResourceUsage

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """root"""

    profile_commands.register(app)
    return app


class _FakeModel:
    class chain:  # noqa: N801
        name = "onnxruntime-cpu"

        class active:  # noqa: N801
            precision = "int8"

    def __init__(self, bundle, preference=(), escalation=True) -> None:
        self.preference = list(preference)

    def close(self) -> None:
        pass


def _result(config, scale: float = 1.0) -> ProfileResult:
    h = LatencyHistogram()
    h.record_many_ms(np.random.default_rng(0).exponential(5.0 * scale, 1500))
    return ProfileResult(
        config=config,
        scenario=config.scenario,
        players=10,
        backend="onnxruntime-cpu/int8",
        stages={"inference": h},
        end_to_end=h,
        queries=1500,
        windows=15000,
        usage=ResourceUsage(10.0, 5.0, 50.0, 80.0, 90.0),
        drops={"not_scored": 0},
    )


@pytest.fixture()
def calls(monkeypatch):
    import fusion_edge.runtime.bundle_model as bm
    import fusion_edge.runtime.profile.capacity as cap
    import fusion_edge.runtime.profile.modes as modes

    seen: dict = {}
    monkeypatch.setattr(bm, "BundleModel", _FakeModel)

    def fake_run(config, model, on_progress=None):
        seen["config"] = config
        return _result(config)

    def fake_search(config, model, on_progress=None):
        seen.setdefault("capacity", []).append(config)
        return CapacityResult(
            104,
            3000.0,
            "onnxruntime-cpu/int8",
            config.scenario,
            [CapacityPoint(104, True, "", 6, 60.0, 70.0, 90.0, 95.0, 4.0, 80.0)],
        )

    monkeypatch.setattr(modes, "run_profile", fake_run)
    monkeypatch.setattr(cap, "search_capacity", fake_search)
    return seen


def test_profile_writes_report_and_passes_options(calls, tmp_path: Path) -> None:
    out = tmp_path / "p"
    r = runner.invoke(
        _app(),
        [
            "profile",
            "--bundle",
            str(tmp_path),
            "--scenario",
            "11v11",
            "--mode",
            "server",
            "--rate",
            "50",
            "--burst",
            "3",
            "--duration",
            "5",
            "--out",
            str(out),
            "--no-plots",
        ],
    )
    assert r.exit_code == 0, r.output
    cfg = calls["config"]
    assert (cfg.scenario, cfg.mode.value, cfg.rate, cfg.burst, cfg.duration_s) == (
        "11v11",
        "server",
        50.0,
        3.0,
        5.0,
    )
    assert cfg.sinks_dir == str(out)
    doc = json.loads((out / "report.json").read_text())
    assert doc["mode"] == "server" and doc["end_to_end"]["count"] == 1500
    assert "end to end" in r.output and (out / "report.md").exists()


def test_profile_refuses_a_bad_mode_and_a_missing_bundle(calls, tmp_path: Path) -> None:
    r = runner.invoke(_app(), ["profile", "--bundle", str(tmp_path), "--mode", "fastest"])
    assert r.exit_code == 2 and "single-stream" in r.output
    r = runner.invoke(_app(), ["profile", "--scenario", "5v5"])
    assert r.exit_code == 2 and "--bundle" in r.output


def test_capacity_searches_each_backend(calls, tmp_path: Path) -> None:
    out = tmp_path / "cap"
    r = runner.invoke(
        _app(),
        [
            "profile",
            "capacity",
            "--bundle",
            str(tmp_path),
            "--backend",
            "onnxruntime-cpu",
            "--backend",
            "onnxruntime-cuda",
            "--out",
            str(out),
            "--no-plots",
            "--seconds",
            "5",
        ],
    )
    assert r.exit_code == 0, r.output
    assert len(calls["capacity"]) == 2 and calls["capacity"][0].seconds == 5.0
    for b in ("onnxruntime-cpu", "onnxruntime-cuda"):
        assert json.loads((out / b / "report.json").read_text())["capacity"]["max_players"] == 104
    assert "104" in r.output


def test_compare_prints_ratios_and_writes_json(tmp_path: Path) -> None:
    from fusion_edge.runtime.profile.modes import ProfileConfig

    a = write_report(build_report(_result(ProfileConfig(), 1.0)), tmp_path / "a")
    b = write_report(build_report(_result(ProfileConfig(), 2.0)), tmp_path / "b")
    r = runner.invoke(
        _app(),
        ["profile", "compare", str(a), str(tmp_path / "b"), "--out", str(tmp_path / "c.json")],
    )
    assert r.exit_code == 0, r.output
    assert "end_to_end" in r.output and "2.0" in r.output
    cmp = json.loads((tmp_path / "c.json").read_text())
    assert cmp["latency"]["end_to_end"]["p50_ms"]["ratio"] == pytest.approx(2.0, rel=0.02)
    del b


def test_compare_of_a_missing_report_exits_2_with_a_hint(tmp_path: Path) -> None:
    r = runner.invoke(
        _app(), ["profile", "compare", str(tmp_path / "x.json"), str(tmp_path / "y.json")]
    )
    assert r.exit_code == 2
    assert "fusion-edge profile" in r.output
