"""The bundle on disk: ``manifest.json`` plus model files. Reading, verifying and writing it.

This module is what the box uses to trust a bundle, so it imports neither torch nor onnx:
numpy is not even needed. `fusion_edge.export` writes bundles through `BundleWriter`, so the
writer and the reader cannot drift apart.

A bundle is written into ``<out>.tmp-XXXX`` next to its destination and renamed into place
only after ``manifest.json`` (written last) is complete, so a half-written bundle never sits
at ``<out>`` and never looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from fusion_edge.errors import BundleError
from fusion_edge.file_access import make_ordinary

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "MANIFEST_FILE",
    "Precision",
    "BundleWriter",
    "read_manifest",
    "verify_bundle",
    "sha256_file",
    "file_entry",
    "iter_variants",
]

BUNDLE_FORMAT = "fusion-edge-bundle"
BUNDLE_VERSION = 1
MANIFEST_FILE = "manifest.json"

# Keys every manifest must have (the schema; version 1). Extra keys are refused so that a typo
# or a newer writer is caught instead of silently ignored.
_REQUIRED = (
    "format",
    "format_version",
    "model_name",
    "fusion_edge_version",
    "inputs",
    "preprocessing",
    "normalization",
    "tasks",
    "variants",
    "fallback",
    "export_config",
)
_OPTIONAL = ("model_config", "created_utc", "source_run", "pruning", "notes")
_INPUT_KEYS = ("name", "channels", "sample_rate_hz", "window_samples", "hop_seconds")
_TASK_KEYS = ("name", "kind")
_VARIANT_KEYS = (
    "name",
    "file",
    "precision",
    "format",
    "sha256",
    "size_bytes",
    "metrics",
    "latency_ms",
)


class Precision(str, Enum):
    """Numeric precision of a variant (stored as its plain string value)."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"sha256": ..., "size_bytes": ...}`` of a file."""
    p = Path(path)
    return {"sha256": sha256_file(p), "size_bytes": p.stat().st_size}


def _fail(where: Path, what: str) -> BundleError:
    return BundleError(f"{where}: {what}")


def _check_keys(d: Any, required: tuple[str, ...], where: Path, ctx: str) -> None:
    if not isinstance(d, Mapping):
        raise _fail(where, f"{ctx} must be a JSON object; re-export the bundle")
    for key in required:
        if key not in d:
            raise _fail(
                where, f"{ctx} lacks the key '{key}'; the bundle is incomplete, re-export it"
            )


def _check_text(d: Mapping[str, Any], keys: tuple[str, ...], where: Path, ctx: str) -> None:
    # Names are compared, hashed and printed: a list or a number there must be refused here,
    # not crash later with a TypeError.
    for key in keys:
        value = d[key]
        if not isinstance(value, str) or not value:
            raise _fail(
                where, f"{ctx}.{key} must be a non-empty string, got {value!r}; re-export the bundle"
            )


