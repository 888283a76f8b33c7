"""Issue 5's GPU figure: throughput of the full model on a GPU for a 22-player batch, FP16 and FP32.

    PYTHONPATH=. python3 benchmarks/gpu_throughput.py [--run RUN] [--sizes edge,paper]
        [--batch 22] [--precisions fp32,fp16] [--device cuda] [--iters 200]

Builds the model for the default simulated dataset (imu 9 x 240, position 8 x 60; action,
tactic, quality) at each size with random weights (time does not depend on their values), or
loads RUN's trained model (needs safetensors) for its own size, and times it with
`fusion_edge.export.throughput.torch_throughput`. Prints a table and writes
benchmarks/results/gpu_throughput.json. Needs only torch and numpy beyond this source tree, so
it runs on a GPU machine where nothing else of ours is installed. Without a CUDA device it says
so and exits 2 (``--device cpu`` times the CPU instead, for comparison).

It also times the box's escalation path (``escalation``: `TorchBackend.run`, numpy in and out,
at batch 1 and at ``--batch``): what an unsure window costs on the GPU, copies included.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from fusion_edge.export.throughput import DTYPES, torch_throughput
from fusion_edge.toolkit.model import ModelConfig, MultimodalCnnLstm, count_parameters
from fusion_edge.toolkit.scenario_dataset import WindowingConfig, scenario_dataset_spec

RESULTS = Path(__file__).parent / "results" / "gpu_throughput.json"


def default_model(size: str) -> MultimodalCnnLstm:
    """The model `fusion-edge train --size SIZE` builds on simulated data (10 Hz GNSS)."""
    spec = scenario_dataset_spec(WindowingConfig(), gnss_hz=10.0, source={})
    return MultimodalCnnLstm(ModelConfig.for_dataset(spec, size)).eval()


def escalation_latency(model: MultimodalCnnLstm, batch: int, device: str, warmup: int, iters: int) -> dict:
    """Wall-clock ms of one escalation call the way the box makes it: `TorchBackend.run` with
    float32 numpy windows in and numpy outputs back (host-to-device copies, the FP32 forward, the
    copies back), one call at a time. Median and p90 over ``iters`` calls."""
    import copy
    import time

    import numpy as np

    from fusion_edge.runtime.backends import TorchBackend

    backend = TorchBackend.from_model(copy.deepcopy(model), device)
    rng = np.random.default_rng(0)
    x = {name: rng.normal(size=(batch, c, s)).astype(np.float32) for name, c, s in model.config.modalities}
    for _ in range(warmup):
        backend.run(x)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        backend.run(x)
        times.append((time.perf_counter() - t0) * 1e3)
    backend.close()
    return {
        "backend": backend.name,
        "device": device,
        "batch": batch,
        "iters": iters,
        "median_ms": float(np.median(times)),
        "p90_ms": float(np.percentile(times, 90)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a training run folder (default: random weights)")
    ap.add_argument("--sizes", default="edge,paper", help="model sizes without --run")
    ap.add_argument("--batch", type=int, default=22, help="windows per call (the squad size)")
    ap.add_argument("--precisions", default="fp32,fp16", help=f"comma list of {', '.join(DTYPES)}")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--no-escalation", action="store_true", help="skip the box's escalation-path timing")
    args = ap.parse_args()

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "no CUDA device is visible: run this on a machine with an NVIDIA GPU "
            "(or pass --device cpu to time the CPU)",
            file=sys.stderr,
        )
        return 2
    if args.run:
        from fusion_edge.toolkit.checkpoint import load_run

        model, info = load_run(args.run)
        models = {info.model.size: model}
    else:
        models = {s: default_model(s) for s in args.sizes.split(",")}

    rows = []
    for size, model in models.items():
        for precision in args.precisions.split(","):
            r = torch_throughput(
                model,
                batch=args.batch,
                device=args.device,
                precision=precision,
                warmup=args.warmup,
                iters=args.iters,
            )
            rows.append({"size": size, "parameters": count_parameters(model), **r})
            print(
                f"{size:6s} {precision:5s} batch {r['batch']:3d}  {r['ms_per_batch']:8.3f} ms/batch  "
                f"{r['windows_per_s']:10.0f} windows/s  ({r['device']})",
                flush=True,
            )
    escalation = []
    if not args.no_escalation:
        for size, model in models.items():
            for batch in sorted({1, args.batch}):
                r = escalation_latency(model, batch, args.device, args.warmup, args.iters)
                escalation.append({"size": size, **r})
                print(
                    f"{size:6s} escalation ({r['backend']}, numpy in/out) batch {batch:3d}  "
                    f"median {r['median_ms']:7.3f} ms  p90 {r['p90_ms']:7.3f} ms",
                    flush=True,
                )
    doc = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "device": rows[0]["device"] if rows else args.device,
        },
        "weights": str(args.run) if args.run else "random (time does not depend on them)",
        "setup": {"batch": args.batch, "warmup": args.warmup, "iters": args.iters},
        "rows": rows,
        "escalation": escalation,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
