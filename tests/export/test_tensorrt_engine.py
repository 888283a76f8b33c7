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
