"""The manifest export writes: what the box needs to rebuild pre- and post-processing.

Reading and verifying a bundle lives in `fusion_edge.runtime.bundle` (the box has no torch);
this module only assembles the manifest from a training run and writes the report files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fusion_edge import __version__
from fusion_edge.toolkit.checkpoint import RunInfo
from fusion_edge.toolkit.model import ModelConfig

__all__ = ["build_manifest", "delta_order", "onnx_metadata", "report_table", "speedup_cell", "write_report"]


def _inputs(info: RunInfo, hop_seconds: float) -> list[dict[str, Any]]:
    return [
        {
            "name": m.name,
            "channels": list(m.channels),
            "units": list(m.units),
            "sample_rate_hz": m.sample_rate_hz,
            "window_samples": m.window_samples,
            "hop_seconds": float(hop_seconds),
            "dtype": "float32",
            "layout": "[batch, channels, samples]",
        }
        for m in info.dataset.modalities
        if any(m.name == name for name, _, _ in info.model.modalities)
    ]


def _tasks(info: RunInfo, config: ModelConfig) -> list[dict[str, Any]]:
    out = []
    ranges = config.value_ranges or tuple((0.0, 1.0) for _ in config.tasks)
    for (name, kind, n), head_range in zip(config.tasks, ranges, strict=True):
        task = info.dataset.task(name)
        entry: dict[str, Any] = {"name": name, "kind": kind, "output": name}
        if kind == "class":
            entry.update(labels=list(task.labels), num_classes=n, output_meaning="logits")
        else:
            entry.update(
                # The dataset's range, else the one training gave the head.
                value_range=list(task.value_range or head_range), output_meaning="value in range"
            )
        out.append(entry)
    return out


def onnx_metadata(
    info: RunInfo, config: ModelConfig, export_config: Mapping[str, Any]
) -> dict[str, Any]:
    """Metadata embedded in every ONNX file, so a lone file still says what it is."""
    return {
        "version": __version__,
        "model_config": config.to_json(),
        "tasks": _tasks(info, config),
        "inputs": _inputs(info, float(export_config.get("hop_seconds", 1.0))),
        "normalization": info.normalization.to_json(),
        "preprocessing": dict(info.dataset.preprocessing),
        "export_config": dict(export_config),
    }


def build_manifest(
    info: RunInfo,
    config: ModelConfig,
    *,
    export_config: Mapping[str, Any],
    hop_seconds: float = 1.0,
    fallback_variant: str,
    fallback_file: str,
    escalation_threshold: float,
    torch_variant: str | None = None,
    pruning: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything of the manifest except ``format``, ``format_version`` and ``variants``
    (which `fusion_edge.runtime.bundle.BundleWriter` adds)."""
    return {
        "model_name": Path(info.path).name,
        "fusion_edge_version": __version__,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source_run": str(info.path),
        "inputs": _inputs(info, hop_seconds),
        "preprocessing": dict(info.dataset.preprocessing),
        "normalization": info.normalization.to_json(),
        "tasks": _tasks(info, config),
        "model_config": config.to_json(),
        "fallback": {
            "variant": fallback_variant,
            "file": fallback_file,
            "escalation_threshold": float(escalation_threshold),
            **({"torch_variant": torch_variant} if torch_variant else {}),
            "rule": "escalate a window to the fallback when any class head's top softmax "
            "probability is below the threshold, or when the variant fails to run",
        },
        "pruning": dict(pruning) if pruning else None,
        "export_config": dict(export_config),
    }


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v * 100:.1f}%" if pct else f"{v:.3g}"
    return str(v)


def report_table(rows: Sequence[Mapping[str, Any]], squad: int) -> tuple[list[str], list[list[str]]]:
    """The export table as text cells: ``(columns, one list of cells per variant)``.

    ``report.md`` and the table `fusion-edge export` prints are both drawn from it. Heads are
    percentages (accuracy for class heads, relative error for regression heads, as evaluate and
    ablation print them), in the model's task order. Deltas are percentage points, one per head
    in the same order (``+0.00 / -0.17 / +0.40``, the header names them); a regression head's is
    its relative error (``err`` in the header: + is worse). "delta step" is
    against the row a variant was made from, "delta total" against the trained model (the
    first row), whose eager latency "x vs trained torch" divides by.
    """
    heads, regression = _heads(rows)
    cols = [
        "variant",
        "status",
        "size",
        *[f"{h} {'rel. error' if h in regression else 'accuracy'}" for h in heads],
        "ms @1",
        f"ms @{squad}",
        f"x vs fp32 ort @1 / @{squad}",
        f"x vs trained torch @1 / @{squad}",
    ]
    order = delta_order(rows)
    cols += [f"delta step (points: {order})", f"delta total (points: {order})"]

    def points(v: float) -> str:
        v = 100 * v
        return f"{v if abs(v) >= 0.005 else 0.0:+.2f}"  # rounds to nothing: +0.00, not -0.00

    def deltas(d: Mapping[str, float] | None) -> str:
        return " / ".join(points(d[h]) if h in d else "-" for h in heads) if d else "-"

    cells = []
    for r in rows:
        lat = r.get("latency_ms") or {}
        cells.append([
            r["variant"],
            r["status"],
            _size(r.get("size_bytes")),
            *[_fmt(r.get("headline", {}).get(h), pct=True) for h in heads],
            _fmt(lat.get("batch_1")),
            _fmt(lat.get(f"batch_{squad}")),
            speedup_cell(r, "vs_fp32_ort", squad),
            speedup_cell(r, "vs_torch", squad),
            deltas(r.get("delta_step")),
            deltas(r.get("delta_total")),
        ])
    return cols, cells


def _heads(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], set[str]]:
    """The heads in the model's task order, and which of them are regression heads."""
    heads = list(dict.fromkeys(k for r in rows for k in r.get("headline", {})))
    regression = {h for r in rows for h, m in (r.get("metrics") or {}).items() if "accuracy" not in m}
    return heads, regression


def delta_order(rows: Sequence[Mapping[str, Any]]) -> str:
    """The heads a delta cell lists, in order: ``"action / tactic / quality err"``."""
    heads, regression = _heads(rows)
    return " / ".join(f"{h}{' err' if h in regression else ''}" for h in heads)


def write_report(folder: Path, rows: Sequence[Mapping[str, Any]], extra: Mapping[str, Any]) -> None:
    """``report.json`` (everything) and ``report.md`` (the table) in ``folder``."""
    doc = {"rows": list(rows), **extra}
    (folder / "report.json").write_text(json.dumps(doc, indent=2))
    cols, cells = report_table(rows, extra.get("squad_size", 22))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    notes = [f"- {n}" for n in extra.get("notes", [])]
    (folder / "report.md").write_text("\n".join(["# Export report", "", *lines, "", *notes, ""]))


def speedup_cell(row: Mapping[str, Any], against: str, squad: int) -> str:
    """``"4.46 / 1.64"``: a row's speedup ``against`` (``vs_fp32_ort`` / ``vs_torch``) at batch 1
    and at the squad size; ``-`` for a row that was not timed."""
    by_batch = row.get("speedups") or {}
    if not by_batch:
        return "-"
    return " / ".join(_fmt((by_batch.get(f"batch_{b}") or {}).get(against)) for b in (1, squad))


def _size(n: Any) -> str:
    if not n:
        return "-"
    return f"{n / 1024:.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"
