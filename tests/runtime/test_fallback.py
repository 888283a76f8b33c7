"""The backend chain falls through on load failure, errors, hangs and deadline misses; the
escalator reruns unsure windows on the full model."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from fusion_edge.errors import BackendError
from fusion_edge.runtime.backends import BackendKind, BackendSpec
from fusion_edge.runtime.fallback import BackendChain, Escalator, softmax


class FakeBackend:
    def __init__(self, name: str, mode: str = "ok", logits: np.ndarray | None = None, delay: float = 0.0):
        self.name = name
        self.precision = "fp32"
        self.mode = mode
        self.logits = logits
        self.delay = delay
        self.calls = 0
        self.closed = False

    def run(self, inputs):
        self.calls += 1
        if self.mode == "raise":
            raise RuntimeError("CUDA error: illegal memory access")
        if self.mode == "hang":
            time.sleep(5)
        if self.delay:
            time.sleep(self.delay)
        n = inputs["imu"].shape[0]
        logits = self.logits if self.logits is not None else np.tile([[3.0, 0.0]], (n, 1))
        return {"action": logits[:n].astype(np.float32), "quality": np.full(n, 0.5, np.float32)}

    def close(self):
        self.closed = True


def _specs(*names: str) -> list[BackendSpec]:
    return [BackendSpec(BackendKind.ONNXRUNTIME_CPU, Path(n), "fp32") for n in names]


def _chain(backends: dict[str, FakeBackend | Exception], **kw) -> BackendChain:
    def opener(spec: BackendSpec):
        b = backends[str(spec.file)]
        if isinstance(b, Exception):
            raise b
        return b

    return BackendChain(_specs(*backends), opener=opener, **kw)


X = {"imu": np.zeros((4, 3, 8), np.float32)}


def test_load_failure_falls_through_and_is_counted():
    good = FakeBackend("b")
    chain = _chain({"a": BackendError("tensorrt: no CUDA device"), "b": good})
    out, name = chain.run(X)
    assert name == "b" and out["action"].shape == (4, 2)
    assert chain.counters.load_failures == 1
    assert chain.counters.switches == []  # nothing was running yet


def test_log_lines_say_which_model_the_chain_runs(caplog: pytest.LogCaptureFixture):
    """A box runs two chains; the same 'did not load' twice used to read as a repeated line."""
    with caplog.at_level("WARNING", logger="fusion_edge.runtime.fallback"):
        _chain({"a": BackendError("no CUDA device"), "b": FakeBackend("b")}, role="full model (escalation)")
    assert "backend onnxruntime-cpu for the full model (escalation) did not load: no CUDA device" in caplog.text


def test_runtime_error_switches_to_next_and_logs_reason():
    bad, good = FakeBackend("a", "raise"), FakeBackend("b")
    chain = _chain({"a": bad, "b": good})
    _, name = chain.run(X)
    assert name == "b"
    assert bad.closed
    assert chain.counters.runtime_errors == 1
    (sw,) = chain.counters.switches
    assert (sw.from_backend, sw.to_backend) == ("a", "b")
    assert "illegal memory access" in sw.reason


def test_hung_backend_times_out_and_switches():
    chain = _chain({"a": FakeBackend("a", "hang"), "b": FakeBackend("b")}, timeout_s=0.2)
    t0 = time.perf_counter()
    _, name = chain.run(X)
    assert name == "b"
    assert time.perf_counter() - t0 < 2.0
    assert chain.counters.timeouts == 1


def test_deadline_misses_in_a_row_switch():
    slow, fast = FakeBackend("a", delay=0.05), FakeBackend("b")
    chain = _chain({"a": slow, "b": fast}, deadline_ms=20, miss_limit=3)
    names = [chain.run(X)[1] for _ in range(5)]
    assert names[:3] == ["a", "a", "a"] and names[3:] == ["b", "b"]
    assert chain.counters.deadline_misses >= 3  # "b" may miss too on a loaded machine
    assert "deadline" in chain.counters.switches[0].reason


def test_all_backends_failing_raises_with_every_reason():
    chain = _chain({"a": FakeBackend("a", "raise"), "b": BackendError("b: missing file")})
    with pytest.raises(BackendError, match="no backend could be loaded.*illegal memory.*missing file"):
        chain.run(X)


def test_escalator_reruns_only_unsure_windows():
    # rows 0 and 2 are unsure (near-equal logits); the full model answers class 1 for all rows
    compressed = np.array([[0.1, 0.0], [4.0, 0.0], [0.0, 0.2], [5.0, 0.0]], np.float32)
    full = FakeBackend("full", logits=np.tile([[0.0, 9.0]], (4, 1)))
    chain = _chain({"full": full})
    esc = Escalator(chain, threshold=0.7, class_tasks=["action"])
    outputs = {"action": compressed, "quality": np.zeros(4, np.float32)}
    merged, mask, reasons, name = esc.apply(X, outputs)
    assert mask.tolist() == [True, False, True, False]
    assert merged["action"].argmax(1).tolist() == [1, 0, 1, 0]
    assert merged["quality"][[0, 2]].tolist() == [0.5, 0.5] and merged["quality"][1] == 0.0
    assert name == "full" and esc.escalated == 2
    assert reasons[0].startswith("action confidence 0.52 < 0.70") and reasons[1] is None


def test_escalator_without_full_backend_reports_why():
    esc = Escalator(None, threshold=0.9, class_tasks=["action"])
    out = {"action": np.array([[0.0, 0.1]], np.float32)}
    merged, mask, reasons, name = esc.apply({"imu": X["imu"][:1]}, out)
    assert not mask.any() and name is None
    assert "no full-precision backend" in reasons[0]


def test_softmax_rows_sum_to_one():
    p = softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    np.testing.assert_allclose(p, [[0.5, 0.5], [0.25, 0.75]])
