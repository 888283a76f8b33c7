"""The multimodal CNN-LSTM: per-modality convolutional encoders, two stacked LSTMs, additive
attention over time, and one head per task. Built from a dataset's description, never from
hard-coded channel or class counts.

    modality m --[conv, BN, ReLU, max-pool, dropout] x3 --> pool to T steps --> project to d
    concat over modalities --> LSTM --dropout--> LSTM --> additive attention --> heads

Additive attention (REFERENCE.md): ``e_t = v^T tanh(W f_t + b)``, ``a = softmax(e)``,
``f* = sum_t a_t f_t``. The heads read ``[f*, h_T]``: the attended summary and the last state.
Each LSTM is single-layer so that structural pruning (export) can remove its hidden units.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from fusion_edge.errors import CheckpointError, ConfigError
from fusion_edge.toolkit.dataset import DatasetSpec

__all__ = ["ModelConfig", "MultimodalCnnLstm", "TaskHeads", "SIZES"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters plus the inputs and tasks the model is built for."""

    modalities: tuple[tuple[str, int, int], ...]  # (name, channels, window samples)
    tasks: tuple[tuple[str, str, int], ...]  # (name, "class"|"regression", classes or 1)
    value_ranges: tuple[tuple[float, float], ...] = ()  # per task; (0, 0) for classes
    conv_channels: tuple[int, int, int] = (32, 48, 64)
    kernel_size: int = 5
    latent: int = 64  # per-modality projection size
    lstm_hidden: tuple[int, int] = (64, 64)
    time_steps: int = 20
    conv_dropout: float = 0.3
    lstm_dropout: float = 0.2
    temporal: str = "lstm"  # "lstm" or "none" (CNN only: mean over time)
    attention: bool = True
    attention_dim: int = 32
    size: str = "edge"

    def to_json(self) -> dict[str, Any]:
        """JSON form (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of ``to_json``; refuses unknown keys (a checkpoint from another version)."""
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise CheckpointError(
                f"model config has unknown keys {sorted(unknown)}: the checkpoint was written by "
                "another fusion-edge version; retrain or export with that version"
            )
        def tup(v: Any) -> Any:
            return tuple(tup(x) for x in v) if isinstance(v, list) else v
        return cls(**{k: tup(v) for k, v in d.items()})

    @classmethod
    def for_dataset(
        cls, spec: DatasetSpec, size: str = "edge", tasks: tuple[str, ...] | None = None, **overrides: Any
    ) -> ModelConfig:
        """A config for ``spec``'s modalities and (a subset of) its tasks, at a preset size."""
        if size not in SIZES:
            raise ModelOptionError(f"unknown model size {size!r}; choose one of {sorted(SIZES)}")
        names = [t.name for t in spec.tasks]
        unknown = [t for t in (tasks or ()) if t not in names]
        if unknown:
            raise ModelOptionError(
                f"the dataset has no task {', '.join(repr(t) for t in unknown)} (--task); its "
                f"tasks are {', '.join(repr(t) for t in names) or 'none'}"
            )
        chosen = [t for t in spec.tasks if tasks is None or t.name in tasks]
        if not chosen:
            raise ModelOptionError(
                "the dataset has no task to train (its windows carry no labels). Write it again with "
                "one: fusion-edge dataset import ... --label TASK or --regression TASK=COLUMN, or "
                "DatasetWriter with tasks= (docs/dataset-format.md)"
            )
        base = cls(
            modalities=tuple((m.name, len(m.channels), m.window_samples) for m in spec.modalities),
            tasks=tuple(
                (t.name, "class" if t.is_classification else "regression", t.num_classes if t.is_classification else 1)
                for t in chosen
            ),
            # A task without a range gets [0, 1] here; train() replaces it with the training
            # windows' own (train.resolve_value_ranges).
            value_ranges=tuple(
                (0.0, 0.0) if t.is_classification else tuple(t.value_range or (0.0, 1.0)) for t in chosen
            ),
        )
        # One LSTM step per 0.2 s of window, when every modality's window reduces to it;
        # otherwise (e.g. 4 s at 52 Hz = 208 samples) the most steps up to that which all
        # modalities reduce to, so any rate and window length trains (docs/dataset-format.md).
        conv = overrides.get("conv_channels", SIZES[size]["conv_channels"])
        wanted = max(1, int(round(spec.window_seconds / 0.2)))
        steps = next(
            t for t in range(wanted, 0, -1)
            if all(reduced_length(m.window_samples, t, len(conv)) % t == 0 for m in spec.modalities)
        )
        return replace(base, **{**SIZES[size], "size": size, "time_steps": steps, **overrides})


