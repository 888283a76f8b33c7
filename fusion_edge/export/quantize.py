"""FP16 and INT8 variants of an exported FP32 ONNX model.

* FP16: weights and activations in half precision, inputs and outputs kept float32 (Cast nodes
  at the edges) so the box feeds the same arrays to every variant. The LSTM stays float32:
  onnxruntime's CPU LSTM kernel has no FP16 version, and on GPU the gain on a 20-step
  recurrence is small.
* INT8 for the onnxruntime CPU backend: static quantization (per-channel weights, activation
  ranges from real calibration windows) of Conv / MatMul / Gemm, plus dynamic quantization of the
  LSTM weights (``DynamicQuantizeLSTM``: int8 weights, activations quantized per call, since an
  LSTM's gate ranges change at every step). Node groups that lose accuracy are kept in float,
  chosen by measurement (`choose_int8_exclusions`). The default format is QOperator
  (``QLinearConv`` / ``QLinearMatMul`` / ``QGemm``: one node per quantized op, where QDQ needs a
  DequantizeLinear per weight and a Q/DQ pair per activation) and the names are compacted
  (`compact_graph`): on a small model that graph overhead otherwise decides the file size.
* INT8 for TensorRT: explicit Q/DQ (symmetric, per-channel, as TensorRT requires) on Conv /
  MatMul / Gemm; the LSTM is left float because TensorRT has no INT8 recurrent layer.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from fusion_edge.calibration.quant_sets import CalibrationSet
from fusion_edge.errors import BundleError, MissingDependencyError

__all__ = [
    "INT8_OP_TYPES",
    "Int8Format",
    "EXCLUSION_GROUPS",
    "Int8Trial",
    "convert_fp16",
    "quantize_int8_cpu",
    "quantize_int8_tensorrt",
    "node_groups",
    "float_islands",
    "choose_int8_exclusions",
]

INT8_OP_TYPES = ("Conv", "MatMul", "Gemm")
# In the QOperator format these also run on int8 tensors, between the quantized operators:
# the ReLU folds into the preceding QLinearConv's output range, max-pool, transpose and concat
# pass int8 through, and a bias Add becomes QLinearAdd. Without them every convolution block
# pays a DequantizeLinear/QuantizeLinear pair, and at batch 1 those nodes cost more time than
# the int8 arithmetic saves.
# They are quantized only where every input comes from a quantized node (`float_islands`): a
# pass-through node fed by float (the heads' input concat, the regression head's range offset,
# anything after a group kept in float) would otherwise add a QuantizeLinear/DequantizeLinear
# pair of pure overhead, and at the very end would round a regression output to 8 bits.
INT8_PASS_THROUGH_OP_TYPES = ("Relu", "MaxPool", "Transpose", "Concat", "Add")
# Node-name prefixes (the exporter names nodes after the module path) of the parts that are
# candidates for staying float when INT8 costs too much accuracy, cheapest to keep float first.
EXCLUSION_GROUPS: dict[str, tuple[str, ...]] = {
    "attention": ("/attention/",),
    "heads": ("/heads/",),  # one product for every task's head (`TaskHeads`)
    "first_conv": ("/encoders.{m}/body/body.0/",),
    "projections": ("/encoders.{m}/project/",),
    "lstm": ("/lstm1/", "/lstm2/"),
}


class Int8Format(str, Enum):
    """Graph format of the onnxruntime-CPU INT8 variant.

    ``qoperator``: fused quantized operators (``QLinearConv``, ``QLinearMatMul``, ``QGemm``);
    the smallest file, onnxruntime CPU only. ``qdq``: float operators between
    QuantizeLinear/DequantizeLinear pairs, which onnxruntime fuses at load; portable, larger.
    """

    QOPERATOR = "qoperator"
    QDQ = "qdq"


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("onnx", "train", "Quantization") from None
    return onnx


def _ort_quant() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError:
        raise MissingDependencyError("onnxruntime", "edge", "Quantization") from None
    return quantization


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    # onnxruntime's quantizer logs advice ("consider pre-processing") on the root logger at
    # WARNING for every call; export reports what it did in its own table instead.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """Write the FP16 variant of ``src`` to ``dst`` (float32 inputs/outputs, LSTM float32)."""
    onnx = _onnx()
    try:
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    except ImportError:
        raise MissingDependencyError("onnxruntime", "edge", "FP16 conversion") from None
    model = onnx.load(str(src))
    try:
        half = convert_float_to_float16(
            model, keep_io_types=True, op_block_list=[*DEFAULT_OP_BLOCK_LIST, "LSTM"]
        )
    except Exception as exc:
        raise BundleError(f"FP16 conversion of {src} failed: {exc}") from None
    onnx.save(half, str(dst))
    return Path(dst)


def node_groups(model_path: str | Path) -> dict[str, list[str]]:
    """Names of the quantizable nodes in each `EXCLUSION_GROUPS` group of an exported model."""
    onnx = _onnx()
    graph = onnx.load(str(model_path), load_external_data=False).graph
    names = [n.name for n in graph.node if n.op_type in (*INT8_OP_TYPES, "LSTM")]
    groups: dict[str, list[str]] = {}
    for group, prefixes in EXCLUSION_GROUPS.items():
        expanded = (
            [p.format(m=i) for p in prefixes for i in range(8)]
            if any("{m}" in p for p in prefixes)
            else list(prefixes)
        )
        members = [n for n in names if any(n.startswith(p) for p in expanded)]
        if members:
            groups[group] = members
    return groups


def float_islands(graph: Any, exclude: Sequence[str]) -> list[str]:
    """Pass-through nodes (`INT8_PASS_THROUGH_OP_TYPES`) to keep in float: those with an input
    that is not produced by a quantized node. Walks the graph in order (ONNX graphs are
    topologically sorted), so chains of pass-through nodes inherit their producer's state."""
    excluded = set(exclude)
    producer = {o: n for n in graph.node for o in n.output}
    quantized: set[str] = set()
    keep_float = []
    for node in graph.node:
        if node.op_type in INT8_OP_TYPES:
            if node.name not in excluded:
                quantized.add(node.name)
        elif node.op_type in INT8_PASS_THROUGH_OP_TYPES:
            feeds = [producer.get(i) for i in node.input if i in producer]
            activations = [f for f in feeds if f is not None and f.op_type != "Constant"]
            if (
                node.name not in excluded
                and activations
                and all(f.name in quantized for f in activations)
            ):
                quantized.add(node.name)
            else:
                keep_float.append(node.name)
    return keep_float


