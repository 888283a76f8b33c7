"""report.json, report.md and the comparison of two reports.

The report.json schema is versioned (``format`` / ``version``) and documented in
docs/profile.md; keys are only ever added within a version. Latencies are milliseconds.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fusion_edge.errors import FusionEdgeError
from fusion_edge.runtime.profile.histogram import LatencyHistogram
from fusion_edge.runtime.profile.modes import ProfileResult

__all__ = [
    "REPORT_FORMAT",
    "REPORT_VERSION",
    "hardware_fingerprint",
    "build_report",
    "write_report",
    "load_report",
    "compare_reports",
    "markdown_report",
    "markdown_comparison",
]

REPORT_FORMAT = "fusion-edge-profile"
REPORT_VERSION = 1
LATENCY_KEYS = ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 2)
    except (ValueError, OSError, AttributeError):
        return None


def _gpu() -> str | None:
    """The first NVIDIA GPU's name, from the driver's /proc entry (no CUDA import)."""
    root = Path("/proc/driver/nvidia/gpus")
    try:
        for info in sorted(root.glob("*/information")):
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def hardware_fingerprint() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, memory, OS, Python, onnxruntime, GPU."""
    try:
        import onnxruntime

        ort = onnxruntime.__version__
        providers = list(onnxruntime.get_available_providers())
    except ImportError:
        ort, providers = None, []
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": affinity,
        "memory_gb": _memory_gb(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "onnxruntime": ort,
        "onnxruntime_providers": providers,
        "gpu": _gpu(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _latency(h: LatencyHistogram) -> dict[str, Any]:
    return h.summary()


def build_report(
    result: ProfileResult, *, hardware: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The report.json document of a run (see docs/profile.md for the schema)."""
    cfg = result.config
    u = result.usage
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "scenario": result.scenario,
        "mode": cfg.mode.value,
        "backend": result.backend,
        "players": result.players,
        "hardware": dict(hardware) if hardware is not None else hardware_fingerprint(),
        "config": {
            "duration_s": cfg.duration_s,
            "queries": cfg.queries,
            "seed": cfg.seed,
            "session": cfg.session,
            "scenario_file": cfg.scenario_file,
            "rate": cfg.rate,
            "burst": cfg.burst,
            "deadline_ms": result.deadline_ms,
        },
        "stages": {name: _latency(h) for name, h in result.stages.items()},
        "end_to_end": _latency(result.end_to_end),
        "queries": result.queries,
        "windows": result.windows,
        "throughput": result.throughput,
        "drops": dict(result.drops),
        "cpu_percent": round(u.cpu_percent, 1),
        "rss_mb": round(u.rss_mb, 1),
        "peak_rss_mb": round(u.peak_rss_mb, 1),
        "wall_s": round(u.wall_s, 3),
        "warnings": list(result.warnings),
        "extra": dict(result.extra),
    }


def budget_lines(doc: Mapping[str, Any]) -> list[str]:
    """The run against its deadline, and how much of it the full model answered, in words:
    what a table of stage latencies does not say on its own."""
    lines = []
    deadline = (doc.get("config") or {}).get("deadline_ms")
    p99 = (doc.get("end_to_end") or {}).get("p99_ms")
    if deadline and p99 is not None and (doc.get("end_to_end") or {}).get("count"):
        late = doc.get("drops", {}).get("late")
        lines.append(
            f"deadline {deadline:g} ms (a hop, unless --deadline-ms): end-to-end p99 {p99:.1f} ms "
            f"is {100 * p99 / deadline:.1f}% of it, headroom {deadline - p99:.1f} ms"
            + (f"; {late} late" if late is not None else "")
        )
    extra = doc.get("extra") or {}
    windows = int(doc.get("windows") or 0)
    if "escalated" in extra and windows:
        share = extra["escalated"] / windows
        backends = ", ".join(f"{k} {v}" for k, v in (extra.get("backends") or {}).items())
        line = (f"escalated {extra['escalated']} of {windows} windows ({share:.0%}) to the full "
                f"model" + (f"; answered by {backends}" if backends else ""))
        if share >= 0.5:
            line += (": the compressed model was unsure of most windows, so these latencies are "
                     "mostly the full model's (a poorly trained bundle, or a high escalation "
                     "threshold; --no-escalation times the compressed model alone)")
        lines.append(line)
    return lines


def write_report(doc: Mapping[str, Any], out: str | Path, name: str = "report.json") -> Path:
    """Write ``doc`` atomically (tmp file, then rename) to ``out/name``; returns the path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a report.json (or a folder holding one).

    Raises:
        FusionEdgeError: missing file, not JSON, or not a profile report of a known version.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FusionEdgeError(
            f"{p} does not exist: give a report.json written by 'fusion-edge profile'"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FusionEdgeError(
            f"{p} is not JSON ({exc}); give a report.json written by 'fusion-edge profile'"
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != REPORT_FORMAT:
        raise FusionEdgeError(
            f"{p} is not a profile report (no format '{REPORT_FORMAT}'); "
            "rerun 'fusion-edge profile'"
        )
    version = doc.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise FusionEdgeError(
            f"{p} has version {version!r}, not a number: it was not written by 'fusion-edge "
            "profile' or was edited; rerun 'fusion-edge profile'"
        )
    if version > REPORT_VERSION:
        raise FusionEdgeError(
            f"{p} is a version {version} report; this fusion-edge reads up to version "
            f"{REPORT_VERSION}: upgrade fusion-edge"
        )
    for key, kind in (("end_to_end", dict), ("stages", dict), ("throughput", dict)):
        value = doc.get(key)
        rows = [value] if key == "end_to_end" else list((value or {}).values())
        if not isinstance(value, kind) or (
            key != "throughput" and not all(isinstance(r, dict) for r in rows)
        ):
            raise FusionEdgeError(
                f"{p} is an incomplete profile report (no valid '{key}'); it was cut short or "
                "edited: rerun 'fusion-edge profile'"
            )
    return doc


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not a:
        return None
    return round(b / a, 3)


def _measured(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """A latency row, or no values when it counted nothing (its zeros are not latencies)."""
    return {} if row.get("count") == 0 else row


def compare_reports(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Side by side: for each latency row (end_to_end, then stages both have) and each key, the
    two values and the ratio B / A (above 1: B is slower); throughput ratio likewise."""
    rows: dict[str, dict[str, Any]] = {}
    names = ["end_to_end"] + [s for s in a.get("stages", {}) if s in b.get("stages", {})]
    for name in names:
        ra = _measured(a["end_to_end"] if name == "end_to_end" else a["stages"][name])
        rb = _measured(b["end_to_end"] if name == "end_to_end" else b["stages"][name])
        rows[name] = {
            k: {"a": ra.get(k), "b": rb.get(k), "ratio": _ratio(ra.get(k), rb.get(k))}
            for k in LATENCY_KEYS
        }
    ta, tb = a.get("throughput", {}), b.get("throughput", {})
    if not a.get("queries"):
        ta = {k: None for k in ta}
    if not b.get("queries"):
        tb = {k: None for k in tb}
    keys = ("scenario", "mode", "backend", "players")
    return {
        "a": {k: a.get(k) for k in keys},
        "b": {k: b.get(k) for k in keys},
        # What differs besides what is compared: ratios across modes, scenarios or squads
        # compare different loads, not two boxes or bundles.
        "differs": [k for k in ("scenario", "mode", "players") if a.get(k) != b.get(k)],
        "latency": rows,
        "only_in_a": sorted(set(a.get("stages", {})) - set(b.get("stages", {}))),
        "only_in_b": sorted(set(b.get("stages", {})) - set(a.get("stages", {}))),
        "throughput": {
            k: {"a": ta.get(k), "b": tb.get(k), "ratio": _ratio(ta.get(k), tb.get(k))}
            for k in {**ta, **tb}
        },
        "cpu_percent": {
            "a": a.get("cpu_percent"),
            "b": b.get("cpu_percent"),
            "ratio": _ratio(a.get("cpu_percent"), b.get("cpu_percent")),
        },
        "rss_mb": {
            "a": a.get("rss_mb"),
            "b": b.get("rss_mb"),
            "ratio": _ratio(a.get("rss_mb"), b.get("rss_mb")),
        },
        "same_hardware": a.get("hardware", {}).get("cpu_model")
        == b.get("hardware", {}).get("cpu_model"),
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def markdown_report(doc: Mapping[str, Any], plots: list[str] | None = None) -> str:
    """report.md: the same figures as report.json, for people."""
    hw = doc["hardware"]
    tp = doc["throughput"]
    lines = [
        f"# Latency profile: {doc['scenario']} ({doc['mode']})",
        "",
        f"- backend: `{doc['backend']}`, players: {doc['players']}, queries: {doc['queries']}, "
        f"windows: {doc['windows']}",
        f"- hardware: {hw.get('cpu_model')} ({hw.get('cpu_cores')} cores, "
        f"{hw.get('memory_gb')} GB), {hw.get('os')}, Python {hw.get('python')}, "
        f"onnxruntime {hw.get('onnxruntime')}, GPU {hw.get('gpu') or 'none'}",
        f"- throughput: {tp['windows_per_s']} windows/s, {tp['queries_per_s']} queries/s;"
        f" CPU {doc['cpu_percent']}% of one core; RSS {doc['rss_mb']} MB",
        f"- drops: {', '.join(f'{k} {v}' for k, v in doc['drops'].items()) or 'none'}",
        *(f"- {line}" for line in budget_lines(doc)),
        "",
        "| stage | count | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in [*doc["stages"].items(), ("**end to end**", doc["end_to_end"])]:
        lines.append(
            f"| {name} | {row['count']} | " + " | ".join(_fmt(row[k]) for k in LATENCY_KEYS) + " |"
        )
    if doc.get("warnings"):
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in doc["warnings"]]
    if doc.get("capacity"):
        cap = doc["capacity"]
        lines += [
            "",
            f"Capacity: **{cap['max_players']} players** with p99 under {cap['deadline_ms']} ms "
            f"({cap['backend']}).",
            "",
            "| players | p50 ms | p99 ms | max ms | sustained |",
            "|---:|---:|---:|---:|---|",
        ]
        for p in cap["points"]:
            lines.append(
                f"| {p['players']} | {_fmt(p['p50_ms'])} | {_fmt(p['p99_ms'])} | "
                f"{_fmt(p['max_ms'])} | "
                f"{'yes' if p['sustained'] else 'no: ' + p['reason']} |"
            )
    for p in plots or []:
        lines += ["", f"![{p}]({p})"]
    return "\n".join(lines) + "\n"


def markdown_comparison(cmp: Mapping[str, Any]) -> str:
    """A comparison as a markdown table (B / A ratios; above 1: B is slower)."""
    a, b = cmp["a"], cmp["b"]
    lines = [
        f"A: {a}",
        f"B: {b}",
        "",
        "| row | p50 A | p50 B | p50 B/A | p99 A | p99 B | p99 B/A |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in cmp["latency"].items():
        lines.append(
            f"| {name} | "
            + " | ".join(_fmt(row[k][w]) for k in ("p50_ms", "p99_ms") for w in ("a", "b", "ratio"))
            + " |"
        )
    return "\n".join(lines) + "\n"


def write_outputs(
    result: ProfileResult | None,
    out: str | Path,
    *,
    capacity: Any = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Write report.json, report.md and the PNG plots of a run (and/or a capacity search) into
    ``out``; returns the report document. Plots are skipped, with a warning in the report, when
    matplotlib is missing."""
    out = Path(out)
    try:
        return _write_outputs(result, out, capacity=capacity, plots=plots)
    except OSError as exc:
        raise FusionEdgeError(
            f"cannot write the report into {out} ({exc.strerror or exc}); give an --out folder "
            "that can be written"
        ) from None


def _write_outputs(
    result: ProfileResult | None, out: Path, *, capacity: Any, plots: bool
) -> dict[str, Any]:
    from fusion_edge.runtime.profile import plots as plotting

    out.mkdir(parents=True, exist_ok=True)
    if result is not None:
        doc = build_report(result)
    else:
        doc = {
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "scenario": capacity.scenario,
            "mode": "capacity",
            "backend": capacity.backend,
            "players": capacity.max_players,
            "hardware": hardware_fingerprint(),
            "config": {"deadline_ms": capacity.deadline_ms},
            "stages": {},
            "end_to_end": LatencyHistogram().summary(),
            "queries": 0,
            "windows": 0,
            "throughput": {"windows_per_s": 0.0, "queries_per_s": 0.0},
            "drops": {},
            "cpu_percent": 0.0,
            "rss_mb": 0.0,
            "peak_rss_mb": 0.0,
            "wall_s": 0.0,
            "warnings": [],
            "extra": {},
        }
        best = [p for p in capacity.points if p.players == capacity.max_players]
        if best:  # the sustained point's figures stand for the run
            p = best[0]
            doc["stages"] = p.stages
            doc["end_to_end"] = {
                "p50_ms": p.p50_ms,
                "p90_ms": p.p90_ms,
                "p99_ms": p.p99_ms,
                "p999_ms": p.p99_ms,
                "max_ms": p.max_ms,
                "mean_ms": None,
                "count": p.hops,
            }
            doc["cpu_percent"] = p.cpu_percent
            doc["warnings"].append("capacity probes are short: end_to_end p99.9 repeats the p99")
    if capacity is not None:
        doc["capacity"] = capacity.to_json()
    written: list[str] = []
    if plots and plotting.matplotlib_available():
        if result is not None and result.end_to_end.count:
            plotting.plot_stage_latency(
                result.stages,
                result.end_to_end,
                out / "latency_by_stage.png",
                title=f"{doc['scenario']} {doc['mode']} ({doc['backend']})",
            )
            written.append("latency_by_stage.png")
        if capacity is not None and capacity.points:
            plotting.plot_capacity(
                doc["capacity"]["points"],
                capacity.deadline_ms,
                out / "latency_vs_players.png",
                title=f"capacity: {capacity.max_players} players ({capacity.backend})",
            )
            written.append("latency_vs_players.png")
    elif plots:
        doc["warnings"].append(
            "plots skipped: matplotlib is not installed (pip install matplotlib)"
        )
    doc["plots"] = written
    write_report(doc, out)
    (out / "report.md").write_text(markdown_report(doc, written), encoding="utf-8")
    return doc
