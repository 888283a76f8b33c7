"""`make demo`: the main job on built-in defaults, end to end, in a few minutes on a laptop.

Today: simulate a small 5v5 dataset, train the edge model, evaluate it on held-out players and
print a summary. Each step is the same library call the CLI makes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

console = Console()


def main(argv: list[str] | None = None) -> int:
    """Run the demo into ``--out`` (default ``demo-out``)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo-out", type=Path)
    parser.add_argument("--minutes", type=float, default=5.0, help="minutes per simulated session")
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=25)
    args = parser.parse_args(argv)

    from fusion_edge.cli.toolkit_commands import print_metrics
    from fusion_edge.scenarios import get_scenario
    from fusion_edge.toolkit.evaluate import evaluate_run
    from fusion_edge.toolkit.scenario_dataset import simulate_dataset
    from fusion_edge.toolkit.train import TrainConfig, train_run

    out: Path = args.out
    data, run = out / "data", out / "run"
    timings: dict[str, float] = {}

    console.print(Rule("1. simulate: 5v5 small-sided game, IMU 100 Hz + GNSS 10 Hz per player"))
    t = time.perf_counter()
    summary = simulate_dataset(
        [get_scenario("5v5")], data, seed=1, duration_s=args.minutes * 60, sessions=args.sessions,
        overwrite=True, progress=lambda m: console.print(f"  {m}"),
    )
    timings["simulate"] = time.perf_counter() - t
    console.print(f"  {summary['windows']} windows, {summary['players']} players")

    console.print(Rule("2. train: edge-size CNN-LSTM with attention, three tasks"))
    t = time.perf_counter()
    result, _ = train_run(data, run, size="edge", config=TrainConfig(epochs=args.epochs, seed=0))
    timings["train"] = time.perf_counter() - t

    console.print(Rule("3. evaluate on held-out players"))
    t = time.perf_counter()
    res = evaluate_run(run, data, json_path=out / "metrics.json", plots_dir=out / "plots")
    timings["evaluate"] = time.perf_counter() - t
    print_metrics(res)

    table = Table(title="demo summary")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("output")
    table.add_row("simulate", f"{timings['simulate']:.1f}", str(data))
    table.add_row("train", f"{timings['train']:.1f}", f"{run} (best epoch {result.best_epoch})")
    table.add_row("evaluate", f"{timings['evaluate']:.1f}", f"{out / 'metrics.json'}, {out / 'plots'}")
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
