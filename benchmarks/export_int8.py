"""FP32 vs INT8 (onnxruntime CPU), side by side from one export run.

Targets (issue 5): at most 0.5 accuracy points lost per class head, at most 10% relative
increase of the regression error, a file at least 3.5x smaller, and the latency gain.

    .venv/bin/python benchmarks/export_int8.py [--run RUN --data DATA] [--runs 50]

Without --run/--data it simulates a 5v5 dataset (3 min, 2 sessions, seed 1) and trains
15 epochs first. Prints a table and writes benchmarks/results/export_int8.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.table import Table

from fusion_edge.cli.common import make_console
from fusion_edge.export.pipeline import ExportConfig, export

RESULTS = Path(__file__).parent / "results" / "export_int8.json"


def _make_run(tmp: Path) -> tuple[Path, Path]:
    exe = [str(Path(sys.executable).with_name("fusion-edge"))]
    data, run = tmp / "data", tmp / "run"
    subprocess.run(
        [
            *exe,
            "simulate",
            "--scenario",
            "5v5",
            "--minutes",
            "3",
            "--sessions",
            "2",
            "--seed",
            "1",
            "--out",
            str(data),
        ],
        check=True,
    )
    subprocess.run(
        [*exe, "train", "--data", str(data), "--out", str(run), "--epochs", "15"], check=True
    )
    return run, data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--runs", type=int, default=50, help="timed runs per latency figure")
    ap.add_argument("--squad", type=int, default=22)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fe-bench-") as tmp:
        run, data = (args.run, args.data) if args.run and args.data else _make_run(Path(tmp))
        cfg = ExportConfig(
            precisions=("fp32", "int8"), latency_runs=args.runs, squad_size=args.squad
        )
        result = export(run, data, Path(tmp) / "bundle", cfg)
    rows = {r["variant"]: r for r in result.rows}
    fp32, int8 = rows["fp32"], rows["int8_cpu"]
    heads, checks = {}, {}
    for task, m in fp32["metrics"].items():
        q = int8["metrics"][task]
        if "accuracy" in m:
            drop = (m["accuracy"] - q["accuracy"]) * 100
            heads[task] = {
                "fp32_accuracy": m["accuracy"],
                "int8_accuracy": q["accuracy"],
                "points_lost": drop,
            }
            checks[f"{task}: <= 0.5 points lost"] = drop <= 0.5
        else:
            inc = (q["relative_error"] - m["relative_error"]) / max(m["relative_error"], 1e-12)
            heads[task] = {
                "fp32_relative_error": m["relative_error"],
                "int8_relative_error": q["relative_error"],
                "relative_increase": inc,
            }
            checks[f"{task}: relative error +<= 10%"] = inc <= 0.10
    size_ratio = fp32["size_bytes"] / int8["size_bytes"]
    checks["file >= 3.5x smaller"] = size_ratio >= 3.5
    lat = {
        k: {
            "fp32_ms": fp32["latency_ms"][k],
            "int8_ms": int8["latency_ms"][k],
            "speedup": fp32["latency_ms"][k] / int8["latency_ms"][k],
        }
        for k in fp32["latency_ms"]
    }
    doc = {
        "run": str(run),
        "data": str(data),
        "windows": next(iter(fp32["metrics"].values())).get("support"),
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
        },
        "heads": heads,
        "size_bytes": {"fp32": fp32["size_bytes"], "int8": int8["size_bytes"], "ratio": size_ratio},
        "latency_ms": lat,
        "int8_kept_float": next(
            v["kept_float"] for v in result.manifest["variants"] if v["name"] == "int8_cpu"
        ),
        "checks": checks,
        "torch_latency_ms": rows["pytorch"]["latency_ms"],
    }
    table = Table(title="FP32 vs INT8 (onnxruntime CPU, held-out players)")
    for col in ("measure", "fp32", "int8", "change", "target met"):
        table.add_column(col)
    for task, h in heads.items():
        if "points_lost" in h:
            table.add_row(
                f"{task} accuracy",
                f"{h['fp32_accuracy']:.3f}",
                f"{h['int8_accuracy']:.3f}",
                f"{-h['points_lost']:+.2f} pts",
                str(checks[f"{task}: <= 0.5 points lost"]),
            )
        else:
            table.add_row(
                f"{task} relative error",
                f"{h['fp32_relative_error']:.4f}",
                f"{h['int8_relative_error']:.4f}",
                f"{h['relative_increase']:+.1%}",
                str(checks[f"{task}: relative error +<= 10%"]),
            )
    table.add_row(
        "file size",
        f"{fp32['size_bytes'] / 1024:.0f} KiB",
        f"{int8['size_bytes'] / 1024:.0f} KiB",
        f"{size_ratio:.2f}x smaller",
        str(checks["file >= 3.5x smaller"]),
    )
    for k, v in lat.items():
        table.add_row(
            f"latency {k.replace('_', ' ')}",
            f"{v['fp32_ms']:.2f} ms",
            f"{v['int8_ms']:.2f} ms",
            f"{v['speedup']:.2f}x",
            "",
        )
    make_console().print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
