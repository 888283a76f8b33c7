"""FP16 and INT8 variants: what is quantized, what stays float, and that they still run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from fusion_edge.calibration.quant_sets import CalibrationSet
from fusion_edge.export.onnx_export import export_onnx, onnx_session
from fusion_edge.export.quantize import (
    convert_fp16,
    node_groups,
    quantize_int8_cpu,
    quantize_int8_tensorrt,
)
from fusion_edge.toolkit.checkpoint import load_run


@pytest.fixture(scope="module")
def fp32(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory):
    model, _ = load_run(tiny_run)
    folder = tmp_path_factory.mktemp("q")
    path = export_onnx(model, folder / "fp32.onnx")
    rng = np.random.default_rng(1)
    calib = CalibrationSet(
        {
            n: rng.standard_normal((32, c, s)).astype(np.float32)
            for n, c, s in model.config.modalities
        },
        np.arange(32),
    )
    return model, path, folder, calib


def _ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def _run(path: Path, model) -> list[np.ndarray]:
    rng = np.random.default_rng(2)
    feed = {
        n: rng.standard_normal((4, c, s)).astype(np.float32) for n, c, s in model.config.modalities
    }
    return onnx_session(path).run(None, feed)


def test_fp16_keeps_float32_io_and_float_lstm(fp32) -> None:
    model, src, folder, _ = fp32
    dst = convert_fp16(src, folder / "fp16.onnx")
    proto = onnx.load(str(dst))
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in proto.graph.input)
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in proto.graph.output)
    dtypes = {numpy_helper.to_array(i).dtype for i in proto.graph.initializer}
    assert np.dtype(np.float16) in dtypes
    out16, out32 = _run(dst, model), _run(src, model)
    np.testing.assert_allclose(out16[0], out32[0], atol=5e-2)


def test_int8_cpu_quantizes_convs_and_lstm(fp32) -> None:
    model, src, folder, calib = fp32
    dst = quantize_int8_cpu(src, folder / "int8.onnx", calib)
    ops = _ops(dst)
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
    # QOperator (the default): fused int8 operators, no float Conv/MatMul/Gemm left.
    # Per modality: the convolutions plus the projection (a kernel-1 convolution).
    assert ops.count("QLinearConv") == (len(model.config.conv_channels) + 1) * 2
    assert not {"Conv", "MatMul", "Gemm"} & set(ops)
    # The encoders stay int8 from input to LSTM: ReLU folded, no float round trip per block.
    assert "Relu" not in ops and "QLinearConcat" in ops
    assert ops.count("DequantizeLinear") < ops.count("QLinearConv")
    assert dst.stat().st_size < src.stat().st_size / 3.0
    assert np.isfinite(_run(dst, model)[0]).all()


def test_int8_qoperator_compact_is_smaller_and_agrees_with_qdq(fp32) -> None:
    model, src, folder, calib = fp32
    qdq = quantize_int8_cpu(src, folder / "qdq.onnx", calib, int8_format="qdq", compact=False)
    qop = quantize_int8_cpu(src, folder / "qop.onnx", calib)
    assert "QLinearConv" not in _ops(qdq) and _ops(qdq).count("DequantizeLinear") > 10
    assert qop.stat().st_size < qdq.stat().st_size * 0.9
    proto = onnx.load(str(qop))
    assert not proto.graph.value_info and all(len(n.name) <= 4 for n in proto.graph.node)
    # The interface keeps its names; the model still reads the same.
    assert [i.name for i in proto.graph.input] == [m for m, _, _ in model.config.modalities]
    assert [o.name for o in proto.graph.output] == [t for t, _, _ in model.config.tasks]
    a, b = _run(qdq, model), _run(qop, model)
    assert np.mean(a[0].argmax(1) == b[0].argmax(1)) >= 0.75
    np.testing.assert_allclose(a[1], b[1], atol=0.1)


def test_compact_graph_keeps_the_model_identical(fp32) -> None:
    from fusion_edge.export.onnx_export import compact_graph

    model, src, folder, _ = fp32
    proto = onnx.load(str(src))
    onnx.save(compact_graph(proto), str(folder / "compact.onnx"))
    onnx.checker.check_model(str(folder / "compact.onnx"), full_check=True)
    for a, b in zip(_run(src, model), _run(folder / "compact.onnx", model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_int8_exclusions_stay_float(fp32) -> None:
    model, src, folder, calib = fp32
    groups = node_groups(src)
    assert set(groups) >= {"attention", "heads", "lstm", "first_conv", "projections"}
    dst = quantize_int8_cpu(src, folder / "int8x.onnx", calib, exclude=groups["lstm"] + groups["heads"])
    proto = onnx.load(str(dst))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("LSTM") == 2 and "DynamicQuantizeLSTM" not in ops
    # The heads stay one float Gemm with float weights; the attention is quantized.
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    gemms = [n for n in proto.graph.node if n.op_type == "Gemm"]
    assert len(gemms) == len(groups["heads"]) == 1
    assert inits[gemms[0].input[1]].dtype == np.float32
    assert "QGemm" not in ops and ops.count("QLinearMatMul") == 2


def test_int8_outputs_and_float_regions_have_no_quantize_pairs(fp32) -> None:
    """Pass-through ops fed by float stay float: no Q/DQ pair of pure overhead around them, and
    no output (the regression head's value above all) rounded to 8 bits on its way out."""
    model, src, folder, calib = fp32
    dst = quantize_int8_cpu(src, folder / "int8o.onnx", calib)
    proto = onnx.load(str(dst))
    producer = {o: n for n in proto.graph.node for o in n.output}
    for out in proto.graph.output:
        op = producer[out.name].op_type
        assert op != "DequantizeLinear" and not op.startswith("QLinear"), (out.name, op)
    regression = [i for i, t in enumerate(model.config.tasks) if t[1] == "regression"]
    assert regression
    for i in regression:  # the value itself, within a few steps of its 8-bit grid at most
        np.testing.assert_allclose(_run(dst, model)[i], _run(src, model)[i], atol=0.05)
    groups = node_groups(src)
    kept = quantize_int8_cpu(src, folder / "int8a.onnx", calib, exclude=groups["attention"])
    ops = _ops(kept)
    assert "QLinearAdd" not in ops  # the attention's bias add followed its MatMul into float


def test_float_islands_follow_their_producers(fp32) -> None:
    from fusion_edge.export.quantize import float_islands

    _, src, _, _ = fp32
    graph = onnx.load(str(src)).graph
    islands = float_islands(graph, exclude=())
    by_name = {n.name: n.op_type for n in graph.node}
    # Inside the encoders every pass-through op follows a quantized conv: none stays float.
    assert not [n for n in islands if n.startswith("/encoders.")]
    # The heads' input concat (fed by the float attention sum) stays float. (A [0, 1] quality
    # range is the sigmoid itself, so there is no range offset Add after it any more.)
    assert "/Concat_1" in islands
    assert not [n for n, op in by_name.items() if op == "Add" and not n.startswith("/attention")]
    assert all(by_name[n] in ("Relu", "MaxPool", "Transpose", "Concat", "Add") for n in islands)
    groups = node_groups(src)
    attention_float = float_islands(graph, exclude=groups["attention"])
    assert "/attention/w/Add" in attention_float and "/attention/w/Add" not in islands


def test_tensorrt_qdq_is_symmetric_and_keeps_lstm_float(fp32) -> None:
    model, src, folder, calib = fp32
    dst = quantize_int8_tensorrt(src, folder / "trt.onnx", calib)
    proto = onnx.load(str(dst))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("LSTM") == 2 and "QuantizeLinear" in ops
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    zero_points = [
        inits[n.input[2]]
        for n in proto.graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear")
        and len(n.input) > 2
        and n.input[2] in inits
    ]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    # Groups kept float by the search get no Q/DQ: the heads' Gemm reads its float input.
    groups = node_groups(src)
    kept = onnx.load(str(quantize_int8_tensorrt(src, folder / "trt_h.onnx", calib, exclude=groups["heads"])))
    producer = {o: n for n in kept.graph.node for o in n.output}
    gemm = next(n for n in kept.graph.node if n.op_type == "Gemm")
    assert producer[gemm.input[0]].op_type != "DequantizeLinear"
    assert gemm.input[1] in {i.name for i in kept.graph.initializer}  # float weights, no DQ


def test_exclusion_search_keeps_float_what_the_judge_needs(fp32) -> None:
    from fusion_edge.export.quantize import choose_int8_exclusions

    model, src, folder, calib = fp32
    groups = node_groups(src)

    def judge(path: Path):
        lstm_float = "DynamicQuantizeLSTM" not in _ops(path)
        return lstm_float, {"loss": 0.0 if lstm_float else 1.0}

    dst, chosen, trials = choose_int8_exclusions(src, folder / "sel.onnx", calib, groups, judge)
    assert trials[0].excluded_groups == () and not trials[0].within_budget
    assert chosen.excluded_groups == ("lstm",) and chosen.within_budget
    assert "DynamicQuantizeLSTM" not in _ops(dst) and "QuantizeLinear" in _ops(dst)
    # Groups kept float from the start stay float in every trial; the search adds to them.
    dst, chosen, trials = choose_int8_exclusions(
        src, folder / "sel2.onnx", calib, groups, judge, keep_float=("attention",)
    )
    assert trials[0].excluded_groups == ("attention",)
    assert chosen.excluded_groups == ("attention", "lstm")
    assert "QLinearMatMul" not in _ops(dst)
