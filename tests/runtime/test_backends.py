"""onnxruntime backend on a real ONNX file (built with onnx.helper, no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_edge.errors import BackendError
from fusion_edge.runtime.backends import BackendKind, BackendSpec, OnnxRuntimeBackend, open_backend

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def _model(path):
    # action = mean_over_time(imu) @ W ; quality = sigmoid(mean(action))
    w = helper.make_tensor("W", TensorProto.FLOAT, [3, 2], [1, 0, 0, 1, 1, 1])
    nodes = [
        helper.make_node("ReduceMean", ["imu"], ["m"], axes=[2], keepdims=0),
        helper.make_node("MatMul", ["m", "W"], ["action"]),
        helper.make_node("ReduceMean", ["action"], ["s"], axes=[1], keepdims=0),
        helper.make_node("Sigmoid", ["s"], ["quality"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("imu", TensorProto.FLOAT, ["batch", 3, 8])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 2]),
         helper.make_tensor_value_info("quality", TensorProto.FLOAT, ["batch"])],
        [w],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(m, str(path))
    return path


def test_onnxruntime_cpu_runs_batch_of_any_size(tmp_path):
    be = open_backend(BackendSpec(BackendKind.ONNXRUNTIME_CPU, _model(tmp_path / "m.onnx"), "fp32"))
    for n in (1, 22):
        x = np.random.default_rng(0).normal(size=(n, 3, 8)).astype(np.float32)
        out = be.run({"imu": x})
        m = x.mean(axis=2)
        np.testing.assert_allclose(out["action"], np.column_stack([m[:, 0] + m[:, 2], m[:, 1] + m[:, 2]]), rtol=1e-5)
        assert out["quality"].shape == (n,)
    assert be.name == "onnxruntime-cpu"


def test_missing_provider_is_a_clear_error(tmp_path):
    import onnxruntime as ort

    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the TensorRT provider")
    with pytest.raises(BackendError, match="onnxruntime-tensorrt: onnxruntime here has no TensorrtExecutionProvider"):
        OnnxRuntimeBackend(_model(tmp_path / "m.onnx"), kind=BackendKind.ONNXRUNTIME_TENSORRT)


def test_corrupt_model_file_is_a_load_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(BackendError, match="cannot load"):
        OnnxRuntimeBackend(bad)


def test_tensorrt_backend_needs_tensorrt(tmp_path):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        from fusion_edge.errors import MissingDependencyError

        with pytest.raises(MissingDependencyError, match="tensorrt"):
            open_backend(BackendSpec(BackendKind.TENSORRT, tmp_path / "x.engine", "int8"))
    else:
        pytest.skip("tensorrt is installed: covered by the export engine tests")
