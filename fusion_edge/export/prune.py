"""Structural pruning: convolution channels, projection units, LSTM hidden units and attention
units are really removed, giving a smaller `MultimodalCnnLstm` described by its own
`ModelConfig` (so a pruned model saves, loads and exports like any other).

Importance (per layer, keep the top ``(1 - ratio)`` share of units):

* conv channel: L2 norm of its filter times ``|gamma| / sqrt(var + eps)`` of the BatchNorm after
  it (the channel's effective gain; network-slimming criterion);
* projection unit: L2 norm of its row times the L2 norm of the LSTM input column it feeds;
* LSTM hidden unit: L2 norm of its four gate rows (input and recurrent) times the L2 norm of
  the weights that read it downstream;
* attention unit: L2 norm of its ``W`` row times ``|v|``.

Every modality keeps the same number of channels (the config has one list for all), each its
own best ones. A short fine-tune on the run's own training split recovers most of the loss.

Widths can be rounded to a multiple of ``round_to`` (the export uses 8, like Torch-Pruning's
``round_to``): the SIMD kernels of onnxruntime (and TensorRT's tensor cores) work in blocks of
channels, so an odd width costs the time of the next block and more. Measured at batch 1 on one
x86 core: a 60% prune to widths (13, 19, 26) ran slower than a 50% prune to (16, 24, 32), in
float and in INT8 (docs/export.md, "Pruning").
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from fusion_edge.errors import ConfigError
from fusion_edge.toolkit.checkpoint import Normalization
from fusion_edge.toolkit.dataset import Dataset
from fusion_edge.toolkit.model import ModelConfig, MultimodalCnnLstm, count_parameters
from fusion_edge.toolkit.splits import GroupedSplit

__all__ = [
    "PruneReport",
    "count_flops",
    "pruned_config",
    "ratio_for_budget",
    "prune_model",
    "fine_tune",
    "prune_report",
    "describe_widths",
]


@dataclass(frozen=True)
class PruneReport:
    """Sizes before and after pruning (FLOPs per window: 2 x multiply-accumulates)."""

    ratio: float
    params_before: int
    params_after: int
    flops_before: int
    flops_after: int
    config_after: dict[str, Any]
    fine_tune_epochs: int = 0
    budget: dict[str, int] | None = None  # {"params": N} and/or {"flops": N} when asked for
    round_to: int = 1  # widths rounded to multiples of this

    def to_json(self) -> dict[str, Any]:
        """JSON form (for the manifest)."""
        return dict(self.__dict__)


def _keep(n: int, ratio: float, round_to: int = 1) -> int:
    """Units kept of ``n``: ``n (1 - ratio)``, rounded to the nearest multiple of ``round_to``
    (at least one multiple, at most ``n``). A width that is not pruned, or that is no wider than
    one multiple, stays exact."""
    k = max(1, int(round(n * (1.0 - ratio))))
    if round_to <= 1 or k == n or n <= round_to:
        return k
    return min(n, max(round_to, round_to * int(round(k / round_to))))


def pruned_config(config: ModelConfig, ratio: float, round_to: int = 1) -> ModelConfig:
    """The config of ``config`` with every prunable width shrunk by ``ratio`` (each rounded to a
    multiple of ``round_to``, see the module docstring)."""
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(
            f"prune ratio must be in [0, 1), got {ratio}; e.g. --prune 0.3 removes 30% of units"
        )
    if round_to < 1:
        raise ConfigError(f"prune round-to must be 1 or more, got {round_to}; 1 keeps exact widths")

    def keep(n: int) -> int:
        return _keep(n, ratio, round_to)

    return replace(
        config,
        conv_channels=tuple(keep(c) for c in config.conv_channels),
        latent=keep(config.latent),
        lstm_hidden=tuple(keep(h) for h in config.lstm_hidden),
        attention_dim=keep(config.attention_dim),
    )


def describe_widths(before: ModelConfig, after: ModelConfig) -> str:
    """``"conv 32/48/64 -> 16/16/24, latent 64 -> 24, LSTM 64/64 -> 24/24, attention 32 -> 16"``:
    the widths a prune kept (rounding can keep more or fewer than the ratio says)."""

    def w(v: Any) -> str:
        return "/".join(map(str, v)) if isinstance(v, tuple) else str(v)

    parts = [
        ("conv", before.conv_channels, after.conv_channels),
        ("latent", before.latent, after.latent),
    ]
    if before.temporal == "lstm":
        parts.append(("LSTM", before.lstm_hidden, after.lstm_hidden))
    if before.attention:
        parts.append(("attention", before.attention_dim, after.attention_dim))
    return ", ".join(f"{name} {w(a)} -> {w(b)}" for name, a, b in parts)


def ratio_for_budget(
    config: ModelConfig, *, params: int | None = None, flops: int | None = None, round_to: int = 1
) -> float:
    """The smallest prune ratio whose model fits ``params`` parameters and/or ``flops`` FLOPs per
    window (widths are whole units, so the result is the first ratio at which the rounded widths
    fit; 0.0 when the model already fits).

    Raises:
        ConfigError: no budget given, or not even a 95% prune fits it.
    """
    if params is None and flops is None:
        raise ConfigError("give a parameter or FLOP budget to prune to")

    def fits(ratio: float) -> bool:
        cfg = pruned_config(config, ratio, round_to)
        if params is not None and count_parameters(MultimodalCnnLstm(cfg)) > params:
            return False
        return flops is None or count_flops(cfg) <= flops

    if fits(0.0):
        return 0.0
    hi = 0.95
    if not fits(hi):
        smallest = pruned_config(config, hi, round_to)
        wanted = ", ".join(
            f"{what} {n:,}" for what, n in (("params", params), ("FLOPs", flops)) if n is not None
        )
        raise ConfigError(
            f"even a 95% prune leaves {count_parameters(MultimodalCnnLstm(smallest)):,} parameters "
            f"and {count_flops(smallest):,} FLOPs per window, over the budget ({wanted}); "
            "raise the budget or train a smaller model (--size edge)"
        )
    lo = 0.0
    while hi - lo > 1e-4:
        mid = (lo + hi) / 2
        if fits(mid):
            hi = mid
        else:
            lo = mid
    # Up, not to the nearest: a ratio rounded down can fall back under the width that fits.
    return math.ceil(hi * 1e4) / 1e4


def count_flops(config: ModelConfig) -> int:
    """FLOPs of one window through the model, counted from its config (Conv1d, Linear, LSTM,
    attention; element-wise ops and pooling are left out as they are small and memory bound)."""
    t = config.time_steps
    k = config.kernel_size
    flops = 0
    for _, channels, samples in config.modalities:
        c_in, length = channels, samples
        for c_out in config.conv_channels:
            flops += 2 * c_in * c_out * k * length
            if length % 2 == 0 and length // 2 >= t:
                length //= 2
            c_in = c_out
        flops += 2 * c_in * config.latent * t
    feat = config.latent * len(config.modalities)
    if config.temporal == "lstm":
        h_in = feat
        for h in config.lstm_hidden:
            flops += t * 2 * 4 * h * (h_in + h)
            h_in = h
        feat = h_in
    if config.attention:
        flops += t * (2 * feat * config.attention_dim + 2 * config.attention_dim + 2 * feat)
    head_in = feat * (2 if config.attention and config.temporal == "lstm" else 1)
    flops += sum(2 * head_in * n for _, _, n in config.tasks)
    return int(flops)


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    return torch.sort(torch.topk(scores, k).indices).values


def _gates(keep: torch.Tensor, hidden: int) -> torch.Tensor:
    return torch.cat([keep + g * hidden for g in range(4)])


def _unit_norm_lstm(lstm: nn.LSTM, hidden: int) -> torch.Tensor:
    w = torch.cat([lstm.weight_ih_l0, lstm.weight_hh_l0], dim=1).reshape(4, hidden, -1)
    return w.pow(2).sum(dim=(0, 2)).sqrt()


@torch.no_grad()
def prune_model(model: MultimodalCnnLstm, ratio: float, round_to: int = 1) -> MultimodalCnnLstm:
    """A new, smaller model holding ``model``'s most important units (weights copied); widths
    rounded to multiples of ``round_to`` (`pruned_config`).

    Raises:
        ConfigError: ``ratio`` is out of range, or the model has no LSTM (``temporal="none"``).
    """
    cfg = model.config
    if cfg.temporal != "lstm":
        raise ConfigError(
            "structural pruning supports the CNN-LSTM (temporal='lstm'); export without --prune"
        )
    new_cfg = pruned_config(cfg, ratio, round_to)
    small = MultimodalCnnLstm(new_cfg).eval()
    model = model.cpu().eval()
    h1, h2 = cfg.lstm_hidden
    n1, n2 = new_cfg.lstm_hidden

    # Encoders: conv channels, then the projection rows (latent units) per modality.
    keep_latent = []
    w_ih1 = model.lstm1.weight_ih_l0
    for i, (enc, new_enc) in enumerate(zip(model.encoders, small.encoders, strict=True)):
        convs = [m for m in enc.body if isinstance(m, nn.Conv1d)]
        bns = [m for m in enc.body if isinstance(m, nn.BatchNorm1d)]
        new_convs = [m for m in new_enc.body if isinstance(m, nn.Conv1d)]
        new_bns = [m for m in new_enc.body if isinstance(m, nn.BatchNorm1d)]
        keep_in = torch.arange(convs[0].in_channels)
        for conv, bn, nconv, nbn in zip(convs, bns, new_convs, new_bns, strict=True):
            gain = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).abs()
            score = conv.weight.flatten(1).norm(dim=1) * gain
            keep = _top(score, nconv.out_channels)
            nconv.weight.copy_(conv.weight[keep][:, keep_in])
            nconv.bias.copy_(conv.bias[keep])
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(nbn, name).copy_(getattr(bn, name)[keep])
            nbn.num_batches_tracked.copy_(bn.num_batches_tracked)
            keep_in = keep
        cols = w_ih1[:, i * cfg.latent : (i + 1) * cfg.latent]
        score = enc.project.weight.norm(dim=1) * cols.norm(dim=0)
        keep_lat = _top(score, new_cfg.latent)
        new_enc.project.weight.copy_(enc.project.weight[keep_lat][:, keep_in])
        new_enc.project.bias.copy_(enc.project.bias[keep_lat])
        keep_latent.append(keep_lat + i * cfg.latent)
    in_cols = torch.cat(keep_latent)

    # LSTM 1: its units are read by LSTM 2's input weights.
    score1 = _unit_norm_lstm(model.lstm1, h1) * model.lstm2.weight_ih_l0.norm(dim=0)
    k1 = _top(score1, n1)
    # LSTM 2: its units are read by the attention and the heads (context and last state).
    head_cols = torch.cat([h.weight for h in model.heads]).norm(dim=0)  # [head_in]
    reads = head_cols[:h2] + head_cols[h2:] if head_cols.numel() == 2 * h2 else head_cols
    if model.attention is not None:
        reads = reads + model.attention.w.weight.norm(dim=0)
    score2 = _unit_norm_lstm(model.lstm2, h2) * reads
    k2 = _top(score2, n2)
    for src, dst, keep_rows, keep_in_cols, hidden, keep_h in (
        (model.lstm1, small.lstm1, k1, in_cols, h1, k1),
        (model.lstm2, small.lstm2, k2, k1, h2, k2),
    ):
        rows = _gates(keep_rows, hidden)
        dst.weight_ih_l0.copy_(src.weight_ih_l0[rows][:, keep_in_cols])
        dst.weight_hh_l0.copy_(src.weight_hh_l0[rows][:, keep_h])
        dst.bias_ih_l0.copy_(src.bias_ih_l0[rows])
        dst.bias_hh_l0.copy_(src.bias_hh_l0[rows])

    if model.attention is not None:
        att_score = model.attention.w.weight.norm(dim=1) * model.attention.v.weight[0].abs()
        ka = _top(att_score, new_cfg.attention_dim)
        small.attention.w.weight.copy_(model.attention.w.weight[ka][:, k2])
        small.attention.w.bias.copy_(model.attention.w.bias[ka])
        small.attention.v.weight.copy_(model.attention.v.weight[:, ka])
        head_keep = torch.cat([k2, k2 + h2])
    else:
        head_keep = k2
    for head, new_head in zip(model.heads, small.heads, strict=True):
        new_head.weight.copy_(head.weight[:, head_keep])
        new_head.bias.copy_(head.bias)
    return small


def fine_tune(
    model: MultimodalCnnLstm,
    dataset: Dataset,
    split: GroupedSplit,
    normalization: Normalization,
    *,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> MultimodalCnnLstm:
    """A few epochs of training on the run's own training split, keeping the best validation loss
    (Adam, with training's plateau schedule on the validation loss).

    Uses the run's normalization (not refitted) so the bundle's statistics stay valid.
    """
    # The loss and tensor assembly are training's own: the fixed-weight loss that training
    # validates and selects on (a few epochs are too few to learn task weights anew).
    from fusion_edge.toolkit.train import TrainConfig, compute_loss, fixed_task_weights, make_tensors

    if epochs <= 0:
        return model
    spec = dataset.spec
    tasks = tuple(name for name, _, _ in model.config.tasks)
    player = dataset.player.astype(str)
    tr, va = split.indices(player, "train"), split.indices(player, "val")
    weights = fixed_task_weights(spec, tasks)
    x_tr, y_tr = make_tensors(dataset, tr, normalization, spec, tasks)
    x_va, y_va = make_tensors(dataset, va, normalization, spec, tasks)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    # Training's own plateau schedule: without it the pruned model's regression head stayed
    # 11% worse than before pruning; with it, no worse (docs/export.md, "Pruning").
    recipe = TrainConfig()
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=recipe.plateau_factor, patience=recipe.plateau_patience
    )

    def val_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(compute_loss(model, model(*x_va), y_va, weights)) if va.size else 0.0

    best = (val_loss(), copy.deepcopy(model.state_dict()))
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(tr.size, generator=gen)
        for s in range(0, perm.numel(), batch_size):
            b = perm[s : s + batch_size]
            if b.numel() < 2:
                continue
            opt.zero_grad(set_to_none=True)
            loss = compute_loss(model, model(*[x[b] for x in x_tr]), [y[b] for y in y_tr], weights)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            opt.step()
        v = val_loss()
        sched.step(v)
        if v < best[0]:
            best = (v, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[1])
    return model.eval()


def prune_report(
    before: MultimodalCnnLstm,
    after: MultimodalCnnLstm,
    ratio: float,
    epochs: int,
    budget: dict[str, int] | None = None,
    round_to: int = 1,
) -> PruneReport:
    """Parameters and FLOPs before and after (and the budget the ratio was chosen for)."""
    return PruneReport(
        ratio=float(ratio),
        params_before=count_parameters(before),
        params_after=count_parameters(after),
        flops_before=count_flops(before.config),
        flops_after=count_flops(after.config),
        config_after=after.config.to_json(),
        fine_tune_epochs=int(epochs),
        budget=budget,
        round_to=int(round_to),
    )
