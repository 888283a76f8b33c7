"""A dataset any model should learn, for the training tests (test_train.py, test_ddp.py)."""

from __future__ import annotations

import numpy as np

from fusion_edge.toolkit.dataset import Dataset, DatasetSpec, ModalitySpec, TaskSpec


def sign_dataset(n: int = 240, players: int = 8, seed: int = 0) -> Dataset:
    """A task any model should learn: the class is the sign of channel 0's mean."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    x = rng.normal(0.0, 1.0, (n, 2, 40)).astype(np.float32)
    x[:, 0] += np.where(label == 1, 0.8, -0.8)[:, None]
    spec = DatasetSpec(
        modalities=(ModalitySpec("sensor", ("s0", "s1"), ("", ""), 20.0, 40),),
        tasks=(TaskSpec("sign", "class", labels=("negative", "positive")),),
        window_seconds=2.0,
        hop_seconds=2.0,
    )
    player = np.array([f"p{i % players}" for i in range(n)])
    return Dataset(spec, {"sensor": x}, {"sign": label}, player, np.full(n, "s"))
