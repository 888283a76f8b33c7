"""Inference backends the box can run a bundle with, behind one small interface.

- `OnnxRuntimeBackend`: onnxruntime with the CPU, CUDA or TensorRT execution provider.
- `TensorRtBackend`: a serialized TensorRT engine (TensorRT 10+ Python API), built on the box.
- `TorchBackend`: the full-precision PyTorch model on GPU, the declared fallback.

Each takes a batch as ``{input name: [B, C, S] float32}`` (already normalized) and returns
``{task name: array}`` (logits ``[B, K]`` or values ``[B]``). Heavy packages are imported
inside the backend that needs them, so ``import fusion_edge.runtime`` loads none of them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fusion_edge.errors import TENSORRT_HOW, BackendError, MissingDependencyError

__all__ = [
    "BackendKind",
    "InferenceBackend",
    "OnnxRuntimeBackend",
    "TensorRtBackend",
    "TorchBackend",
    "BackendSpec",
    "open_backend",
]


class BackendKind(str, Enum):
    """Backends by the name a kit file uses for them."""

    ONNXRUNTIME_CPU = "onnxruntime-cpu"
    ONNXRUNTIME_CUDA = "onnxruntime-cuda"
    ONNXRUNTIME_TENSORRT = "onnxruntime-tensorrt"
    TENSORRT = "tensorrt"
    TORCH_CUDA = "torch-cuda"
    TORCH_CPU = "torch-cpu"


class InferenceBackend(Protocol):
    """What the runtime needs of a backend."""

    name: str
    precision: str

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch."""

    def close(self) -> None:
        """Release the backend's resources."""


_PROVIDERS = {
    BackendKind.ONNXRUNTIME_CPU: ["CPUExecutionProvider"],
    BackendKind.ONNXRUNTIME_CUDA: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    BackendKind.ONNXRUNTIME_TENSORRT: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OnnxRuntimeBackend:
    """An onnxruntime session over one exported ONNX file."""

    def __init__(
        self,
        path: str | Path,
        *,
        kind: BackendKind = BackendKind.ONNXRUNTIME_CPU,
        precision: str = "fp32",
        threads: int = 1,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependencyError("onnxruntime", "edge", "Running a bundle") from None
        wanted = _PROVIDERS[kind]
        have = ort.get_available_providers()
        if wanted[0] not in have:
            raise BackendError(
                f"{kind.value}: onnxruntime here has no {wanted[0]} (it has {have}); install the "
                "onnxruntime build for this device (onnxruntime-gpu on a Jetson / CUDA box) or "
                "prefer onnxruntime-cpu in the kit file"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"{kind.value}: cannot load {path}: {exc}") from None
        self.name = kind.value
        self.precision = precision
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; the inputs must be float32 ``[B, C, S]`` per input name."""
        feed = {n: np.ascontiguousarray(inputs[n], dtype=np.float32) for n in self.input_names}
        outs = self.session.run(self.output_names, feed)
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(self.output_names, outs, strict=True)}

    def close(self) -> None:
        """Drop the session."""
        self.session = None  # type: ignore[assignment]


class TensorRtBackend:
    """A TensorRT engine (TensorRT 10 API: named I/O tensors, ``execute_async_v3``).

    Device buffers are torch CUDA tensors, so the box needs torch with CUDA for this backend
    (JetPack ships both). Unverified in CI: TensorRT is not installable there.
    """

    def __init__(self, engine_path: str | Path, *, precision: str = "int8") -> None:
        try:
            import tensorrt as trt
        except ImportError:
            raise MissingDependencyError("tensorrt", "gpu", "The TensorRT backend", TENSORRT_HOW) from None
        try:
            import torch
        except ImportError:
            raise MissingDependencyError("torch", "train", "The TensorRT backend's CUDA buffers") from None
        if not torch.cuda.is_available():
            raise BackendError("tensorrt: no CUDA device is visible; run on the Jetson or prefer onnxruntime-cpu")
        self._trt, self._torch = trt, torch
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        data = Path(engine_path).read_bytes()
        self.engine = runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise BackendError(
                f"tensorrt: cannot deserialize {engine_path}: it was built for another TensorRT "
                "version or GPU; rebuild it on this box with 'fusion-edge engine build BUNDLE'"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) != mode]
        self.stream = torch.cuda.Stream()
        self.name = BackendKind.TENSORRT.value
        self.precision = precision

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy in, execute on the engine's stream, copy out."""
        torch = self._torch
        keep = []
        for n in self.input_names:
            t = torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32)).cuda()
            self.context.set_input_shape(n, tuple(t.shape))
            self.context.set_tensor_address(n, t.data_ptr())
            keep.append(t)
        outs = {}
        for n in self.output_names:
            shape = tuple(self.context.get_tensor_shape(n))
            t = torch.empty(shape, dtype=torch.float32, device="cuda")
            self.context.set_tensor_address(n, t.data_ptr())
            outs[n] = t
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise BackendError("tensorrt: execute_async_v3 failed")
        self.stream.synchronize()
        return {n: t.cpu().numpy() for n, t in outs.items()}

    def close(self) -> None:
        """Release the engine."""
        self.context = None
        self.engine = None


