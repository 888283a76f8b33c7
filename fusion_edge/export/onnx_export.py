"""ONNX export of the multimodal CNN-LSTM, with its checks.

One input per modality (named after it, ``[batch, channels, samples]``, float32) and one output
per task (named after it: logits ``[batch, classes]`` or the value ``[batch]``). The batch axis
is dynamic so one file serves a single player and the whole squad. The opset is fixed
(`OPSET`) so that a bundle made today loads on a box with an older onnxruntime.

The TorchScript-based exporter (``dynamo=False``) is used: it maps ``nn.LSTM`` to the ONNX
``LSTM`` operator, which onnxruntime runs fused and its dynamic quantizer knows; it also folds
each BatchNorm into its convolution in eval mode.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusion_edge.errors import BundleError, MissingDependencyError
from fusion_edge.toolkit.model import MultimodalCnnLstm

__all__ = [
    "OPSET",
    "METADATA_PREFIX",
    "ParityTolerance",
    "PARITY_TOLERANCES",
    "export_onnx",
    "simplify_graph",
    "convs_as_2d",
    "compact_graph",
    "check_onnx",
    "read_metadata",
    "onnx_session",
    "run_onnx",
    "head_parity",
]

OPSET = 17
METADATA_PREFIX = "fusion_edge."


@dataclass(frozen=True)
class ParityTolerance:
    """How close an exported variant must stay to PyTorch, per head.

    Attributes:
        atol: Largest absolute difference of logits / values (None: not checked).
        min_agreement: Smallest share of windows whose top class matches PyTorch's.
        value_atol: Largest absolute difference of a regression value (task units).
    """

    atol: float | None
    min_agreement: float
    value_atol: float | None


# FP32 must be numerically the same model; FP16 keeps ~3 significant digits; INT8 is judged by
# the accuracy budget (quantize.py), so parity only guards against a broken graph.
PARITY_TOLERANCES: dict[str, ParityTolerance] = {
    "fp32": ParityTolerance(atol=1e-3, min_agreement=0.995, value_atol=1e-3),
    "fp16": ParityTolerance(atol=5e-2, min_agreement=0.97, value_atol=1e-2),
    "int8": ParityTolerance(atol=None, min_agreement=0.80, value_atol=0.1),
}


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("onnx", "train", "ONNX export") from None
    return onnx


def onnx_session(path: str | Path, threads: int = 0) -> Any:
    """An onnxruntime CPU session for ``path`` (``threads=0``: onnxruntime's default)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("onnxruntime", "edge", "Running ONNX models") from None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise BundleError(f"onnxruntime cannot load {path}: {exc}; re-export the model") from None


def export_onnx(
    model: MultimodalCnnLstm,
    path: str | Path,
    *,
    metadata: Mapping[str, Any] | None = None,
    opset: int = OPSET,
    encoders_2d: bool = True,
) -> Path:
    """Export ``model`` (eval mode, CPU) to ``path`` and run ``onnx.checker`` on the result.

    Args:
        model: The trained (possibly pruned) model.
        path: The ``.onnx`` file to write.
        metadata: Written into the file's ``metadata_props`` as ``fusion_edge.<key>``; values
            that are not strings are stored as JSON.
        opset: ONNX opset (fixed by default, see module docstring).
        encoders_2d: Run the convolutions as 2-D (`convs_as_2d`): faster in float on
            onnxruntime's CPU provider. The INT8 CPU variant is quantized from a 1-D export,
            whose int8 kernels are faster as they are (docs/export.md).

    Raises:
        BundleError: the exporter or the checker failed.
    """
    onnx = _onnx()
    path = Path(path)
    model = model.cpu().eval()
    cfg = model.config
    inputs = tuple(torch.zeros(2, c, s) for _, c, s in cfg.modalities)
    in_names = [m for m, _, _ in cfg.modalities]
    out_names = [t for t, _, _ in cfg.tasks]
    axes = {n: {0: "batch"} for n in in_names + out_names}
    try:
        with warnings.catch_warnings():
            # The LSTM with batch_first warns that batch sizes other than the example's may
            # differ; the checks below run batch 1 and the squad size to prove otherwise.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                inputs,
                str(path),
                input_names=in_names,
                output_names=out_names,
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as exc:
        raise BundleError(
            f"ONNX export failed ({type(exc).__name__}: {exc}); report this with the run folder"
        ) from exc
    proto = onnx.load(str(path))
    proto.producer_name = "fusion-edge"
    simplify_graph(proto)
    if encoders_2d:
        convs_as_2d(proto)
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key = METADATA_PREFIX + key
        entry.value = value if isinstance(value, str) else json.dumps(value)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise BundleError(f"onnx.checker refused the exported model: {exc}") from None
    onnx.save(proto, str(path))
    return path


def simplify_graph(proto: Any) -> Any:
    """Simplify an exported graph in place (onnx's own tools; no onnxsim needed).

    The exporter feeds each LSTM explicit zero initial states built at run time
    (``Shape -> Gather -> Concat -> ConstantOfShape``). ONNX defines absent states as zero, so
    those inputs are dropped, and the nodes that only fed them are removed. This leaves a graph
    with fewer shape ops for TensorRT, and one the FP16 converter handles (it mis-names the casts
    of a tensor shared by ``initial_h`` and ``initial_c``).
    """
    from onnx import numpy_helper

    producers = {o: n for n in proto.graph.node for o in n.output}
    for node in proto.graph.node:
        if node.op_type != "LSTM":
            continue
        ins = list(node.input)
        for slot in (5, 6):  # initial_h, initial_c
            if slot < len(ins) and ins[slot]:
                src = producers.get(ins[slot])
                if src is not None and src.op_type == "ConstantOfShape":
                    value = [a for a in src.attribute if a.name == "value"]
                    if not value or not numpy_helper.to_array(value[0].t).any():
                        ins[slot] = ""
        while ins and not ins[-1]:
            ins.pop()
        del node.input[:]
        node.input.extend(ins)
    # Remove nodes none of whose outputs is used any more, until nothing changes.
    graph_outputs = {o.name for o in proto.graph.output}
    while True:
        used = {i for n in proto.graph.node for i in n.input} | graph_outputs
        dead = [n for n in proto.graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            proto.graph.node.remove(n)
    used = {i for n in proto.graph.node for i in n.input}
    for init in [i for i in proto.graph.initializer if i.name not in used]:
        proto.graph.initializer.remove(init)
    return proto


# Operators that keep a [batch, channels, 1, samples] tensor's layout meaning unchanged, so the
# encoders can run in 2-D from their input to where the modalities are merged (a Concat only
# along batch or channels: the samples axis moves from 2 to 3).
_LAYOUT_FREE = {"Conv", "MaxPool", "Relu", "Concat"}


def _keeps_layout(node: Any) -> bool:
    if node.op_type != "Concat":
        return node.op_type in _LAYOUT_FREE
    axis = next((a.i for a in node.attribute if a.name == "axis"), None)
    return axis is not None and axis % 3 in (0, 1)


def convs_as_2d(proto: Any) -> Any:
    """Run the 1-D convolutional encoders as 2-D convolutions of height 1, in place.

    Same weights, same results (kernel ``k`` becomes ``1 x k``, padding and stride likewise),
    but onnxruntime's CPU provider applies its blocked-layout (NCHWc) direct convolutions only
    to 2-D convolutions: 1-D ones go through im2col and a GEMM. On the edge model at batch 1
    that makes the whole FP32 graph ~17% faster (docs/export.md). Each modality input is
    unsqueezed once; the 2-D region runs through Conv / MaxPool / ReLU / Concat and is squeezed
    back once where anything else reads it. TensorRT and the quantizers take 2-D convolutions
    as they are. A graph without 1-D convolutions is left as it is.
    """
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for x in node.input:
            readers.setdefault(x, []).append(node)

    def is_1d_conv(node: Any) -> bool:
        w = inits.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        return w is not None and len(w.dims) == 3

    starts = [i.name for i in graph.input if readers.get(i.name) and all(is_1d_conv(n) for n in readers[i.name])]
    if not starts:
        return proto
    axis = "fe_height_axis"
    graph.initializer.append(numpy_helper.from_array(np.array([2], dtype=np.int64), axis))
    region: set[str] = set()
    head = []
    for name in starts:
        region.add(f"{name}_2d")
        head.append(helper.make_node("Unsqueeze", [name, axis], [f"{name}_2d"], name=f"{name}/Unsqueeze2d"))
        for node in readers[name]:
            node.input[0] = f"{name}_2d"
    nodes = []
    squeezed: dict[str, str] = {}
    for node in graph.node:
        spatial = [x for x in (node.input if node.op_type == "Concat" else node.input[:1]) if x]
        if _keeps_layout(node) and spatial and all(x in region for x in spatial):
            if node.op_type in ("Conv", "MaxPool"):
                for attr in node.attribute:
                    v = list(attr.ints)
                    if attr.name in ("kernel_shape", "strides", "dilations") and len(v) == 1:
                        attr.ints[:] = [1, v[0]]
                    elif attr.name == "pads" and len(v) == 2:
                        attr.ints[:] = [0, v[0], 0, v[1]]
            if node.op_type == "Conv":
                w = inits[node.input[1]]
                w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w)[:, :, None, :], w.name))
            region.update(node.output)
        else:
            for k, x in enumerate(node.input):
                if x in region:
                    if x not in squeezed:
                        squeezed[x] = f"{x}_1d"
                        nodes.append(helper.make_node("Squeeze", [x, axis], [squeezed[x]], name=f"{x}/Squeeze1d"))
                    node.input[k] = squeezed[x]
        nodes.append(node)
    for out in graph.output:
        if out.name in region:
            raise BundleError(f"convs_as_2d: graph output {out.name!r} is produced by a convolution")
    del graph.node[:]
    graph.node.extend(head + nodes)
    kept = [v for v in graph.value_info if v.name not in region]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    return proto