@_quiet_quantizer()
def quantize_int8_cpu(
    src: str | Path,
    dst: str | Path,
    calibration: CalibrationSet,
    *,
    exclude: Sequence[str] = (),
    quantize_lstm: bool = True,
    int8_format: Int8Format | str = Int8Format.QOPERATOR,
    per_channel: bool = True,
    compact: bool = True,
) -> Path:
    """Write the INT8 onnxruntime-CPU variant of ``src`` to ``dst``.

    Args:
        src: FP32 ONNX file.
        dst: Where to write.
        calibration: Normalized real windows (see `fusion_edge.calibration.quant_sets`).
        exclude: Node names kept in float (from `node_groups`).
        quantize_lstm: Also quantize the LSTM weights dynamically (int8 weights; shrinks the
            file, which otherwise is dominated by the float LSTM).
        int8_format: `Int8Format` of the static part (QOperator by default: smallest file).
        per_channel: One weight scale per output channel (more accurate; a few KB larger).
        compact: Shorten names and drop ``value_info`` (`compact_graph`) after quantizing.
    """
    q = _ort_quant()
    onnx = _onnx()
    exclude = list(exclude)
    fmt = Int8Format(int8_format)
    with tempfile.TemporaryDirectory(prefix="fusion-edge-q-") as tmp:
        static_out = Path(tmp) / "static.onnx"
        src_graph = onnx.load(str(src), load_external_data=False).graph
        names = [i.name for i in src_graph.input]
        if fmt is Int8Format.QOPERATOR:
            exclude += float_islands(src_graph, exclude)
        try:
            q.quantize_static(
                str(src),
                str(static_out),
                calibration.data_reader(names),
                quant_format=(
                    q.QuantFormat.QDQ if fmt is Int8Format.QDQ else q.QuantFormat.QOperator
                ),
                op_types_to_quantize=list(INT8_OP_TYPES)
                + (list(INT8_PASS_THROUGH_OP_TYPES) if fmt is Int8Format.QOPERATOR else []),
                per_channel=per_channel,
                activation_type=q.QuantType.QUInt8,
                weight_type=q.QuantType.QInt8,
                nodes_to_exclude=exclude,
                calibrate_method=q.CalibrationMethod.MinMax,
                extra_options={"CalibTensorRangeSymmetric": False},
            )
            lstm_nodes = [
                n.name for n in onnx.load(str(static_out)).graph.node if n.op_type == "LSTM"
            ]
            keep_lstm = [n for n in lstm_nodes if n in exclude]
            if quantize_lstm and len(keep_lstm) < len(lstm_nodes):
                q.quantize_dynamic(
                    str(static_out),
                    str(dst),
                    op_types_to_quantize=["LSTM"],
                    weight_type=q.QuantType.QInt8,
                    nodes_to_exclude=keep_lstm,
                )
            else:
                shutil.copyfile(static_out, dst)
            if compact:
                from fusion_edge.export.onnx_export import compact_graph

                proto = onnx.load(str(dst))
                onnx.save(compact_graph(proto), str(dst))
        except BundleError:
            raise
        except Exception as exc:
            raise BundleError(
                f"INT8 quantization of {src} failed ({type(exc).__name__}: {exc})"
            ) from None
    return Path(dst)


