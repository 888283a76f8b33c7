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
    assert ops.count("QuantizeLinear") > 5
    assert dst.stat().st_size < src.stat().st_size / 2.5
    assert np.isfinite(_run(dst, model)[0]).all()


def test_int8_exclusions_stay_float(fp32) -> None:
    model, src, folder, calib = fp32
    groups = node_groups(src, model.config.tasks)
    assert set(groups) >= {"attention", "regression_heads", "class_heads", "lstm"}
    dst = quantize_int8_cpu(
        src, folder / "int8x.onnx", calib, exclude=groups["lstm"] + groups["regression_heads"]
    )
    proto = onnx.load(str(dst))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("LSTM") == 2 and "DynamicQuantizeLSTM" not in ops
    # The regression head's weight is fed to its Gemm as float, not through a DequantizeLinear.
    gemm = next(n for n in proto.graph.node if n.name in groups["regression_heads"])
    producers = {o: n.op_type for n in proto.graph.node for o in n.output}
    assert producers.get(gemm.input[1]) != "DequantizeLinear"


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


def test_exclusion_search_keeps_float_what_the_judge_needs(fp32) -> None:
    from fusion_edge.export.quantize import choose_int8_exclusions

    model, src, folder, calib = fp32
    groups = node_groups(src, model.config.tasks)

    def judge(path: Path):
        lstm_float = "DynamicQuantizeLSTM" not in _ops(path)
        return lstm_float, {"loss": 0.0 if lstm_float else 1.0}

    dst, chosen, trials = choose_int8_exclusions(src, folder / "sel.onnx", calib, groups, judge)
    assert trials[0].excluded_groups == () and not trials[0].within_budget
    assert chosen.excluded_groups == ("lstm",) and chosen.within_budget
    assert "DynamicQuantizeLSTM" not in _ops(dst) and "QuantizeLinear" in _ops(dst)
