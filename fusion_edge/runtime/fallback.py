"""Keep answering: a chain of backends that falls through on failure, and escalation of unsure
windows to the full-precision model.

`BackendChain` runs the preferred backend and moves to the next one when it cannot load, raises,
hangs past its timeout, or misses its deadline too many times in a row; each switch is logged
and counted. `Escalator` reruns the windows whose compressed-model confidence is under the
bundle's threshold on the full-precision backend and merges the answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fusion_edge.errors import BackendError, FusionEdgeError
from fusion_edge.runtime.backends import (
    BackendSpec,
    InferenceBackend,
    open_backend,
    run_with_timeout,
)
from fusion_edge.runtime.events import softmax

__all__ = ["BackendChain", "ChainCounters", "Switch", "Escalator", "softmax"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Switch:
    """One move from a backend to the next."""

    at_ns: int
    from_backend: str
    to_backend: str | None
    reason: str


@dataclass
class ChainCounters:
    """What happened to the chain so far."""

    load_failures: int = 0
    runtime_errors: int = 0
    timeouts: int = 0
    deadline_misses: int = 0
    switches: list[Switch] = field(default_factory=list)

    def to_json(self) -> dict:
        """JSON form."""
        return {
            "load_failures": self.load_failures,
            "runtime_errors": self.runtime_errors,
            "timeouts": self.timeouts,
            "deadline_misses": self.deadline_misses,
            "switches": [s.__dict__ for s in self.switches],
        }


class BackendChain:
    """Backends in order of preference; the first that loads and keeps up answers.

    Args:
        specs: preference order.
        timeout_s: a call that takes longer is treated as hung.
        deadline_ms: a call over this counts as a deadline miss; ``miss_limit`` misses in a row
            move to the next backend. None: no deadline.
        opener: how a spec becomes a backend (tests inject failing ones).
        role: what the chain runs, for its log lines (a box runs two chains: the compressed
            model and the full model it escalates to).
    """

    def __init__(
        self,
        specs: Sequence[BackendSpec],
        *,
        timeout_s: float = 2.0,
        deadline_ms: float | None = None,
        miss_limit: int = 5,
        opener: Callable[[BackendSpec], InferenceBackend] = open_backend,
        role: str = "model",
    ) -> None:
        if not specs:
            raise BackendError("no backend to run: the kit's backend list and the bundle share none")
        self.specs = list(specs)
        self.timeout_s = timeout_s
        self.deadline_ms = deadline_ms
        self.miss_limit = miss_limit
        self.opener = opener
        self.role = role
        self.counters = ChainCounters()
        self._index = -1
        self._active: InferenceBackend | None = None
        self._misses = 0
        self._errors: list[str] = []
        self._advance("start")

    @property
    def active(self) -> InferenceBackend:
        """The backend that answers now."""
        if self._active is None:
            raise BackendError("no backend could be loaded: " + "; ".join(self._errors))
        return self._active

    @property
    def active_spec(self) -> BackendSpec | None:
        """The spec of the backend that answers now (None when none loaded)."""
        return self.specs[self._index] if self._active is not None else None

    @property
    def name(self) -> str:
        """Name of the active backend."""
        return self.active.name

    def _advance(self, reason: str) -> None:
        old = self._active.name if self._active is not None else None
        if self._active is not None:
            try:
                self._active.close()
            except Exception:  # closing a broken backend must not stop the fall-through
                pass
        self._active = None
        self._misses = 0
        while self._index + 1 < len(self.specs):
            self._index += 1
            spec = self.specs[self._index]
            try:
                self._active = self.opener(spec)
                break
            except FusionEdgeError as exc:
                self.counters.load_failures += 1
                self._errors.append(str(exc))
                log.warning("backend %s for the %s did not load: %s", spec.kind.value, self.role, exc)
        if old is not None:
            to = self._active.name if self._active is not None else None
            self.counters.switches.append(Switch(time.monotonic_ns(), old, to, reason))
            log.warning("backend switch for the %s %s -> %s: %s", self.role, old, to, reason)

    def run(self, inputs: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
        """Run one batch; returns (outputs, name of the backend that answered)."""
        while True:
            backend = self.active
            t0 = time.perf_counter()
            try:
                out = run_with_timeout(backend, inputs, self.timeout_s)
            except BackendError as exc:
                if "hung" in str(exc):
                    self.counters.timeouts += 1
                else:
                    self.counters.runtime_errors += 1
                self._errors.append(str(exc))
                self._advance(str(exc))
                continue
            ms = (time.perf_counter() - t0) * 1000.0
            if self.deadline_ms is not None and ms > self.deadline_ms:
                self.counters.deadline_misses += 1
                self._misses += 1
                if self._misses >= self.miss_limit and self._index + 1 < len(self.specs):
                    self._advance(f"{self._misses} deadline misses in a row (> {self.deadline_ms:.1f} ms)")
            else:
                self._misses = 0
            return out, backend.name

    def close(self) -> None:
        """Close the active backend."""
        if self._active is not None:
            self._active.close()
            self._active = None


class Escalator:
    """Rerun unsure windows on the full-precision model.

    A window is unsure when the top probability of ``gate_task`` (the first class task by
    default) is under ``threshold``. Its outputs for every task are replaced by the full
    model's.
    """

    def __init__(
        self,
        full: BackendChain | None,
        threshold: float,
        class_tasks: Sequence[str],
        gate_task: str | None = None,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"escalation threshold must be in [0, 1], got {threshold}")
        self.full = full
        self.threshold = threshold
        self.gate_task = gate_task or (class_tasks[0] if class_tasks else None)
        self.escalated = 0
        self.failed = 0

    def apply(
        self, inputs: Mapping[str, np.ndarray], outputs: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], np.ndarray, list[str | None], str | None]:
        """Returns (merged outputs, escalated mask, reason per row, full backend name or None)."""
        n = next(iter(outputs.values())).shape[0]
        mask = np.zeros(n, dtype=bool)
        reasons: list[str | None] = [None] * n
        if self.gate_task is None:
            return outputs, mask, reasons, None
        conf = softmax(outputs[self.gate_task]).max(axis=-1)
        unsure = conf < self.threshold
        if not unsure.any():
            return outputs, mask, reasons, None
        if self.full is None:
            for i in np.flatnonzero(unsure):
                reasons[i] = f"unsure ({conf[i]:.2f} < {self.threshold:.2f}) but no full-precision backend"
            return outputs, mask, reasons, None
        rows = np.flatnonzero(unsure)
        sub = {k: v[rows] for k, v in inputs.items()}
        try:
            full_out, name = self.full.run(sub)
        except BackendError as exc:
            self.failed += rows.size
            for i in rows:
                reasons[i] = f"unsure ({conf[i]:.2f}), full model failed: {exc}"
            return outputs, mask, reasons, None
        merged = {k: v.copy() for k, v in outputs.items()}
        for k in merged:
            merged[k][rows] = full_out[k]
        mask[rows] = True
        self.escalated += rows.size
        for i in rows:
            reasons[i] = f"{self.gate_task} confidence {conf[i]:.2f} < {self.threshold:.2f}"
        return merged, mask, reasons, name
