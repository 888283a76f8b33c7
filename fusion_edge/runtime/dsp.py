"""The one DSP implementation: what training uses to make windows, and what the box runs.

Batch functions over whole arrays live here. Every function is causal where the box needs it to
be (the moving average), and works on float arrays shaped ``[samples, channels]`` (time first),
because that is how samples arrive from sensors.

Equations (REFERENCE.md):
- moving average ``S(t) = 1/w * sum_{i=0}^{w-1} X(t-i)``
- linear interpolation ``P(t) = P1 + (t-t1)/(t2-t1) * (P2-P1)`` across short gaps
- resampling to a common length ``X'(t) = X(t * L / T)``
- z-score ``(X - mean) / std`` with the bundle's statistics
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "moving_average",
    "interpolate_gaps",
    "resample_linear",
    "zscore",
    "reject_jumps",
]


def moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Causal moving average over time (axis 0).

    The first ``width - 1`` outputs average over the samples seen so far, so the output has the
    same length as the input and depends only on past samples (what the box can compute).

    Args:
        x: ``[samples]`` or ``[samples, channels]``; must not contain NaN (interpolate first).
        width: window width ``w`` in samples, at least 1.
    """
    if width < 1:
        raise ValueError(f"moving-average width must be >= 1, got {width}")
    x = np.asarray(x, dtype=np.float64)
    if width == 1 or x.shape[0] == 0:
        return x.copy()
    c = np.cumsum(x, axis=0)
    out = np.empty_like(x)
    n = x.shape[0]
    k = min(width, n)
    counts = np.arange(1, k + 1, dtype=np.float64).reshape((-1,) + (1,) * (x.ndim - 1))
    out[:k] = c[:k] / counts
    if n > width:
        out[width:] = (c[width:] - c[:-width]) / width
    return out


def interpolate_gaps(x: np.ndarray, max_gap: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fill NaN runs by linear interpolation between the neighbouring good samples.

    Runs at the start or end are held at the nearest good value. Runs longer than ``max_gap``
    samples are left NaN (too long to invent data for).

    Returns:
        ``(filled, was_missing)`` where ``was_missing`` marks the samples that were NaN.
    """
    x = np.array(x, dtype=np.float64, copy=True)
    squeeze = x.ndim == 1
    if squeeze:
        x = x[:, None]
    missing = np.isnan(x).any(axis=1)
    if not missing.any():
        return (x[:, 0] if squeeze else x), missing
    good = np.flatnonzero(~missing)
    if good.size == 0:
        return (x[:, 0] if squeeze else x), missing
    idx = np.arange(x.shape[0])
    fill = missing.copy()
    if max_gap is not None:
        fill &= _run_lengths(missing) <= max_gap
    for ch in range(x.shape[1]):
        x[fill, ch] = np.interp(idx[fill], good, x[good, ch])
    return (x[:, 0] if squeeze else x), missing


def _run_lengths(mask: np.ndarray) -> np.ndarray:
    """For each True element, the length of the run of True it belongs to (0 elsewhere)."""
    out = np.zeros(mask.shape[0], dtype=np.int64)
    if not mask.any():
        return out
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    for s, e in zip(starts, ends, strict=True):
        out[s:e] = e - s
    return out


def resample_linear(x: np.ndarray, length: int) -> np.ndarray:
    """Resample along time to ``length`` samples: ``X'(t) = X(t * L / T)``, linear in between.

    Sample ``t`` of the output is taken at input position ``t * L / T`` (the same start point
    and the same time span per sample), which is what the streaming resampler on the box does.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if length < 1:
        raise ValueError(f"resample length must be >= 1, got {length}")
    if n == length:
        return x.copy()
    pos = np.arange(length) * (n / length)
    i0 = np.minimum(np.floor(pos).astype(np.int64), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    frac = (pos - i0).reshape((-1,) + (1,) * (x.ndim - 1))
    return x[i0] * (1.0 - frac) + x[i1] * frac


def zscore(x: np.ndarray, mean: np.ndarray, std: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Normalize with given statistics (per channel, broadcast over the last axes given)."""
    return (np.asarray(x) - mean) / np.maximum(std, eps)


def reject_jumps(xy: np.ndarray, dt: float, max_speed: float) -> np.ndarray:
    """Mark position fixes that imply an impossible speed from the last accepted fix as NaN.

    Multipath outliers in GNSS show up as metre-scale jumps that a player cannot run. A fix is
    rejected when reaching it from the last accepted fix would need more than ``max_speed``
    (m/s) plus a 3 m noise allowance. Returns a copy with rejected rows set to NaN.
    """
    xy = np.array(xy, dtype=np.float64, copy=True)
    last = None
    last_i = 0
    for i in range(xy.shape[0]):
        if np.isnan(xy[i]).any():
            continue
        if last is not None:
            dist = float(np.hypot(*(xy[i, :2] - last)))
            if dist > max_speed * dt * (i - last_i) + 3.0:
                xy[i] = np.nan
                continue
        last = xy[i, :2].copy()
        last_i = i
    return xy
