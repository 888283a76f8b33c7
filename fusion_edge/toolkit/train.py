"""Training: Adam, plateau scheduler, early stopping, gradient clipping, AMP on CUDA, and DDP
when launched under ``torchrun``. Splits are grouped by player.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fusion_edge.errors import CheckpointError, ConfigError, DatasetError
from fusion_edge.toolkit.checkpoint import CONFIG_FILE, WEIGHTS_FILE, Normalization, save_run
from fusion_edge.toolkit.dataset import Dataset, DatasetSpec
from fusion_edge.toolkit.metrics import classification_metrics, regression_metrics
from fusion_edge.toolkit.model import ModelConfig, MultimodalCnnLstm
from fusion_edge.toolkit.outputs import check_writable
from fusion_edge.toolkit.splits import GroupedSplit, split_by_player
from fusion_edge.toolkit.task_weighting import WEIGHTINGS, UncertaintyWeighting

__all__ = [
    "TrainConfig",
    "TrainResult",
    "train",
    "predict",
    "make_tensors",
    "compute_loss",
    "task_losses",
    "fixed_task_weights",
    "resolve_value_ranges",
    "untrained_classes",
]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (REFERENCE.md: Adam 5e-4, plateau scheduler, early stopping)."""

    epochs: int = 40
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    early_stop_patience: int = 8
    plateau_patience: int = 3
    plateau_factor: float = 0.5
    task_weights: dict[str, float] = field(default_factory=dict)  # default: class 1, regression 10
    # "fixed": the weights above stay; "uncertainty": they are where learned weights start
    # (task_weighting.py). A single-task model has nothing to weigh either way.
    task_weighting: str = "fixed"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda"
    amp: bool = True  # mixed precision on CUDA only

    def __post_init__(self) -> None:
        # Refused when the config is made, before any data is read or tensor built.
        if self.task_weighting not in WEIGHTINGS:
            raise ValueError(f"task_weighting must be one of {', '.join(WEIGHTINGS)}, got {self.task_weighting!r}")


@dataclass
class TrainResult:
    """What training produced."""

    model: MultimodalCnnLstm
    split: GroupedSplit
    normalization: Normalization
    history: list[dict[str, Any]]
    best_epoch: int
    val_metrics: dict[str, Any]
    seconds: float
    epoch_seconds: float
    task_weights: dict[str, float] = field(default_factory=dict)  # the weights training ended with
    world_size: int = 1  # processes that trained it together (DDP under torchrun), 1 otherwise
    notes: list[str] = field(default_factory=list)  # what the user should know (see untrained_classes)


