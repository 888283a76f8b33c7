"""Shared, session-scoped fixtures: one small simulated dataset and one quickly trained run.

Simulating and training are the slow steps of the toolkit tests, so they happen once per test
session and every test that only reads them shares the result. Tests that change a run or a
dataset copy it into their own ``tmp_path`` first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

# A tiny architecture: enough to exercise every layer, small enough to train in seconds on CPU.
TINY_MODEL = {
    "conv_channels": (8, 8, 8),
    "latent": 8,
    "lstm_hidden": (8, 8),
    "attention_dim": 4,
}


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread for a while (restored afterwards).

    The tests' models are tiny: on one thread they train several times faster than on two, and
    much faster again on a busy 2-core CI box where two threads fight the other processes.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    """``one_torch_thread`` for a whole test module (use with ``pytest.mark.usefixtures``)."""
    with one_torch_thread():
        yield


@dataclass(frozen=True)
class TrainedRun:
    """A run folder plus what training returned for it (the in-memory model and split)."""

    path: Path
    data: Path
    result: object  # fusion_edge.toolkit.train.TrainResult (torch is imported lazily)


@pytest.fixture(scope="session")
def sim_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5v5, two 60 s sessions (20 players, ~360 windows), seed 1."""
    from fusion_edge.scenarios import get_scenario
    from fusion_edge.toolkit.scenario_dataset import simulate_dataset

    out = tmp_path_factory.mktemp("sim") / "data"
    simulate_dataset([get_scenario("5v5")], out, seed=1, duration_s=60.0, sessions=2)
    return out


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, sim_dataset: Path) -> TrainedRun:
    """Two epochs of the tiny model on ``sim_dataset``, written as a run folder."""
    from fusion_edge.toolkit.train import TrainConfig, train_run

    out = tmp_path_factory.mktemp("run") / "run"
    with one_torch_thread():
        result, path = train_run(
            sim_dataset,
            out,
            config=TrainConfig(epochs=2, batch_size=64, device="cpu", seed=0),
            model_overrides=TINY_MODEL,
            show_progress=False,
        )
    assert path is not None
    return TrainedRun(path=path, data=sim_dataset, result=result)


@pytest.fixture(scope="session")
def tiny_model() -> dict:
    """ModelConfig overrides for a tiny, fast architecture."""
    return dict(TINY_MODEL)
