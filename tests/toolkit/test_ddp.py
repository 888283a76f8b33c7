"""Training under torchrun: two CPU processes (gloo) train one model with DDP; rank 0 writes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_processes_train_one_run(sim_dataset, tmp_path: Path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists() and shutil.which("torchrun") is None:
        pytest.skip("torchrun is not installed next to this interpreter")
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        str(torchrun if torchrun.exists() else shutil.which("torchrun")),
        "--nproc_per_node=2", f"--master_port={_free_port()}",
        "-m", "fusion_edge", "train", "--data", str(sim_dataset), "--out", str(out),
        "--epochs", "1", "--device", "cpu",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["history"][0]["epoch"] == 1
    assert (out / "model.safetensors").stat().st_size > 10_000
