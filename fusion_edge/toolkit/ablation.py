"""The paper's ablation on the simulator: CNN only, +LSTM, +attention, +multitask.

The first three rows train one single-task model per task (so the multitask row is the only
change in the last step); the last row trains one model on all tasks jointly. Every model sees
the same grouped split and is scored on the same held-out players.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from fusion_edge.toolkit.checkpoint import Normalization
from fusion_edge.toolkit.dataset import Dataset
from fusion_edge.toolkit.metrics import labelled
from fusion_edge.toolkit.model import ModelConfig, count_parameters
from fusion_edge.toolkit.splits import split_by_player
from fusion_edge.toolkit.train import TrainConfig, predict, task_metrics, train

__all__ = ["ABLATION_ROWS", "AblationRow", "run_ablation", "summarize_seeds", "headline"]


@dataclass(frozen=True)
class AblationRow:
    """One row of the ablation table."""

    name: str
    temporal: str
    attention: bool
    multitask: bool


ABLATION_ROWS = (
    AblationRow("CNN only", "none", False, False),
    AblationRow("+LSTM", "lstm", False, False),
    AblationRow("+attention", "lstm", True, False),
    AblationRow("+multitask", "lstm", True, True),
)


def _test_metrics(result, dataset: Dataset, idx: np.ndarray, norm: Normalization) -> dict[str, Any]:
    cfg = result.model.config
    xs = [torch.from_numpy(norm.apply(name, dataset.inputs[name][idx])) for name, _, _ in cfg.modalities]
    outs = predict(result.model, xs)
    ys = [dataset.targets[name][idx] for name, _, _ in cfg.tasks]
    return task_metrics(cfg, dataset.spec, outs, ys)


def run_ablation(
    dataset: Dataset,
    *,
    size: str = "edge",
    config: TrainConfig | None = None,
    rows: tuple[AblationRow, ...] = ABLATION_ROWS,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train every row and score it on the held-out test players.

    Returns ``{"rows": [{"name", "tasks": {task: metrics}, "parameters", "seconds"}], "split": ...}``.
    """
    config = config or TrainConfig()
    split = split_by_player(dataset.player, val=config.val_fraction, test=config.test_fraction, seed=config.seed)
    test_idx = split.indices(dataset.player, "test")
    all_tasks = tuple(t.name for t in dataset.spec.tasks)
    if len(all_tasks) == 1 and any(r.multitask for r in rows):
        # One task: the "multitask" model is the +attention model again, and a step of zero
        # would read as "multitask does not help".
        rows = tuple(r for r in rows if not r.multitask)
        if log:
            log(f"the dataset has one task ({all_tasks[0]}): the +multitask row needs two or "
                "more tasks and is left out")
    unscored = _unlabelled_tasks(dataset, test_idx)
    if unscored and log:
        log(f"no held-out window of this split carries a label of {', '.join(unscored)}, so "
            "those columns have no score: label some of the held-out players' windows, or try "
            "another --seed (another split)")
    out_rows = []
    for row in rows:
        groups = [all_tasks] if row.multitask else [(t,) for t in all_tasks]
        merged: dict[str, Any] = {}
        params = 0
        seconds = 0.0
        for tasks in groups:
            mcfg = ModelConfig.for_dataset(dataset.spec, size, tasks)
            mcfg = replace(mcfg, temporal=row.temporal, attention=row.attention)
            result = train(dataset, mcfg, config, split=split, show_progress=False)
            merged.update(_test_metrics(result, dataset, test_idx, result.normalization))
            params += count_parameters(result.model)
            seconds += result.seconds
            if log:
                log(f"{row.name} {'+'.join(tasks)}: best epoch {result.best_epoch}, {result.seconds:.0f} s")
        out_rows.append({"name": row.name, "tasks": merged, "parameters": params, "seconds": seconds})
    return {"rows": out_rows, "split": split.to_json(), "test_windows": int(test_idx.size)}


def _unlabelled_tasks(dataset: Dataset, idx: np.ndarray) -> list[str]:
    """The tasks none of the windows ``idx`` has a label for (-1 / NaN)."""
    out = []
    for t in dataset.spec.tasks:
        if not labelled(dataset.targets[t.name][idx]).any():
            out.append(t.name)
    return out


def headline(metrics: dict[str, Any]) -> float | None:
    """Accuracy of a class task, relative error of a regression task; None when no held-out
    window had its label."""
    return metrics["accuracy"] if "accuracy" in metrics else metrics["relative_error"]


def summarize_seeds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread of the ablation over repeated runs (one per seed).

    Each seed draws its own split of held-out players and its own initialization, so the spread
    is what one run of the table can be trusted to. Steps are paired: the change a step makes is
    taken within each seed (same split) and then averaged. Headlines are accuracy for class
    tasks and relative error for regression tasks (lower is better; ``helps`` accounts for it).
    A seed whose held-out players had no label of a task is left out of that task's figures
    (its value is None); a figure no seed scored is None.

    Returns ``{"seeds", "rows": [{"name", "tasks": {task: {"mean", "sd", "values"}}}],
    "steps": [{"from", "to", "tasks": {task: {"mean", "sd", "values", "helps"}}}]}``.
    """
    if not runs:
        raise ValueError("no ablation runs to summarize")
    names = [r["name"] for r in runs[0]["rows"]]
    tasks = list(runs[0]["rows"][0]["tasks"])
    lower_better = {t: "accuracy" not in runs[0]["rows"][0]["tasks"][t] for t in tasks}

    def values(row: int, task: str) -> np.ndarray:
        """One headline per seed; NaN for a seed whose split had no label of ``task``."""
        v = [headline(run["rows"][row]["tasks"][task]) for run in runs]
        return np.array([np.nan if x is None else x for x in v], dtype=float)

    def stats(v: np.ndarray) -> dict[str, Any]:
        """Over the seeds that scored; mean and sd None when none did."""
        ok = v[np.isfinite(v)]
        return {
            "mean": float(ok.mean()) if ok.size else None,
            "sd": (float(ok.std(ddof=1)) if ok.size > 1 else 0.0) if ok.size else None,
            "values": [float(x) if np.isfinite(x) else None for x in v],
        }

    rows = [{"name": n, "tasks": {t: stats(values(i, t)) for t in tasks}} for i, n in enumerate(names)]
    steps = []
    for i in range(1, len(names)):
        per_task = {}
        for t in tasks:
            d = values(i, t) - values(i - 1, t)
            s = stats(d)
            if s["mean"] is None:
                s["helps"] = None  # no seed scored both rows
            else:
                s["helps"] = bool(s["mean"] < 0 if lower_better[t] else s["mean"] > 0)
            per_task[t] = s
        steps.append({"from": names[i - 1], "to": names[i], "tasks": per_task})
    return {"seeds": len(runs), "rows": rows, "steps": steps}
