"""A bundle ready to answer: normalization, the preferred backend chain, and the full model for
escalation, chosen from the manifest and the kit's backend preference.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fusion_edge.errors import BundleError
from fusion_edge.runtime.backends import BackendKind, BackendSpec
from fusion_edge.runtime.bundle import read_manifest, verify_bundle
from fusion_edge.runtime.engine_cache import find_engines, installed_tensorrt
from fusion_edge.runtime.fallback import BackendChain, Escalator

__all__ = ["BundleModel", "Inference", "backend_specs", "full_model_specs", "ESCALATION_BACKENDS"]

log = logging.getLogger(__name__)

DEFAULT_PREFERENCE = ("tensorrt", "onnxruntime-cuda", "onnxruntime-cpu")


def _usable(var: Mapping[str, Any]) -> bool:
    return var.get("status", "ok") == "ok" and var.get("format", "onnx") == "onnx"


def backend_specs(
    manifest: Mapping[str, Any],
    root: Path,
    preference: Sequence[str],
    engine_cache: str | Path | None = None,
    players: int | None = None,
) -> list[BackendSpec]:
    """The chain for the compressed model: each preferred backend with its best variant.

    onnxruntime on CPU takes the INT8 CPU variant, then FP32; onnxruntime on CUDA and TensorRT
    take FP16, then FP32; a TensorRT engine is used when ``fusion-edge engine build`` left one:
    in the bundle's ``engines/`` folder, or in the engine cache (``engine_cache``, by default
    `engine_cache.default_cache_dir`) built from one of this bundle's files, for at least
    ``players`` players per batch when that is given.
    """
    variants = [v for v in manifest["variants"] if _usable(v)]
    by_target: dict[str, list[dict]] = {}
    for v in variants:
        by_target.setdefault(v.get("target", "onnxruntime"), []).append(v)
    fp32 = [v for v in variants if v["precision"] == "fp32"]
    specs: list[BackendSpec] = []
    for name in preference:
        try:
            kind = BackendKind(name)
        except ValueError:
            raise BundleError(
                f"unknown backend '{name}' in the preference list; choose from "
                f"{[k.value for k in BackendKind]}"
            ) from None
        if kind == BackendKind.ONNXRUNTIME_CPU:
            chosen = [v for v in variants if v.get("target") == "onnxruntime-cpu"] + fp32
        elif kind in (BackendKind.ONNXRUNTIME_CUDA, BackendKind.ONNXRUNTIME_TENSORRT):
            chosen = [v for v in variants if v["precision"] == "fp16"] + fp32
        elif kind == BackendKind.TENSORRT:
            engines = sorted((root / "engines").glob("*.engine")) if (root / "engines").is_dir() else []
            if engines:
                name = engines[0].name
                precision = "int8" if "int8" in name else "fp32" if "fp32" in name else "fp16"
                specs.append(BackendSpec(kind, engines[0], precision))
            else:
                cached = find_engines(manifest, engine_cache, installed_tensorrt(), players)
                specs += [BackendSpec(kind, e.path, e.precision) for e in cached[:1]]
            continue
        else:
            continue  # torch backends serve the full model, not the compressed one
        if chosen:
            v = chosen[0]
            specs.append(BackendSpec(kind, root / v["file"], v["precision"]))
    return specs


#: Backends that can run the full-precision model, with what they run: the bundle's PyTorch
#: weights (torch-*) or its FP32 ONNX file (onnxruntime-*).
ESCALATION_BACKENDS = ("torch-cuda", "onnxruntime-cuda", "onnxruntime-cpu", "torch-cpu")
_GPU_BACKENDS = {"tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "torch-cuda"}


def _torch_variant(manifest: Mapping[str, Any]) -> Mapping[str, Any] | None:
    name = manifest["fallback"].get("torch_variant")
    return next((v for v in manifest["variants"] if v["name"] == name), None) if name else None


def full_model_specs(
    manifest: Mapping[str, Any], root: Path, preference: Sequence[str], escalation_backend: str | None = None
) -> list[BackendSpec]:
    """The chain for escalation: the full-precision model on the chosen backend first.

    With ``escalation_backend`` (a kit's ``[escalation] backend``), that backend, then the FP32
    ONNX on onnxruntime's CPU as the last resort. Without it: on a GPU kit (a GPU backend among
    ``preference``) the bundle's PyTorch weights on CUDA, then the FP32 ONNX on onnxruntime
    (CUDA when preferred, then CPU); on a CPU kit the FP32 ONNX on onnxruntime's CPU only.
    """
    fp32 = root / manifest["fallback"]["file"]
    torch_var = _torch_variant(manifest)
    candidates: dict[str, BackendSpec] = {
        "onnxruntime-cuda": BackendSpec(BackendKind.ONNXRUNTIME_CUDA, fp32, "fp32"),
        "onnxruntime-cpu": BackendSpec(BackendKind.ONNXRUNTIME_CPU, fp32, "fp32"),
    }
    if torch_var is not None:
        for kind in (BackendKind.TORCH_CUDA, BackendKind.TORCH_CPU):
            candidates[kind.value] = BackendSpec(kind, root / torch_var["file"], "fp32", torch_var["model_config"])
    if escalation_backend is not None:
        if escalation_backend not in ESCALATION_BACKENDS:
            raise BundleError(
                f"escalation backend '{escalation_backend}' cannot run the full-precision model; "
                f"choose one of {', '.join(ESCALATION_BACKENDS)}"
            )
        if escalation_backend not in candidates:
            log.warning(
                "%s: the bundle has no PyTorch weights for escalation backend %s (exported by an "
                "older fusion-edge); escalating to the FP32 ONNX on onnxruntime-cpu instead. "
                "Re-export the bundle to escalate on the GPU.", root, escalation_backend,
            )
        order = [escalation_backend, "onnxruntime-cpu"]
    else:
        gpu_kit = bool(_GPU_BACKENDS & set(preference))
        order = (["torch-cuda"] if gpu_kit else []) + (
            ["onnxruntime-cuda"] if "onnxruntime-cuda" in preference else []
        ) + ["onnxruntime-cpu"]
    seen: list[str] = []
    for name in order:
        if name in candidates and name not in seen:
            seen.append(name)
    return [candidates[name] for name in seen]


@dataclass
class Inference:
    """One batch's answer."""

    outputs: dict[str, np.ndarray]
    backend: str
    escalated: np.ndarray
    reasons: list[str | None]
    full_backend: str | None
    stage_ms: dict[str, float]


