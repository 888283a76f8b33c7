"""Run under ``torch.distributed.run`` by test_ddp.py: train, then report what this rank saw.

    python -m torch.distributed.run --standalone --nproc_per_node N tests/toolkit/ddp_worker.py DATA OUT DEVICE

Each rank writes ``OUT/rank<r>.json``: its rank and world size, a hash of the final weights
(DDP keeps the replicas identical, so every rank must report the same one), its per-epoch
history and the validation metrics.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from fusion_edge.toolkit.dataset import Dataset
from fusion_edge.toolkit.model import ModelConfig
from fusion_edge.toolkit.train import TrainConfig, train

TINY = {"conv_channels": (8, 8, 8), "latent": 8, "lstm_hidden": (8, 8), "attention_dim": 4}


def main() -> None:
    data, out, device = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(1)
    ds = Dataset.open(data)
    cfg = ModelConfig.for_dataset(ds.spec, **TINY)
    result = train(
        ds, cfg, TrainConfig(epochs=6, batch_size=16, lr=3e-3, device=device, seed=0, early_stop_patience=100),
        show_progress=False,
    )
    digest = hashlib.sha256()
    for name, tensor in sorted(result.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    rank = int(os.environ["RANK"])
    (out / f"rank{rank}.json").write_text(json.dumps({
        "rank": rank,
        "world_size": result.world_size,
        "weights_sha256": digest.hexdigest(),
        "history": result.history,
        "val_metrics": result.val_metrics,
        "train_windows_total": int(result.split.indices(ds.player, "train").size),
    }))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
