"""Analyst commands: scenarios, simulate, train, evaluate, ablation."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from fusion_edge.cli.app import app
from fusion_edge.cli.common import cli_errors, console, err_console
from fusion_edge.errors import ConfigError
from fusion_edge.toolkit.outputs import check_writable


@app.command()
def scenarios(
    scenario_file: Path = typer.Option(None, "--scenario-file", help="Your own scenarios (TOML, same schema)."),
    actions: bool = typer.Option(False, "--actions", help="List the action and tactic names instead."),
) -> None:
    """List the sport-scenario catalogue."""
    from fusion_edge.scenarios import ACTIONS, TACTICS, load_catalogue

    with cli_errors():
        if actions:
            console.print("[bold]actions:[/] " + ", ".join(ACTIONS))
            console.print("[bold]tactics:[/] " + ", ".join(TACTICS))
            return
        table = Table(title="Sport scenarios")
        for col in ("name", "sport", "players", "duration", "pitch (m)", "intensity"):
            table.add_column(col, no_wrap=True)
        table.add_column("description", ratio=1)
        for s in load_catalogue(scenario_file).values():
            table.add_row(
                s.name, s.sport, f"{s.teams} x {s.players}", f"{s.duration_s:.0f} s",
                f"{s.pitch_m[0]:.0f} x {s.pitch_m[1]:.0f}", f"{s.intensity:.2f}", s.description,
            )
        console.print(table)


@app.command()
def simulate(
    scenario: list[str] = typer.Option(["5v5"], "--scenario", "-s", help="Scenario name; repeat for several."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder to write."),
    minutes: float = typer.Option(None, "--minutes", help="Session length (default: the scenario's)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same seed, same data."),
    sessions: int = typer.Option(1, "--sessions", min=1, help="Sessions per scenario (new players each)."),
    scenario_file: Path = typer.Option(None, "--scenario-file", help="Extra scenarios (TOML)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset."),
    windows: str = typer.Option(
        "any-phase", "--windows",
        help="Where windows end: any-phase (anywhere after their action's key event, as the "
        "box's sliding windows do) or cycle-end (at their action cycle's end); see docs/scenarios.md.",
    ),
) -> None:
    """Simulate sessions of sport scenarios and write them as a dataset."""
    from fusion_edge.scenarios import get_scenario
    from fusion_edge.scenarios.simulator import CYCLE_S
    from fusion_edge.toolkit.scenario_dataset import WINDOW_LAYOUTS, WindowingConfig, simulate_dataset

    layout = windows.replace("-", "_")
    if layout not in WINDOW_LAYOUTS:
        console.print(f"[red]error:[/] unknown --windows '{escape(windows)}': choose cycle-end or any-phase")
        raise typer.Exit(2)
    if minutes is not None and not minutes * 60.0 >= CYCLE_S:
        console.print(f"[red]error:[/] --minutes {minutes:g} is too short: a session needs at least "
                      f"{CYCLE_S / 60:g} minutes (one action cycle), and 1 minute or more to give windows")
        raise typer.Exit(2)
    with cli_errors():
        check_writable(out, "--out", folder=True)
        scns = [get_scenario(name, scenario_file) for name in scenario]
        summary = simulate_dataset(
            scns, out, seed=seed, duration_s=None if minutes is None else minutes * 60.0,
            sessions=sessions, cfg=WindowingConfig(windows=layout), overwrite=overwrite,
            progress=lambda m: console.print(f"  {m}"),
        )
    console.print(
        f"wrote {summary['windows']} windows from {summary['players']} players "
        f"({summary['sessions']} session{'' if summary['sessions'] == 1 else 's'}) to [bold]{escape(str(out))}[/]"
    )


@app.command()
def train(
    data: Path = typer.Option(..., "--data", "-d", help="Dataset folder (dataset.json + shards)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write."),
    epochs: int = typer.Option(40, "--epochs", min=1, help="Most epochs (early stopping may end sooner)."),
    size: str = typer.Option("edge", "--size", help="Model size: edge or paper."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    lr: float = typer.Option(5e-4, "--lr", help="Adam learning rate."),
    task: list[str] = typer.Option(None, "--task", help="Train only these tasks (default: all)."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    task_weighting: str = typer.Option(
        "fixed", "--task-weighting",
        help="Multitask loss weights: fixed (class 1, regression 10) or uncertainty (learned from there).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run already in --out."),
) -> None:
    """Train the multimodal CNN-LSTM (under torchrun it trains with DDP)."""
    from fusion_edge.toolkit.task_weighting import WEIGHTINGS
    from fusion_edge.toolkit.train import TrainConfig, train_run

    if size not in ("edge", "paper"):
        console.print(f"[red]error:[/] unknown size '{escape(size)}': choose edge or paper")
        raise typer.Exit(2)
    if task_weighting not in WEIGHTINGS:
        console.print(f"[red]error:[/] unknown task weighting '{escape(task_weighting)}': "
                      f"choose {' or '.join(WEIGHTINGS)}")
        raise typer.Exit(2)
    if not lr > 0:
        console.print(f"[red]error:[/] --lr must be a positive learning rate, got {lr:g}")
        raise typer.Exit(2)
    with cli_errors():
        cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device,
                          task_weighting=task_weighting)
        leftovers = _files_beside_a_run(out) if overwrite else []
        result, path = train_run(data, out, size=size, tasks=tuple(task) if task else None, config=cfg,
                                 overwrite=overwrite)
    if path is None:
        return
    table = Table(title=f"Validation (best epoch {result.best_epoch}, {result.seconds:.0f} s, "
                        f"{result.epoch_seconds:.2f} s/epoch)")
    table.add_column("task")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, m in result.val_metrics.items():
        if not m["support"]:
            table.add_row(name, "no labelled validation windows", "-")
        elif "accuracy" in m:
            table.add_row(name, "accuracy", f"{m['accuracy']:.3f}")
            table.add_row("", "macro-F1", f"{m['macro_f1']:.3f}")
        else:
            table.add_row(name, "MAE", f"{m['mae']:.4f}")
            table.add_row("", "relative error", f"{100 * m['relative_error']:.1f}%")
    console.print(table)
    _say_inferred_ranges(path, result.model.config)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if task_weighting == "uncertainty" and len(result.task_weights) > 1:
        console.print("learned task weights at the end: " + ", ".join(
            f"{k} {v:.3g}" for k, v in result.task_weights.items()))
    console.print(f"run written to [bold]{path}[/]")
    if leftovers:
        console.print(
            f"[yellow]note:[/] {escape(', '.join(leftovers))} in {escape(str(path))} came from the run "
            "this one replaced; they were left as they were: re-run 'fusion-edge evaluate' (and "
            "'fusion-edge export') so they describe the new model"
        )


def _files_beside_a_run(out: Path) -> list[str]:
    """What an overwritten run folder holds besides the run itself (metrics, plots, bundles)."""
    from fusion_edge.toolkit.checkpoint import CONFIG_FILE, WEIGHTS_FILE

    if not out.is_dir() or not (out / CONFIG_FILE).exists():
        return []
    return sorted(
        p.name + ("/" if p.is_dir() else "")
        for p in out.iterdir()
        if p.name not in (CONFIG_FILE, WEIGHTS_FILE) and not p.name.endswith(".tmp")
    )


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Run folder from 'fusion-edge train'."),
    data: Path = typer.Option(..., "--data", "-d", help="Dataset folder."),
    json_out: Path = typer.Option(None, "--json", help="Write the metrics here as JSON."),
    plots: Path = typer.Option(None, "--plots", help="Folder for confusion-matrix PNGs."),
    split: str = typer.Option("auto", "--split", help="auto (held-out players), all, train, val, test."),
) -> None:
    """Evaluate a run: accuracy, macro-F1, recall per class, confusion; MAE and relative error."""
    from fusion_edge.toolkit.evaluate import SPLITS, evaluate_run

    if split not in SPLITS:
        console.print(f"[red]error:[/] unknown --split '{escape(split)}': choose {', '.join(SPLITS)}")
        raise typer.Exit(2)
    with cli_errors():
        if json_out is not None:
            check_writable(json_out, "--json", folder=False)
        if plots is not None:
            check_writable(plots, "--plots", folder=True)
        res = evaluate_run(run, data, split=split, json_path=json_out, plots_dir=plots)
    print_metrics(res)
    if json_out:
        console.print(f"metrics written to [bold]{escape(str(json_out))}[/]")
    if plots is not None:
        drawn = [n for n, m in res["tasks"].items() if "confusion" in m and m["support"]]
        if drawn:
            console.print(f"confusion plots ({', '.join(drawn)}) in [bold]{escape(str(plots))}[/]")
        else:
            console.print(
                "note: no confusion plot drawn: --plots draws one per class task with labelled "
                "windows, and this run has none (a regression task has no confusion matrix)"
            )


def _say_inferred_ranges(run: Path, config) -> None:
    """A note per regression task whose range training took from its windows (no value_range)."""
    from fusion_edge.toolkit.checkpoint import read_run_info

    spec = read_run_info(run).dataset
    for (name, kind, _), (lo, hi) in zip(config.tasks, config.value_ranges, strict=True):
        if kind == "regression" and spec.task(name).value_range is None:
            console.print(
                f"note: task '{name}' has no value range in dataset.json, so its head covers "
                f"{lo:.4g} to {hi:.4g}, from the training windows' values (widened 10% each side); "
                f"relative errors are over that width. Give the scale's own range when importing "
                f"(--regression {name}=COLUMN:LOW:HIGH) to fix both"
            )


def print_metrics(res: dict) -> None:
    """The evaluation summary as a table (and a note when it scored players the run saw)."""
    table = Table(title=f"Evaluation on {res['windows']} windows ({res['split']})")
    for col in ("task", "accuracy / MAE", "macro-F1 / rel. error", "weakest class (recall)", "labelled"):
        table.add_column(col)
    for name, m in res["tasks"].items():
        # The windows the scores are over: a task's unlabelled windows do not count.
        labelled = str(m.get("support", "-"))
        if not m.get("support", 1):
            table.add_row(name, "no labelled windows", "-", "-" if "accuracy" in m else "", labelled)
        elif "accuracy" in m:
            rec = {k: v for k, v in m["per_class_recall"].items() if v is not None}
            weak = "-"
            if rec and min(rec.values()) < 1.0:  # no weakest class when every one is perfect
                low = min(rec.values())
                tied = [k for k, v in rec.items() if v == low]
                more = f" +{len(tied) - 1} more" if len(tied) > 1 else ""
                weak = f"{tied[0]}{more} ({low:.2f})"
            table.add_row(name, f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}", weak, labelled)
        else:
            rel = m["relative_error"]
            table.add_row(name, f"{m['mae']:.4f}", "-" if rel is None else f"{100 * rel:.1f}%", "", labelled)
    console.print(table)
    seen = res.get("seen_windows", 0)
    if seen:
        console.print(
            f"[yellow]note:[/] {seen} of {res['windows']} windows are from players the run "
            "trained or validated on: these scores are optimistic (--split auto scores only "
            "players it did not see)"
        )


@app.command()
def ablation(
    data: Path = typer.Option(..., "--data", "-d", help="Dataset folder."),
    epochs: int = typer.Option(30, "--epochs", min=1),
    size: str = typer.Option("edge", "--size", help="Model size: edge or paper."),
    seed: int = typer.Option(0, "--seed"),
    seeds: int = typer.Option(
        1, "--seeds", min=1, help="Repeat with seeds SEED..SEED+N-1 (own split and init each) and "
        "report mean +- sd and each step's paired change."
    ),
    json_out: Path = typer.Option(
        None, "--json", help="Write the table here as JSON (after every seed, so an interrupted "
        "run keeps the seeds done)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json file."),
) -> None:
    """Reproduce the paper's ablation (CNN only, +LSTM, +attention, +multitask)."""
    from fusion_edge.toolkit import ablation as ablation_mod
    from fusion_edge.toolkit.dataset import Dataset
    from fusion_edge.toolkit.evaluate import write_json
    from fusion_edge.toolkit.train import TrainConfig

    if size not in ("edge", "paper"):
        console.print(f"[red]error:[/] unknown size '{escape(size)}': choose edge or paper")
        raise typer.Exit(2)
    runs: list[dict] = []

    def document(complete: bool) -> dict:
        doc = dict(runs[0])
        if seeds > 1:
            doc.update(runs=runs, seeds=ablation_mod.summarize_seeds(runs))
        if not complete:
            doc["complete"] = False
            doc["seeds_done"] = len(runs)
            doc["seeds_asked"] = seeds
        return doc

    with cli_errors():
        if json_out is not None:
            check_writable(json_out, "--json", folder=False)
            if json_out.exists() and not overwrite:
                raise ConfigError(
                    f"--json {json_out} already exists; it was left as it was: choose another "
                    "file, or pass --overwrite to replace it"
                )
        ds = Dataset.open(data)
        try:
            for s in range(seed, seed + seeds):
                res = ablation_mod.run_ablation(ds, size=size, config=TrainConfig(epochs=epochs, seed=s),
                                                log=lambda m: console.print(f"  {m}"))
                print_ablation(res)
                runs.append(res)
                if json_out is not None:  # after every seed: an interruption keeps what is done
                    write_json(json_out, document(complete=len(runs) == seeds))
        except KeyboardInterrupt:
            where = (f"; the seeds done are in {escape(str(json_out))}" if json_out and runs
                     else "; nothing was written" if json_out else "")
            err_console.print(
                f"[yellow]interrupted[/] after {len(runs)} of {seeds} seeds{where}"
            )
            raise typer.Exit(130) from None
    if seeds > 1:
        print_seed_summary(ablation_mod.summarize_seeds(runs))
    if json_out:
        console.print(f"ablation written to [bold]{escape(str(json_out))}[/]")


