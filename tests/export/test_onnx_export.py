"""ONNX export: opset, dynamic batch, metadata, simplification, parity with PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from fusion_edge.errors import BundleError
from fusion_edge.export.onnx_export import (
    OPSET,
    check_onnx,
    export_onnx,
    onnx_session,
    read_metadata,
)
from fusion_edge.toolkit.checkpoint import load_run


@pytest.fixture(scope="module")
def exported(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory):
    model, info = load_run(tiny_run)
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    export_onnx(model, path, metadata={"model_config": model.config.to_json(), "note": "hi"})
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((30, c, s)).astype(np.float32) for _, c, s in model.config.modalities]
    return model, path, xs


def test_opset_names_and_metadata(exported) -> None:
    model, path, _ = exported
    proto = onnx.load(str(path))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    assert [i.name for i in proto.graph.input] == ["imu", "position"]
    assert [o.name for o in proto.graph.output] == ["action", "quality"]
    meta = read_metadata(path)
    assert meta["note"] == "hi"
    assert meta["model_config"]["lstm_hidden"] == list(model.config.lstm_hidden)


def test_lstm_zero_states_are_dropped(exported) -> None:
    _, path, _ = exported
    proto = onnx.load(str(path))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("LSTM") == 2
    assert "ConstantOfShape" not in ops
    for n in proto.graph.node:
        if n.op_type == "LSTM":
            assert len(n.input) <= 5  # no initial_h / initial_c


def test_encoders_run_as_2d_convolutions_between_one_unsqueeze_and_one_squeeze(exported) -> None:
    """convs_as_2d: every Conv is 2-D (onnxruntime's NCHWc kernels), each modality is unsqueezed
    once and the merged encoders squeezed once; the parity tests below hold the numbers."""
    _, path, _ = exported
    proto = onnx.load(str(path))
    inits = {i.name: i for i in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert convs and all(len(inits[n.input[1]].dims) == 4 for n in convs)
    for n in convs:
        kernel = [a.ints for a in n.attribute if a.name == "kernel_shape"][0]
        assert kernel[0] == 1
    unsq = [n for n in proto.graph.node if n.name.endswith("/Unsqueeze2d")]
    sq = [n for n in proto.graph.node if n.name.endswith("/Squeeze1d")]
    assert sorted(n.input[0] for n in unsq) == ["imu", "position"]
    assert len(sq) == 1


def test_convs_as_2d_leaves_a_graph_without_1d_convolutions_alone() -> None:
    from onnx import TensorProto, helper

    from fusion_edge.export.onnx_export import convs_as_2d

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    proto = helper.make_model(g)
    before = proto.SerializeToString()
    assert convs_as_2d(proto).SerializeToString() == before


@pytest.mark.parametrize("batch", [1, 22])
def test_dynamic_batch_matches_torch(exported, batch: int) -> None:
    model, path, xs = exported
    idx = np.arange(batch) % xs[0].shape[0]
    feed = {"imu": xs[0][idx], "position": xs[1][idx]}
    got = onnx_session(path).run(None, feed)
    with torch.no_grad():
        want = model(*[torch.from_numpy(v) for v in feed.values()])
    assert got[0].shape == (batch, 3) and got[1].shape == (batch,)
    np.testing.assert_allclose(got[0], want[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(got[1], want[1].numpy(), atol=1e-4)


def test_check_onnx_reports_parity_and_catches_a_wrong_model(exported, tiny_run: Path) -> None:
    model, path, xs = exported
    res = check_onnx(path, model, xs, precision="fp32", squad_size=7)
    assert res["batches_checked"] == [1, 7]
    assert res["parity"]["action"]["top1_agreement"] == 1.0
    other, _ = load_run(tiny_run)
    with torch.no_grad():
        for p in other.heads.parameters():
            p.add_(1.0)
    with pytest.raises(BundleError, match="differs from PyTorch"):
        check_onnx(path, other, xs, precision="fp32")


def test_convs_as_2d_squeezes_before_a_concat_along_samples() -> None:
    """A Concat along the samples axis (2 in 1-D, 3 in 2-D) is not layout-free: the region is
    squeezed back before it, so the graph still computes the same thing."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from fusion_edge.export.onnx_export import convs_as_2d

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3)).astype(np.float32), "w")
    g = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3], pads=[1, 1]),
            helper.make_node("Concat", ["c", "c"], ["y"], axis=2),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16])],
        [w],
    )
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = 9
    x = np.random.default_rng(1).standard_normal((1, 3, 8)).astype(np.float32)
    def run(p):
        sess = ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, {"x": x})[0]
    want = run(proto)
    got = run(convs_as_2d(proto))
    assert got.shape == (1, 4, 16)
    np.testing.assert_allclose(got, want, atol=1e-5)
