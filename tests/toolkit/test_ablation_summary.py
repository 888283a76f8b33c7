"""The ablation summary over seeds: means, spreads and paired steps, lower-is-better aware."""

from __future__ import annotations

import pytest

from fusion_edge.toolkit.ablation import summarize_seeds


def _run(acc: list[float], err: list[float]) -> dict:
    names = ["CNN only", "+LSTM", "+attention", "+multitask"]
    return {
        "rows": [
            {"name": n, "tasks": {"action": {"accuracy": a}, "quality": {"relative_error": e}}}
            for n, a, e in zip(names, acc, err, strict=True)
        ]
    }


def test_paired_steps_and_direction() -> None:
    runs = [
        _run([0.80, 0.90, 0.91, 0.93], [0.10, 0.09, 0.08, 0.09]),
        _run([0.70, 0.84, 0.83, 0.86], [0.12, 0.10, 0.09, 0.07]),
    ]
    s = summarize_seeds(runs)
    assert s["seeds"] == 2
    cnn = s["rows"][0]["tasks"]["action"]
    assert cnn["mean"] == pytest.approx(0.75) and cnn["sd"] == pytest.approx(0.0707, abs=1e-4)
    steps = {st["to"]: st["tasks"] for st in s["steps"]}
    # Paired within each seed: +0.01 and -0.01 average to zero, which does not count as helping.
    assert steps["+attention"]["action"]["values"] == pytest.approx([0.01, -0.01])
    assert not steps["+attention"]["action"]["helps"]
    assert steps["+LSTM"]["action"]["helps"]
    # Relative error: lower is better, so a negative change helps.
    assert steps["+attention"]["quality"]["mean"] == pytest.approx(-0.01)
    assert steps["+attention"]["quality"]["helps"]
    assert steps["+multitask"]["quality"]["values"] == pytest.approx([0.01, -0.02])
    assert steps["+multitask"]["quality"]["helps"]


def test_single_seed_has_zero_spread_and_empty_is_refused() -> None:
    s = summarize_seeds([_run([0.8, 0.9, 0.9, 0.95], [0.1, 0.1, 0.1, 0.1])])
    assert s["rows"][3]["tasks"]["action"]["sd"] == 0.0
    with pytest.raises(ValueError, match="no ablation runs"):
        summarize_seeds([])


def test_a_seed_without_labels_of_a_task_is_left_out_of_that_task_only() -> None:
    # Seed 1's held-out players had no quality label: its quality headlines are None.
    runs = [
        _run([0.80, 0.90, 0.91, 0.93], [0.10, 0.09, 0.08, 0.07]),
        _run([0.70, 0.84, 0.83, 0.86], [None] * 4),
        _run([0.72, 0.86, 0.88, 0.87], [0.12, 0.10, 0.09, 0.09]),
    ]
    s = summarize_seeds(runs)
    quality = s["rows"][0]["tasks"]["quality"]
    assert quality["values"] == [0.10, None, 0.12]
    assert quality["mean"] == pytest.approx(0.11)
    steps = {st["to"]: st["tasks"] for st in s["steps"]}
    assert steps["+multitask"]["quality"]["values"] == pytest.approx([-0.01, None, 0.0])
    assert steps["+multitask"]["quality"]["helps"]
    assert s["rows"][0]["tasks"]["action"]["mean"] == pytest.approx(0.74)  # all three seeds


def test_a_task_no_seed_scored_has_no_figures() -> None:
    s = summarize_seeds([_run([0.8, 0.9, 0.9, 0.95], [None] * 4)] * 2)
    assert s["rows"][1]["tasks"]["quality"] == {"mean": None, "sd": None, "values": [None, None]}
    assert s["steps"][0]["tasks"]["quality"]["helps"] is None
