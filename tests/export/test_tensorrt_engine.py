"""TensorRT engine build: real build where tensorrt imports; cache keys and skips everywhere."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from fusion_edge.errors import ConfigError
from fusion_edge.export.tensorrt import build_engines, engine_cache_key

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def test_cache_key_names_everything_that_invalidates_an_engine() -> None:
    key = engine_cache_key("10.3.0", "NVIDIA Jetson Orin (nvgpu)", "ab" * 32, "int8", 22)
    assert key == f"trt10.3.0_nvidia-jetson-orin-nvgpu_{'ab' * 8}_int8_b22.engine"


def test_unknown_precision_is_refused(tiny_bundle) -> None:
    with pytest.raises(ConfigError, match="unknown engine precision"):
        build_engines(tiny_bundle.bundle, precisions=("int4",))


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed: the skip path is not taken")
def test_without_tensorrt_the_build_is_skipped_and_the_bundle_stays_usable(
    tiny_bundle, tmp_path: Path
) -> None:
    rows = build_engines(tiny_bundle.bundle, cache_dir=tmp_path)
    assert [r["variant"] for r in rows] == ["engine_fp16", "engine_int8"]
    assert all(r["status"].startswith("skipped:") and "tensorrt" in r["status"] for r in rows)
    assert not any(tmp_path.iterdir())


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT, reason="needs the tensorrt Python package and a CUDA GPU")
def test_engines_build_and_are_cached(tiny_bundle, tmp_path: Path) -> None:
    rows = build_engines(
        tiny_bundle.bundle, precisions=("fp16", "int8"), max_batch=5, cache_dir=tmp_path
    )
    assert all(r["status"] == "ok" for r in rows), rows
    again = build_engines(
        tiny_bundle.bundle, precisions=("fp16", "int8"), max_batch=5, cache_dir=tmp_path
    )
    assert all(r["status"] == "cached" for r in again)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("10.3.0", {"fp32": ("fp32", (), False), "fp16": ("fp32", ("FP16",), False),
                    "int8": ("int8_qdq_tensorrt", ("INT8", "FP16"), False)}),
        ("11.4.1", {"fp32": ("fp32", (), True), "fp16": ("fp16", (), True),
                    "int8": ("int8_qdq_tensorrt", (), True)}),
    ],
)
def test_engine_plan_follows_the_tensorrt_generation(version: str, expected: dict) -> None:
    """TensorRT 11 removed BuilderFlag.FP16/INT8: its engines take the precision from the file."""
    from fusion_edge.export.tensorrt import engine_plan

    assert {p: engine_plan(p, version) for p in expected} == expected


class _StandInTensorRt:
    """Only the names `build_engine` touches, as TensorRT 11's Python API documents them (no
    BuilderFlag.FP16 / INT8). It checks which calls our code makes, not that TensorRT builds."""

    __version__ = "11.4.1"

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            pass

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 5

    class BuilderFlag:
        SPARSE_WEIGHTS = 6

    class MemoryPoolType:
        WORKSPACE = 0

    calls: list = []

    class _Network:
        num_inputs = 0

    class Builder:
        def __init__(self, logger: object) -> None:
            pass

        def create_network(self, flags: int) -> object:
            _StandInTensorRt.calls.append(("create_network", flags))
            return _StandInTensorRt._Network()

        def create_builder_config(self) -> object:
            class Config:
                def set_memory_pool_limit(self, pool: int, size: int) -> None:
                    pass

                def set_flag(self, flag: object) -> None:
                    _StandInTensorRt.calls.append(("set_flag", flag))

                def add_optimization_profile(self, profile: object) -> None:
                    pass

            return Config()

        def create_optimization_profile(self) -> object:
            return object()

        def build_serialized_network(self, network: object, config: object) -> bytes:
            return b"engine"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: object, logger: object) -> None:
            pass

        def parse_from_file(self, path: str) -> bool:
            _StandInTensorRt.calls.append(("parse", Path(path).name))
            return True


def test_on_tensorrt_11_engines_are_strongly_typed_and_set_no_precision_flag(
    tiny_bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fusion_edge.export.tensorrt as trt_mod

    _StandInTensorRt.calls = []
    monkeypatch.setattr(trt_mod, "_trt", lambda: _StandInTensorRt)
    rows = build_engines(tiny_bundle.bundle, precisions=("fp16", "int8"), max_batch=4, cache_dir=tmp_path)
    assert [r["status"] for r in rows] == ["ok", "ok"], rows
    calls = _StandInTensorRt.calls
    assert ("create_network", 1 << 5) in calls and ("create_network", 0) not in calls
    assert not [c for c in calls if c[0] == "set_flag"]
    parsed = [c[1] for c in calls if c[0] == "parse"]
    assert parsed == ["model_fp16.onnx", "model_int8_qdq.onnx"]


def test_a_missing_builder_flag_fails_the_row_not_the_command(
    tiny_bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TensorRT 10 plan run against a TensorRT without BuilderFlag.FP16 names what is missing."""
    import fusion_edge.export.tensorrt as trt_mod

    monkeypatch.setattr(trt_mod, "_trt", lambda: _StandInTensorRt)
    monkeypatch.setattr(trt_mod, "engine_plan", lambda p, v: ("fp32", ("FP16",), False))
    rows = build_engines(tiny_bundle.bundle, precisions=("fp16",), max_batch=4, cache_dir=tmp_path)
    assert rows[0]["status"].startswith("failed:") and "no builder flag FP16" in rows[0]["status"]
    assert "onnxruntime" in rows[0]["status"]
    assert not list(tmp_path.glob("*.engine"))


