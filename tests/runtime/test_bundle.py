"""The box's view of a bundle: torch-free reading, verification, atomic writing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fusion_edge.errors import BundleError
from fusion_edge.runtime.bundle import (
    BUNDLE_VERSION,
    MANIFEST_FILE,
    BundleWriter,
    read_manifest,
    verify_bundle,
)

MANIFEST = {
    "model_name": "m",
    "fusion_edge_version": "0.1.0",
    "inputs": [
        {
            "name": "imu",
            "channels": ["ax", "ay"],
            "sample_rate_hz": 40.0,
            "window_samples": 8,
            "hop_seconds": 1.0,
        }
    ],
    "preprocessing": {},
    "normalization": {"imu": {"mean": [0.0, 0.0], "std": [1.0, 1.0]}},
    "tasks": [{"name": "action", "kind": "class", "labels": ["a", "b"]}],
    "fallback": {"variant": "fp32", "file": "a.onnx", "escalation_threshold": 0.6},
    "export_config": {},
}


def _write(out: Path, files: dict[str, bytes] | None = None) -> Path:
    files = files or {"a.onnx": b"fp32 model", "b.onnx": b"int8"}
    with BundleWriter(out) as w:
        for i, (name, data) in enumerate(files.items()):
            w.path(name).write_bytes(data)
            w.add_variant(
                {
                    "name": "fp32" if i == 0 else f"v{i}",
                    "file": name,
                    "precision": "fp32" if i == 0 else "int8",
                    "format": "onnx",
                    "metrics": {},
                    "latency_ms": {},
                }
            )
        return w.commit(MANIFEST)


def test_written_bundle_verifies_with_hashes(tmp_path: Path) -> None:
    out = _write(tmp_path / "b")
    doc = verify_bundle(out)
    assert doc["format_version"] == BUNDLE_VERSION
    assert doc["variants"][0]["size_bytes"] == len(b"fp32 model")
    assert len(doc["variants"][0]["sha256"]) == 64


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: (b / "b.onnx").unlink(), "is missing"),
        (lambda b: (b / "b.onnx").write_bytes(b"int9"), "sha256"),
        (lambda b: (b / "b.onnx").write_bytes(b"int8 longer"), "bytes"),
        (lambda b: (b / MANIFEST_FILE).unlink(), "not a finished bundle"),
        (lambda b: (b / MANIFEST_FILE).write_text("{"), "not valid JSON"),
    ],
)
def test_damage_is_named(tmp_path: Path, damage, message: str) -> None:
    out = _write(tmp_path / "b")
    damage(out)
    with pytest.raises(BundleError, match=message):
        verify_bundle(out)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format_version=2), "format_version 2 is not known"),
        (lambda d: d.update(format="other"), "not a fusion-edge bundle"),
        (lambda d: d.pop("tasks"), "lacks the key 'tasks'"),
        (lambda d: d.update(extra=1), "unknown keys"),
        (lambda d: d["variants"][1].update(file="../x.onnx"), "inside the bundle"),
        (lambda d: d["variants"][1].update(precision="int4"), "precision 'int4'"),
        (lambda d: d["fallback"].update(variant="nope"), "fallback variant"),
        (lambda d: d["normalization"]["imu"].update(std=[1.0]), "one value per channel"),
        # A damaged manifest that is still JSON: named, not a TypeError / ValueError traceback.
        (lambda d: d.update(normalization=None), "'normalization' must be an object"),
        (lambda d: d["normalization"].update(imu=None), "normalization\\['imu'\\] must be an object"),
        (lambda d: d["inputs"][0].update(sample_rate_hz="forty"), "sample_rate_hz must be a number"),
        (lambda d: d["inputs"][0].update(channels="ax"), "channels must be a list"),
    ],
)
def test_schema_problems_are_named(tmp_path: Path, edit, message: str) -> None:
    out = _write(tmp_path / "b")
    doc = json.loads((out / MANIFEST_FILE).read_text())
    edit(doc)
    (out / MANIFEST_FILE).write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=message):
        read_manifest(out)


def test_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), BundleWriter(tmp_path / "b") as w:
        w.path("a.onnx").write_bytes(b"half")
        raise RuntimeError("power cut")
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_kept_unless_overwrite(tmp_path: Path) -> None:
    out = _write(tmp_path / "b")
    with pytest.raises(BundleError, match="already exists"), BundleWriter(out):
        pass
    with BundleWriter(out, overwrite=True) as w:
        w.path("a.onnx").write_bytes(b"new")
        w.add_variant(
            {
                "name": "fp32",
                "file": "a.onnx",
                "precision": "fp32",
                "format": "onnx",
                "metrics": {},
                "latency_ms": {},
            }
        )
        w.commit(MANIFEST)
    assert [v["name"] for v in verify_bundle(out)["variants"]] == ["fp32"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_reading_a_bundle_does_not_import_torch() -> None:
    code = (
        "import sys, fusion_edge.runtime.bundle as b; "
        "assert 'torch' not in sys.modules and 'onnx' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_training_run_given_as_the_bundle_says_to_export_it(tmp_path: Path) -> None:
    """It was called 'not a finished bundle (an interrupted export...)'."""
    run = tmp_path / "R"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "model.safetensors").write_bytes(b"x")
    with pytest.raises(BundleError, match=r"R is a training run, not a bundle: export it first, "
                                          r"`fusion-edge export .*R --data DATASET --out BUNDLE`"):
        read_manifest(run)
    with pytest.raises(BundleError, match="is not a finished bundle"):
        read_manifest(tmp_path)
