"""`fusion-edge dataset import|info`: an analyst's own CSV recording as a dataset, and what a
dataset folder holds. `import` is `fusion_edge.toolkit.csv_import.import_csv` with its options
spelled on the command line (docs/dataset-format.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from fusion_edge.cli.common import cli_errors, console
from fusion_edge.errors import ConfigError
from fusion_edge.toolkit.outputs import check_writable

dataset_app = typer.Typer(help="Datasets: import your own CSV recordings, inspect a dataset folder.",
                          no_args_is_help=True)


def _names(text: str | None) -> list[str] | None:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (None stays None)."""
    if text is None:
        return None
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_label(spec: str) -> tuple[str, str]:
    """``--label TASK[=COLUMN]`` -> (task, column); the column defaults to the task's name."""
    task, _, column = spec.partition("=")
    task, column = task.strip(), (column.strip() or task.strip())
    if not task:
        raise ConfigError(f"--label {spec!r}: give TASK or TASK=COLUMN, e.g. --label phase")
    return task, column


def parse_regression(spec: str) -> tuple[str, str, tuple[float, float] | None]:
    """``--regression TASK[=COLUMN][:LOW:HIGH]`` -> (task, column, range or None)."""
    head, *bounds = spec.split(":")
    task, column = parse_label(head) if head.strip() else ("", "")
    if not task or len(bounds) not in (0, 2):
        raise ConfigError(
            f"--regression {spec!r}: give TASK[=COLUMN][:LOW:HIGH], e.g. --regression effort=rpe:0:10"
        )
    if not bounds:
        return task, column, None
    try:
        low, high = float(bounds[0]), float(bounds[1])
    except ValueError:
        raise ConfigError(f"--regression {spec!r}: LOW and HIGH must be numbers, e.g. effort=rpe:0:10") from None
    if not low < high:
        raise ConfigError(f"--regression {spec!r}: LOW ({low:g}) must be below HIGH ({high:g})")
    return task, column, (low, high)


