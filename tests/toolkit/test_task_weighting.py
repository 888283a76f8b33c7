"""Learned multitask loss weights (`fusion_edge.toolkit.task_weighting`) and their use in training."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from fusion_edge.toolkit.dataset import Dataset, DatasetSpec, ModalitySpec, TaskSpec
from fusion_edge.toolkit.model import ModelConfig
from fusion_edge.toolkit.task_weighting import UncertaintyWeighting
from fusion_edge.toolkit.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_starts_at_the_fixed_weights() -> None:
    w = UncertaintyWeighting(["class", "class", "regression"], [1.0, 2.0, 10.0])
    assert w.weights() == pytest.approx([1.0, 2.0, 10.0])
    losses = [torch.tensor(0.7), torch.tensor(0.2), torch.tensor(0.01)]
    regularizer = float((w.scale * w.log_var).sum().detach())
    assert float(w(losses).detach()) - regularizer == pytest.approx(0.7 + 0.4 + 0.1)


def test_a_task_missing_from_the_batch_leaves_its_weight_alone() -> None:
    w = UncertaintyWeighting(["class", "regression"], [1.0, 10.0])
    w([torch.tensor(0.5), None]).backward()
    assert w.log_var.grad[0] != 0 and w.log_var.grad[1] == 0


def test_weights_settle_at_the_inverse_loss() -> None:
    # With the losses held fixed, exp(s_i) goes to L_i: weight c_i / L_i.
    w = UncertaintyWeighting(["class", "regression"], [1.0, 10.0])
    opt = torch.optim.Adam(w.parameters(), lr=0.05)
    losses = [torch.tensor(0.4), torch.tensor(0.004)]
    for _ in range(2000):
        opt.zero_grad()
        w(losses).backward()
        opt.step()
    assert w.weights() == pytest.approx([1 / 0.4, 0.5 / 0.004], rel=1e-3)
    assert float(w.log_var[1].detach()) == pytest.approx(math.log(0.004), abs=1e-3)


@pytest.mark.parametrize("bad", [([1.0], ["class", "class"]), ([0.0, 1.0], ["class", "regression"])])
def test_refuses_bad_initial_weights(bad) -> None:
    initial, kinds = bad
    with pytest.raises(ValueError, match="weights"):
        UncertaintyWeighting(kinds, initial)


def two_task_dataset(n: int = 160, players: int = 8, seed: int = 0) -> Dataset:
    """A class (sign of channel 0) and a regression target (channel 1's level, in [0, 1])."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    level = rng.uniform(0.1, 0.9, n).astype(np.float32)
    x = rng.normal(0.0, 1.0, (n, 2, 40)).astype(np.float32)
    x[:, 0] += np.where(label == 1, 0.8, -0.8)[:, None]
    x[:, 1] += 3 * level[:, None]
    spec = DatasetSpec(
        modalities=(ModalitySpec("sensor", ("s0", "s1"), ("", ""), 20.0, 40),),
        tasks=(
            TaskSpec("sign", "class", labels=("negative", "positive")),
            TaskSpec("level", "regression", value_range=(0.0, 1.0)),
        ),
        window_seconds=2.0,
        hop_seconds=2.0,
    )
    player = np.array([f"p{i % players}" for i in range(n)])
    return Dataset(spec, {"sensor": x}, {"sign": label, "level": level}, player, np.full(n, "s"))


def test_training_learns_the_weights_and_reports_them(tiny_model: dict) -> None:
    ds = two_task_dataset()
    cfg = ModelConfig.for_dataset(ds.spec, **tiny_model)
    tc = TrainConfig(epochs=3, batch_size=32, lr=3e-3, device="cpu", early_stop_patience=100)
    assert tc.task_weighting == "fixed"  # the default
    fixed = train(ds, cfg, tc, show_progress=False)
    learned = train(ds, cfg, replace(tc, task_weighting="uncertainty"), show_progress=False)
    assert fixed.task_weights == {"sign": 1.0, "level": 10.0}
    assert "task_weights" not in fixed.history[-1]
    per_epoch = [r["task_weights"] for r in learned.history]
    assert per_epoch[-1] == learned.task_weights
    assert learned.task_weights["sign"] != 1.0 and learned.task_weights["level"] != 10.0
    # The learned weights change the training, not the validation criterion.
    assert [r["train_loss"] for r in learned.history] != [r["train_loss"] for r in fixed.history]
    assert learned.history[0]["val_loss"] > 0 and fixed.history[0]["val_loss"] > 0


def test_a_single_task_model_has_no_weights_to_learn(tiny_model: dict) -> None:
    ds = two_task_dataset(n=64, players=4)
    cfg = ModelConfig.for_dataset(ds.spec, tasks=("sign",), **tiny_model)
    res = train(ds, cfg, TrainConfig(epochs=1, device="cpu", task_weighting="uncertainty"), show_progress=False)
    assert res.task_weights == {"sign": 1.0} and "task_weights" not in res.history[0]


def test_unknown_weighting_is_refused(tiny_model: dict) -> None:
    ds = two_task_dataset(n=64, players=4)
    cfg = ModelConfig.for_dataset(ds.spec, **tiny_model)
    with pytest.raises(ValueError, match="task_weighting must be one of uncertainty, fixed, got 'learned'"):
        train(ds, cfg, TrainConfig(epochs=1, device="cpu", task_weighting="learned"), show_progress=False)
