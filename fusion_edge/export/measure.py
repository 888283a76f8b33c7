"""How export measures a variant: accuracy on held-out windows and latency, the same way for all.

Accuracy uses `fusion_edge.toolkit.train.task_metrics` (the keys `evaluate` reports).
Latency is the median wall time of one call after warm-up, on the CPU with onnxruntime (or
PyTorch eager, for the reference rows) on as many intra-op threads as the box's runtime uses (1
by default, `fusion_edge.runtime.backends`), at batch 1 (one player) and at the squad size
(every player in one call, as the box batches each hop). Export times every variant together,
in interleaved rounds (`interleaved_latency`), so its speedups are ratios from one run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusion_edge.export.onnx_export import onnx_session, run_onnx
from fusion_edge.toolkit.dataset import DatasetSpec
from fusion_edge.toolkit.metrics import labelled
from fusion_edge.toolkit.model import ModelConfig, MultimodalCnnLstm
from fusion_edge.toolkit.train import task_metrics

__all__ = [
    "HeldOut",
    "AccuracyBudget",
    "score_onnx",
    "score_torch",
    "onnx_latency",
    "torch_latency",
    "onnx_caller",
    "torch_caller",
    "interleaved_latency",
    "budget_check",
    "unlabelled_heads",
    "unscored_heads",
    "headline",
]


@dataclass(frozen=True)
class HeldOut:
    """Normalized held-out windows and their targets, in the model's input / task order."""

    inputs: tuple[np.ndarray, ...]
    targets: tuple[np.ndarray, ...]
    split: str

    @property
    def size(self) -> int:
        """Number of windows."""
        return int(self.inputs[0].shape[0])


@dataclass(frozen=True)
class AccuracyBudget:
    """What a compressed variant may cost against FP32.

    Attributes:
        max_accuracy_drop: Per class head, in accuracy points as a fraction (0.005 = 0.5 points).
        max_relative_error_increase: Per regression head, relative increase of its relative error.
    """

    max_accuracy_drop: float = 0.005
    max_relative_error_increase: float = 0.10


def score_onnx(
    path: str | Path, config: ModelConfig, spec: DatasetSpec, data: HeldOut
) -> dict[str, Any]:
    """Task metrics of an ONNX file on held-out windows (onnxruntime CPU)."""
    outs = run_onnx(onnx_session(path), data.inputs)
    return task_metrics(config, spec, outs, list(data.targets))


def score_torch(model: MultimodalCnnLstm, spec: DatasetSpec, data: HeldOut) -> dict[str, Any]:
    """Task metrics of the PyTorch model on held-out windows."""
    from fusion_edge.toolkit.train import predict

    outs = predict(model, [torch.from_numpy(x) for x in data.inputs])
    return task_metrics(model.config, spec, outs, list(data.targets))


def headline(metrics: dict[str, Any]) -> dict[str, float | None]:
    """One number per task: accuracy for class heads, relative error for regression heads;
    None for a head none of the scored windows has a label for."""
    out: dict[str, float | None] = {}
    for k, v in metrics.items():
        score = v["accuracy"] if "accuracy" in v else v["relative_error"]
        out[k] = None if score is None else float(score)
    return out


def unscored_heads(metrics: dict[str, Any]) -> list[str]:
    """The heads none of the scored windows has a label for (their scores are None)."""
    return [k for k, v in metrics.items() if not v["support"]]


def unlabelled_heads(config: ModelConfig, data: HeldOut) -> list[str]:
    """The heads none of ``data``'s windows has a label for, from the targets alone (no model
    run needed to know it)."""
    return [name for (name, _, _), y in zip(config.tasks, data.targets, strict=True) if not labelled(y).any()]


