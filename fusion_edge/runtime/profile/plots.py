"""PNG plots of a profile: latency distribution per stage, and latency against players.

matplotlib is imported here only, inside the functions (with the non-interactive Agg backend),
so the profiler itself needs numpy alone; without matplotlib the plots are skipped with a
warning naming what to install.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fusion_edge.errors import FusionEdgeError
from fusion_edge.runtime.profile.histogram import LatencyHistogram

__all__ = ["plot_stage_latency", "plot_capacity", "matplotlib_available"]


def matplotlib_available() -> bool:
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FusionEdgeError(
            "plots need matplotlib: pip install matplotlib (report.json and report.md are "
            "written without it)"
        ) from None
    return plt


def plot_stage_latency(
    stages: Mapping[str, LatencyHistogram],
    end_to_end: LatencyHistogram,
    path: str | Path,
    *,
    title: str = "",
) -> Path:
    """Latency distribution (complementary CDF, log-log: the tail is what matters) of every
    stage and of the end-to-end latency, with p50/p99 marks, into one PNG."""
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    rows = [*stages.items(), ("end_to_end", end_to_end)]
    for name, h in rows:
        if not h.count:
            continue
        mids, counts = h.buckets_ms()
        # Fraction of values above each bucket: 1 - CDF, so p99 sits at 1e-2.
        ccdf = 1.0 - np.cumsum(counts) / counts.sum() + counts / counts.sum()
        ax.step(
            np.maximum(mids, 1e-4),
            ccdf,
            where="post",
            lw=2.4 if name == "end_to_end" else 1.2,
            label=f"{name} (p50 {h.percentile_ms(50):.3g}, p99 {h.percentile_ms(99):.3g} ms)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    for q, lab in ((0.5, "p50"), (0.01, "p99"), (0.001, "p99.9")):
        ax.axhline(q, color="grey", lw=0.6, ls=":")
        ax.text(ax.get_xlim()[0], q, lab, fontsize=7, va="bottom", color="grey")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of samples slower")
    ax.set_title(title or "latency by stage")
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_capacity(
    points: Sequence[Mapping[str, Any]], deadline_ms: float, path: str | Path, *, title: str = ""
) -> Path:
    """Hop latency (p50, p99, max) against the number of players, with the deadline."""
    plt = _pyplot()
    pts = sorted(points, key=lambda p: p["players"])
    x = [p["players"] for p in pts]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for key, style in (("p50_ms", "o-"), ("p99_ms", "s-"), ("max_ms", "^:")):
        ax.plot(x, [p[key] for p in pts], style, label=key.replace("_ms", ""))
    ax.axhline(deadline_ms, color="red", lw=1.0, ls="--", label=f"deadline {deadline_ms:g} ms")
    for p in pts:
        if not p["sustained"]:
            ax.annotate("x", (p["players"], p["p99_ms"]), color="red", ha="center", va="center")
    ax.set_yscale("log")
    ax.set_xlabel("players")
    ax.set_ylabel("hop latency (ms)")
    ax.set_title(title or "latency against players")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
