"""Training under torchrun: DDP on CPU processes (gloo) in CI, on one GPU (NCCL) where there is one.

Two processes must end with the same weights (DDP keeps the replicas identical), each having
trained on its own half of every epoch, and rank 0 alone writes the run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sign_data import sign_dataset

from fusion_edge.toolkit.dataset import Dataset, write_dataset

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    torchrun = Path(sys.executable).with_name("torchrun")
    exe = str(torchrun) if torchrun.exists() else shutil.which("torchrun")
    if exe is None:
        pytest.skip("torchrun is not installed next to this interpreter")
    cmd = [exe, f"--nproc_per_node={nproc}", f"--master_port={_free_port()}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def _ranks(tmp_path: Path, nproc: int, device: str) -> list[dict]:
    ds = sign_dataset(n=240, players=8)
    data = write_dataset(tmp_path / "data", ds.spec, ds.inputs, ds.targets, ds.player, ds.session)
    out = tmp_path / "ranks"
    out.mkdir()
    _torchrun(nproc, str(WORKER), str(data), str(out), device)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(nproc)]


@pytest.mark.slow
def test_torchrun_cli_two_processes_write_one_run(sim_dataset, tmp_path: Path):
    out = tmp_path / "run"
    _torchrun(
        2, "-m", "fusion_edge", "train", "--data", str(sim_dataset), "--out", str(out),
        "--epochs", "1", "--device", "cpu",
    )
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["world_size"] == 2
    n_train = int(np.isin(Dataset.open(sim_dataset).player, cfg["split"]["train"]).sum())
    epoch = cfg["history"][0]
    assert epoch["epoch"] == 1 and epoch["train_windows"] == n_train // 2  # rank 0's half
    assert (out / "model.safetensors").stat().st_size > 10_000
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]


@pytest.mark.slow
def test_two_cpu_processes_keep_identical_replicas_and_learn(tmp_path: Path):
    r0, r1 = _ranks(tmp_path, 2, "cpu")
    assert (r0["rank"], r1["rank"]) == (0, 1) and r0["world_size"] == r1["world_size"] == 2
    assert r0["weights_sha256"] == r1["weights_sha256"]
    half = r0["train_windows_total"] // 2
    assert all(e["train_windows"] == half for e in r0["history"] + r1["history"])
    # Disjoint halves of the data: the two ranks' training losses differ, their validation
    # losses (same model, same validation windows) do not.
    assert [e["train_loss"] for e in r0["history"]] != [e["train_loss"] for e in r1["history"]]
    assert [e["val_loss"] for e in r0["history"]] == pytest.approx([e["val_loss"] for e in r1["history"]])
    assert r0["val_metrics"]["sign"]["accuracy"] > 0.9


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (DDP over NCCL)")
def test_one_gpu_process_under_torchrun_trains_with_nccl(tmp_path: Path):
    (r0,) = _ranks(tmp_path, 1, "cuda")
    assert r0["world_size"] == 1
    assert r0["val_metrics"]["sign"]["accuracy"] > 0.9
