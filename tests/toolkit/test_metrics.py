"""Task metrics on hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_edge.toolkit.metrics import classification_metrics, regression_metrics

LABELS = ("a", "b", "c")


def test_classification_hand_computed() -> None:
    # Kept windows: truth [a, a, b, b, c], predicted [a, b, b, b, a]; the -1 window is ignored.
    y_true = np.array([0, 0, 1, 1, 2, -1])
    y_pred = np.array([0, 1, 1, 1, 0, 2])
    m = classification_metrics(y_true, y_pred, LABELS)
    assert m["support"] == 5
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["per_class_recall"] == {"a": 0.5, "b": 1.0, "c": 0.0}
    # F1: a = 2*(1/2*1/2)/(1/2+1/2) = 0.5, b = 2*(2/3*1)/(2/3+1) = 0.8, c = 0.
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert m["labels"] == ["a", "b", "c"]


def test_unlabelled_windows_do_not_count_whatever_was_predicted() -> None:
    y_true = np.array([0, 1, -1, -1, -1])
    base = classification_metrics(y_true, np.array([0, 1, 0, 0, 0]), LABELS)
    other = classification_metrics(y_true, np.array([0, 1, 2, 1, 2]), LABELS)
    assert base == other
    assert base["accuracy"] == 1.0 and base["support"] == 2


def test_a_class_that_never_occurs() -> None:
    m = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ("a", "b", "c", "d"))
    assert m["per_class_recall"]["c"] is None and m["per_class_recall"]["d"] is None
    # Macro-F1 averages over the classes present in truth or prediction only (a and b).
    f1_a = 2 * (1.0 * 0.5) / 1.5
    f1_b = 2 * (2 / 3 * 1.0) / (2 / 3 + 1.0)
    assert m["macro_f1"] == pytest.approx((f1_a + f1_b) / 2)
    assert len(m["confusion"]) == 4 and all(len(r) == 4 for r in m["confusion"])


def test_a_class_predicted_but_never_true_counts_against_macro_f1() -> None:
    m = classification_metrics(np.array([0, 0, 1]), np.array([0, 2, 1]), LABELS)
    assert m["per_class_recall"]["c"] is None
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)


def test_perfect() -> None:
    y = np.array([2, 1, 0, 2])
    m = classification_metrics(y, y, LABELS)
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0


def test_regression_hand_computed_with_nan_ignored() -> None:
    y_true = np.array([0.1, 0.5, np.nan, 0.9])
    y_pred = np.array([0.2, 0.3, 0.7, 0.9])
    m = regression_metrics(y_true, y_pred, (0.0, 2.0))
    assert m["support"] == 3
    assert m["mae"] == pytest.approx(0.1)
    assert m["relative_error"] == pytest.approx(0.05)  # MAE over the range's width
    assert m["rmse"] == pytest.approx(np.sqrt((0.01 + 0.04 + 0.0) / 3))


def test_regression_without_a_range_uses_the_spread_of_the_truth() -> None:
    m = regression_metrics(np.array([0.1, 0.5, np.nan, 0.9]), np.array([0.2, 0.3, 0.0, 0.9]), None)
    assert m["relative_error"] == pytest.approx(0.1 / 0.8)


def test_regression_with_no_labelled_window_has_no_score() -> None:
    m = regression_metrics(np.array([np.nan, np.nan]), np.array([1.0, 2.0]), (0.0, 1.0))
    assert m == {"mae": None, "relative_error": None, "rmse": None, "support": 0}


def test_classification_with_no_labelled_window_has_no_score_not_zero() -> None:
    m = classification_metrics(np.array([-1, -1]), np.array([0, 1]), LABELS)
    assert m["support"] == 0 and m["accuracy"] is None and m["macro_f1"] is None
    assert all(v is None for v in m["per_class_recall"].values())
    assert m["confusion"] == [[0] * 3] * 3
