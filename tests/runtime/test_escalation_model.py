"""The full-precision model the box escalates unsure windows to: the bundle carries the trained
model's PyTorch weights, `torch-cuda` / `torch-cpu` run them, and the kit chooses the backend."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from fusion_edge.errors import BackendError, BundleError
from fusion_edge.runtime.backends import BackendKind, BackendSpec, open_backend
from fusion_edge.runtime.bundle import read_manifest, verify_bundle
from fusion_edge.runtime.bundle_model import BundleModel, full_model_specs

torch = pytest.importorskip("torch")


def _torch_spec(bundle: Path, kind: BackendKind = BackendKind.TORCH_CPU) -> BackendSpec:
    m = read_manifest(bundle)
    var = next(v for v in m["variants"] if v["name"] == m["fallback"]["torch_variant"])
    return BackendSpec(kind, bundle / var["file"], "fp32", var["model_config"])


def _inputs(bundle: Path, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    return {
        i["name"]: rng.normal(size=(n, len(i["channels"]), int(i["window_samples"]))).astype(np.float32)
        for i in read_manifest(bundle)["inputs"]
    }


def test_bundle_carries_the_trained_model_for_escalation(kit_bundle: Path, trained_run) -> None:
    m = verify_bundle(kit_bundle)  # its sha256 is checked like every variant's
    var = next(v for v in m["variants"] if v["name"] == m["fallback"]["torch_variant"])
    assert (var["file"], var["format"], var["precision"]) == ("model.safetensors", "safetensors", "fp32")
    run_cfg = json.loads((trained_run.path / "config.json").read_text())["model"]
    assert var["model_config"] == run_cfg
    assert set(var["metrics"]) == {t["name"] for t in m["tasks"]}
    # The compressed chain never picks it: it is not an ONNX file.
    fast = BundleModel(kit_bundle, preference=["onnxruntime-cpu"], escalation=False)
    assert fast.chain.active_spec.file.suffix == ".onnx"
    fast.close()


@pytest.mark.parametrize("batch", [1, 5])
def test_torch_backend_answers_like_the_fp32_onnx(kit_bundle: Path, batch: int) -> None:
    full = open_backend(_torch_spec(kit_bundle))
    onnx = open_backend(BackendSpec(BackendKind.ONNXRUNTIME_CPU, kit_bundle / "model_fp32.onnx", "fp32"))
    x = _inputs(kit_bundle, batch)
    a, b = full.run(x), onnx.run(x)
    assert full.name == "torch-cpu" and set(a) == set(b)
    for task in a:
        assert a[task].shape == b[task].shape
        np.testing.assert_allclose(a[task], b[task], atol=1e-4, rtol=1e-4)


def test_kit_choice_of_escalation_backend(kit_bundle: Path) -> None:
    m = read_manifest(kit_bundle)
    kinds = lambda specs: [s.kind.value for s in specs]  # noqa: E731
    assert kinds(full_model_specs(m, kit_bundle, ["onnxruntime-cpu"])) == ["onnxruntime-cpu"]
    assert kinds(full_model_specs(m, kit_bundle, ["tensorrt", "onnxruntime-cuda", "onnxruntime-cpu"])) == [
        "torch-cuda", "onnxruntime-cuda", "onnxruntime-cpu"]
    assert kinds(full_model_specs(m, kit_bundle, ["onnxruntime-cpu"], "torch-cpu")) == ["torch-cpu", "onnxruntime-cpu"]
    with pytest.raises(BundleError, match="'tensorrt' cannot run the full-precision model"):
        full_model_specs(m, kit_bundle, ["onnxruntime-cpu"], "tensorrt")


def test_a_bundle_without_weights_escalates_on_onnxruntime_and_says_why(kit_bundle: Path, caplog) -> None:
    m = read_manifest(kit_bundle)
    old = {**m, "fallback": {k: v for k, v in m["fallback"].items() if k != "torch_variant"}}
    with caplog.at_level(logging.WARNING):
        specs = full_model_specs(old, kit_bundle, ["onnxruntime-cpu"], "torch-cuda")
    assert [s.kind.value for s in specs] == ["onnxruntime-cpu"]
    assert "no PyTorch weights" in caplog.text and "Re-export the bundle" in caplog.text


def test_unsure_windows_are_answered_by_the_torch_model(kit_bundle: Path) -> None:
    model = BundleModel(kit_bundle, preference=["onnxruntime-cpu"], threshold=1.0, escalation_backend="torch-cpu")
    try:
        raw = _inputs(kit_bundle, 3)
        inf = model.infer(raw)
        assert inf.escalated.all() and inf.full_backend == "torch-cpu/fp32"
        expected = open_backend(_torch_spec(kit_bundle)).run(model.normalize(raw))
        for task, value in expected.items():
            np.testing.assert_allclose(inf.outputs[task], value, rtol=1e-6, atol=1e-6)
    finally:
        model.close()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present: the GPU test covers torch-cuda")
def test_without_a_gpu_torch_cuda_falls_through_to_onnxruntime(kit_bundle: Path) -> None:
    model = BundleModel(kit_bundle, preference=["onnxruntime-cpu"], threshold=1.0, escalation_backend="torch-cuda")
    try:
        full = model.escalator.full
        assert full is not None and full.name == "onnxruntime-cpu"
        assert full.counters.load_failures == 1
        assert "torch-cuda: no" in full._errors[0] and "needs a GPU" in full._errors[0]
        assert model.infer(_inputs(kit_bundle, 2)).full_backend == "onnxruntime-cpu/fp32"
    finally:
        model.close()


def test_damaged_weights_are_a_backend_error_not_a_crash(kit_bundle: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(kit_bundle, bundle)
    weights = bundle / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(BackendError, match=r"torch-cpu: cannot load .*model\.safetensors.*re-export"):
        open_backend(_torch_spec(bundle))
    weights.unlink()
    with pytest.raises(BackendError, match="is missing; copy the whole bundle folder again"):
        open_backend(_torch_spec(bundle))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("batch", [1, 22])
def test_torch_cuda_answers_like_the_fp32_onnx(kit_bundle: Path, batch: int) -> None:
    full = open_backend(_torch_spec(kit_bundle, BackendKind.TORCH_CUDA))
    onnx = open_backend(BackendSpec(BackendKind.ONNXRUNTIME_CPU, kit_bundle / "model_fp32.onnx", "fp32"))
    x = _inputs(kit_bundle, batch)
    a, b = full.run(x), onnx.run(x)
    assert full.name == "torch-cuda"
    for task in a:
        np.testing.assert_allclose(a[task], b[task], atol=1e-3, rtol=1e-3)  # cuDNN's own kernels


def test_backend_around_a_model_in_memory_runs_numpy_batches(trained_run) -> None:
    from fusion_edge.runtime.backends import TorchBackend
    from fusion_edge.toolkit.checkpoint import load_run

    model, info = load_run(trained_run.path)
    backend = TorchBackend.from_model(model, "cpu")
    rng = np.random.default_rng(0)
    x = {name: rng.normal(size=(3, c, s)).astype(np.float32) for name, c, s in info.model.modalities}
    out = backend.run(x)
    with torch.no_grad():
        expected = model(*(torch.from_numpy(x[name]) for name, _, _ in info.model.modalities))
    assert backend.name == "torch-cpu" and list(out) == [t[0] for t in info.model.tasks]
    for got, want in zip(out.values(), expected, strict=True):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-6, atol=1e-6)
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="torch-cuda: no CUDA device is visible"):
            TorchBackend.from_model(model, "cuda")
