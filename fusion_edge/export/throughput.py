"""Throughput of a model in PyTorch on one device and precision: windows per second at a batch.

Issue 5 asks for the FP16 throughput of the full model on a GPU for a 22-player batch; the
box's full-model fallback runs the same way (PyTorch on CUDA). `torch_throughput` times a copy
of the model with its weights and inputs cast to ``dtype`` (``model.half()`` for FP16; weights
do not change the time, so a model with random weights of the right shape is as good as a
trained one). On CUDA the calls are timed with CUDA events around the whole loop, after a
synchronised warm-up; elsewhere with the wall clock. Only torch and the model are imported, so
it runs on a GPU machine that has torch and nothing else of ours installed.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from fusion_edge.toolkit.model import MultimodalCnnLstm

__all__ = ["torch_throughput", "DTYPES"]

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def torch_throughput(
    model: MultimodalCnnLstm,
    *,
    batch: int = 22,
    device: str = "cuda",
    precision: str = "fp16",
    warmup: int = 20,
    iters: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Time ``iters`` forward passes of ``batch`` windows; return ms per batch and windows/s.

    Returns ``{"device", "precision", "batch", "iters", "ms_per_batch", "windows_per_s"}``.

    Raises:
        ValueError: an unknown precision, a batch or iteration count under 1, or a CUDA device
            asked for where none is visible.
    """
    if precision not in DTYPES:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(DTYPES)}")
    if batch < 1 or iters < 1 or warmup < 0:
        raise ValueError(f"batch and iters must be >= 1 and warmup >= 0, got {batch}, {iters}, {warmup}")
    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA device is visible; run on a machine with an NVIDIA GPU")
    dtype = DTYPES[precision]
    m = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    g = torch.Generator().manual_seed(seed)
    xs = [
        torch.randn(batch, c, s, generator=g).to(device=device, dtype=dtype)
        for _, c, s in model.config.modalities
    ]
    with torch.inference_mode():
        for _ in range(warmup):
            m(*xs)
        if cuda:
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                m(*xs)
            end.record()
            torch.cuda.synchronize(device)
            total_ms = start.elapsed_time(end)
        else:
            t0 = time.perf_counter()
            for _ in range(iters):
                m(*xs)
            total_ms = (time.perf_counter() - t0) * 1e3
    ms = total_ms / iters
    return {
        "device": torch.cuda.get_device_name(device) if cuda else device,
        "precision": precision,
        "batch": batch,
        "iters": iters,
        "ms_per_batch": ms,
        "windows_per_s": batch * 1e3 / ms,
    }
