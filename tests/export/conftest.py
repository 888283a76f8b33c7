"""A tiny dataset, a run trained on it for two epochs, and one bundle exported from it.

Session-scoped: every export test shares them (they take a few seconds to make).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fusion_edge.toolkit.dataset import DatasetSpec, ModalitySpec, TaskSpec, write_dataset

LABELS = ("walk", "run", "jump")


def make_dataset(
    root: Path,
    *,
    seed: int = 0,
    imu_channels: int = 6,
    players: int = 8,
    per_player: int = 48,
    labels: tuple[str, ...] = LABELS,
) -> Path:
    """Windows whose class sets the IMU frequency and whose quality sets its amplitude."""
    rng = np.random.default_rng(seed)
    spec = DatasetSpec(
        modalities=(
            ModalitySpec(
                "imu", tuple(f"c{i}" for i in range(imu_channels)), ("",) * imu_channels, 20.0, 40
            ),
            ModalitySpec("position", ("x", "y", "speed"), ("m", "m", "m/s"), 5.0, 10),
        ),
        tasks=(
            TaskSpec("action", "class", labels=labels),
            TaskSpec("quality", "regression", value_range=(0.0, 1.0)),
        ),
        window_seconds=2.0,
        hop_seconds=1.0,
        preprocessing={"imu": {"resample_hz": 20.0}},
    )
    n = players * per_player
    action = rng.integers(0, len(labels), n)
    quality = rng.uniform(0.1, 0.9, n).astype(np.float32)
    t = np.arange(40) / 20.0
    freq = 1.0 + 2.0 * action[:, None, None]
    imu = (
        quality[:, None, None]
        * 3
        * np.sin(2 * np.pi * freq * t[None, None, :] + rng.uniform(0, 6, (n, imu_channels, 1)))
        + 0.3 * rng.standard_normal((n, imu_channels, 40))
    ).astype(np.float32)
    pos = (action[:, None, None] + 0.5 * rng.standard_normal((n, 3, 10))).astype(np.float32)
    player = np.repeat([f"p{i}" for i in range(players)], per_player)
    session = np.where(np.arange(n) % 2 == 0, "s1", "s2")
    return write_dataset(
        root,
        spec,
        {"imu": imu, "position": pos},
        {"action": action, "quality": quality},
        player,
        session,
    )


@pytest.fixture(scope="session")
def dataset_factory():
    """`make_dataset`, for tests that need a dataset that differs from the run's."""
    return make_dataset


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small dataset folder."""
    return make_dataset(tmp_path_factory.mktemp("data") / "data")


@pytest.fixture(scope="session")
def tiny_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained for two epochs on `tiny_data`."""
    from fusion_edge.toolkit.train import TrainConfig, train_run

    out = tmp_path_factory.mktemp("run") / "run"
    train_run(
        tiny_data, out, config=TrainConfig(epochs=2, seed=0, device="cpu"), show_progress=False
    )
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """An export of `tiny_run` with every precision; returns the ExportResult."""
    from fusion_edge.export.pipeline import ExportConfig, export

    out = tmp_path_factory.mktemp("bundle") / "bundle"
    cfg = ExportConfig(calibration_windows=48, latency_runs=2, squad_size=5)
    return export(tiny_run, tiny_data, out, cfg)
