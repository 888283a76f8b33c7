"""Evaluation of a run on a dataset: metrics per task, JSON, and confusion-matrix plots."""

from __future__ import annotations

import json
import os
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusion_edge.errors import ConfigError, DatasetError
from fusion_edge.toolkit.checkpoint import RunInfo, load_run
from fusion_edge.toolkit.dataset import Dataset
from fusion_edge.toolkit.train import predict, task_metrics

__all__ = ["SPLITS", "evaluate_run", "check_compatible", "plot_confusion", "select_windows"]

SPLITS = ("auto", "all", "train", "val", "test")


def check_compatible(info: RunInfo, dataset: Dataset) -> None:
    """Refuse a dataset whose modalities, channels, window lengths or tasks differ from the run's."""
    have = {m.name: m for m in dataset.spec.modalities}
    for name, _channels, samples in info.model.modalities:
        m = have.get(name)
        if m is None:
            raise DatasetError(
                f"the run was trained with modality '{name}', which {dataset.root} lacks "
                f"(it has {sorted(have)}); use a dataset made the same way"
            )
        trained = info.dataset.modality(name)
        if tuple(m.channels) != tuple(trained.channels) or m.window_samples != samples:
            raise DatasetError(
                f"modality '{name}' differs: the run expects channels {list(trained.channels)} x "
                f"{samples} samples, the dataset has {list(m.channels)} x {m.window_samples}"
            )
    for name, kind, _n in info.model.tasks:
        try:
            task = dataset.spec.task(name)
        except Exception:
            raise DatasetError(f"the run predicts task '{name}', which the dataset does not label") from None
        if kind == "class" and tuple(task.labels) != tuple(info.dataset.task(name).labels):
            raise DatasetError(
                f"task '{name}' has labels {list(task.labels)} in the dataset but the run was "
                f"trained on {list(info.dataset.task(name).labels)}"
            )


def select_windows(info: RunInfo, dataset: Dataset, split: str = "auto") -> tuple[np.ndarray, str]:
    """Which windows to score.

    ``auto``: when the dataset shares players with the run's training or validation split, only
    the run's test players are scored (so no player the model saw is counted); otherwise all.
    """
    player = dataset.player.astype(str)
    if split == "all":
        return np.arange(len(player)), "all"
    if split in ("train", "val", "test"):
        return info.split.indices(player, split), split
    if split not in SPLITS:
        raise ValueError(f"split must be auto, all, train, val or test, got {split!r}")
    seen = set(info.split.train) | set(info.split.val)
    if seen.intersection(player.tolist()):
        return info.split.indices(player, "test"), "test"
    return np.arange(len(player)), "all"


def evaluate_run(
    run: str | Path,
    data: str | Path,
    *,
    split: str = "auto",
    json_path: str | Path | None = None,
    plots_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Score a run on a dataset. Returns ``{"tasks": {...}, "windows": n, "split": ...}``."""
    model, info = load_run(run)
    dataset = Dataset.open(data)
    check_compatible(info, dataset)
    idx, used = select_windows(info, dataset, split)
    if idx.size == 0:
        raise DatasetError(f"no windows to evaluate in split '{used}' of {data}")
    xs = [
        torch.from_numpy(info.normalization.apply(name, dataset.inputs[name][idx]))
        for name, _, _ in info.model.modalities
    ]
    outputs = predict(model, xs)
    ys = [dataset.targets[name][idx] for name, _, _ in info.model.tasks]
    result = {
        "tasks": task_metrics(info.model, dataset.spec, outputs, ys),
        "windows": int(idx.size),
        "split": used,
        "run": str(run),
        "data": str(data),
    }
    if json_path is not None:
        write_json(json_path, result)
    if plots_dir is not None:
        for name, metrics in result["tasks"].items():
            if "confusion" in metrics:
                plot_confusion(metrics, Path(plots_dir) / f"confusion_{name}.png", title=f"{name} ({used})")
    return result


def write_json(path: str | Path, doc: dict[str, Any]) -> None:
    """Write JSON atomically (tmp file + rename).

    Raises:
        ConfigError: the file cannot be written (nothing is left behind then).
    """
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, path)
    except OSError as exc:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ConfigError(
            f"cannot write {path} ({exc.strerror or exc}); choose a writable file path"
        ) from None


def plot_confusion(metrics: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Row-normalized confusion matrix as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.asarray(metrics["confusion"], dtype=float)
    labels = metrics["labels"]
    norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(labels), 0.8 + 0.5 * len(labels)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            if conf[i, j]:
                ax.text(j, i, int(conf[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(f"{title}  accuracy {metrics['accuracy']:.3f}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
