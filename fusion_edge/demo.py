"""`make demo`: the main job on built-in defaults, end to end, in a few minutes on a laptop.

Simulate a small 5v5 dataset, train the edge model, evaluate it on held-out players, export it
to a verified bundle (FP32, FP16, INT8), run a field session in which simulated players stream
over BLE (bumble pods behind bleak) and serial (pty receivers) into the box and get feedback,
then profile the recorded session per stage. Each step is what the CLI does.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from rich.rule import Rule
from rich.table import Table

from fusion_edge.cli.common import make_console

console = make_console()


def main(argv: list[str] | None = None) -> int:
    """Run the demo into ``--out`` (default ``demo-out``)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo-out", type=Path)
    parser.add_argument("--minutes", type=float, default=5.0, help="minutes per simulated session")
    # 4 sessions (40 players) and up to 50 epochs: on the box-like any-phase windows the edge
    # model needs them to reach ~90% action accuracy on held-out players (2 sessions and 25
    # epochs gave 63%); it adds about a minute of training on a 2-core machine.
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument(
        "--latency-runs", type=int, default=10, help="timed runs per export latency figure"
    )
    parser.add_argument("--players", type=int, default=10, help="players in the field session")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the field session")
    args = parser.parse_args(argv)

    from fusion_edge.cli.toolkit_commands import print_metrics
    from fusion_edge.scenarios import get_scenario
    from fusion_edge.toolkit.evaluate import evaluate_run
    from fusion_edge.toolkit.scenario_dataset import simulate_dataset
    from fusion_edge.toolkit.train import TrainConfig, train_run

    out: Path = args.out
    data, run, bundle = out / "data", out / "run", out / "bundle"
    timings: dict[str, float] = {}

    console.print(Rule("1. simulate: 5v5 small-sided game, IMU 100 Hz + GNSS 10 Hz per player"))
    t = time.perf_counter()
    summary = simulate_dataset(
        [get_scenario("5v5")],
        data,
        seed=1,
        duration_s=args.minutes * 60,
        sessions=args.sessions,
        overwrite=True,
        progress=lambda m: console.print(f"  {m}"),
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

    console.print(Rule("4. export: FP32, FP16 and INT8 variants in a verified bundle"))
    t = time.perf_counter()
    bundle = export_step(run, data, bundle, latency_runs=args.latency_runs)
    timings["export"] = time.perf_counter() - t

    console.print(Rule(f"5. field session: {args.players} simulated players over BLE and serial, {args.seconds:.0f} s"))
    t = time.perf_counter()
    field = out / "field"
    if field.is_dir():  # the demo's own outputs of an earlier run: start afresh, as every step does
        shutil.rmtree(field)
    _cli(["run", "--simulate", "5v5", "--bundle", str(bundle), "--players", str(args.players),
          "--seconds", str(args.seconds), "--backend", "onnxruntime-cpu", "--events", str(field / "events.jsonl"),
          "--stats", str(field / "stats.json"), "--record", str(field / "session.sqlite")])
    timings["field session"] = time.perf_counter() - t

    console.print(Rule("6. profile: the recorded session replayed as fast as possible, per stage"))
    t = time.perf_counter()
    _cli(["profile", "--bundle", str(bundle), "--session", str(field / "session.sqlite"), "--mode", "offline",
          "--backend", "onnxruntime-cpu", "--out", str(out / "profile"), "--no-plots"])
    timings["profile"] = time.perf_counter() - t

    table = Table(title="demo summary")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("output")
    table.add_row("simulate", f"{timings['simulate']:.1f}", str(data))
    table.add_row("train", f"{timings['train']:.1f}", f"{run} (best epoch {result.best_epoch})")
    table.add_row(
        "evaluate", f"{timings['evaluate']:.1f}", f"{out / 'metrics.json'}, {out / 'plots'}"
    )
    table.add_row("export", f"{timings['export']:.1f}", f"{bundle} (report.md inside)")
    table.add_row("field session", f"{timings['field session']:.1f}", f"{field} (events, stats, recording)")
    table.add_row("profile", f"{timings['profile']:.1f}", f"{out / 'profile'} (report.json, report.md)")
    console.print(table)
    return 0


def export_step(run: Path, data: Path, out: Path, *, latency_runs: int = 10) -> Path:
    """Export ``run`` to the bundle folder ``out`` (replaced if there) and print its table.

    The same library call as ``fusion-edge export RUN --data DATA --out OUT --overwrite
    --latency-runs N``, without pruning (a fine-tune would double the demo's training time).
    INT8 calibrates on up to 256 training windows (fewer when a short demo has fewer).

    Returns:
        The bundle folder, verified (every file's hash and the manifest schema).
    """
    from fusion_edge.cli.export_commands import print_export_result
    from fusion_edge.export.pipeline import ExportConfig, export
    from fusion_edge.runtime.bundle import verify_bundle
    # INT8 calibrates on up to 256 training windows: all of them on a short demo (the default).
    config = ExportConfig(precisions=("fp32", "fp16", "int8"), latency_runs=latency_runs)
    result = export(
        run, data, out, config, overwrite=True, progress=lambda m: console.print(f"  {m}")
    )
    print_export_result(result, config.squad_size)
    verify_bundle(result.bundle)
    return result.bundle




def _cli(argv: list[str]) -> None:
    """Run one `fusion-edge` command in this process, exactly as a user would type it."""
    from fusion_edge.cli.app import app

    console.print(f"[dim]$ fusion-edge {' '.join(argv)}[/]")
    try:
        app(argv, standalone_mode=False)
    except SystemExit as exc:  # typer.Exit from a command
        if exc.code not in (0, None):
            raise


if __name__ == "__main__":
    raise SystemExit(main())
