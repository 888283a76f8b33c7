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

__all__ = [
    "SPLITS", "evaluate_run", "check_compatible", "check_json_target", "plot_confusion",
    "seen_windows", "select_windows", "write_json",
]

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
        # Same names and shape are not enough: accelerations in g instead of m/s^2, or another
        # rate (another window length in seconds), give numbers the model never saw.
        if tuple(m.units) != tuple(trained.units):
            raise DatasetError(
                f"modality '{name}' differs: the run expects units {list(trained.units)}, the "
                f"dataset has {list(m.units)}; convert the data to the run's units (or retrain)"
            )
        if abs(m.sample_rate_hz - trained.sample_rate_hz) > 1e-6 * trained.sample_rate_hz:
            raise DatasetError(
                f"modality '{name}' differs: the run expects {trained.sample_rate_hz:g} Hz, the "
                f"dataset has {m.sample_rate_hz:g} Hz; resample the data to the run's rate "
                "(or retrain)"
            )
    for name, kind, _n in info.model.tasks:
        try:
            task = dataset.spec.task(name)
        except Exception:
            known = ", ".join(t.name for t in dataset.spec.tasks) or "none"
            raise DatasetError(
                f"the run predicts task '{name}', which the dataset does not label (its tasks: "
                f"{known}); evaluate on a dataset that labels every task the run predicts"
            ) from None
        trained_task = info.dataset.task(name)
        if str(task.kind) != str(kind):
            raise DatasetError(
                f"task '{name}' is a {task.kind} task in the dataset but the run predicts it as "
                f"{kind}; use a dataset made the same way"
            )
        if kind == "class" and tuple(task.labels) != tuple(trained_task.labels):
            raise DatasetError(
                f"task '{name}' has labels {list(task.labels)} in the dataset but the run was "
                f"trained on {list(trained_task.labels)}"
            )
        if kind != "class" and task.value_range != trained_task.value_range:
            show = (lambda r: "unbounded" if r is None else str([float(v) for v in r]))  # noqa: E731
            raise DatasetError(
                f"task '{name}' has value range {show(task.value_range)} in the dataset but the "
                f"run was trained on {show(trained_task.value_range)}; rescale its values to the "
                "run's range (or retrain)"
            )


def select_windows(info: RunInfo, dataset: Dataset, split: str = "auto") -> tuple[np.ndarray, str]:
    """Which windows to score.

    ``auto``: when the dataset shares players with the run's training or validation split, only
    the players the model did not see are scored: the run's test players (``"test"``), plus any
    new players (``"held-out"``); otherwise all (``"all"``).
    """
    player = dataset.player.astype(str)
    if split == "all":
        return np.arange(len(player)), "all"
    if split in ("train", "val", "test"):
        return info.split.indices(player, split), split
    if split not in SPLITS:
        raise ValueError(f"split must be auto, all, train, val or test, got {split!r}")
    seen = np.isin(player, np.asarray([*info.split.train, *info.split.val]))
    if not seen.any():
        return np.arange(len(player)), "all"
    idx = np.flatnonzero(~seen)
    only_test = np.isin(player[idx], np.asarray(info.split.test)).all()
    return idx, "test" if only_test else "held-out"


def seen_windows(info: RunInfo, dataset: Dataset, idx: np.ndarray) -> int:
    """How many of the windows ``idx`` are from players the run trained or validated on."""
    seen = np.asarray([*info.split.train, *info.split.val])
    return int(np.isin(dataset.player[idx].astype(str), seen).sum())


def evaluate_run(
    run: str | Path,
    data: str | Path,
    *,
    split: str = "auto",
    json_path: str | Path | None = None,
    plots_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Score a run on a dataset.

    Returns ``{"tasks": {...}, "windows": n, "split": ..., "seen_windows": m, "run", "data"}``;
    ``seen_windows`` counts the scored windows from players the run trained or validated on
    (their scores are optimistic). A task none of whose scored windows is labelled has
    ``support`` 0 and ``None`` for its metrics.

    Raises:
        ConfigError: ``json_path`` is an existing file that is not an evaluation's JSON.
    """
    if json_path is not None:
        check_json_target(json_path)
    model, info = load_run(run)
    dataset = Dataset.open(data)
    check_compatible(info, dataset)
    idx, used = select_windows(info, dataset, split)
    if idx.size == 0 and split == "auto":
        raise DatasetError(
            f"{data} holds only players the run trained or validated on (none of its test "
            f"players {list(info.split.test)}, no new player): their scores would be "
            "optimistic. Evaluate on new players or on the run's own dataset, or pass --split "
            "all to score these windows anyway"
        )
    if idx.size == 0:
        raise DatasetError(
            f"no windows to evaluate in split '{used}' of {data}: none of the run's {used} "
            f"players {list(getattr(info.split, used))} is in it; use --split auto or all"
        )
    xs = [
        torch.from_numpy(info.normalization.apply(name, dataset.inputs[name][idx]))
        for name, _, _ in info.model.modalities
    ]
    outputs = predict(model, xs)
    ys = [dataset.targets[name][idx] for name, _, _ in info.model.tasks]
    tasks = task_metrics(info.model, dataset.spec, outputs, ys)  # None scores where unlabelled
    result = {
        "tasks": tasks,
        "windows": int(idx.size),
        "split": used,
        "seen_windows": seen_windows(info, dataset, idx),
        "run": str(run),
        "data": str(data),
    }
    if json_path is not None:
        write_json(json_path, result)
    if plots_dir is not None:
        for name, metrics in result["tasks"].items():
            png = Path(plots_dir) / f"confusion_{name}.png"
            if "confusion" in metrics and metrics["support"]:
                plot_confusion(metrics, png, title=f"{name} ({used})")
            elif "confusion" in metrics:
                # No labelled window, so no plot: an earlier evaluation's would read as this one's.
                png.unlink(missing_ok=True)
    return result


def check_json_target(path: str | Path) -> None:
    """Refuse to replace an existing file that is not an evaluation's JSON.

    A previous evaluation's metrics are replaced (re-evaluating after retraining is normal);
    anything else (a run's config.json, a dataset.json, an ablation's results) is kept.

    Raises:
        ConfigError: ``path`` exists and is not a JSON object with "tasks" and "windows".
    """
    path = Path(path)
    if not path.is_file():
        return
    try:
        doc = json.loads(path.read_text())
        ours = isinstance(doc, dict) and {"tasks", "windows"} <= set(doc) and "rows" not in doc
    except (OSError, UnicodeDecodeError, ValueError):
        ours = False
    if not ours:
        raise ConfigError(
            f"--json {path} already exists and is not an evaluation's JSON; it was left as it "
            "was: choose another file (or delete it first)"
        )


def _no_nan(value: Any) -> Any:
    """NaN and infinities as null: JSON has no NaN (strict readers refuse it)."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def write_json(path: str | Path, doc: dict[str, Any]) -> None:
    """Write JSON atomically (tmp file + rename); NaN becomes null.

    Raises:
        ConfigError: the file cannot be written (nothing is left behind then).
    """
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(_no_nan(doc), indent=2, allow_nan=False))
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
