"""A high-dynamic-range latency histogram: log-linear buckets, constant memory, mergeable.

The layout follows HdrHistogram (Gil Tene): values are integers (here nanoseconds); the range
is cut into power-of-two buckets and each bucket into the same number of linear sub-buckets, so
every recorded value keeps ``significant_digits`` decimal digits whatever its magnitude. With 3
digits, 1 ns to 1 hour fits in about 34,000 counters (270 kB) and a recorded value is off by at
most 1/2048 of itself. Recording is one ``int.bit_length`` and one array increment; percentiles
walk the counters once; two histograms of the same layout merge by adding counters.

Percentiles are read the way ``numpy.percentile`` reads sorted samples (linear interpolation
between the two order statistics around the rank), with each order statistic taken as the
middle of its sub-bucket and clamped to the exact minimum and maximum, which are kept apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from fusion_edge.errors import ConfigError

__all__ = ["LatencyHistogram", "PERCENTILES"]

#: The percentiles every report gives, with their report-key suffix.
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p999", 99.9),
)

_NS_PER_MS = 1_000_000
_FLUSH_EVERY = 4096


class LatencyHistogram:
    """Counts of latencies, ``significant_digits`` precise, from 1 ns to ``highest_ms``.

    Args:
        significant_digits: 1-4 decimal digits kept for every value (3: 0.05% worst error).
        highest_ms: Largest value kept exactly; larger ones are counted at this value and
            reported in ``saturated``.

    Example:
        >>> h = LatencyHistogram()
        >>> for ms in (1.0, 2.0, 3.0):
        ...     h.record_ms(ms)
        >>> round(h.percentile_ms(50), 2)
        2.0
    """

    def __init__(self, significant_digits: int = 3, highest_ms: float = 3_600_000.0) -> None:
        if not 1 <= int(significant_digits) <= 4:
            raise ConfigError(
                f"significant_digits={significant_digits}: give 1 to 4 (3 is HdrHistogram's usual)"
            )
        if not highest_ms > 0:
            raise ConfigError(
                f"highest_ms={highest_ms}: give the largest latency to keep, in ms (> 0)"
            )
        self.significant_digits = int(significant_digits)
        self.highest_ms = float(highest_ms)
        # Sub-buckets per bucket: the power of two that resolves 2 * 10**digits values.
        self._sub_bits = math.ceil(math.log2(2 * 10**self.significant_digits))
        self._sub_count = 1 << self._sub_bits
        self._half = self._sub_count // 2
        self._highest = max(int(self.highest_ms * _NS_PER_MS), self._sub_count)
        buckets = max(1, self._highest.bit_length() - self._sub_bits + 1)
        self._counts = np.zeros((buckets + 1) * self._half, dtype=np.int64)
        # Recording appends to this buffer (what runs in the measured path: ~0.1 us); it is
        # bucketed in vectorized batches of at most _FLUSH_EVERY values, so memory stays bounded.
        self._pending: list[float] = []
        self._count = 0
        self._saturated = 0
        self._min = None  # exact extremes, in ns
        self._max = 0
        self._sum = 0

    # ------------------------------------------------------------------ layout

    def _index(self, v: int) -> int:
        if v < self._sub_count:
            return v
        shift = v.bit_length() - self._sub_bits  # which power-of-two bucket, from 1
        return (shift + 1) * self._half + ((v >> shift) - self._half)

    def _bounds(self, index: int) -> tuple[int, int]:
        """[low, high) in ns of the values that land in counter ``index``."""
        if index < self._sub_count:
            return index, index + 1
        shift = index // self._half - 1
        sub = index % self._half + self._half
        return sub << shift, (sub + 1) << shift

    @property
    def layout(self) -> tuple[int, float]:
        """What two histograms must share to merge: (significant digits, highest ms)."""
        return self.significant_digits, self.highest_ms

    # ------------------------------------------------------------------ recording

    def record_ns(self, value_ns: float) -> None:
        """Count one latency in nanoseconds (negative values count as 0)."""
        self._pending.append(value_ns)
        if len(self._pending) >= _FLUSH_EVERY:
            self._flush()

    def record_ms(self, value_ms: float) -> None:
        """Count one latency in milliseconds."""
        self._pending.append(value_ms * _NS_PER_MS)
        if len(self._pending) >= _FLUSH_EVERY:
            self._flush()

    def record_many_ms(self, values_ms: Iterable[float]) -> None:
        """Count many latencies in milliseconds at once."""
        self._flush()
        arr = np.asarray(
            list(values_ms) if not isinstance(values_ms, np.ndarray) else values_ms, np.float64
        )
        for i in range(0, arr.size, _FLUSH_EVERY):
            self._add(arr[i : i + _FLUSH_EVERY] * _NS_PER_MS)

    def _flush(self) -> None:
        if self._pending:
            arr = np.asarray(self._pending, dtype=np.float64)
            self._pending.clear()
            self._add(arr)

    def _add(self, values_ns: np.ndarray) -> None:
        """Bucket a batch of values at once (vectorized: ~50 ns a value)."""
        v = np.floor(np.maximum(values_ns, 0.0)).astype(np.int64)
        over = v > self._highest
        if over.any():
            self._saturated += int(over.sum())
            v[over] = self._highest
        # bit_length of each value: frexp's exponent (exact below 2**53).
        bits = np.frexp(v.astype(np.float64))[1].astype(np.int64)
        shift = np.maximum(bits - self._sub_bits, 0)
        idx = np.where(
            v < self._sub_count, v, (shift + 1) * self._half + ((v >> shift) - self._half)
        )
        self._counts += np.bincount(idx, minlength=self._counts.size)
        self._count += int(v.size)
        self._sum += int(v.sum())
        lo, hi = int(v.min()), int(v.max())
        self._min = lo if self._min is None else min(self._min, lo)
        self._max = max(self._max, hi)

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """Add ``other``'s counts to this one (same layout); returns self.

        Raises:
            ConfigError: the layouts differ.
        """
        if other.layout != self.layout:
            raise ConfigError(
                f"cannot merge histograms of layouts {other.layout} and {self.layout}: make both "
                "with the same significant_digits and highest_ms"
            )
        self._flush()
        other._flush()
        self._counts += other._counts
        self._count += other._count
        self._saturated += other._saturated
        self._sum += other._sum
        if other._min is not None and (self._min is None or other._min < self._min):
            self._min = other._min
        self._max = max(self._max, other._max)
        return self

    # ------------------------------------------------------------------ reading

    @property
    def saturated(self) -> int:
        """Values above ``highest_ms`` (counted at ``highest_ms``)."""
        self._flush()
        return self._saturated

    @property
    def count(self) -> int:
        """How many values were recorded."""
        return self._count + len(self._pending)

    @property
    def min_ms(self) -> float:
        """Smallest recorded value (exact), ms; 0 when empty."""
        self._flush()
        return (self._min or 0) / _NS_PER_MS

    @property
    def max_ms(self) -> float:
        """Largest recorded value (exact), ms; 0 when empty."""
        self._flush()
        return self._max / _NS_PER_MS

    @property
    def mean_ms(self) -> float:
        """Mean of the recorded values (exact), ms; 0 when empty."""
        self._flush()
        return self._sum / self._count / _NS_PER_MS if self._count else 0.0

    @property
    def total_ms(self) -> float:
        """Sum of the recorded values (exact), ms."""
        self._flush()
        return self._sum / _NS_PER_MS

    def _order_statistic(self, k: int, cum: np.ndarray, nz: np.ndarray) -> float:
        """Value (ns) of the k-th smallest recorded value, 0-based."""
        if k <= 0:
            return float(self._min or 0)
        if k >= self._count - 1:
            return float(self._max)
        j = int(np.searchsorted(cum, k + 1))
        lo, hi = self._bounds(int(nz[j]))
        mid = (lo + hi - 1) / 2.0
        return float(min(max(mid, self._min or 0), self._max))

    def percentiles_ms(self, qs: Iterable[float]) -> list[float]:
        """Several percentiles (0-100) at once, ms; zeros when empty."""
        qs = [float(q) for q in qs]
        bad = [q for q in qs if not 0.0 <= q <= 100.0]
        if bad:
            raise ConfigError(
                f"percentile {bad[0]} is outside 0-100; give percentiles as 0-100 (99.9, not 0.999)"
            )
        self._flush()
        if self._count == 0:
            return [0.0 for _ in qs]
        counts = self._counts
        nz = np.flatnonzero(counts)
        cum = np.cumsum(counts[nz])
        out = []
        for q in qs:
            rank = q / 100.0 * (self._count - 1)
            k = int(math.floor(rank))
            frac = rank - k
            a = self._order_statistic(k, cum, nz)
            b = self._order_statistic(k + 1, cum, nz) if frac > 0 else a
            out.append((a + (b - a) * frac) / _NS_PER_MS)
        return out

    def percentile_ms(self, q: float) -> float:
        """One percentile (0-100), ms."""
        return self.percentiles_ms([q])[0]

    def summary(self) -> dict[str, float | int]:
        """``p50_ms``, ``p90_ms``, ``p99_ms``, ``p999_ms``, ``max_ms``, ``mean_ms``, ``count``."""
        values = self.percentiles_ms(q for _, q in PERCENTILES)
        out: dict[str, float | int] = {
            f"{name}_ms": round(v, 4) for (name, _), v in zip(PERCENTILES, values, strict=True)
        }
        out["max_ms"] = round(self.max_ms, 4)
        out["mean_ms"] = round(self.mean_ms, 4)
        out["count"] = int(self._count)
        return out

    def buckets_ms(self) -> tuple[np.ndarray, np.ndarray]:
        """Non-empty counters as (bucket middle in ms, count): what the plots draw."""
        self._flush()
        counts = self._counts
        nz = np.flatnonzero(counts)
        mids = np.array([sum(self._bounds(int(i))) / 2.0 for i in nz]) / _NS_PER_MS
        return mids, counts[nz].copy()

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        """Sparse counters and extremes (no pickle; reload with `from_json`)."""
        self._flush()
        nz = np.flatnonzero(self._counts)
        return {
            "significant_digits": self.significant_digits,
            "highest_ms": self.highest_ms,
            "count": int(self._count),
            "saturated": int(self._saturated),
            "min_ns": int(self._min or 0),
            "max_ns": int(self._max),
            "sum_ns": int(self._sum),
            "counters": [[int(i), int(self._counts[i])] for i in nz],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> LatencyHistogram:
        """Inverse of `to_json`."""
        h = cls(int(doc["significant_digits"]), float(doc["highest_ms"]))
        for i, c in doc["counters"]:
            h._counts[int(i)] = int(c)
        h._count = int(doc["count"])
        h._saturated = int(doc.get("saturated", 0))
        h._min = int(doc["min_ns"]) if h._count else None
        h._max = int(doc["max_ns"])
        h._sum = int(doc["sum_ns"])
        return h
