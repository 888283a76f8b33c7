"""Feedback events: what the box says about one player after each hop.

A :class:`FeedbackEvent` is one JSON object per player per hop (DESIGN.md "Feedback event"): the
player, when the window ended, each task's prediction, the window's quality, the running load
metrics and risk band, which backend answered, whether the call escalated to the full model, and
how long each stage took. Sinks (``runtime/sinks.py``) fan events out; the JSON shape is
documented in docs/feedback.md and round-trips through :meth:`FeedbackEvent.from_dict`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from fusion_edge.runtime.load import LoadMetrics
from fusion_edge.runtime.risk import RiskAssessment, RiskBand

__all__ = [
    "TaskKind",
    "TaskSpec",
    "EventStatus",
    "FeedbackEvent",
    "softmax",
    "task_specs",
    "predictions_from_outputs",
]


class TaskKind(str, Enum):
    """What a model head predicts."""

    CLASS = "class"
    REGRESSION = "regression"


class EventStatus(str, Enum):
    """Whether the window was scored by a model."""

    SCORED = "scored"
    NOT_SCORED = "not_scored"


@dataclass(frozen=True)
class TaskSpec:
    """One model head as the bundle manifest describes it.

    Attributes:
        name: Task name (``action``, ``tactic``, ``quality``...).
        kind: Classification or regression.
        labels: Class names in output order (empty for regression).
    """

    name: str
    kind: TaskKind
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TaskKind(self.kind))
        object.__setattr__(self, "labels", tuple(self.labels))
        if self.kind is TaskKind.CLASS and len(self.labels) < 2:
            raise ValueError(
                f"class task '{self.name}' needs at least two labels, got {list(self.labels)}; "
                "list them in output order in the bundle manifest"
            )


def task_specs(tasks: Iterable[Mapping[str, Any] | TaskSpec]) -> tuple[TaskSpec, ...]:
    """Task specs from a manifest's ``tasks`` list (dicts with name, kind, labels) or specs."""
    out = []
    for t in tasks:
        if isinstance(t, TaskSpec):
            out.append(t)
        else:
            out.append(TaskSpec(str(t["name"]), TaskKind(t["kind"]), tuple(t.get("labels", ()))))
    return tuple(out)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (float64)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - np.max(z, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=-1, keepdims=True)


def predictions_from_outputs(
    outputs: Mapping[str, Any], tasks: Iterable[Mapping[str, Any] | TaskSpec]
) -> dict[str, dict[str, Any]]:
    """Turn one window's raw model outputs into the event's ``predictions`` dict.

    Args:
        outputs: Task name -> logits ``[C]`` (class tasks) or a scalar / ``[1]`` (regression),
            for ONE window (index the batch first).
        tasks: The bundle's task specs.

    Returns:
        ``{task: {"label", "probability", "probabilities": {label: p}}}`` for class tasks and
        ``{task: {"value"}}`` for regression tasks; tasks missing from ``outputs`` are left out.

    Raises:
        ValueError: A class output's length differs from the task's labels, or it is not finite.
    """
    preds: dict[str, dict[str, Any]] = {}
    for spec in task_specs(tasks):
        if spec.name not in outputs:
            continue
        raw = np.asarray(outputs[spec.name], dtype=np.float64).reshape(-1)
        if not np.isfinite(raw).all():
            raise ValueError(
                f"task '{spec.name}' output is not finite ({raw.tolist()}): the backend "
                "produced NaN/inf; escalate or mark the window not scored"
            )
        if spec.kind is TaskKind.REGRESSION:
            if raw.size != 1:
                raise ValueError(
                    f"regression task '{spec.name}' expects one value per window, got {raw.size}"
                )
            preds[spec.name] = {"value": float(raw[0])}
            continue
        if raw.size != len(spec.labels):
            raise ValueError(
                f"task '{spec.name}' has {len(spec.labels)} labels but the model gave "
                f"{raw.size} logits: the bundle's manifest and model disagree"
            )
        probs = softmax(raw)
        best = int(np.argmax(probs))
        preds[spec.name] = {
            "label": spec.labels[best],
            "probability": float(probs[best]),
            "probabilities": {lab: float(p) for lab, p in zip(spec.labels, probs, strict=True)},
        }
    return preds