class BundleModel:
    """Everything the box needs to turn windows into model outputs."""

    def __init__(
        self,
        bundle: str | Path,
        *,
        preference: Sequence[str] = DEFAULT_PREFERENCE,
        escalation: bool = True,
        threshold: float | None = None,
        deadline_ms: float | None = None,
        timeout_s: float = 2.0,
        verify: bool = True,
        escalation_backend: str | None = None,
        engine_cache: str | Path | None = None,
        players: int | None = None,
    ) -> None:
        self.root = Path(bundle)
        self.manifest = verify_bundle(self.root) if verify else read_manifest(self.root)
        m = self.manifest
        self.inputs = [i["name"] for i in m["inputs"]]
        self.mean = {k: np.asarray(v["mean"], np.float32)[None, :, None] for k, v in m["normalization"].items()}
        self.std = {
            k: np.maximum(np.asarray(v["std"], np.float32), 1e-3)[None, :, None] for k, v in m["normalization"].items()
        }
        self.tasks = m["tasks"]
        specs = backend_specs(m, self.root, preference, engine_cache, players)
        if not specs:
            raise BundleError(
                f"{self.root}: none of the preferred backends {list(preference)} has a variant in "
                "this bundle; add onnxruntime-cpu to the kit's backends or export more variants"
            )
        self.chain = BackendChain(specs, timeout_s=timeout_s, deadline_ms=deadline_ms, role="compressed model")
        self.threshold = float(m["fallback"]["escalation_threshold"] if threshold is None else threshold)
        full = None
        if escalation:
            # Escalating to the very file the chain already runs would answer the same: skip it.
            active = self.chain.active_spec
            full_specs = [
                s for s in full_model_specs(m, self.root, preference, escalation_backend)
                if active is None or (s.file, s.kind) != (active.file, active.kind)
            ]
            if full_specs:
                full = BackendChain(full_specs, timeout_s=timeout_s, role="full model (escalation)")
        class_tasks = [t["name"] for t in self.tasks if t["kind"] == "class"]
        self.escalator = Escalator(full, self.threshold, class_tasks)

    def normalize(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """z-score with the bundle's statistics."""
        return {k: ((inputs[k] - self.mean[k]) / self.std[k]).astype(np.float32) for k in self.inputs}

    def infer(self, raw_inputs: Mapping[str, np.ndarray]) -> Inference:
        """Normalize, run the chain, escalate unsure windows."""
        t0 = time.perf_counter()
        x = self.normalize(raw_inputs)
        t1 = time.perf_counter()
        out, name = self.chain.run(x)
        name = f"{name}/{self.chain.active.precision}"
        t2 = time.perf_counter()
        merged, mask, reasons, full_name = self.escalator.apply(x, out)
        if full_name is not None and self.escalator.full is not None:
            full_name = f"{full_name}/{self.escalator.full.active.precision}"
        t3 = time.perf_counter()
        return Inference(
            merged, name, mask, reasons, full_name,
            {"normalize": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "escalation": (t3 - t2) * 1e3},
        )

    def close(self) -> None:
        """Release the backends."""
        self.chain.close()
        if self.escalator.full is not None:
            self.escalator.full.close()