def print_seed_summary(summary: dict) -> None:
    """Mean +- sd per row, then the paired change each step makes."""
    tasks = list(summary["rows"][0]["tasks"])
    table = Table(title=f"Ablation over {summary['seeds']} seeds: mean +- sd (headline %)")
    table.add_column("model")
    for t in tasks:
        table.add_column(t, justify="right")
    def cell(c: dict, sign: str = "") -> str:
        if c["mean"] is None:
            return "no labels"
        text = f"{100 * c['mean']:{sign}.1f} +- {100 * c['sd']:.1f}"
        return text if "helps" not in c else f"{text} {'helps' if c['helps'] else 'no'}"

    for row in summary["rows"]:
        table.add_row(row["name"], *(cell(row["tasks"][t]) for t in tasks))
    for step in summary["steps"]:
        table.add_row(f"  step {step['to']}", *(cell(step["tasks"][t], "+") for t in tasks))
    console.print(table)


def print_ablation(res: dict) -> None:
    """The ablation as the paper's table."""
    from fusion_edge.toolkit.ablation import headline as ablation_headline  # torch: it ran already

    table = Table(title=f"Ablation on {res['test_windows']} held-out windows")
    table.add_column("model")
    names = list(res["rows"][0]["tasks"])
    for n in names:
        kind = "accuracy" if "accuracy" in res["rows"][0]["tasks"][n] else "rel. error"
        table.add_column(f"{n} {kind}", justify="right")
    table.add_column("parameters", justify="right")
    for row in res["rows"]:
        cells = []
        for n in names:
            score = ablation_headline(row["tasks"][n])
            cells.append("no labels" if score is None else f"{100 * score:.1f}%")
        table.add_row(row["name"], *cells, f"{row['parameters']:,}")
    console.print(table)


