"""`make demo` end to end on tiny sizes: every step runs and the exported bundle verifies."""

from __future__ import annotations

import json
from pathlib import Path

from fusion_edge.demo import main
from fusion_edge.runtime.bundle import verify_bundle


def test_demo_runs_every_step_and_exports_a_verified_bundle(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    argv = ["--out", str(out), "--minutes", "1", "--sessions", "2", "--epochs", "1"]
    assert main([*argv, "--latency-runs", "2"]) == 0
    assert (out / "run" / "model.safetensors").is_file()
    assert json.loads((out / "metrics.json").read_text())
    manifest = verify_bundle(out / "bundle")
    names = [v["name"] for v in manifest["variants"]]
    assert names[:3] == ["fp32", "fp16", "int8_cpu"]
    assert manifest["fallback"]["variant"] == "fp32"
    assert (out / "bundle" / "report.md").is_file()
    assert not list(out.glob("bundle.tmp-*"))  # nothing half-written left beside it