def test_the_runtime_finds_the_engines_the_build_left_in_the_cache(
    tiny_bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`engine build` wrote to the cache while `run` looked only in BUNDLE/engines: never found."""
    import fusion_edge.export.tensorrt as trt_mod
    from fusion_edge.runtime.backends import BackendKind
    from fusion_edge.runtime.bundle import read_manifest
    from fusion_edge.runtime.bundle_model import backend_specs

    monkeypatch.setattr(trt_mod, "_trt", lambda: _StandInTensorRt)
    rows = build_engines(tiny_bundle.bundle, precisions=("fp16", "int8"), max_batch=4, cache_dir=tmp_path)
    specs = backend_specs(read_manifest(tiny_bundle.bundle), Path(tiny_bundle.bundle), ["tensorrt"], tmp_path)
    int8 = next(r for r in rows if r["precision"] == "int8")
    assert [(s.kind, str(s.file), s.precision) for s in specs] == [(BackendKind.TENSORRT, int8["file"], "int8")]


def test_engine_build_into_another_cache_tells_run_how_to_find_it(
    tiny_bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import fusion_edge.export.tensorrt as trt_mod
    from fusion_edge.cli.app import app
    from fusion_edge.runtime.bundle import read_manifest
    from fusion_edge.runtime.bundle_model import backend_specs

    monkeypatch.setattr(trt_mod, "_trt", lambda: _StandInTensorRt)
    monkeypatch.delenv("FUSION_EDGE_ENGINE_CACHE", raising=False)
    cache = tmp_path / "engines"
    res = CliRunner().invoke(app, ["engine", "build", str(tiny_bundle.bundle), "--cache", str(cache)])
    assert res.exit_code == 0, res.output
    assert f"FUSION_EDGE_ENGINE_CACHE={cache}" in "".join(res.output.split())  # however rich wraps it
    monkeypatch.setenv("FUSION_EDGE_ENGINE_CACHE", str(cache))
    specs = backend_specs(read_manifest(tiny_bundle.bundle), Path(tiny_bundle.bundle), ["tensorrt"])
    assert [s.precision for s in specs] == ["int8"] and specs[0].file.parent == cache