def parse_label_names(specs: list[str]) -> dict[str, list[str]]:
    """``--label-names TASK=a,b,c`` (repeatable) -> {task: [a, b, c]}."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        task, sep, names = spec.partition("=")
        labels = _names(names) or []
        if not sep or not task.strip() or not labels:
            raise ConfigError(
                f"--label-names {spec!r}: give TASK=NAME,NAME,..., e.g. --label-names phase=warmup,drill,rest"
            )
        if len(set(labels)) != len(labels):
            raise ConfigError(f"--label-names {spec!r}: a label is listed twice")
        out[task.strip()] = labels
    return out


@dataset_app.command("import")
def import_command(
    csv_file: Path = typer.Argument(..., help="The CSV: a header row, one row per sample."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder to write."),
    channels: str = typer.Option(..., "--channels", help="Signal columns, comma-separated, in model order."),
    window: float = typer.Option(..., "--window", help="Window length, seconds."),
    hop: float = typer.Option(..., "--hop", help="Step between window starts, seconds."),
    units: str = typer.Option(None, "--units", help="One unit per channel, comma-separated."),
    modality: str = typer.Option("imu", "--modality", help="Name of the stream in the dataset."),
    time_column: str = typer.Option(None, "--time-column", help="Sample times: gives the rate and finds gaps."),
    time_unit: str = typer.Option(None, "--time-unit", help="Unit of --time-column: s (default), ms, us or ns."),
    rate: float = typer.Option(None, "--rate", help="Sample rate, Hz (inferred from --time-column if omitted)."),
    label: list[str] = typer.Option(
        [], "--label", help="A class task: TASK or TASK=COLUMN (the column's values are its labels); repeat."
    ),
    label_names: list[str] = typer.Option(
        [], "--label-names", help="TASK=NAME,NAME,...: a class task's labels in index order; repeat."
    ),
    regression: list[str] = typer.Option(
        [], "--regression", help="A numeric task: TASK[=COLUMN][:LOW:HIGH], e.g. effort=rpe:0:10; repeat."
    ),
    player: str = typer.Option(None, "--player", help="The player of a one-player file."),
    player_column: str = typer.Option(None, "--player-column", help="Column naming each row's player."),
    session: str = typer.Option(None, "--session", help="Session id (default: the file name)."),
    min_labeled: float = typer.Option(
        0.5, "--min-labeled", help="Share of a window's samples that must carry a label for it to have one."
    ),
    description: str = typer.Option("", "--description", help="A line saying what the recording is."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset in --out."),
) -> None:
    """Window your own CSV recording into a dataset `fusion-edge train` reads."""
    from fusion_edge.toolkit.csv_import import import_csv, missing_cell
    from fusion_edge.toolkit.dataset import Dataset

    with cli_errors():
        check_writable(out, "--out", folder=True)
        if time_unit is not None and time_column is None:
            raise ConfigError(
                f"--time-unit {time_unit} names the unit of a time column, but no --time-column was "
                "given: add --time-column COLUMN (or drop --time-unit and give --rate)"
            )
        label_columns: dict[str, str] = {}
        ranges: dict[str, tuple[float, float] | None] = {}
        for spec in label:
            task, column = parse_label(spec)
            label_columns[task] = column
        for spec in regression:
            task, column, bounds = parse_regression(spec)
            if task in label_columns:
                raise ConfigError(f"task {task!r} is given twice (--label and --regression); give it once")
            label_columns[task] = column
            ranges[task] = bounds
        names = parse_label_names(label_names)
        chans = _names(channels) or []
        if not chans:
            raise ConfigError("--channels names no column: give the signal columns, e.g. --channels ax,ay,az")
        unit_list = _names(units)
        if unit_list is not None and len(unit_list) != len(chans):
            raise ConfigError(
                f"--units gives {len(unit_list)} unit(s) for {len(chans)} channel(s); give one per channel"
            )
        result = import_csv(
            csv_file, out, channels=chans, window_seconds=window, hop_seconds=hop,
            modality_name=modality, units=unit_list, sample_rate_hz=rate, time_column=time_column,
            time_unit=time_unit or "s", label_columns=label_columns, label_names=names, regression=ranges,
            player=player, player_column=player_column, session=session,
            min_labeled_fraction=min_labeled, description=description, overwrite=overwrite,
        )
        summary = Dataset.open(out).summary()
    console.print(
        f"wrote {result.num_windows} windows of {result.window_seconds:g} s ({result.window_samples} "
        f"samples at {result.sample_rate_hz:g} Hz) from {len(summary['players'])} player(s) to "
        f"[bold]{escape(str(out))}[/]"
    )
    for flag, asked, cut in (("--window", window, result.window_seconds), ("--hop", hop, result.hop_seconds)):
        if abs(asked - cut) > 1e-9 * max(asked, 1.0):
            console.print(
                f"note: {flag} {asked:g} s is {asked * result.sample_rate_hz:.3g} samples at "
                f"{result.sample_rate_hz:g} Hz; whole samples give {cut:g} s, which dataset.json records"
            )
    if result.gaps:
        console.print(f"{result.gaps} time gap(s) split the recording (no window spans one)")
    if result.first_missing is not None:
        console.print(
            f"{result.dropped_nan_windows} window(s) with a missing sample were left out (first: "
            f"{escape(missing_cell(csv_file, *result.first_missing))}); fill or interpolate the cells to "
            "keep them"
        )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    _print_tasks(summary)
    for task, tied in result.ties.items():
        if tied:
            console.print(
                f"note: {tied} window(s) of task {escape(repr(task))} were a tie between labels and went "
                "to the label listed first (--label-names sets the order)"
            )
    if summary["tasks"]:  # without a task there is nothing to train; _print_tasks said so
        _print_next(out, summary)


def _print_next(out: Path, summary: dict[str, Any]) -> None:
    """The `train` command to run next, or, when `train` would refuse the dataset for having too
    few players for its grouped split, what to do instead."""
    import numpy as np

    from fusion_edge.errors import DatasetError
    from fusion_edge.toolkit.splits import split_by_player

    players = list(summary["players"])
    try:
        split_by_player(np.array(players, dtype=str))
    except DatasetError:
        console.print(
            f"next: training needs at least 3 players (train, validation and test are split by player); "
            f"this dataset has {len(players)}. Import a CSV that holds more players, one column naming "
            "each row's player (--player-column): join one CSV per player into it (docs/dataset-format.md, "
            "'Training on your recordings')"
        )
        return
    console.print(f"next: fusion-edge train --data {escape(str(out))} --out runs/{escape(out.name)}")


def _print_tasks(summary: dict[str, Any]) -> None:
    if not summary["tasks"]:
        console.print("no task: the dataset has windows only (add --label or --regression to train on it)")
        return
    table = Table(title="Tasks")
    for col in ("task", "kind", "windows per label / values", "unlabelled"):
        table.add_column(col)
    for name, t in summary["tasks"].items():
        if t["kind"] == "class":
            detail = ", ".join(f"{lab} {n}" for lab, n in t["counts"].items())
        else:
            detail = "-" if t["min"] is None else f"{t['count']} values, {t['min']:.3g} to {t['max']:.3g}"
        table.add_row(escape(name), t["kind"], escape(detail), str(t["missing"]))
    console.print(table)


@dataset_app.command("info")
def info_command(
    folder: Path = typer.Argument(..., help="A dataset folder (with dataset.json)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """What a dataset holds: streams, windows, players, sessions, and labels per task."""
    from fusion_edge.toolkit.dataset import Dataset

    with cli_errors():
        summary = Dataset.open(folder).summary()
    if as_json:
        console.print_json(json.dumps(summary))
        return
    console.print(
        f"[bold]{escape(str(folder))}[/]: {summary['num_windows']} windows of "
        f"{summary['window_seconds']:g} s every {summary['hop_seconds']:g} s; "
        f"{len(summary['players'])} player(s), {len(summary['sessions'])} session(s)"
    )
    table = Table(title="Streams")
    for col in ("stream", "channels", "rate (Hz)", "samples per window"):
        table.add_column(col)
    for name, m in summary["modalities"].items():
        table.add_row(escape(name), escape(", ".join(m["channels"])), f"{m['sample_rate_hz']:g}",
                      str(m["window_samples"]))
    console.print(table)
    _print_tasks(summary)


def register(app: typer.Typer) -> None:
    """Add the ``dataset`` group to the root app."""
    app.add_typer(dataset_app, name="dataset")