@_quiet_quantizer()
def quantize_int8_tensorrt(
    src: str | Path, dst: str | Path, calibration: CalibrationSet, *, exclude: Sequence[str] = ()
) -> Path:
    """Write the explicit-Q/DQ INT8 variant for TensorRT (symmetric, per-channel, LSTM float;
    the ``exclude`` nodes, from `node_groups`, also float)."""
    q = _ort_quant()
    onnx = _onnx()
    names = [i.name for i in onnx.load(str(src), load_external_data=False).graph.input]
    try:
        q.quantize_static(
            str(src),
            str(dst),
            calibration.data_reader(names),
            quant_format=q.QuantFormat.QDQ,
            op_types_to_quantize=list(INT8_OP_TYPES),
            nodes_to_exclude=list(exclude),
            per_channel=True,
            activation_type=q.QuantType.QInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method=q.CalibrationMethod.MinMax,
            # TensorRT takes only symmetric int8 (zero point 0) and wants biases left in float:
            # it fuses them into the int8 kernels itself.
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "QuantizeBias": False,
            },
        )
    except Exception as exc:
        raise BundleError(
            f"TensorRT INT8 (Q/DQ) quantization of {src} failed ({type(exc).__name__}: {exc})"
        ) from None
    return Path(dst)


@dataclass
class Int8Trial:
    """One measured INT8 candidate: which groups stayed float and what it cost."""

    excluded_groups: tuple[str, ...]
    score: dict[str, Any]
    within_budget: bool
    size_bytes: int
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The manifest's ``variants[].selection`` entry."""
        return {
            "kept_float": list(self.excluded_groups),
            "within_budget": self.within_budget,
            "loss": self.score["loss"],
            "size_bytes": self.size_bytes,
        }


def choose_int8_exclusions(
    src: str | Path,
    dst: str | Path,
    calibration: CalibrationSet,
    groups: dict[str, list[str]],
    judge: Callable[[Path], tuple[bool, dict[str, Any]]],
    *,
    keep_float: Sequence[str] = (),
    max_steps: int = 3,
    int8_format: Int8Format | str = Int8Format.QOPERATOR,
    quantize: Callable[[Path, Path, list[str]], Path] | None = None,
) -> tuple[Path, Int8Trial, list[Int8Trial]]:
    """Quantize, measure, and keep groups in float greedily until ``judge`` accepts.

    ``quantize(src, dst, nodes_kept_float)`` writes one candidate; by default the CPU variant
    (`quantize_int8_cpu` in ``int8_format``). Starts with everything quantized but the
    ``keep_float`` groups. While the result is over
    budget, tries keeping each remaining group in float and keeps the one that scores best, up
    to ``max_steps`` more groups.
    ``judge(path) -> (within_budget, score)``; score must have a ``"loss"`` (lower is better).

    Returns:
        The written ``dst`` (the accepted candidate, or the best one if none was accepted), the
        trial it came from, and every trial in order, for the report.
    """
    trials: list[Int8Trial] = []
    with tempfile.TemporaryDirectory(prefix="fusion-edge-q8-") as tmp:

        def attempt(excluded: tuple[str, ...]) -> tuple[Int8Trial, Path]:
            out = Path(tmp) / f"cand{len(trials)}.onnx"
            nodes = [n for g in excluded for n in groups[g]]
            if quantize is None:
                quantize_int8_cpu(src, out, calibration, exclude=nodes, int8_format=int8_format)
            else:
                quantize(Path(src), out, nodes)
            ok, score = judge(out)
            trial = Int8Trial(excluded, score, ok, out.stat().st_size)
            trials.append(trial)
            return trial, out

        chosen: tuple[str, ...] = tuple(g for g in keep_float if g in groups)
        best, best_path = attempt(chosen)
        for _ in range(max_steps):
            if best.within_budget:
                break
            remaining = [g for g in groups if g not in chosen]
            if not remaining:
                break
            step = [attempt((*chosen, g)) for g in remaining]
            accepted = [s for s in step if s[0].within_budget]
            # Within budget, the smallest file wins; otherwise the smallest overshoot.
            if accepted:
                pick = min(accepted, key=lambda s: s[0].size_bytes)
            else:
                pick = min(step, key=lambda s: s[0].score["loss"])
            if pick[0].score["loss"] >= best.score["loss"] and not pick[0].within_budget:
                break  # keeping more in float does not help: stop here
            best, best_path = pick
            chosen = best.excluded_groups
        shutil.copyfile(best_path, dst)
    return Path(dst), best, trials
