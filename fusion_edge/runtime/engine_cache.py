"""Where TensorRT engines live on the box, and which of them serve a given bundle.

`fusion-edge engine build` (`fusion_edge.export.tensorrt`) writes each engine into this cache,
named by `engine_cache_key` and described by a JSON file beside it (bundle, source variant,
precision, TensorRT version, GPU, max batch, the source file's sha256). The runtime reads the
same cache to find an engine for the bundle it runs: an engine serves a bundle when it was built
from one of the bundle's files (same sha256), whatever folder the bundle was copied to since.

Nothing here imports tensorrt: finding an engine must work (and cost nothing) on a box whose
backend preference never reaches TensorRT.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["CachedEngine", "default_cache_dir", "engine_cache_key", "find_engines", "installed_tensorrt"]

#: Which engine the box prefers when several serve the bundle: the smallest precision first.
PRECISION_ORDER = ("int8", "fp16", "fp32")


def default_cache_dir() -> Path:
    """``$FUSION_EDGE_ENGINE_CACHE`` or ``~/.cache/fusion-edge/engines``."""
    env = os.environ.get("FUSION_EDGE_ENGINE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "fusion-edge" / "engines"


def engine_cache_key(
    trt_version: str, gpu_name: str, variant_sha256: str, precision: str, max_batch: int
) -> str:
    """File name of an engine in the cache: everything that makes an engine invalid is in it."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower()
    return f"trt{trt_version}_{gpu}_{variant_sha256[:16]}_{precision}_b{max_batch}.engine"


def installed_tensorrt() -> str | None:
    """The installed tensorrt package's version, read from its metadata (nothing imported)."""
    for dist in ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


@dataclass(frozen=True)
class CachedEngine:
    """One engine in the cache that serves a bundle."""

    path: Path
    precision: str
    tensorrt: str | None
    max_batch: int


def find_engines(
    manifest: Mapping[str, Any],
    cache_dir: str | Path | None = None,
    tensorrt: str | None = None,
    min_batch: int | None = None,
) -> list[CachedEngine]:
    """The cache's engines built from this bundle's files, best first.

    Best: built with the installed TensorRT (``tensorrt``; an engine from another version does
    not deserialize), then the smallest precision (`PRECISION_ORDER`), then the largest batch.
    A description that cannot be read, or whose engine file is gone, is passed over, and so is
    an engine whose largest batch is under ``min_batch`` (the kit's player count: its profile
    could not take the whole squad in one hop).
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    shas = {v.get("sha256") for v in manifest.get("variants", []) if isinstance(v, Mapping)}
    shas.discard(None)
    found: list[CachedEngine] = []
    if not shas or not cache.is_dir():
        return found
    for desc in sorted(cache.glob("*.json")):
        try:
            info = json.loads(desc.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(info, dict) or info.get("sha256") not in shas:
            continue
        engine = desc.with_suffix(".engine")
        precision = info.get("precision")
        if not engine.is_file() or precision not in PRECISION_ORDER:
            continue
        batch = info.get("max_batch")
        batch = batch if isinstance(batch, int) and not isinstance(batch, bool) else 0
        if min_batch is not None and batch < min_batch:
            continue
        found.append(
            CachedEngine(
                engine, precision, str(info.get("tensorrt")) if info.get("tensorrt") else None, batch
            )
        )
    found.sort(
        key=lambda e: (
            tensorrt is not None and e.tensorrt != tensorrt,
            PRECISION_ORDER.index(e.precision),
            -e.max_batch,
        )
    )
    return found
