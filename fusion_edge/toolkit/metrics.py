"""Task metrics (numpy only): accuracy, macro-F1, per-class recall, confusion; MAE, relative error."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["classification_metrics", "labelled", "regression_metrics"]


def labelled(y: np.ndarray) -> np.ndarray:
    """Which windows carry a label: class targets are -1 without one, regression targets NaN."""
    y = np.asarray(y)
    return ~np.isnan(y) if y.dtype.kind == "f" else y >= 0


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...]) -> dict[str, Any]:
    """Metrics over windows with a label (``y_true >= 0``).

    Returns ``accuracy``, ``macro_f1`` (over classes present in truth or prediction),
    ``per_class_recall`` (label -> recall, None where the class never occurs) and
    ``confusion`` (rows: truth, columns: prediction), plus ``support``. With no labelled
    window (``support`` 0) there is no score: ``accuracy`` and ``macro_f1`` are None, not 0.
    """
    keep = labelled(y_true)
    t, p = y_true[keep].astype(np.int64), y_pred[keep].astype(np.int64)
    k = len(labels)
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (t, p), 1)
    tp = np.diag(conf).astype(float)
    support = conf.sum(axis=1)
    predicted = conf.sum(axis=0)
    recall = np.divide(tp, support, out=np.full(k, np.nan), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    present = (support > 0) | (predicted > 0)
    r0 = np.nan_to_num(recall)
    f1 = np.divide(2 * precision * r0, precision + r0, out=np.zeros(k), where=(precision + r0) > 0)
    scored = t.size > 0
    return {
        "accuracy": float(tp.sum() / t.size) if scored else None,
        "macro_f1": (float(f1[present].mean()) if present.any() else 0.0) if scored else None,
        "per_class_recall": {
            labels[i]: (None if np.isnan(recall[i]) else float(recall[i])) for i in range(k)
        },
        "confusion": conf.tolist(),
        "labels": list(labels),
        "support": int(t.size),
    }


def regression_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, value_range: tuple[float, float] | None
) -> dict[str, Any]:
    """``mae`` and ``relative_error`` (MAE over the task's range: the paper's feedback error),
    ``rmse`` and ``support``; None for the three scores when no window is labelled."""
    keep = labelled(y_true)
    err = np.abs(y_true[keep] - y_pred[keep])
    if not err.size:
        return {"mae": None, "relative_error": None, "rmse": None, "support": 0}
    mae = float(err.mean())
    if value_range is not None and value_range[1] > value_range[0]:
        scale = value_range[1] - value_range[0]
    else:
        scale = float(np.ptp(y_true[keep]))
    return {
        "mae": mae,
        "relative_error": mae / scale if scale > 0 else float("nan"),
        "rmse": float(np.sqrt((err**2).mean())),
        "support": int(err.size),
    }