def read_manifest(bundle: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and schema-check ``manifest.json`` of a bundle folder (files are not hashed).

    Returns:
        The manifest as a JSON object.

    Raises:
        BundleError: The folder or manifest is missing, not JSON, of another format or version,
            or lacks a key. The message names the file and the first problem.
    """
    root = Path(bundle)
    path = root / MANIFEST_FILE
    if not root.is_dir():
        raise BundleError(
            f"{root} is not a folder; give the bundle folder that `fusion-edge export` wrote"
        )
    if not path.is_file():
        if (root / "model.safetensors").is_file() and (root / "config.json").is_file():
            raise BundleError(
                f"{root} is a training run, not a bundle: export it first, `fusion-edge export "
                f"{root} --data DATASET --out BUNDLE`, and give --bundle BUNDLE"
            )
        raise BundleError(
            f"{path} is missing: {root} is not a finished bundle (an interrupted export leaves "
            "no manifest); re-run `fusion-edge export`"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"not valid JSON ({exc}); the bundle is corrupt, re-export it") from None
    except OSError as exc:
        raise _fail(
            path, f"cannot be read ({exc.strerror or exc}); check the file's permissions"
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise _fail(
            path, f"format is {got!r}, expected {BUNDLE_FORMAT!r}: this is not a fusion-edge bundle"
        )
    version = doc.get("format_version")
    if version != BUNDLE_VERSION or isinstance(version, bool):
        raise _fail(
            path,
            f"format_version {version!r} is not known (this fusion-edge reads version "
            f"{BUNDLE_VERSION}); export the bundle again with this version or upgrade the box",
        )
    _check_keys(doc, _REQUIRED, path, "the manifest")
    unknown = set(doc) - set(_REQUIRED) - set(_OPTIONAL)
    if unknown:
        raise _fail(
            path, f"unknown keys {sorted(unknown)}; the bundle was written by another version"
        )
    if not isinstance(doc["inputs"], list) or not doc["inputs"]:
        raise _fail(path, "'inputs' must be a non-empty list")
    if not isinstance(doc["normalization"], dict):
        raise _fail(path, "'normalization' must be an object of per-input statistics; re-export the bundle")
    for i, inp in enumerate(doc["inputs"]):
        _check_keys(inp, _INPUT_KEYS, path, f"inputs[{i}]")
        _check_text(inp, ("name",), path, f"inputs[{i}]")
        if not isinstance(inp["channels"], list):
            raise _fail(path, f"inputs[{i}].channels must be a list of channel names; re-export the bundle")
        for key in ("sample_rate_hz", "window_samples", "hop_seconds"):
            value = inp.get(key)
            if key in inp and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise _fail(path, f"inputs[{i}].{key} must be a number, got {value!r}; re-export the bundle")
        if inp["name"] not in doc["normalization"]:
            raise _fail(path, f"normalization lacks input '{inp['name']}'; re-export the bundle")
        stats = doc["normalization"][inp["name"]]
        if not isinstance(stats, dict):
            raise _fail(path, f"normalization['{inp['name']}'] must be an object with mean and std; "
                              "re-export the bundle")
        for key in ("mean", "std"):
            if not isinstance(stats.get(key, []), list) or len(stats.get(key, [])) != len(inp["channels"]):
                raise _fail(
                    path,
                    f"normalization['{inp['name']}']['{key}'] must have one value per channel "
                    f"({len(inp['channels'])}); re-export the bundle",
                )
    if not isinstance(doc["tasks"], list) or not doc["tasks"]:
        raise _fail(path, "'tasks' must be a non-empty list")
    for i, task in enumerate(doc["tasks"]):
        _check_keys(task, _TASK_KEYS, path, f"tasks[{i}]")
        _check_text(task, _TASK_KEYS, path, f"tasks[{i}]")
        if task["kind"] not in ("class", "regression"):
            raise _fail(
                path, f"tasks[{i}] kind {task['kind']!r} is neither 'class' nor 'regression'"
            )
    if not isinstance(doc["variants"], list) or not doc["variants"]:
        raise _fail(path, "'variants' must be a non-empty list")
    names = set()
    for i, var in enumerate(doc["variants"]):
        _check_keys(var, _VARIANT_KEYS, path, f"variants[{i}]")
        _check_text(var, ("name", "precision", "format", "sha256"), path, f"variants[{i}]")
        size = var["size_bytes"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise _fail(
                path,
                f"variants[{i}].size_bytes must be a whole number of bytes, got {size!r}; "
                "re-export the bundle",
            )
        if var["precision"] not in {p.value for p in Precision}:
            raise _fail(
                path,
                f"variants[{i}] precision {var['precision']!r} is not one of "
                f"{[p.value for p in Precision]}",
            )
        if var["name"] in names:
            raise _fail(path, f"variant name {var['name']!r} appears twice")
        names.add(var["name"])
        _safe_relative(var["file"], path)
    fb = doc["fallback"]
    _check_keys(fb, ("variant", "file", "escalation_threshold"), path, "fallback")
    _check_text(fb, ("variant",), path, "fallback")
    if fb["variant"] not in names:
        raise _fail(
            path, f"fallback variant {fb['variant']!r} is not among the variants {sorted(names)}"
        )
    torch_variant = fb.get("torch_variant")
    if torch_variant is not None:
        var = next((v for v in doc["variants"] if v["name"] == torch_variant), None)
        if var is None or var.get("format") != "safetensors" or not isinstance(var.get("model_config"), dict):
            raise _fail(
                path,
                f"fallback torch_variant {torch_variant!r} is not a safetensors variant with a "
                "model_config; re-export the bundle",
            )
    thr = fb["escalation_threshold"]
    if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not 0.0 <= thr <= 1.0:
        raise _fail(path, f"fallback escalation_threshold {thr!r} must be a number in [0, 1]")
    return doc


def _safe_relative(name: Any, where: Path) -> None:
    # A manifest is data from a file: never let it point outside its own folder.
    if (
        not isinstance(name, str)
        or not name
        or Path(name).is_absolute()
        or ".." in Path(name).parts
    ):
        raise _fail(where, f"file {name!r} must be a plain path inside the bundle folder")


def verify_bundle(bundle: str | os.PathLike[str]) -> dict[str, Any]:
    """Check a bundle completely: schema, format version, every file's size and sha256.

    Returns:
        The manifest.

    Raises:
        BundleError: naming the first problem found (missing file, size or hash mismatch, ...).
    """
    root = Path(bundle)
    doc = read_manifest(root)
    for var in doc["variants"]:
        path = root / var["file"]
        if not path.is_file():
            raise BundleError(
                f"variant '{var['name']}': file {path} is missing; "
                "copy the whole bundle folder again"
            )
        try:
            size = path.stat().st_size
            digest = sha256_file(path) if size == var["size_bytes"] else ""
        except OSError as exc:
            raise BundleError(
                f"variant '{var['name']}': {path} cannot be read ({exc.strerror or exc}); check "
                "the file's permissions, or copy the bundle again"
            ) from None
        if size != var["size_bytes"]:
            raise BundleError(
                f"variant '{var['name']}': {path} has {size} bytes, the manifest says "
                f"{var['size_bytes']}; the file is truncated or replaced, copy the bundle again"
            )
        if digest != var["sha256"]:
            raise BundleError(
                f"variant '{var['name']}': sha256 of {path} is {digest[:12]}..., the manifest "
                f"says {str(var['sha256'])[:12]}...; the file is corrupt, copy the bundle again"
            )
    _check_against_model(root, doc)
    return doc


#: Manifest sections the export also wrote into every ONNX file's metadata.
_MODEL_SECTIONS = ("inputs", "tasks", "normalization")


def _first_difference(a: Any, b: Any, where: str = "") -> str:
    """Where two JSON values first differ, e.g. ``[1].window_samples: 200 vs 240``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{where}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{where}[{i}]")
    shown = [json.dumps(v)[:60] for v in (a, b)]
    return f"{where.lstrip('.') or 'the whole section'}: {shown[0]} in manifest.json, {shown[1]} in the model"


def _check_against_model(root: Path, doc: Mapping[str, Any]) -> None:
    """Refuse a manifest whose inputs, tasks or normalization differ from what the FP32 file
    was exported with (its ``fusion_edge.*`` metadata).

    The manifest's hashes cover the model files, not the manifest itself, so an edited
    ``window_samples`` or label list used to verify ``ok`` and then fail every hop (or
    mislabel every event). Skipped without onnxruntime, or for a file without the metadata.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return
    path = root / str((doc.get("fallback") or {}).get("file", "model_fp32.onnx"))
    try:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        meta = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).get_modelmeta()
    except Exception:  # loading problems are the backends' to report, with their context
        return
    for key in _MODEL_SECTIONS:
        raw = meta.custom_metadata_map.get(f"fusion_edge.{key}")
        if raw is None:
            continue
        try:
            written = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if json.loads(json.dumps(doc.get(key))) != written:
            raise BundleError(
                f"{root / MANIFEST_FILE}: its {key} differ from what {path.name} was exported with "
                f"({_first_difference(doc.get(key), written)}); the manifest was edited or belongs "
                "to another export: copy the bundle again, or re-export it"
            )


@dataclass
class BundleWriter:
    """Write a bundle atomically: files go into a hidden sibling folder renamed into place.

    Use as a context manager; inside, write files under `folder` and call `add_variant`, then
    `commit(manifest)`. Leaving the block without a commit, or with an exception, removes the
    temporary folder, so nothing half-written is left behind.

    Args:
        out: Destination bundle folder.
        overwrite: Replace an existing folder at ``out`` (only after the new one is complete).
    """

    out: Path
    overwrite: bool = False
    folder: Path | None = None
    _variants: list[dict[str, Any]] | None = None
    _committed: bool = False

    def __enter__(self) -> BundleWriter:
        self.out = Path(self.out)
        if self.out.exists() and not self.overwrite:
            raise BundleError(
                f"{self.out} already exists; choose another --out or pass --overwrite"
            )
        parent = self.out.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.folder = Path(tempfile.mkdtemp(prefix=f"{self.out.name}.tmp-", dir=parent))
            # mkdtemp makes 0700 folders; a bundle is meant to be copied and read by others.
            make_ordinary(self.folder)
        except OSError as exc:
            raise BundleError(
                f"cannot write the bundle next to {self.out} ({exc.strerror or exc}); choose a "
                "writable --out folder"
            ) from None
        self._variants = []
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._committed and self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def path(self, name: str) -> Path:
        """Where to write file ``name`` of the bundle (inside the temporary folder)."""
        if self.folder is None:
            raise BundleError("BundleWriter.path() called outside its 'with' block")
        _safe_relative(name, self.out)
        return self.folder / name

    def add_variant(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """Record a variant whose file is already written; sha256 and size are filled in here."""
        if self._variants is None:
            raise BundleError("BundleWriter.add_variant() called outside its 'with' block")
        full = {**entry, **file_entry(self.path(entry["file"]))}
        self._variants.append(full)
        return full

    @property
    def variants(self) -> list[dict[str, Any]]:
        """Variants added so far."""
        return list(self._variants or [])

    def commit(self, manifest: Mapping[str, Any]) -> Path:
        """Write ``manifest.json`` (with the variants added), verify, and rename into place."""
        if self.folder is None:
            raise BundleError("BundleWriter.commit() called outside its 'with' block")
        doc = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_VERSION,
            **manifest,
            "variants": self.variants,
        }
        tmp = self.folder / (MANIFEST_FILE + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=False), encoding="utf-8")
        os.replace(tmp, self.folder / MANIFEST_FILE)
        verify_bundle(self.folder)  # the writer must never produce a bundle the box refuses
        old = None
        if self.out.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{self.out.name}.old-", dir=self.out.parent))
            os.replace(self.out, old / "bundle")
        os.replace(self.folder, self.out)
        self._committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out


def iter_variants(
    manifest: Mapping[str, Any], precision: str | None = None
) -> Iterator[dict[str, Any]]:
    """Variants of a manifest, optionally only those of one precision."""
    for var in manifest["variants"]:
        if precision is None or var["precision"] == precision:
            yield var