def nvidia_driver_present() -> bool:
    """Whether the NVIDIA driver's CUDA library (libcuda) is installed, found without importing
    torch: a CPU box answers no in milliseconds instead of loading torch to learn it."""
    import ctypes.util

    return ctypes.util.find_library("cuda") is not None


class TorchBackend:
    """The full-precision PyTorch model: the declared fallback for unsure or failed windows.

    ``weights`` is the bundle's ``model.safetensors`` (the trained, unpruned model) and
    ``model_config`` its variant's ``model_config``.
    """

    def __init__(self, weights: str | Path, model_config: Mapping[str, Any], *, device: str = "cuda") -> None:
        on_gpu = device.startswith("cuda")
        self.name = BackendKind.TORCH_CUDA.value if on_gpu else BackendKind.TORCH_CPU.value
        if on_gpu and not nvidia_driver_present():
            raise BackendError(
                f"{self.name}: no NVIDIA driver (libcuda) on this machine; the full-model "
                "fallback needs a GPU"
            )
        if not Path(weights).is_file():
            raise BackendError(f"{self.name}: {weights} is missing; copy the whole bundle folder again")
        try:
            import torch
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            from fusion_edge.toolkit.model import ModelConfig, MultimodalCnnLstm
        except ImportError:
            raise MissingDependencyError("torch", "train", "The full-model fallback") from None
        if on_gpu and not torch.cuda.is_available():
            raise BackendError(f"{self.name}: no CUDA device is visible; the full-model fallback needs a GPU")
        self._torch = torch
        try:
            self.model = MultimodalCnnLstm(ModelConfig.from_json(dict(model_config)))
            self.model.load_state_dict(load_file(str(weights)))
        except (SafetensorError, RuntimeError, OSError, ValueError, TypeError) as exc:
            raise BackendError(
                f"{self.name}: cannot load {weights} ({str(exc).splitlines()[0]}); the bundle is "
                "damaged or was edited, re-export it"
            ) from None
        self._setup(self.model, device)

    @classmethod
    def from_model(cls, model: Any, device: str = "cuda") -> TorchBackend:
        """The backend around a model already in memory (benchmarks time the box's path with it)."""
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError("torch-cuda: no CUDA device is visible; the full-model fallback needs a GPU")
        self = cls.__new__(cls)
        self._torch = torch
        self.name = BackendKind.TORCH_CUDA.value if device.startswith("cuda") else BackendKind.TORCH_CPU.value
        self._setup(model, device)
        return self

    def _setup(self, model: Any, device: str) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.input_names = [m[0] for m in self.model.config.modalities]
        self.output_names = [t[0] for t in self.model.config.tasks]
        self.precision = "fp32"

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch on the model's device."""
        torch = self._torch
        with torch.inference_mode():
            xs = [
                torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32)).to(self.device)
                for n in self.input_names
            ]
            outs = self.model(*xs)
        return {n: o.float().cpu().numpy() for n, o in zip(self.output_names, outs, strict=True)}

    def close(self) -> None:
        """Release the model."""
        self.model = None  # type: ignore[assignment]


@dataclass(frozen=True)
class BackendSpec:
    """Which backend to open on which bundle file."""

    kind: BackendKind
    file: Path
    precision: str
    model_config: Mapping[str, Any] | None = None


def open_backend(spec: BackendSpec, *, threads: int = 1) -> InferenceBackend:
    """Open a backend (raises BackendError / MissingDependencyError when it cannot load)."""
    if spec.kind in _PROVIDERS:
        return OnnxRuntimeBackend(spec.file, kind=spec.kind, precision=spec.precision, threads=threads)
    if spec.kind == BackendKind.TENSORRT:
        return TensorRtBackend(spec.file, precision=spec.precision)
    if spec.model_config is None:
        raise BackendError(f"{spec.kind.value}: the bundle has no model_config for the PyTorch model")
    device = "cuda" if spec.kind == BackendKind.TORCH_CUDA else "cpu"
    return TorchBackend(spec.file, spec.model_config, device=device)


def run_with_timeout(
    backend: InferenceBackend, inputs: Mapping[str, np.ndarray], timeout_s: float
) -> dict[str, np.ndarray]:
    """Run a batch in a worker thread; a hung backend raises BackendError after ``timeout_s``.

    The hung thread cannot be killed; it is left behind as a daemon and the caller must stop
    using that backend.
    """
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["out"] = backend.run(inputs)
        except BaseException as exc:  # handed to the caller below
            box["err"] = exc

    t = threading.Thread(target=work, name=f"infer-{backend.name}", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise BackendError(f"{backend.name}: no answer within {timeout_s * 1000:.0f} ms (hung)")
    if "err" in box:
        err = box["err"]
        if isinstance(err, BackendError):
            raise err
        raise BackendError(f"{backend.name}: {type(err).__name__}: {err}") from err
    return box["out"]


