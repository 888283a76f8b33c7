"""Export commands: ``export``, ``bundle verify``, ``engine build``.

The lead wires them in with ``register(app)`` from ``app.py``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from fusion_edge.cli.common import cli_errors, console

__all__ = ["register", "bundle_app", "engine_app", "export_table", "print_export_result"]

bundle_app = typer.Typer(help="Inspect and check exported bundles.", no_args_is_help=True)
engine_app = typer.Typer(help="TensorRT engines built from bundles.", no_args_is_help=True)


def export_table(rows: list[dict[str, Any]], squad: int) -> Table:
    """The export report as a rich table (one row per variant; `export` prints it), with the
    columns of report.md (`report_table`) under shorter, two-line headers so that it fits a
    terminal: what each compression step cost is its "delta step"."""
    from fusion_edge.export.bundle import delta_order, report_table  # torch: only when exporting

    cols, cells = report_table(rows, squad)
    order = delta_order(rows)
    table = Table(
        title="Export (heads: accuracy or relative error, %)",
        caption=f"deltas in points, per head: {order}" if order else None,
    )
    for col in cols:
        header = (
            col.replace(" accuracy", "\nacc. %").replace(" rel. error", "\nerr. %")
            .replace("x vs fp32 ort ", "x fp32 ort\n").replace("x vs trained torch ", "x trained\n")
        )
        if col.startswith("delta"):
            header = col.split(" (", 1)[0] + "\n(points)"
        table.add_column(header, no_wrap=not col.startswith("delta"))
    for row in cells:
        table.add_row(*row)
    return table


def export_command(
    run: Path = typer.Argument(..., help="Training run folder."),
    data: Path = typer.Option(..., "--data", help="The dataset the run was trained on."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle folder to write."),
    prune: float = typer.Option(
        0.0, "--prune", help="Share of units to remove structurally, from 0 up to (not including) 0.95."
    ),
    prune_to_params: str = typer.Option(
        "", "--prune-to-params", help="Prune to at most this many parameters, e.g. 40k (instead of --prune)."
    ),
    prune_to_flops: str = typer.Option(
        "", "--prune-to-flops", help="Prune to at most this many FLOPs per window, e.g. 3M."
    ),
    prune_round_to: int = typer.Option(
        8,
        "--prune-round-to",
        help="Round pruned widths to a multiple of this (SIMD-friendly; 1 keeps exact widths).",
    ),
    precision: str = typer.Option(
        "fp32,fp16,int8", "--precision", help="Comma list of fp32, fp16, int8."
    ),
    fmt: str = typer.Option("onnx", "--format", help="Comma list of onnx, engine (TensorRT)."),
    squad: int = typer.Option(
        22, "--squad-size", help="Players per hop: batch checked, timed, engine max."
    ),
    calibration_windows: int = typer.Option(
        None, "--calibration-windows",
        help="INT8 calibration windows (default 256, or every training window when there are fewer).",
    ),
    threshold: float = typer.Option(
        0.6, "--escalation-threshold", help="Escalate to FP32 under this probability."
    ),
    fine_tune_epochs: int = typer.Option(
        60, "--fine-tune-epochs", help="Recovery epochs after pruning."
    ),
    fine_tune_lr: float = typer.Option(
        1e-3, "--fine-tune-lr", help="Learning rate of the recovery fine-tune."
    ),
    hop: float = typer.Option(1.0, "--hop", help="Seconds between two scorings of a player on the box."),
    latency_runs: int = typer.Option(30, "--latency-runs", help="Timed runs per latency figure."),
    latency_threads: int = typer.Option(
        1, "--latency-threads",
        help="Intra-op threads for the latency figures (1: as the box runs; 0: one per core).",
    ),
    int8_format: str = typer.Option(
        "qoperator", "--int8-format", help="CPU INT8 graph: qoperator (smallest) or qdq."
    ),
    int8_keep_float: str = typer.Option(
        "attention",
        "--int8-keep-float",
        help="Comma list of parts the CPU INT8 variant keeps in float from the start "
        "(attention, heads, first_conv, projections, lstm; empty for none).",
    ),
    qat_epochs: int = typer.Option(
        0,
        "--qat-epochs",
        help="Quantization-aware fine-tuning epochs, used when CPU INT8 is over budget after "
        "post-training quantization (0: never).",
    ),
    seed: int = typer.Option(0, "--seed", help="Calibration sampling and fine-tuning seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle."),
) -> None:
    """Prune, export, quantize and measure a run; write a verified bundle and its report."""
    from fusion_edge.export.pipeline import ExportConfig, export

    with cli_errors():
        config = ExportConfig(
            prune_ratio=prune,
            prune_params=parse_count(prune_to_params, "--prune-to-params"),
            prune_flops=parse_count(prune_to_flops, "--prune-to-flops"),
            prune_round_to=prune_round_to,
            precisions=tuple(precision.split(",")),
            formats=tuple(fmt.split(",")),
            squad_size=squad,
            calibration_windows=calibration_windows,
            escalation_threshold=threshold,
            fine_tune_epochs=fine_tune_epochs,
            fine_tune_lr=fine_tune_lr,
            hop_seconds=hop,
            latency_runs=latency_runs,
            latency_threads=latency_threads,
            int8_format=int8_format,
            int8_keep_float=tuple(g.strip() for g in int8_keep_float.split(",") if g.strip()),
            qat_epochs=qat_epochs,
            seed=seed,
        )
        result = export(
            run, data, out, config, overwrite=overwrite, progress=lambda m: console.print(f"  {m}")
        )
    print_export_result(result, squad)


def parse_count(text: str, option: str) -> int:
    """``"40k"`` -> 40000, ``"3M"`` -> 3000000, ``"1500"`` -> 1500, ``""`` -> 0 (unset)."""
    from fusion_edge.errors import ConfigError

    text = text.strip().replace(",", "").replace("_", "")
    if not text:
        return 0
    scale = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(text[-1].lower(), 1)
    digits = text[:-1] if scale > 1 else text
    try:
        value = float(digits) * scale
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a count; write e.g. 40000, 40k or 3M") from None
    if not math.isfinite(value):
        raise ConfigError(f"{option} {text!r} is not a count; write e.g. 40000, 40k or 3M")
    if value < 1:  # 0.5 would round to 0, which means "no budget": the export would not prune
        raise ConfigError(f"{option} must be a positive count (1 or more), got {text!r}")
    return int(value)


def print_export_result(result: Any, squad: int) -> None:
    """Print an `ExportResult`: the table, its notes and where the bundle is (CLI and demo)."""
    console.print(export_table(result.rows, squad))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"wrote {result.bundle} (report.md, report.json inside)")


@bundle_app.command("verify")
def bundle_verify(bundle: Path = typer.Argument(..., help="Bundle folder.")) -> None:
    """Check a bundle's manifest, format version and every file's size and sha256."""
    from fusion_edge.runtime.bundle import verify_bundle

    with cli_errors():
        manifest = verify_bundle(bundle)
    names = ", ".join(f"{v['name']} ({v['precision']})" for v in manifest["variants"])
    text = f"{bundle}: {manifest['model_name']}, variants {names}"
    console.print(f"[green]ok[/] {escape(text)}")


@engine_app.command("build")
def engine_build(
    bundle: Path = typer.Argument(..., help="Bundle folder."),
    precision: str = typer.Option(
        "fp16,int8", "--precision", help="Comma list of fp32, fp16, int8."
    ),
    max_batch: int = typer.Option(22, "--max-batch", help="Largest batch: the kit's player count."),
    cache: Path = typer.Option(
        None, "--cache", help="Engine cache folder (default ~/.cache/fusion-edge/engines)."
    ),
) -> None:
    """Build TensorRT engines from a bundle (needs tensorrt and a GPU)."""
    from fusion_edge.errors import BackendError
    from fusion_edge.export.tensorrt import build_engines

    with cli_errors():
        rows = build_engines(
            bundle,
            precisions=tuple(p.strip() for p in precision.split(",")),
            max_batch=max_batch,
            cache_dir=cache,
        )
        for r in rows:
            # Plain text: a status such as "pip install 'fusion-edge[gpu]'" must not be eaten
            # as rich markup.
            console.print(
                f"{r['variant']}: {r['status']}" + (f" -> {r['file']}" if r.get("file") else ""),
                markup=False,
            )
        if not any(r["status"] in ("ok", "cached") for r in rows):
            raise BackendError("no engine was built; the bundle still runs with onnxruntime")
        from fusion_edge.runtime.engine_cache import default_cache_dir

        if cache is not None and cache.resolve() != default_cache_dir().resolve():
            # run finds engines in the default cache only: say how to point it at this one.
            console.print(
                f"note: 'fusion-edge run' looks for engines in {default_cache_dir()}; run it with "
                f"FUSION_EDGE_ENGINE_CACHE={cache} to use these",
                markup=False,
            )


def register(app: typer.Typer) -> None:
    """Add ``export`` and the ``bundle`` / ``engine`` groups to the root app."""
    app.command("export")(export_command)
    app.add_typer(bundle_app, name="bundle")
    app.add_typer(engine_app, name="engine")
