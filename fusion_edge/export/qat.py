"""Quantization-aware fine-tuning for the onnxruntime CPU INT8 variant.

When post-training quantization loses more than the budget, a few epochs of training with the
int8 rounding simulated in the forward pass let the weights move to where rounding costs
little. The simulation mirrors what `quantize.quantize_int8_cpu` will do to the exported graph:

* weights of convolutions, projections and heads: symmetric int8 per output channel (a batch
  norm after a convolution folds into it, and per-channel scales absorb that fold exactly);
* LSTM weights: symmetric int8 per tensor (``DynamicQuantizeLSTM``);
* the input of every quantized layer: asymmetric uint8 per tensor over a range that includes 0,
  tracked as a moving average of the batch min/max while training and frozen in evaluation.

Groups kept in float (`quantize.EXCLUSION_GROUPS`) are left alone. Rounding uses
``torch.fake_quantize_*`` (straight-through gradients). `attach` returns a handle whose
``detach()`` removes every hook and parametrization and leaves a plain float model with the
fine-tuned weights, which is then exported and quantized like any other.

Runs on the workstation only (torch); the box never imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from fusion_edge.toolkit.model import MultimodalCnnLstm

__all__ = ["QatHandle", "attach", "quantization_aware_fine_tune"]


class _WeightPerChannel(nn.Module):
    """Symmetric int8 rounding, one scale per output channel (dim 0)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        amax = w.detach().abs().reshape(w.shape[0], -1).amax(dim=1)
        scale = (amax / 127.0).clamp_min(1e-8).float()
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


class _WeightPerTensor(nn.Module):
    """Symmetric int8 rounding, one scale for the tensor."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = (w.detach().abs().amax() / 127.0).clamp_min(1e-8).reshape(1).float()
        zero = torch.zeros(1, dtype=torch.int32, device=w.device)
        return torch.fake_quantize_per_tensor_affine(w, scale, zero, -127, 127)


class _ActivationRange:
    """Forward pre-hook: uint8 rounding of a layer's input over a tracked range."""

    def __init__(self, momentum: float) -> None:
        self.momentum = momentum
        self.lo: torch.Tensor | None = None
        self.hi: torch.Tensor | None = None

    def _grid(self, training: bool, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if training or self.lo is None:
            lo = x.detach().amin().clamp_max(0.0)
            hi = x.detach().amax().clamp_min(0.0)
            if self.lo is None or self.hi is None:
                self.lo, self.hi = lo, hi
            else:
                self.lo = self.lo + self.momentum * (lo - self.lo)
                self.hi = self.hi + self.momentum * (hi - self.hi)
        scale = ((self.hi - self.lo) / 255.0).clamp_min(1e-8).reshape(1).float()
        zero = torch.round(-self.lo / scale).clamp(0, 255).to(torch.int32).reshape(1)
        return scale, zero

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        scale, zero = self._grid(module.training, args[0])
        return (torch.fake_quantize_per_tensor_affine(args[0], scale, zero, 0, 255), *args[1:])


class _OutputRange(_ActivationRange):
    """Forward hook: uint8 rounding of a layer's output(s), one range for all of them (the
    heads' single QGemm writes every task's values into one quantized tensor)."""

    def __call__(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:  # type: ignore[override]
        ys = output if isinstance(output, tuple) else (output,)
        flat = torch.cat([y.reshape(y.shape[0], -1) for y in ys], dim=1)
        scale, zero = self._grid(module.training, flat)
        rounded = tuple(torch.fake_quantize_per_tensor_affine(y, scale, zero, 0, 255) for y in ys)
        return rounded if isinstance(output, tuple) else rounded[0]


@dataclass
class QatHandle:
    """What `attach` added, so that `detach` can take it all away again."""

    model: MultimodalCnnLstm
    parametrized: list[tuple[nn.Module, str]] = field(default_factory=list)
    hooks: list[Any] = field(default_factory=list)

    def detach(self) -> MultimodalCnnLstm:
        """Remove the simulation; the model keeps its (fine-tuned) float weights."""
        for hook in self.hooks:
            hook.remove()
        for module, name in self.parametrized:
            parametrize.remove_parametrizations(module, name, leave_parametrized=False)
        self.hooks.clear()
        self.parametrized.clear()
        return self.model


def _layers(model: MultimodalCnnLstm) -> dict[str, list[nn.Module]]:
    """The model's quantizable layers by `quantize.EXCLUSION_GROUPS` name (plus ``convs``: the
    encoders' later convolutions, which no group keeps float)."""
    first, later, proj = [], [], []
    for enc in model.encoders:
        convs = [m for m in enc.body if isinstance(m, nn.Conv1d)]
        first.append(convs[0])
        later.extend(convs[1:])
        proj.append(enc.project)
    layers: dict[str, list[nn.Module]] = {
        "first_conv": first,
        "convs": later,
        "projections": proj,
        "heads": [model.heads],
        "attention": [model.attention.w, model.attention.v] if model.attention is not None else [],
        "lstm": [m for m in (getattr(model, "lstm1", None), getattr(model, "lstm2", None)) if m],
    }
    return layers


def attach(
    model: MultimodalCnnLstm, keep_float: Sequence[str] = (), momentum: float = 0.01
) -> QatHandle:
    """Simulate the INT8 CPU variant's rounding in ``model`` (in place), except in the
    ``keep_float`` groups."""
    handle = QatHandle(model)
    for group, modules in _layers(model).items():
        if group in keep_float:
            continue
        for module in modules:
            if isinstance(module, nn.LSTM):
                for name in ("weight_ih_l0", "weight_hh_l0"):
                    parametrize.register_parametrization(module, name, _WeightPerTensor())
                    handle.parametrized.append((module, name))
                continue  # its activations are quantized per call (dynamic): nothing to learn
            targets = list(module) if isinstance(module, nn.ModuleList) else [module]
            for layer in targets:
                parametrize.register_parametrization(layer, "weight", _WeightPerChannel())
                handle.parametrized.append((layer, "weight"))
            handle.hooks.append(module.register_forward_pre_hook(_ActivationRange(momentum)))
            if module is model.heads:  # its int8 output is dequantized after the QGemm
                handle.hooks.append(module.register_forward_hook(_OutputRange(momentum)))
    lstm1 = getattr(model, "lstm1", None)
    if lstm1 is not None and "projections" not in keep_float:
        # The projections' int8 outputs are concatenated in int8 and dequantized for the LSTM.
        handle.hooks.append(lstm1.register_forward_pre_hook(_ActivationRange(momentum)))
    return handle


def quantization_aware_fine_tune(
    model: MultimodalCnnLstm,
    dataset: Any,
    split: Any,
    normalization: Any,
    *,
    keep_float: Sequence[str] = (),
    epochs: int = 3,
    lr: float = 1e-4,
    seed: int = 0,
) -> MultimodalCnnLstm:
    """Fine-tune ``model`` (in place) with int8 rounding simulated; returns it as a plain float
    model. Training, selection on validation loss and data are `prune.fine_tune`'s."""
    from fusion_edge.export.prune import fine_tune

    handle = attach(model, keep_float)
    try:
        fine_tune(model, dataset, split, normalization, epochs=epochs, lr=lr, seed=seed)
    finally:
        handle.detach()
    return model.eval()