def _dist_info() -> tuple[bool, int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world > 1 or "LOCAL_RANK" in os.environ, world, rank, local


def _device(choice: str, local_rank: int) -> torch.device:
    if choice == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise DatasetError("--device cuda was asked for, but torch sees no CUDA GPU; use --device cpu")
    if choice != "cpu" and not (choice == "cuda" or (choice.startswith("cuda:") and choice[5:].isdigit())):
        raise ConfigError(f"unknown --device '{choice}': choose auto, cpu, cuda or cuda:N")
    return torch.device(choice)


def make_tensors(ds: Dataset, idx: np.ndarray, norm: Normalization, spec: DatasetSpec, tasks: tuple[str, ...]):
    """Normalized inputs (one tensor per modality) and targets (one per task) of windows ``idx``.

    Class targets are int64 (-1: no label), regression targets float32 (NaN: no label).
    """
    xs = [torch.from_numpy(norm.apply(m.name, ds.inputs[m.name][idx])) for m in spec.modalities]
    ys = []
    for name in tasks:
        y = ds.targets[name][idx]
        ys.append(torch.from_numpy(y.astype(np.int64 if spec.task(name).is_classification else np.float32)))
    return xs, ys


def task_losses(model: MultimodalCnnLstm, outputs, ys) -> list[torch.Tensor | None]:
    """Per task, in the model's order: cross-entropy (class) or MSE (regression) over the
    labelled windows (-1 / NaN mean no label), or None where the batch has no label of it.

    A regression error is taken in units of the head's range (``value_ranges``), so a task
    weight means the same for a 0-1 score and a 0-10 RPE; on a 0-1 range it is the plain MSE.
    """
    losses: list[torch.Tensor | None] = []
    ranges = model.config.value_ranges or tuple((0.0, 0.0) for _ in model.config.tasks)
    for (_, kind, _), (lo, hi), out, y in zip(model.config.tasks, ranges, outputs, ys, strict=True):
        if kind == "class":
            labelled = bool((y >= 0).any())
            losses.append(nn.functional.cross_entropy(out.float(), y, ignore_index=-1) if labelled else None)
        else:
            keep = ~torch.isnan(y)
            width = float(hi - lo) if hi > lo else 1.0
            losses.append(
                nn.functional.mse_loss(out.float()[keep] / width, y[keep] / width) if keep.any() else None
            )
    return losses


def untrained_classes(dataset: Dataset, tasks: tuple[str, ...], split: GroupedSplit) -> list[str]:
    """One note per class that no training window has, naming the players who do have it.

    A class only some players show (one goalkeeper's dives) can land wholly in the validation
    or test split; the model then never sees it and can never predict it, which the accuracy
    alone does not say.
    """
    notes = []
    players = dataset.player.astype(str)
    train_idx = split.indices(dataset.player, "train")
    for name in tasks:
        task = dataset.spec.task(name)
        if not task.is_classification:
            continue
        y = dataset.targets[name]
        seen = np.bincount(y[train_idx][y[train_idx] >= 0], minlength=task.num_classes)
        for k in np.flatnonzero(seen == 0):
            having = sorted(set(players[y == k].tolist()))
            if not having:
                continue  # a label no window carries anywhere: the dataset's, not the split's
            where = ", ".join(
                f"{p} ({'validation' if p in split.val else 'test'})" for p in having[:5]
            ) + (f" and {len(having) - 5} more" if len(having) > 5 else "")
            notes.append(
                f"class '{task.labels[k]}' of task '{name}' has no training window: only {where} "
                f"{'shows' if len(having) == 1 else 'show'} it, so the model never learns it. "
                "Train with another --seed (another split), or record it for more players"
            )
    return notes


#: How far past the training windows' values a head without a dataset range reaches, as a
#: fraction of their spread, each side: new players may score a little beyond them.
RANGE_MARGIN = 0.1


def resolve_value_ranges(model_config: ModelConfig, dataset: Dataset, idx: np.ndarray) -> ModelConfig:
    """``model_config`` with a range for every regression task whose dataset has none.

    The head is a sigmoid scaled to its range, so a task without one (``value_range`` null) is
    given the range of its values in the windows ``idx`` (the training split), widened by
    `RANGE_MARGIN` of their spread each side; the run's config records it. Without it the head
    stayed in [0, 1] whatever the values, and a 3-7.5 RPE could never be predicted.
    """
    ranges = list(model_config.value_ranges or tuple((0.0, 0.0) for _ in model_config.tasks))
    for i, (name, kind, _) in enumerate(model_config.tasks):
        if kind != "regression" or dataset.spec.task(name).value_range is not None:
            continue
        y = dataset.targets[name][idx]
        y = y[np.isfinite(y)]
        if not y.size:
            continue  # nothing to learn it from; the task has no loss either
        lo, hi = float(y.min()), float(y.max())
        spread = hi - lo if hi > lo else max(abs(hi), 1.0)
        ranges[i] = (lo - RANGE_MARGIN * spread, hi + RANGE_MARGIN * spread)
    return replace(model_config, value_ranges=tuple(ranges))


def fixed_task_weights(
    spec: DatasetSpec, tasks: tuple[str, ...], overrides: dict[str, float] | None = None
) -> dict[str, float]:
    """The fixed multitask loss weights: ``overrides`` where given, else class 1, regression 10."""
    overrides = overrides or {}
    return {name: overrides.get(name, 1.0 if spec.task(name).is_classification else 10.0) for name in tasks}


def compute_loss(model: MultimodalCnnLstm, outputs, ys, weights: dict[str, float]) -> torch.Tensor:
    """The multitask loss with fixed weights: the sum of `task_losses` times ``weights[task]``.
    Validation, model selection and the scheduler use it whatever the training weighting."""
    total = outputs[0].new_zeros(())
    for (name, _, _), loss in zip(model.config.tasks, task_losses(model, outputs, ys), strict=True):
        if loss is not None:
            total = total + weights[name] * loss
    return total


# The private names predate the public ones; kept so existing imports keep working.
_tensors = make_tensors
_loss = compute_loss


@torch.no_grad()
def _average_buffers(model: nn.Module, world: int) -> None:
    """Average the batch-norm running statistics over the DDP ranks.

    DDP keeps the parameters identical, but each rank's last training batch updates its own
    running statistics after DDP's buffer broadcast, so without this the ranks would validate
    (and keep) slightly different models.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            for buf in (module.running_mean, module.running_var):
                torch.distributed.all_reduce(buf)
                buf /= world


def _from_rank0(value: float, device: torch.device) -> float:
    """Rank 0's value on every rank: early stopping and the scheduler must decide alike, or a
    rank that stops first leaves the others waiting in their next all-reduce."""
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.broadcast(t, src=0)
    return float(t.item())


@torch.no_grad()
def predict(model: nn.Module, xs: list[torch.Tensor], batch_size: int = 256, device: str | torch.device = "cpu"):
    """Run the model over in-memory inputs; returns one numpy array per task output."""
    model.eval()
    n = xs[0].shape[0]
    outs: list[list[np.ndarray]] = []
    for s in range(0, n, batch_size):
        batch = [x[s : s + batch_size].to(device) for x in xs]
        res = model(*batch)
        if not outs:
            outs = [[] for _ in res]
        for o, r in zip(outs, res, strict=True):
            o.append(r.float().cpu().numpy())
    return [np.concatenate(o) for o in outs]


def task_metrics(
    config: ModelConfig, spec: DatasetSpec, outputs: list[np.ndarray], ys: list[np.ndarray]
) -> dict[str, Any]:
    """Metrics per task from model outputs (logits / values) and targets."""
    res: dict[str, Any] = {}
    ranges = config.value_ranges or tuple((0.0, 0.0) for _ in config.tasks)
    for (name, kind, _), head_range, out, y in zip(config.tasks, ranges, outputs, ys, strict=True):
        task = spec.task(name)
        if kind == "class":
            res[name] = classification_metrics(y, out.argmax(axis=1), task.labels)
        else:
            # The dataset's range, else the one training gave the head (resolve_value_ranges).
            res[name] = regression_metrics(y, out, task.value_range or tuple(head_range))
    return res


def train(
    dataset: Dataset,
    model_config: ModelConfig,
    config: TrainConfig = TrainConfig(),
    *,
    split: GroupedSplit | None = None,
    show_progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``model_config`` on ``dataset``; returns the best model (lowest validation loss)."""
    distributed, world, rank, local_rank = _dist_info()
    device = _device(config.device, local_rank)
    if distributed and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)

    spec = dataset.spec
    tasks = tuple(name for name, _, _ in model_config.tasks)
    split = split or split_by_player(
        dataset.player, val=config.val_fraction, test=config.test_fraction, seed=config.seed
    )
    tr_idx, va_idx = split.indices(dataset.player, "train"), split.indices(dataset.player, "val")
    if tr_idx.size == 0 or va_idx.size == 0:
        raise DatasetError("the split left no training or validation windows; add players")
    norm = Normalization.fit({m.name: dataset.inputs[m.name][tr_idx] for m in spec.modalities})
    model_config = resolve_value_ranges(model_config, dataset, tr_idx)
    weights = fixed_task_weights(spec, tasks, config.task_weights)
    x_tr, y_tr = _tensors(dataset, tr_idx, norm, spec, tasks)
    x_va, y_va = _tensors(dataset, va_idx, norm, spec, tasks)

    model = MultimodalCnnLstm(model_config).to(device)
    net: nn.Module = model
    if distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    learned = None
    if config.task_weighting == "uncertainty" and len(tasks) > 1:
        learned = UncertaintyWeighting(
            [kind for _, kind, _ in model_config.tasks], [weights[name] for name in tasks]
        ).to(device)
    groups = [{"params": list(model.parameters())}]
    if learned is not None:  # the log-variances are not weights to shrink
        groups.append({"params": list(learned.parameters()), "weight_decay": 0.0})
    opt = torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=config.plateau_factor, patience=config.plateau_patience
    )
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    n = tr_idx.size
    gen = torch.Generator().manual_seed(config.seed)
    best = (float("inf"), 0, copy.deepcopy(model.state_dict()))
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    epoch_times = []
    progress = _progress(show_progress and rank == 0)
    with progress:
        bar = progress.add_task("training", total=config.epochs) if progress else None
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            net.train()
            perm = torch.randperm(n, generator=gen)
            # Each rank takes its own slice of the shuffled order (DDP): same seed, disjoint data.
            if distributed:  # equal shares, so every rank runs the same number of steps
                perm = perm[: (perm.numel() // world) * world][rank::world]
            total = 0.0
            batches = 0
            for s in range(0, perm.numel(), config.batch_size):
                b = perm[s : s + config.batch_size]
                if b.numel() < 2:
                    continue
                xs = [x[b].to(device, non_blocking=True) for x in x_tr]
                ys = [y[b].to(device, non_blocking=True) for y in y_tr]
                opt.zero_grad(set_to_none=True)
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                    outputs = net(*xs)
                    if learned is None:
                        loss = _loss(model, outputs, ys, weights)
                    else:
                        loss = learned(task_losses(model, outputs, ys))
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                if learned is not None and distributed:  # outside DDP: average their gradients here
                    for p in learned.parameters():
                        if p.grad is not None:
                            torch.distributed.all_reduce(p.grad)
                            p.grad /= world
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                scaler.step(opt)
                scaler.update()
                total += float(loss.detach())
                batches += 1
            if distributed:
                _average_buffers(model, world)
            val_out = predict(model, x_va, device=device)
            with torch.no_grad():
                val_loss = float(
                    _loss(model, [torch.from_numpy(o) for o in val_out], y_va, weights)
                )
            if distributed:
                val_loss = _from_rank0(val_loss, device)
            metrics = task_metrics(model_config, spec, val_out, [y.numpy() for y in y_va])
            sched.step(val_loss)
            epoch_times.append(time.perf_counter() - t0)
            row = {
                "epoch": epoch,
                "train_loss": total / max(batches, 1),
                "val_loss": val_loss,
                "lr": opt.param_groups[0]["lr"],
                "train_windows": int(perm.numel()),  # this process's share of the epoch
                **({"task_weights": dict(zip(tasks, learned.weights(), strict=True))} if learned else {}),
                "seconds": epoch_times[-1],
                **{f"val_{k}": _headline(v) for k, v in metrics.items()},
            }
            history.append(row)
            if on_epoch:
                on_epoch(row)
            if val_loss < best[0]:
                best = (val_loss, epoch, copy.deepcopy(model.state_dict()))
            if progress:
                progress.update(bar, advance=1, description=_describe(row))
            if epoch - best[1] >= config.early_stop_patience:
                break
    model.load_state_dict(best[2])
    val_out = predict(model, x_va, device=device)
    val_metrics = task_metrics(model_config, spec, val_out, [y.numpy() for y in y_va])
    model.cpu().eval()
    return TrainResult(
        model=model,
        split=split,
        normalization=norm,
        history=history,
        best_epoch=best[1],
        val_metrics=val_metrics,
        seconds=time.perf_counter() - start,
        epoch_seconds=float(np.median(epoch_times)),
        task_weights=dict(zip(tasks, learned.weights(), strict=True)) if learned else dict(weights),
        world_size=world,
        notes=untrained_classes(dataset, tasks, split),
    )


def _headline(m: dict[str, Any]) -> float | None:
    """Accuracy or MAE; None for a task with no labelled validation window."""
    return m["accuracy"] if "accuracy" in m else m["mae"]


def _describe(row: dict[str, Any]) -> str:
    parts = [f"epoch {row['epoch']}", f"val loss {row['val_loss']:.3f}"]
    parts += [
        f"{k[4:]} {'-' if v is None else format(v, '.3f')}"
        for k, v in row.items()
        if k.startswith("val_") and k != "val_loss"
    ]
    return " | ".join(parts)


class _NoProgress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

    def __bool__(self) -> bool:
        return False


def _progress(enabled: bool):
    if not enabled:
        return _NoProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def check_run_out(out: str | Path, *, overwrite: bool) -> None:
    """Refuse an unwritable ``out``, or one holding a run already unless ``overwrite``."""
    out = check_writable(out, "--out", folder=True)
    held = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if (out / f).exists()]
    if held and not overwrite:
        raise CheckpointError(
            f"{out} already holds a training run ({', '.join(held)}); choose another --out, or "
            "pass --overwrite to replace it"
        )


def train_run(
    data: str | Path,
    out: str | Path,
    *,
    size: str = "edge",
    tasks: tuple[str, ...] | None = None,
    config: TrainConfig = TrainConfig(),
    model_overrides: dict[str, Any] | None = None,
    show_progress: bool = True,
    overwrite: bool = True,
) -> tuple[TrainResult, Path | None]:
    """Open a dataset, train, and write the run folder (rank 0 only under DDP).

    ``out`` is checked before training starts: it must be writable, and with
    ``overwrite=False`` (what ``fusion-edge train`` passes unless ``--overwrite``) a folder that
    already holds a run is refused instead of being replaced.
    """
    check_run_out(out, overwrite=overwrite)
    dataset = Dataset.open(data)
    mcfg = ModelConfig.for_dataset(dataset.spec, size, tasks, **(model_overrides or {}))
    result = train(dataset, mcfg, config, show_progress=show_progress)
    _, _, rank, _ = _dist_info()
    path = None
    if rank == 0:
        path = save_run(
            out,
            result.model,
            dataset.spec,
            result.normalization,
            result.split,
            {**asdict(config), "best_epoch": result.best_epoch, "seconds": result.seconds,
             "epoch_seconds": result.epoch_seconds, "data": str(data),
             "task_weights_final": result.task_weights, "world_size": result.world_size},
            result.history,
            {"val": result.val_metrics},
        )
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return result, path
