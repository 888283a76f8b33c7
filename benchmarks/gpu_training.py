"""Issue 2's GPU figures: seconds per training epoch on the CPU and on CUDA, and DDP in one process.

    PYTHONPATH=. python3 benchmarks/gpu_training.py [--sizes paper,edge] [--epochs 3]
        [--devices cpu,cuda] [--no-ddp]

1. Simulates the default benchmark (5v5, 4 sessions x 5 min, seed 1: 40 players) into a
   temporary folder, or uses ``--data``.
2. For each size and device, trains ``--epochs`` epochs (no early stop) with the project's own
   `train` (AMP on CUDA) and takes the median epoch time: the issue's target is a `paper`-size
   epoch at least 5x faster on a GPU than on this 2-core CPU.
3. Launches the same training under ``torch.distributed.run --nproc_per_node 1`` on the first
   device of ``--devices`` that is CUDA (NCCL), so DDP's own overhead is measured with one
   process, as the issue asks.

Needs torch and numpy only (no CLI, plots or ONNX), so it runs on a lent GPU machine with
``PYTHONPATH=.``. Prints a table and writes benchmarks/results/gpu_training.json. Devices that
are not there are reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "gpu_training.json"
REPO = Path(__file__).resolve().parents[1]


def epoch_seconds(data: Path, size: str, device: str, epochs: int) -> float:
    """Median seconds per epoch of `train` (training split, validation included)."""
    from fusion_edge.toolkit.dataset import Dataset
    from fusion_edge.toolkit.model import ModelConfig
    from fusion_edge.toolkit.train import TrainConfig, train

    ds = Dataset.open(data)
    cfg = ModelConfig.for_dataset(ds.spec, size)
    res = train(
        ds, cfg, TrainConfig(epochs=epochs, device=device, early_stop_patience=epochs + 1), show_progress=False
    )
    return res.epoch_seconds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_epoch_seconds(data: Path, size: str, device: str, epochs: int, out: Path) -> float:
    """The same training under torch.distributed.run with one process; its rank 0 writes ``out``."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", f"--master_port={_free_port()}",
        str(Path(__file__).resolve()), "--child", "--data", str(data), "--sizes", size,
        "--devices", device, "--epochs", str(epochs), "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"the DDP run failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return float(json.loads(out.read_text())["epoch_seconds"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="a dataset folder (default: simulate the default benchmark)")
    ap.add_argument("--sizes", default="paper,edge")
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--no-ddp", action="store_true", help="skip the one-process DDP run")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:  # inside torch.distributed.run: one size, one device
        secs = epoch_seconds(args.data, args.sizes, args.devices, args.epochs)
        if int(os.environ.get("RANK", "0")) == 0:
            args.out.write_text(json.dumps({"epoch_seconds": secs}))
        return 0

    with tempfile.TemporaryDirectory(prefix="fe-gpu-training-") as tmp_s:
        tmp = Path(tmp_s)
        data = args.data
        if data is None:
            from fusion_edge.scenarios import get_scenario
            from fusion_edge.toolkit.scenario_dataset import simulate_dataset

            data = tmp / "data"
            simulate_dataset([get_scenario("5v5")], data, seed=1, duration_s=300, sessions=4)
        devices = args.devices.split(",")
        rows = []
        for size in args.sizes.split(","):
            row: dict = {"size": size}
            for dev in devices:
                if dev.startswith("cuda") and not torch.cuda.is_available():
                    row[dev] = None
                    continue
                row[dev] = epoch_seconds(data, size, dev, args.epochs)
            cuda = next((d for d in devices if d.startswith("cuda") and row.get(d)), None)
            if "cpu" in row and row["cpu"] and cuda:
                row["gpu_speedup"] = row["cpu"] / row[cuda]
            if cuda and not args.no_ddp:
                row["ddp_1proc_" + cuda] = ddp_epoch_seconds(data, size, cuda, args.epochs, tmp / f"ddp-{size}.json")
            rows.append(row)
            cells = ", ".join(
                f"{k} {v:.2f} s" if k not in ("size", "gpu_speedup") and v else f"{k} {v}"
                for k, v in row.items()
                if k != "size"
            )
            print(f"{size}: seconds per epoch: {cells}", flush=True)
    doc = {
        "machine": {
            "platform": platform.platform(),
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "epochs": args.epochs,
        "rows": rows,
        "note": "None: that device is not present here",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