def reduced_length(samples: int, time_steps: int, blocks: int) -> int:
    """A window's length after `ModalityEncoder`'s max-pools (halved while even and >= 2 steps)."""
    length = samples
    for _ in range(blocks):
        if length % 2 == 0 and length // 2 >= time_steps:
            length //= 2
    return length


class ModelOptionError(ConfigError, ValueError):
    """A model size or task selection that does not fit (a ValueError too, as it always was)."""


SIZES: dict[str, dict[str, Any]] = {
    "edge": {"conv_channels": (32, 48, 64), "latent": 64, "lstm_hidden": (64, 64), "attention_dim": 32},
    # The paper's size: 512 per stream, two LSTMs of 256 units.
    "paper": {"conv_channels": (64, 128, 256), "latent": 512, "lstm_hidden": (256, 256), "attention_dim": 128},
}


class ModalityEncoder(nn.Module):
    """Three blocks of (conv1d, batch norm, ReLU, max-pool, dropout), pooled to ``steps``."""

    def __init__(self, name: str, channels: int, samples: int, cfg: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, length = channels, samples
        for c_out in cfg.conv_channels:
            layers += [
                nn.Conv1d(c_in, c_out, cfg.kernel_size, padding=cfg.kernel_size // 2),
                nn.BatchNorm1d(c_out),
                nn.ReLU(inplace=True),
            ]
            if length % 2 == 0 and length // 2 >= cfg.time_steps:
                layers.append(nn.MaxPool1d(2))
                length //= 2
            layers.append(nn.Dropout(cfg.conv_dropout))
            c_in = c_out
        if length % cfg.time_steps != 0:
            raise ModelOptionError(
                f"modality '{name}': {samples} samples per window do not reduce to "
                f"{cfg.time_steps} time steps (got {length}); choose a window length that is a "
                f"multiple of {cfg.time_steps} samples or set time_steps"
            )
        if length != cfg.time_steps:
            k = length // cfg.time_steps
            layers.append(nn.AvgPool1d(k, k))
        self.body = nn.Sequential(*layers)
        self.project = PointwiseLinear(c_in, cfg.latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, S]`` -> ``[B, latent, T]`` (channels first, like the convolutions)."""
        return torch.relu(self.project(self.body(x)))


class PointwiseLinear(nn.Linear):
    """A linear layer applied at every time step of a channels-first ``[B, C, T]`` sequence.

    The same parameters (and state-dict keys) as ``nn.Linear``, computed as a kernel-1
    convolution: the exported graph then needs no transpose around it, and onnxruntime fuses
    it with the ReLU that follows (fewer nodes to dispatch per batch-1 call on the box).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in, T]`` -> ``[B, out, T]``."""
        return nn.functional.conv1d(x, self.weight.unsqueeze(-1), self.bias)


class AdditiveAttention(nn.Module):
    """``e_t = v^T tanh(W f_t + b)``, ``a = softmax(e)``, ``f* = sum_t a_t f_t``.

    Works time-major (``[T, B, D]``, the LSTM's own layout), so the exported graph needs no
    transposes between the recurrence and the attention.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w = nn.Linear(dim, hidden)
        self.v = nn.Linear(hidden, 1, bias=False)

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[T, B, D]`` -> (``[B, D]`` context, ``[T, B]`` weights).

        The scores stay ``[T, B, 1]`` through the softmax and the weighted sum; only the
        returned weights are squeezed, which `forward` discards, so the exported graph has no
        Squeeze/Unsqueeze pair around the softmax.
        """
        a = torch.softmax(self.v(torch.tanh(self.w(f))), dim=0)
        return (a * f).sum(dim=0), a.squeeze(-1)


class TaskHeads(nn.ModuleList):
    """One linear head per task, computed as a single matrix product.

    Holds an ``nn.Linear`` per task (state-dict keys ``heads.<i>.weight``, as before), but
    ``forward`` stacks their weights and runs one product, then splits it per task: the exported
    graph has one ``Gemm`` and a ``Split`` instead of a ``Gemm`` per task. At batch 1 every node
    costs a fixed dispatch, and in the INT8 graph each head's product also needs its own
    DequantizeLinear, so three heads cost more than their arithmetic.
    """

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``[B, in]`` -> one ``[B, classes]`` tensor per head (raw, before any range mapping)."""
        if len(self) == 1:
            return (self[0](z),)
        weight = torch.cat([h.weight for h in self])
        bias = torch.cat([h.bias for h in self])
        y = nn.functional.linear(z, weight, bias)
        return tuple(y.split([h.out_features for h in self], dim=-1))


class MultimodalCnnLstm(nn.Module):
    """The multimodal CNN-LSTM with multitask heads.

    ``forward(*inputs)`` takes one tensor per modality, in ``config.modalities`` order, and
    returns one tensor per task in ``config.tasks`` order (logits for classes; the value,
    already in the task's range, for regression), so it exports to ONNX as it is.
    ``explain(*inputs)`` also returns the attention weights and each modality's contribution.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.temporal not in ("lstm", "none"):
            raise ValueError(f"temporal must be 'lstm' or 'none', got {config.temporal!r}")
        self.config = config
        self.encoders = nn.ModuleList(
            [ModalityEncoder(name, c, s, config) for name, c, s in config.modalities]
        )
        merged = config.latent * len(config.modalities)
        h1, h2 = config.lstm_hidden
        if config.temporal == "lstm":
            # Time-major ([T, B, D]): ONNX's LSTM layout, so the export has no transposes here.
            self.lstm1 = nn.LSTM(merged, h1)
            self.lstm_dropout = nn.Dropout(config.lstm_dropout)
            self.lstm2 = nn.LSTM(h1, h2)
            feat = h2
        else:
            feat = merged
        self.attention = AdditiveAttention(feat, config.attention_dim) if config.attention else None
        head_in = feat * (2 if config.attention and config.temporal == "lstm" else 1)
        self.heads = TaskHeads([nn.Linear(head_in, n) for _, _, n in config.tasks])
        ranges = config.value_ranges or tuple((0.0, 0.0) for _ in config.tasks)
        self.register_buffer("_lo", torch.tensor([r[0] for r in ranges], dtype=torch.float32), persistent=False)
        self.register_buffer("_hi", torch.tensor([r[1] for r in ranges], dtype=torch.float32), persistent=False)
        # A [0, 1] range is the sigmoid itself: no scale and shift nodes in the exported graph.
        self._unit_range = tuple(tuple(map(float, r)) == (0.0, 1.0) for r in ranges)

    def _features(self, inputs: tuple[torch.Tensor, ...]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-modality ``[B, latent, T]`` parts and the merged time-major ``[T, B, D]``."""
        if len(inputs) != len(self.encoders):
            raise ValueError(f"expected {len(self.encoders)} inputs, got {len(inputs)}")
        parts = [enc(x) for enc, x in zip(self.encoders, inputs, strict=True)]
        merged = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return parts, merged.permute(2, 0, 1)

    def _summary(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Time-major ``[T, B, D]`` -> (``[B, head_in]``, ``[T, B]`` attention or None)."""
        if self.config.temporal == "lstm":
            h, _ = self.lstm1(f)
            h, _ = self.lstm2(self.lstm_dropout(h))
            last = h[-1]
            if self.attention is None:
                return last, None
            ctx, a = self.attention(h)
            return torch.cat([ctx, last], dim=-1), a
        if self.attention is None:
            return f.mean(dim=0), None
        ctx, a = self.attention(f)
        return ctx, a

    def _heads(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = []
        for i, ((_, kind, _), y) in enumerate(zip(self.config.tasks, self.heads(z), strict=True)):
            if kind == "regression":
                y = torch.sigmoid(y.squeeze(-1))
                if not self._unit_range[i]:
                    y = self._lo[i] + (self._hi[i] - self._lo[i]) * y
            out.append(y)
        return tuple(out)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One output per task (see class docstring)."""
        _, f = self._features(inputs)
        z, _ = self._summary(f)
        return self._heads(z)

    @torch.no_grad()
    def explain(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Outputs plus ``attention`` ``[B, T]`` and ``modality_contribution`` ``[B, M]``.

        A modality's contribution is the share of the first temporal layer's input drive that
        comes from its slice of the merged features (``|W_m z_m|`` summed over time, weighted by
        attention where there is attention), normalized to sum to 1 over modalities.
        """
        parts, f = self._features(inputs)
        z, a = self._summary(f)
        outputs = self._heads(z)
        if self.config.temporal == "lstm":
            w = self.lstm1.weight_ih_l0
        else:
            w = torch.eye(f.shape[-1], device=f.device)
        drives = []
        start = 0
        for p in parts:  # [B, d, T]
            d = p.shape[1]
            drives.append(torch.linalg.vector_norm(p.transpose(1, 2) @ w[:, start : start + d].T, dim=-1))
            start += d
        drive = torch.stack(drives, dim=-1)  # [B, T, M]
        weights = a.T if a is not None else torch.full(drive.shape[:2], 1.0 / drive.shape[1], device=f.device)
        contrib = (drive * weights.unsqueeze(-1)).sum(dim=1)
        contrib = contrib / contrib.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        result = {name: y for (name, _, _), y in zip(self.config.tasks, outputs, strict=True)}
        result["attention"] = weights
        result["modality_contribution"] = contrib
        return result


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


