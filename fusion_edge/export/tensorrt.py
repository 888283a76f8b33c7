"""TensorRT engines built from a bundle's ONNX files (TensorRT 10 Python API).

An engine is specific to the TensorRT version and the GPU it was built on, so engines do not go
into the bundle: they go into an engine cache keyed by TensorRT version, GPU name and the
variant's sha256, and are rebuilt on a new box or after an upgrade. A failed build says why
and leaves the bundle as it was: the box then runs the ONNX files with onnxruntime.

TensorRT 10 (JetPack 6) types networks weakly: builder flags let it pick reduced precision.

* FP32 / FP16: built from the FP32 file (FP16 with ``BuilderFlag.FP16``: TensorRT chooses FP16
  kernels itself and keeps the LSTM where it is precise).
* INT8: built from the explicit Q/DQ file (``model_int8_qdq.onnx``) with ``BuilderFlag.INT8``
  and ``FP16``; the Q/DQ scales in the file are used, no TensorRT calibrator runs.

TensorRT 11 removed weak typing (``BuilderFlag.FP16`` / ``INT8`` are gone; every network is
strongly typed), so there each engine takes its precision from the file it is built from:

* FP32 from the FP32 file; FP16 from the bundle's FP16 file (``model_fp16.onnx``: float16
  weights and activations, float32 inputs, outputs and LSTMs, the mixed precision TensorRT 11's
  migration guide makes with ModelOpt AutoCast); INT8 from the Q/DQ file, float32 elsewhere.

`engine_plan` is that choice. One optimization profile per engine: batch 1 (min), half the
squad (opt), the squad (max).

NOTE: written against the documented TensorRT 10 and 11 Python APIs and not run in this
repository's CI (no GPU, no tensorrt package); the real build test is marked ``tensorrt`` and
skips where it does not import.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fusion_edge.errors import TENSORRT_HOW, BackendError, ConfigError, MissingDependencyError
from fusion_edge.file_access import probe_writable
from fusion_edge.runtime.bundle import verify_bundle
from fusion_edge.runtime.engine_cache import default_cache_dir, engine_cache_key

__all__ = [
    "default_cache_dir",
    "engine_cache_key",
    "engine_plan",
    "build_engine",
    "build_engines",
    "ENGINE_PLANS",
    "STRONGLY_TYPED_PLANS",
]

# precision -> (variant whose ONNX file the engine is built from, builder flags): TensorRT 10.
ENGINE_PLANS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fp32": ("fp32", ()),
    "fp16": ("fp32", ("FP16",)),
    "int8": ("int8_qdq_tensorrt", ("INT8", "FP16")),
}
# The same for TensorRT 11 and later: strongly typed, so the file carries the precision.
STRONGLY_TYPED_PLANS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fp32": ("fp32", ()),
    "fp16": ("fp16", ()),
    "int8": ("int8_qdq_tensorrt", ()),
}


def engine_plan(precision: str, trt_version: str) -> tuple[str, tuple[str, ...], bool]:
    """``(source variant, builder flags, strongly typed)`` for an engine of ``precision``."""
    try:
        major = int(str(trt_version).split(".")[0])
    except ValueError:
        major = 10
    if major >= 11:
        source, flags = STRONGLY_TYPED_PLANS[precision]
        return source, flags, True
    source, flags = ENGINE_PLANS[precision]
    return source, flags, False


def _trt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependencyError("tensorrt", "gpu", "Building TensorRT engines", TENSORRT_HOW) from None
    return trt


def _gpu_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return os.environ.get("FUSION_EDGE_GPU_NAME", "unknown-gpu")


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    input_shapes: Mapping[str, tuple[int, int]],
    max_batch: int,
    flags: tuple[str, ...] = (),
    strongly_typed: bool = False,
    workspace_bytes: int = 1 << 30,
) -> Path:
    """Parse ``onnx_path`` and serialize an engine to ``engine_path``.

    Args:
        onnx_path: The ONNX file (dynamic batch axis).
        engine_path: Where to write the serialized engine (written atomically).
        input_shapes: Input name -> (channels, samples), for the optimization profile.
        max_batch: Largest batch (the kit's player count).
        flags: ``BuilderFlag`` names, e.g. ``("FP16",)`` or ``("INT8", "FP16")`` (TensorRT 10).
        strongly_typed: Build a strongly typed network (TensorRT 11 builds nothing else; the
            creation flag is passed where this TensorRT still has it).
        workspace_bytes: Builder workspace memory pool limit.

    Raises:
        MissingDependencyError: tensorrt is not installed.
        BackendError: parsing or building failed; the message holds the parser's errors.
    """
    trt = _trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10+: networks are always explicit-batch (0 = default); strongly typed on request.
    creation = 0
    typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None) if strongly_typed else None
    if typed is not None:
        creation |= 1 << int(typed)
    network = builder.create_network(creation)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(
            f"TensorRT cannot parse {onnx_path}: {errors or 'no detail'}; the bundle still runs "
            "with onnxruntime (set the backend to onnxruntime)"
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    for flag in flags:
        value = getattr(trt.BuilderFlag, flag, None)
        if value is None:
            raise BackendError(
                f"TensorRT {trt.__version__} has no builder flag {flag} (TensorRT 11 removed the "
                "precision flags); build with 'fusion-edge engine build', which picks the plan for "
                "this TensorRT, and the bundle still runs with onnxruntime"
            )
        config.set_flag(value)
    profile = builder.create_optimization_profile()
    opt = max(1, max_batch // 2)
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        c, s = input_shapes[tensor.name]
        profile.set_shape(tensor.name, (1, c, s), (opt, c, s), (max_batch, c, s))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(
            f"TensorRT could not build an engine from {onnx_path} with flags {list(flags)} (see "
            "the TensorRT log above); the bundle still runs with onnxruntime"
        )
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(engine_path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(memoryview(serialized))
        os.replace(tmp, engine_path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no half-written engine is left in the cache
        raise
    return engine_path


def _writable_cache(cache: Path) -> Path:
    """Create the engine cache folder and check that engines can be written into it."""
    try:
        probe_writable(cache)
    except OSError as exc:
        raise ConfigError(
            f"the engine cache folder {cache} cannot be written ({exc.strerror or exc}); give a "
            "writable folder with --cache (or set FUSION_EDGE_ENGINE_CACHE)"
        ) from None
    return cache


def build_engines(
    bundle: str | Path,
    *,
    precisions: tuple[str, ...] = ("fp16", "int8"),
    max_batch: int = 22,
    cache_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Build (or reuse from the cache) an engine per precision for a verified bundle.

    Returns:
        One report row per precision: ``variant``, ``status`` (``ok``, ``cached`` or why it
        failed / was skipped), ``file`` and ``size_bytes`` where built.
    """
    unknown = [p for p in precisions if p not in ENGINE_PLANS]
    if unknown:
        raise ConfigError(
            f"unknown engine precision(s) {unknown}; choose from {', '.join(ENGINE_PLANS)}"
        )
    precisions = tuple(dict.fromkeys(precisions))  # "fp16,fp16" builds one engine
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ConfigError(
            f"--max-batch {max_batch!r} must be at least 1: give the kit's player count"
        )
    manifest = verify_bundle(bundle)
    variants = {v["name"]: v for v in manifest["variants"]}
    shapes = {i["name"]: (len(i["channels"]), int(i["window_samples"])) for i in manifest["inputs"]}
    rows: list[dict[str, Any]] = []
    try:
        trt = _trt()
    except MissingDependencyError as exc:
        return [
            {"variant": f"engine_{p}", "status": f"skipped: {exc}", "precision": p}
            for p in precisions
        ]
    cache = _writable_cache(Path(cache_dir) if cache_dir else default_cache_dir())
    gpu = _gpu_name()
    for precision in precisions:
        source, flags, strongly_typed = engine_plan(precision, trt.__version__)
        row: dict[str, Any] = {"variant": f"engine_{precision}", "precision": precision}
        var = variants.get(source)
        if var is None:
            why = f"skipped: the bundle has no '{source}' variant to build from"
            if strongly_typed and source != "fp32":
                why += (
                    f" (TensorRT {trt.__version__} takes the precision from the file); re-export "
                    f"with --precision including {precision}"
                )
            row["status"] = why
            rows.append(row)
            continue
        path = cache / engine_cache_key(trt.__version__, gpu, var["sha256"], precision, max_batch)
        try:
            if path.is_file():
                row["status"] = "cached"
            else:
                build_engine(
                    Path(bundle) / var["file"],
                    path,
                    input_shapes=shapes,
                    max_batch=max_batch,
                    flags=flags,
                    strongly_typed=strongly_typed,
                )
                row["status"] = "ok"
            if row["status"] == "ok" or not path.with_suffix(".json").is_file():
                # The runtime finds engines by this description (runtime.engine_cache).
                path.with_suffix(".json").write_text(
                    json.dumps(
                        {
                            "bundle": str(bundle),
                            "variant": source,
                            "precision": precision,
                            "tensorrt": trt.__version__,
                            "strongly_typed": strongly_typed,
                            "gpu": gpu,
                            "max_batch": max_batch,
                            "sha256": var["sha256"],
                        },
                        indent=2,
                    )
                )
            row.update(file=str(path), size_bytes=path.stat().st_size)
        except BackendError as exc:
            row["status"] = f"failed: {exc}"
        except OSError as exc:
            row["status"] = (
                f"failed: cannot write the engine to {cache} ({exc.strerror or exc}); free disk "
                "space or give another --cache folder"
            )
        rows.append(row)
    return rows
