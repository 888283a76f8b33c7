"""The box finds the engines `fusion-edge engine build` left in the cache for its bundle."""

from __future__ import annotations

import json
from pathlib import Path

from fusion_edge.runtime.backends import BackendKind
from fusion_edge.runtime.bundle_model import backend_specs
from fusion_edge.runtime.engine_cache import engine_cache_key, find_engines

MANIFEST = {
    "variants": [
        {"name": "fp32", "file": "model_fp32.onnx", "precision": "fp32", "sha256": "a" * 64},
        {"name": "int8_qdq_tensorrt", "file": "model_int8_qdq.onnx", "precision": "int8", "sha256": "b" * 64,
         "target": "tensorrt"},
    ]
}


def cached(cache: Path, sha: str, precision: str, trt: str = "10.3.0", batch: int = 22, engine: bool = True) -> Path:
    path = cache / engine_cache_key(trt, "Orin", sha, precision, batch)
    cache.mkdir(parents=True, exist_ok=True)
    if engine:
        path.write_bytes(b"plan")
    path.with_suffix(".json").write_text(json.dumps(
        {"precision": precision, "tensorrt": trt, "max_batch": batch, "sha256": sha}
    ))
    return path


def test_an_engine_built_from_the_bundle_is_found_best_first(tmp_path: Path) -> None:
    fp16 = cached(tmp_path, "a" * 64, "fp16")
    int8 = cached(tmp_path, "b" * 64, "int8")
    int8_small = cached(tmp_path, "b" * 64, "int8", batch=5)
    cached(tmp_path, "c" * 64, "int8")  # another bundle's
    cached(tmp_path, "a" * 64, "fp32", engine=False)  # its engine was deleted
    (tmp_path / "broken.json").write_text("{not json")
    assert [e.path for e in find_engines(MANIFEST, tmp_path)] == [int8, int8_small, fp16]


def test_the_installed_tensorrt_version_comes_before_precision(tmp_path: Path) -> None:
    old = cached(tmp_path, "b" * 64, "int8", trt="10.3.0")
    new = cached(tmp_path, "a" * 64, "fp16", trt="11.4.1")
    assert [e.path for e in find_engines(MANIFEST, tmp_path, tensorrt="11.4.1")] == [new, old]


def test_the_kit_chain_takes_a_cached_engine_and_keeps_onnxruntime_behind_it(tmp_path: Path) -> None:
    bundle, cache = tmp_path / "bundle", tmp_path / "cache"
    bundle.mkdir()
    int8 = cached(cache, "b" * 64, "int8")
    specs = backend_specs(MANIFEST, bundle, ["tensorrt", "onnxruntime-cpu"], engine_cache=cache)
    assert [(s.kind, s.file, s.precision) for s in specs] == [
        (BackendKind.TENSORRT, int8, "int8"),
        (BackendKind.ONNXRUNTIME_CPU, bundle / "model_fp32.onnx", "fp32"),
    ]


def test_without_an_engine_the_tensorrt_preference_is_passed_over(tmp_path: Path) -> None:
    specs = backend_specs(MANIFEST, tmp_path, ["tensorrt", "onnxruntime-cpu"], engine_cache=tmp_path / "none")
    assert [s.kind for s in specs] == [BackendKind.ONNXRUNTIME_CPU]


def test_an_engine_too_small_for_the_kits_squad_is_passed_over(tmp_path: Path) -> None:
    """A 5-player engine cannot take an 11-player hop in one batch: the chain would fall through."""
    small = cached(tmp_path, "b" * 64, "int8", batch=5)
    squad = cached(tmp_path, "a" * 64, "fp16", batch=22)
    assert [e.path for e in find_engines(MANIFEST, tmp_path, min_batch=11)] == [squad]
    assert [e.path for e in find_engines(MANIFEST, tmp_path, min_batch=5)] == [small, squad]
    specs = backend_specs(MANIFEST, tmp_path, ["tensorrt"], engine_cache=tmp_path, players=11)
    assert [(s.file, s.precision) for s in specs] == [(squad, "fp16")]


def test_an_engine_put_in_the_bundle_by_hand_is_labelled_by_its_name(tmp_path: Path) -> None:
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "model_fp32.engine").write_bytes(b"plan")
    specs = backend_specs(MANIFEST, tmp_path, ["tensorrt"], engine_cache=tmp_path / "none")
    assert [s.precision for s in specs] == ["fp32"]
