"""Throughput of the model in PyTorch (issue 5's GPU figure): the measurement itself, on the CPU
here and on CUDA where there is a GPU."""

from __future__ import annotations

import pytest
import torch

from fusion_edge.export.throughput import torch_throughput
from fusion_edge.toolkit.model import ModelConfig, MultimodalCnnLstm


@pytest.fixture(scope="module")
def model(tiny_model: dict) -> MultimodalCnnLstm:
    cfg = ModelConfig(
        modalities=(("imu", 9, 40), ("position", 8, 20)),
        tasks=(("action", "class", 5), ("quality", "regression", 1)),
        value_ranges=((0.0, 0.0), (0.0, 1.0)),
        time_steps=10,
        **tiny_model,
    )
    return MultimodalCnnLstm(cfg).eval()


def test_cpu_throughput_counts_windows(model: MultimodalCnnLstm) -> None:
    r = torch_throughput(model, batch=4, device="cpu", precision="fp32", warmup=1, iters=3)
    assert (r["device"], r["precision"], r["batch"], r["iters"]) == ("cpu", "fp32", 4, 3)
    assert r["ms_per_batch"] > 0
    assert r["windows_per_s"] == pytest.approx(4 * 1e3 / r["ms_per_batch"])
    # The caller's model is left as it was: a copy is cast and moved.
    assert next(model.parameters()).dtype == torch.float32


def test_bad_requests_are_refused(model: MultimodalCnnLstm) -> None:
    with pytest.raises(ValueError, match="unknown precision 'int4'; choose one of fp32, fp16, bf16"):
        torch_throughput(model, device="cpu", precision="int4")
    with pytest.raises(ValueError, match="batch and iters must be >= 1"):
        torch_throughput(model, device="cpu", precision="fp32", batch=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device is visible"):
            torch_throughput(model, device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_throughput_on_cuda(model: MultimodalCnnLstm) -> None:
    r = torch_throughput(model, batch=22, device="cuda", precision="fp16", warmup=2, iters=5)
    assert r["precision"] == "fp16" and r["windows_per_s"] > 0
