"""Foundation benchmark: the default simulated benchmark, the ablation, and epoch timings.

    .venv/bin/python benchmarks/foundation.py [--quick] [--device cuda]

1. Simulates the default benchmark (5v5, 4 sessions x 5 min, seed 1: 40 players).
2. Runs the ablation (CNN only, +LSTM, +attention, +multitask) on a grouped split and scores
   every row on the same held-out players, once per seed (``--seeds``, 3 by default: each seed
   draws its own held-out players and initialization), and reports mean, spread and the paired
   change each step makes.
3. Times one training epoch of the ``paper`` size on this machine's device(s).
Prints a table and writes benchmarks/results/foundation.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from rich.table import Table

from fusion_edge.cli.common import make_console
from fusion_edge.cli.toolkit_commands import print_ablation, print_seed_summary
from fusion_edge.scenarios import get_scenario
from fusion_edge.toolkit.ablation import run_ablation, summarize_seeds
from fusion_edge.toolkit.dataset import Dataset
from fusion_edge.toolkit.model import ModelConfig
from fusion_edge.toolkit.scenario_dataset import simulate_dataset
from fusion_edge.toolkit.train import TrainConfig, train

console = make_console()


def epoch_seconds(ds: Dataset, size: str, device: str, epochs: int = 3) -> float:
    """Median seconds per training epoch (full training split, validation included)."""
    cfg = ModelConfig.for_dataset(ds.spec, size)
    res = train(ds, cfg, TrainConfig(epochs=epochs, device=device, early_stop_patience=epochs + 1), show_progress=False)
    return res.epoch_seconds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="benchmarks/results/data-foundation")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="fewer epochs, for a smoke run")
    parser.add_argument("--skip-ablation", action="store_true")
    parser.add_argument(
        "--device", action="append", default=None, help="devices to time (default: cpu, and cuda if present)"
    )
    parser.add_argument("--out", default="benchmarks/results/foundation.json")
    parser.add_argument("--scenario", action="append", default=None, help="scenarios (default: 5v5)")
    parser.add_argument("--sessions", type=int, default=4, help="sessions per scenario")
    parser.add_argument("--minutes", type=float, default=5.0, help="minutes per session")
    parser.add_argument("--seeds", type=int, default=3, help="ablation repeats (split and init seeds 0..N-1)")
    args = parser.parse_args()
    epochs = 5 if args.quick else args.epochs

    t = time.perf_counter()
    names = args.scenario or ["5v5"]
    summary = simulate_dataset([get_scenario(n) for n in names], args.data, seed=1,
                               duration_s=args.minutes * 60, sessions=args.sessions, overwrite=True)
    summary["scenarios"] = names
    sim_s = time.perf_counter() - t
    ds = Dataset.open(args.data)
    result: dict = {
        "machine": {"platform": platform.platform(), "cpus": torch.get_num_threads(),
                    "torch": torch.__version__,
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "dataset": {**summary, "simulate_seconds": sim_s},
    }
    if not args.skip_ablation:
        runs = []
        for seed in range(args.seeds):
            console.print(f"ablation, seed {seed}")
            abl = run_ablation(ds, config=TrainConfig(epochs=epochs, seed=seed), log=lambda m: console.print(f"  {m}"))
            print_ablation(abl)
            runs.append(abl)
            # Keep what is done: a long run cut short still leaves its finished seeds.
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({**result, "ablation_runs": runs, "partial": True}, indent=2))
        summary_s = summarize_seeds(runs)
        print_seed_summary(summary_s)
        result["ablation"] = runs[0]
        result["ablation_runs"] = runs
        result["ablation_seeds"] = summary_s
        rows = {r["name"]: r["tasks"] for r in summary_s["rows"]}
        full, cnn = rows["+multitask"]["action"]["mean"], rows["CNN only"]["action"]["mean"]
        result["targets"] = {
            "seeds": args.seeds,
            "full_action_accuracy_mean": full,
            "full_minus_cnn_points_mean": 100 * (full - cnn),
            "every_step_helps": {
                task: all(step["tasks"][task]["helps"] for step in summary_s["steps"])
                for task in summary_s["steps"][0]["tasks"]
            },
        }
    devices = args.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    timings = {d: epoch_seconds(ds, "paper", d) for d in devices}
    result["paper_epoch_seconds"] = timings
    table = Table(title="paper-size training epoch")
    table.add_column("device")
    table.add_column("s / epoch", justify="right")
    for d, s in timings.items():
        table.add_row(d, f"{s:.2f}")
    if "cpu" in timings and "cuda" in timings:
        result["paper_epoch_speedup"] = timings["cpu"] / timings["cuda"]
        table.add_row("speedup", f"{result['paper_epoch_speedup']:.1f}x")
    console.print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
