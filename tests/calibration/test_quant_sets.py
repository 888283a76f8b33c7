"""Calibration windows for INT8: stratified choice, .npz round trip, onnxruntime reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fusion_edge.calibration.quant_sets import (
    MIN_CALIBRATION_WINDOWS,
    CalibrationSet,
    select_calibration_windows,
)
from fusion_edge.errors import CalibrationError


class FakeDataset:
    """90% class 0, a few of classes 1-3, two sessions."""

    def __init__(self, n: int = 400) -> None:
        rng = np.random.default_rng(0)
        action = np.zeros(n, dtype=np.int64)
        action[rng.choice(n, 30, replace=False)] = rng.integers(1, 4, 30)
        self.targets = {"action": action, "quality": rng.uniform(0, 1, n)}
        self.player = np.array([f"p{i % 10}" for i in range(n)])
        self.session = np.where(np.arange(n) < n // 2, "s1", "s2")


def test_every_class_and_session_is_represented() -> None:
    ds = FakeDataset()
    idx = select_calibration_windows(ds, 32, stratify_by=("action", "session"), seed=1)
    assert idx.size == 32 and np.unique(idx).size == 32
    strata = {(a, s) for a, s in zip(ds.targets["action"], ds.session, strict=True)}
    chosen = {(a, s) for a, s in zip(ds.targets["action"][idx], ds.session[idx], strict=True)}
    assert chosen == strata  # rare classes in both sessions made it in


def test_same_seed_same_windows_and_pool_is_respected() -> None:
    ds = FakeDataset()
    pool = np.arange(100, 300)
    a = select_calibration_windows(ds, 40, seed=3, pool=pool)
    assert np.array_equal(a, select_calibration_windows(ds, 40, seed=3, pool=pool))
    assert not np.array_equal(a, select_calibration_windows(ds, 40, seed=4, pool=pool))
    assert a.min() >= 100 and a.max() < 300


def test_too_few_windows_is_a_clear_error() -> None:
    ds = FakeDataset(60)
    with pytest.raises(CalibrationError, match="too few"):
        select_calibration_windows(ds, MIN_CALIBRATION_WINDOWS - 1)
    with pytest.raises(CalibrationError, match="only 60 training windows"):
        select_calibration_windows(ds, 61)
    with pytest.raises(CalibrationError, match="no such task"):
        select_calibration_windows(ds, 20, stratify_by=("tactic",))
    with pytest.raises(CalibrationError, match="fewer than"):
        CalibrationSet({"imu": np.zeros((3, 2, 4))}, np.arange(3))


def test_npz_round_trip_without_pickle(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cs = CalibrationSet(
        {"imu": rng.standard_normal((20, 3, 8)), "pos": rng.standard_normal((20, 2, 4))},
        np.arange(20),
        {"seed": "0"},
    )
    path = cs.save(tmp_path / "calib.npz")
    with np.load(path, allow_pickle=False) as z:
        assert "input.imu" in z.files
    back = CalibrationSet.load(path)
    assert back.inputs["imu"].dtype == np.float32
    np.testing.assert_array_equal(back.inputs["pos"], cs.inputs["pos"])
    assert back.meta == {"seed": "0"} and np.array_equal(back.indices, np.arange(20))


def test_data_reader_feeds_batches_and_rewinds() -> None:
    cs = CalibrationSet({"imu": np.ones((20, 3, 8)), "pos": np.zeros((20, 2, 4))}, np.arange(20))
    reader = cs.data_reader(["imu", "pos"], batch_size=8)
    sizes = []
    while (feed := reader.get_next()) is not None:
        assert set(feed) == {"imu", "pos"}
        sizes.append(feed["imu"].shape[0])
    assert sizes == [8, 8, 4]
    reader.rewind()
    assert reader.get_next()["imu"].shape == (8, 3, 8)
    with pytest.raises(CalibrationError, match="lacks model inputs"):
        cs.data_reader(["gnss"])
