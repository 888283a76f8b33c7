"""Learned per-task loss weights for multitask training (homoscedastic uncertainty).

Kendall, Gal & Cipolla, "Multi-task learning using uncertainty to weigh losses" (CVPR 2018):
each task ``i`` gets a learned log-variance ``s_i`` and the joint loss is

    L = sum_i c_i * (exp(-s_i) * L_i + s_i),    c_i = 1 for a class task, 1/2 for regression

so a task's weight ``c_i * exp(-s_i)`` settles at ``c_i / L_i`` (the ``s_i`` optimum is
``exp(s_i) = L_i``): each task's weighted loss is brought to the same order, and no task's
gradient swamps the shared layers just because its loss is on a larger scale. The ``s_i``
start where the fixed weights are, so the first steps are the fixed-weight training's.
Validation, model selection and the learning-rate schedule keep the fixed-weight loss: the
learned loss falls with ``s_i`` alone, so it cannot rank epochs.

What it does on the foundation benchmark (docs/training.md, "Task weighting"; seeds 0-2,
60 epochs): against the fixed weights (class 1, regression 10) the shared model's quality
relative error fell on every seed (7.4 vs 7.8% on average) and its action and tactic accuracy
fell by 0.3 and 0.5 points: a trade, not a free gain, so the fixed weights stay the default
and ``--task-weighting uncertainty`` is there for datasets whose task losses are on scales the
fixed weights do not suit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["WEIGHTINGS", "UncertaintyWeighting"]

WEIGHTINGS = ("uncertainty", "fixed")


class UncertaintyWeighting(nn.Module):
    """``forward(losses, present)`` -> the weighted joint loss; ``weights()`` the current ones.

    Args:
        kinds: ``"class"`` or ``"regression"`` per task, in the model's task order.
        initial: The starting weight of each task (the fixed weights).
    """

    def __init__(self, kinds: Sequence[str], initial: Sequence[float]) -> None:
        super().__init__()
        if len(kinds) != len(initial):
            raise ValueError(f"{len(kinds)} task kinds but {len(initial)} initial weights")
        if any(w <= 0 for w in initial):
            raise ValueError(f"initial task weights must be positive, got {list(initial)}")
        half = [0.5 if k == "regression" else 1.0 for k in kinds]
        self.register_buffer("scale", torch.tensor(half, dtype=torch.float32))
        self.log_var = nn.Parameter(
            torch.tensor([-math.log(w / c) for w, c in zip(initial, half, strict=True)])
        )

    def forward(self, losses: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Joint loss over the tasks whose loss is not None (a batch without any label of a
        task leaves that task's weight alone)."""
        total = self.log_var.new_zeros(())
        for i, loss in enumerate(losses):
            if loss is not None:
                s = self.log_var[i]
                total = total + self.scale[i] * (torch.exp(-s) * loss.float() + s)
        return total

    def weights(self) -> list[float]:
        """Effective weight of each task's loss now (``c_i * exp(-s_i)``)."""
        with torch.no_grad():
            return (self.scale * torch.exp(-self.log_var)).tolist()
