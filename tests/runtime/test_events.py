"""Feedback events: predictions from raw outputs, JSON shape, validation, round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fusion_edge.runtime.events import (
    EventStatus,
    FeedbackEvent,
    TaskKind,
    TaskSpec,
    predictions_from_outputs,
    softmax,
)
from fusion_edge.runtime.load import LoadMetrics
from fusion_edge.runtime.risk import RiskAssessment, RiskBand

TASKS = [
    {"name": "action", "kind": "class", "labels": ["running", "passing", "shooting"]},
    {"name": "tactic", "kind": "class", "labels": ["pressing", "retreating defense"]},
    {"name": "quality", "kind": "regression"},
]


def test_predictions_softmax_the_logits_and_pick_the_top_label() -> None:
    preds = predictions_from_outputs(
        {"action": np.array([0.0, math.log(3.0), 0.0]), "tactic": [2.0, 2.0],
         "quality": np.array([0.73])},
        TASKS,
    )
    assert preds["action"]["label"] == "passing"
    assert preds["action"]["probability"] == pytest.approx(0.6)  # 3 / (1 + 3 + 1)
    assert preds["action"]["probabilities"] == pytest.approx(
        {"running": 0.2, "passing": 0.6, "shooting": 0.2})
    assert preds["tactic"]["probability"] == pytest.approx(0.5)
    assert preds["quality"] == {"value": pytest.approx(0.73)}


def test_softmax_is_stable_for_large_logits() -> None:
    p = softmax(np.array([1000.0, 1000.0, -1000.0]))
    assert np.isfinite(p).all() and p.tolist() == pytest.approx([0.5, 0.5, 0.0])


def test_missing_outputs_are_skipped_and_mismatches_raise() -> None:
    assert set(predictions_from_outputs({"tactic": [0.0, 1.0]}, TASKS)) == {"tactic"}
    with pytest.raises(ValueError, match="3 labels but the model gave 2"):
        predictions_from_outputs({"action": [0.0, 1.0]}, TASKS)
    with pytest.raises(ValueError, match="not finite"):
        predictions_from_outputs({"action": [0.0, np.nan, 1.0]}, TASKS)
    with pytest.raises(ValueError, match="at least two labels"):
        TaskSpec("x", TaskKind.CLASS, ("only",))


def make_event(**overrides: object) -> FeedbackEvent:
    fields: dict[str, object] = dict(
        player="p01",
        window_end_ns=123_456_789_000,
        predictions=predictions_from_outputs({"action": [0.0, 1.0, 0.0]}, TASKS),
        backend="onnxruntime-cpu",
        quality=0.97,
        load=LoadMetrics(distance_m=812.0, hsr_m=95.5, sprints=2, player_load=71.2),
        risk=RiskAssessment(acwr=1.1, score=0.14, band=RiskBand.LOW, acute=300.0,
                            chronic=272.7, chronic_days=26),
        stage_latency_ms={"dsp": 0.4, "inference": 3.1},
    )
    fields.update(overrides)
    return FeedbackEvent(**fields)  # type: ignore[arg-type]


def test_event_json_has_the_contract_keys() -> None:
    ev = make_event()
    text = ev.to_json()
    assert "\n" not in text
    data = json.loads(text)
    for key in ("player", "window_end_ns", "predictions", "backend", "escalated", "latency_ms",
                "quality", "load", "risk_band", "status", "stage_latency_ms"):
        assert key in data
    assert data["player"] == "p01" and data["window_end_ns"] == 123_456_789_000
    assert data["latency_ms"] == pytest.approx(3.5)  # sum of the stages by default
    assert data["risk_band"] == "low" and data["load"]["hsr_m"] == 95.5
    assert data["predictions"]["action"]["label"] == "passing"
    assert data["status"] == "scored" and data["escalated"] is False


def test_event_round_trips_through_json() -> None:
    ev = make_event(escalated=True, escalation_reason="low confidence 0.41 < 0.6",
                    backend="torch-cuda", latency_ms=12.0)
    again = FeedbackEvent.from_json(ev.to_json())
    assert again == ev


def test_not_scored_needs_a_reason_and_nan_quality_is_null() -> None:
    with pytest.raises(ValueError, match="status_reason"):
        make_event(status=EventStatus.NOT_SCORED)
    with pytest.raises(ValueError, match="escalation_reason"):
        make_event(escalated=True)
    ev = make_event(status="not_scored", status_reason="IMU gap 3.2 s", predictions={},
                    quality=float("nan"), load=None, risk=None, backend="none")
    data = json.loads(ev.to_json())
    assert data["quality"] is None and data["risk_band"] is None and data["load"] is None
    assert data["status"] == "not_scored" and data["status_reason"] == "IMU gap 3.2 s"