def compact_graph(proto: Any) -> Any:
    """Shorten a graph's names and drop what only documents it, in place.

    Tensors and nodes get short generated names (``t1f``, ``n2a``); ``value_info`` (shape
    annotations onnxruntime re-infers at load) and doc strings go. Graph inputs and outputs keep
    their names (they are the model's interface), and ``metadata_props`` stay. On the 146k-
    parameter edge model the quantizer's long names (``/encoders.0/body/body.0/Conv_output_0_
    quantized`` and the like, once per scale, zero point and tensor) are ~15% of the INT8 file,
    enough to decide whether it is 3.5x smaller than FP32 (see docs/export.md).
    A graph with subgraphs (``If``/``Loop`` bodies, which may read outer names) keeps its names.
    """
    onnx = _onnx()
    graph = proto.graph
    del graph.value_info[:]
    graph.doc_string = ""
    proto.doc_string = ""
    subgraph = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    if any(a.type in subgraph for n in graph.node for a in n.attribute):
        return proto
    keep = {i.name for i in graph.input} | {o.name for o in graph.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name  # "" marks an absent optional input
        if name not in names:
            names[name] = f"t{len(names):x}"
        return names[name]

    for init in graph.initializer:
        init.name = short(init.name)
        init.doc_string = ""
    for i, node in enumerate(graph.node):
        node.name = f"n{i:x}"
        node.doc_string = ""
        ins, outs = [short(x) for x in node.input], [short(x) for x in node.output]
        del node.input[:]
        node.input.extend(ins)
        del node.output[:]
        node.output.extend(outs)
    return proto


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``fusion_edge.*`` metadata of an ONNX file (JSON values decoded)."""
    onnx = _onnx()
    proto = onnx.load(str(path), load_external_data=False)
    out: dict[str, Any] = {}
    for entry in proto.metadata_props:
        if entry.key.startswith(METADATA_PREFIX):
            try:
                out[entry.key[len(METADATA_PREFIX) :]] = json.loads(entry.value)
            except json.JSONDecodeError:
                out[entry.key[len(METADATA_PREFIX) :]] = entry.value
    return out


def run_onnx(session: Any, inputs: Sequence[np.ndarray], batch_size: int = 256) -> list[np.ndarray]:
    """Run an onnxruntime session over in-memory inputs in batches; one array per output."""
    names = [i.name for i in session.get_inputs()]
    n = inputs[0].shape[0]
    outs: list[list[np.ndarray]] = []
    for s in range(0, n, batch_size):
        feed = {
            name: np.ascontiguousarray(x[s : s + batch_size], dtype=np.float32)
            for name, x in zip(names, inputs, strict=True)
        }
        res = session.run(None, feed)
        if not outs:
            outs = [[] for _ in res]
        for o, r in zip(outs, res, strict=True):
            o.append(np.asarray(r, dtype=np.float32))
    return [np.concatenate(o) for o in outs]


def head_parity(
    tasks: Sequence[tuple[str, str, int]],
    reference: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
) -> dict[str, dict[str, float]]:
    """Per head: ``max_abs_diff`` and, for class heads, ``top1_agreement`` with the reference."""
    res: dict[str, dict[str, float]] = {}
    for (name, kind, _), ref, cand in zip(tasks, reference, candidate, strict=True):
        row = {
            "max_abs_diff": float(np.max(np.abs(ref.astype(np.float64) - cand)))
            if ref.size
            else 0.0
        }
        if kind == "class":
            row["top1_agreement"] = (
                float(np.mean(ref.argmax(1) == cand.argmax(1))) if ref.size else 1.0
            )
        res[name] = row
    return res


def check_onnx(
    path: str | Path,
    model: MultimodalCnnLstm,
    windows: Sequence[np.ndarray],
    *,
    precision: str = "fp32",
    squad_size: int = 22,
) -> dict[str, Any]:
    """Check an exported file against PyTorch on real (normalized) windows.

    Runs onnxruntime at batch 1 and at ``squad_size`` (shapes must come out right) and over
    all ``windows`` (values must match within `PARITY_TOLERANCES` for ``precision``).

    Returns:
        ``{"parity": {head: {...}}, "batches_checked": [1, squad_size], "tolerance": {...}}``.

    Raises:
        BundleError: naming the head and the difference that broke the tolerance.
    """
    cfg = model.config
    tol = PARITY_TOLERANCES[precision]
    sess = onnx_session(path)
    n = windows[0].shape[0]
    if n == 0:
        raise BundleError("no windows to check the exported model on; the held-out split is empty")
    for b in (1, squad_size):
        idx = np.arange(b) % n
        outs = sess.run(None, {m: windows[i][idx] for i, (m, _, _) in enumerate(cfg.modalities)})
        for (task, kind, k), out in zip(cfg.tasks, outs, strict=True):
            want = (b, k) if kind == "class" else (b,)
            if tuple(out.shape) != want:
                raise BundleError(
                    f"{path}: head '{task}' returned shape {tuple(out.shape)} at batch {b}, "
                    f"expected {want}; the dynamic batch axis is broken, re-export"
                )
    with torch.no_grad():
        ref = [o.numpy() for o in _torch_batches(model, windows)]
    got = run_onnx(sess, windows)
    parity = head_parity(cfg.tasks, ref, got)
    for (task, kind, _), row in zip(cfg.tasks, parity.values(), strict=True):
        limit = tol.atol if kind == "class" else tol.value_atol
        if limit is not None and row["max_abs_diff"] > limit:
            raise BundleError(
                f"{path} ({precision}): head '{task}' differs from PyTorch by up to "
                f"{row['max_abs_diff']:.3g} (tolerance {limit:g}); the export is wrong, "
                "do not deploy it"
            )
        if kind == "class" and row["top1_agreement"] < tol.min_agreement:
            raise BundleError(
                f"{path} ({precision}): head '{task}' picks the same class as PyTorch on only "
                f"{row['top1_agreement']:.1%} of windows (needs {tol.min_agreement:.1%})"
            )
    return {"parity": parity, "batches_checked": [1, squad_size], "tolerance": tol.__dict__}


def _torch_batches(
    model: MultimodalCnnLstm, windows: Sequence[np.ndarray], batch: int = 256
) -> list[torch.Tensor]:
    parts: list[list[torch.Tensor]] = []
    for s in range(0, windows[0].shape[0], batch):
        res = model(*[torch.from_numpy(np.ascontiguousarray(w[s : s + batch])) for w in windows])
        if not parts:
            parts = [[] for _ in res]
        for p, r in zip(parts, res, strict=True):
            p.append(r.float())
    return [torch.cat(p) for p in parts]