def budget_check(
    reference: dict[str, Any], candidate: dict[str, Any], budget: AccuracyBudget
) -> tuple[bool, dict[str, Any]]:
    """Whether ``candidate`` stays within ``budget`` of ``reference``, and by how much.

    Returns:
        ``(ok, {"loss": ..., "per_task": {task: {"delta": ..., "ok": ...}}})``; ``loss`` sums the
        overshoot of every head (0 when all are within budget) and ranks candidates. A head with
        no labelled window cannot be judged: it reads ``{"ok": True, "checked": False}``.
    """
    per: dict[str, Any] = {}
    loss = 0.0
    for task, ref in reference.items():
        cand = candidate[task]
        if not ref["support"]:
            per[task] = {"ok": True, "checked": False}
        elif "accuracy" in ref:
            delta = cand["accuracy"] - ref["accuracy"]
            over = max(0.0, -delta - budget.max_accuracy_drop)
            per[task] = {"delta": delta, "ok": over == 0.0}
            loss += over + max(0.0, -delta) * 1e-3
        else:
            base = max(ref["relative_error"], 1e-9)
            rel = (cand["relative_error"] - ref["relative_error"]) / base
            over = max(0.0, rel - budget.max_relative_error_increase)
            per[task] = {"relative_increase": rel, "ok": over == 0.0}
            loss += over + max(0.0, rel) * 1e-3
    return all(p["ok"] for p in per.values()), {"loss": loss, "per_task": per}


def _batch(inputs: Sequence[np.ndarray], b: int) -> list[np.ndarray]:
    idx = np.arange(b) % inputs[0].shape[0]
    return [np.ascontiguousarray(x[idx]) for x in inputs]


Caller = Callable[[int], Callable[[], Any]]
"""Given a batch size, a function that runs one call of a variant at that batch."""


def onnx_caller(path: str | Path, inputs: Sequence[np.ndarray], threads: int = 1) -> Caller:
    """Calls of an ONNX file on onnxruntime CPU with ``threads`` intra-op threads (0:
    onnxruntime's default, one per core); the session is made once."""
    sess = onnx_session(path, threads=threads)
    names = [i.name for i in sess.get_inputs()]

    def at(b: int) -> Callable[[], Any]:
        feed = dict(zip(names, _batch(inputs, b), strict=True))
        return lambda: sess.run(None, feed)

    return at


def torch_caller(model: MultimodalCnnLstm, inputs: Sequence[np.ndarray]) -> Caller:
    """Calls of the PyTorch model in eager mode on the CPU (the reference)."""
    model = model.cpu().eval()

    def at(b: int) -> Callable[[], Any]:
        xs = [torch.from_numpy(x) for x in _batch(inputs, b)]

        def call() -> None:
            with torch.inference_mode():
                model(*xs)

        return call

    return at


def interleaved_latency(
    callers: Sequence[Caller], batches: Sequence[int], *, runs: int = 30, warmup: int = 5,
    threads: int = 1,
) -> list[dict[str, float]]:
    """``[{"batch_1": ms, "batch_22": ms}, ...]``, one dict per caller: the median of ``runs``
    calls each after ``warmup``, taken in rounds (one call of every variant per round), so a
    machine that slows down or speeds up mid-measurement moves every variant alike and the
    ratios between them hold. PyTorch runs on ``threads`` intra-op threads meanwhile."""
    out: list[dict[str, float]] = [{} for _ in callers]
    with torch_threads(threads):
        for b in batches:
            fns = [make(b) for make in callers]
            for fn in fns:
                for _ in range(warmup):
                    fn()
            times: list[list[float]] = [[] for _ in fns]
            for _ in range(runs):
                for i, fn in enumerate(fns):
                    t0 = time.perf_counter()
                    fn()
                    times[i].append(time.perf_counter() - t0)
            for i, t in enumerate(times):
                out[i][f"batch_{b}"] = float(np.median(t) * 1e3)
    return out


def onnx_latency(
    path: str | Path,
    inputs: Sequence[np.ndarray],
    batches: Sequence[int],
    runs: int = 30,
    threads: int = 1,
) -> dict[str, float]:
    """``{"batch_1": ms, "batch_22": ms, ...}`` for one ONNX file alone (see
    `interleaved_latency` to compare several)."""
    return interleaved_latency([onnx_caller(path, inputs, threads)], batches, runs=runs,
                               threads=threads)[0]


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """PyTorch on ``threads`` intra-op threads for a while (0: leave it alone)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def torch_latency(
    model: MultimodalCnnLstm,
    inputs: Sequence[np.ndarray],
    batches: Sequence[int],
    runs: int = 30,
    threads: int = 1,
) -> dict[str, float]:
    """Same as `onnx_latency` for the PyTorch model in eager mode (the reference)."""
    return interleaved_latency([torch_caller(model, inputs)], batches, runs=runs, threads=threads)[0]
