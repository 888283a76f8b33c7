"""Run folders: ``model.safetensors`` (weights) plus ``config.json`` (everything else). No pickle.

``config.json`` is written last and atomically, so a run folder whose training was interrupted
never looks complete.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fusion_edge.errors import CheckpointError
from fusion_edge.file_access import make_ordinary
from fusion_edge.toolkit.dataset import DatasetSpec
from fusion_edge.toolkit.model import ModelConfig, MultimodalCnnLstm
from fusion_edge.toolkit.splits import GroupedSplit

__all__ = ["RUN_FORMAT", "RUN_VERSION", "Normalization", "RunInfo", "save_run", "load_run"]

RUN_FORMAT = "fusion-edge-run"
RUN_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class Normalization:
    """Per-modality, per-channel z-score statistics from the training split."""

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]

    @classmethod
    def fit(cls, inputs: dict[str, np.ndarray]) -> Normalization:
        """Statistics over windows and samples of ``inputs`` (``[N, C, S]`` each)."""
        mean = {k: v.mean(axis=(0, 2)).astype(np.float32) for k, v in inputs.items()}
        std = {k: np.maximum(v.std(axis=(0, 2)), 1e-3).astype(np.float32) for k, v in inputs.items()}
        return cls(mean, std)

    def apply(self, name: str, x: np.ndarray) -> np.ndarray:
        """Normalize ``[N, C, S]`` windows of modality ``name``."""
        return ((x - self.mean[name][None, :, None]) / self.std[name][None, :, None]).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {k: {"mean": self.mean[k].tolist(), "std": self.std[k].tolist()} for k in self.mean}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Normalization:
        """Inverse of ``to_json``."""
        return cls(
            {k: np.asarray(v["mean"], dtype=np.float32) for k, v in d.items()},
            {k: np.asarray(v["std"], dtype=np.float32) for k, v in d.items()},
        )


@dataclass(frozen=True)
class RunInfo:
    """What a run folder says besides the weights."""

    path: Path
    model: ModelConfig
    dataset: DatasetSpec
    normalization: Normalization
    split: GroupedSplit
    train: dict[str, Any]
    history: list[dict[str, Any]]
    metrics: dict[str, Any]


def save_run(
    out: str | Path,
    model: MultimodalCnnLstm,
    dataset: DatasetSpec,
    normalization: Normalization,
    split: GroupedSplit,
    train: dict[str, Any],
    history: list[dict[str, Any]],
    metrics: dict[str, Any],
) -> Path:
    """Write ``model.safetensors`` then ``config.json`` (atomically) into ``out``."""
    from safetensors.torch import save_file

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"cannot create run folder {out}: {exc.strerror}; choose a writable --out") from None
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp_w = out / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp_w), metadata={"format": RUN_FORMAT, "version": str(RUN_VERSION)})
    make_ordinary(tmp_w)  # safetensors writes 0600; a run is copied and exported by others
    os.replace(tmp_w, out / WEIGHTS_FILE)
    doc = {
        "format": RUN_FORMAT,
        "version": RUN_VERSION,
        "model": model.config.to_json(),
        "dataset": dataset.to_json(),
        "normalization": normalization.to_json(),
        "split": split.to_json(),
        "train": train,
        "history": history,
        "metrics": metrics,
    }
    tmp_c = out / (CONFIG_FILE + ".tmp")
    tmp_c.write_text(json.dumps(doc, indent=2))
    os.replace(tmp_c, out / CONFIG_FILE)
    return out


def _not_a_run(run: Path) -> str:
    """Why ``run`` has no config.json, naming what the folder is when it is something else."""
    train = f"train one with 'fusion-edge train --data DIR --out {run}'"
    if not run.exists():
        return f"{run} is not a training run: it does not exist (fix the path, or {train})"
    if not run.is_dir():
        return f"{run} is not a training run: it is a file, and a run is a folder ({train})"
    manifest = run / "manifest.json"
    if manifest.is_file():
        try:
            source = json.loads(manifest.read_text()).get("source_run")
        except (OSError, ValueError, AttributeError):
            source = None
        made = f" (made from the run {source})" if isinstance(source, str) else ""
        return (f"{run} is a bundle from 'fusion-edge export'{made}, not a training run: give "
                "the training run folder, the one with config.json and model.safetensors")
    if (run / "dataset.json").is_file():
        return (f"{run} is a dataset, not a training run: train one with 'fusion-edge train "
                f"--data {run} --out RUN', then give RUN")
    return f"{run} is not a training run: {CONFIG_FILE} is missing ({train})"


def read_run_info(run: str | Path) -> RunInfo:
    """Read and validate ``config.json`` of a run folder (without loading torch weights)."""
    run = Path(run)
    cfg_path = run / CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(_not_a_run(run))
    try:
        doc = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({exc}); the run folder is corrupt, retrain") from None
    if doc.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{cfg_path} is not a fusion-edge run (format {doc.get('format')!r})")
    if doc.get("version") != RUN_VERSION:
        raise CheckpointError(
            f"{cfg_path} has run format version {doc.get('version')}, this fusion-edge reads "
            f"version {RUN_VERSION}: retrain, or use the fusion-edge version that wrote it"
        )
    try:
        return RunInfo(
            path=run,
            model=ModelConfig.from_json(doc["model"]),
            dataset=DatasetSpec.from_json(doc["dataset"], file=cfg_path),
            normalization=Normalization.from_json(doc["normalization"]),
            split=GroupedSplit.from_json(doc["split"]),
            train=doc["train"],
            history=doc["history"],
            metrics=doc["metrics"],
        )
    except KeyError as exc:
        raise CheckpointError(f"{cfg_path} lacks the key {exc}; the run folder is incomplete, retrain") from None


def load_run(run: str | Path, device: str = "cpu") -> tuple[MultimodalCnnLstm, RunInfo]:
    """Rebuild the model of a run folder and load its weights (safetensors, strict)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    info = read_run_info(run)
    weights = Path(run) / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing: the run did not finish; retrain")
    try:
        state = load_file(str(weights), device=device)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights} cannot be read ({exc}); the file is corrupt, retrain") from None
    model = MultimodalCnnLstm(info.model)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # same layer names, other sizes
        raise CheckpointError(
            f"{weights} does not match its config.json ({str(exc).splitlines()[-1].strip()}): "
            "the weights come from another model; retrain"
        ) from None
    if missing or unexpected:
        raise CheckpointError(
            f"{weights} does not match its config.json (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}): the weights come from another model; retrain"
        )
    model.to(device).eval()
    return model, info