def _finite_or_none(x: float | None) -> float | None:
    # JSON has no NaN: a missing figure is null.
    if x is None or not math.isfinite(x):
        return None
    return float(x)


@dataclass(frozen=True)
class FeedbackEvent:
    """One player's feedback for one hop.

    Attributes:
        player: Player id from the kit.
        window_end_ns: Host-monotonic end time of the window (ns).
        predictions: Output of :func:`predictions_from_outputs` (empty when not scored).
        backend: Name of the backend that answered (``onnxruntime-cpu``...), or ``none``.
        quality: Window quality score 0-1 (share of real, not filled, samples), None if unknown.
        load: Running load metrics, None without GNSS/IMU yet.
        risk: ACWR assessment, None without enough history.
        escalated: The full model answered because the fast one was unsure or failed.
        escalation_reason: Why it escalated (``low confidence 0.41 < 0.6``...), else None.
        status: Scored or not scored.
        status_reason: Why a window was not scored (``IMU gap 3.2 s``...), else None.
        stage_latency_ms: Milliseconds per stage (``dsp``, ``inference``, ``escalation``...).
        latency_ms: Total milliseconds; defaults to the sum of the stages.
    """

    player: str
    window_end_ns: int
    predictions: Mapping[str, Mapping[str, Any]]
    backend: str
    quality: float | None = None
    load: LoadMetrics | None = None
    risk: RiskAssessment | None = None
    escalated: bool = False
    escalation_reason: str | None = None
    status: EventStatus = EventStatus.SCORED
    status_reason: str | None = None
    stage_latency_ms: Mapping[str, float] = field(default_factory=dict)
    latency_ms: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", EventStatus(self.status))
        object.__setattr__(self, "stage_latency_ms", dict(self.stage_latency_ms))
        if self.latency_ms is None:
            object.__setattr__(self, "latency_ms", float(sum(self.stage_latency_ms.values())))
        if self.status is EventStatus.NOT_SCORED and not self.status_reason:
            raise ValueError(
                f"event for player '{self.player}' is not scored but gives no status_reason: "
                "say why (gap, low quality, backend failure) so the coach can act"
            )
        if self.escalated and not self.escalation_reason:
            raise ValueError(
                f"event for player '{self.player}' escalated without an escalation_reason: "
                "say why the full model was asked"
            )

    @property
    def risk_band(self) -> RiskBand | None:
        """The risk band, or None without enough history."""
        return self.risk.band if self.risk is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict (see docs/feedback.md for the keys)."""
        return {
            "player": self.player,
            "window_end_ns": int(self.window_end_ns),
            "status": self.status.value,
            "status_reason": self.status_reason,
            "predictions": {k: dict(v) for k, v in self.predictions.items()},
            "quality": _finite_or_none(self.quality),
            "load": self.load.to_dict() if self.load is not None else None,
            "risk_band": self.risk_band.value if self.risk_band is not None else None,
            "risk": self.risk.to_dict() if self.risk is not None else None,
            "backend": self.backend,
            "escalated": self.escalated,
            "escalation_reason": self.escalation_reason,
            "stage_latency_ms": {k: float(v) for k, v in self.stage_latency_ms.items()},
            "latency_ms": float(self.latency_ms or 0.0),
        }

    def to_json(self) -> str:
        """The event as one compact JSON object (one line)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeedbackEvent:
        """Inverse of :meth:`to_dict` (for replays and tests)."""
        risk = data.get("risk")
        return cls(
            player=data["player"],
            window_end_ns=int(data["window_end_ns"]),
            predictions=data.get("predictions", {}),
            backend=data["backend"],
            quality=data.get("quality"),
            load=LoadMetrics.from_dict(data["load"]) if data.get("load") else None,
            risk=(
                RiskAssessment(**{**risk, "band": RiskBand(risk["band"])}) if risk else None
            ),
            escalated=bool(data.get("escalated", False)),
            escalation_reason=data.get("escalation_reason"),
            status=EventStatus(data.get("status", "scored")),
            status_reason=data.get("status_reason"),
            stage_latency_ms=data.get("stage_latency_ms", {}),
            latency_ms=data.get("latency_ms"),
        )

    @classmethod
    def from_json(cls, text: str) -> FeedbackEvent:
        """Parse one JSON line written by :meth:`to_json`."""
        return cls.from_dict(json.loads(text))
