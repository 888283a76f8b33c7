"""Streaming versions of the DSP in :mod:`fusion_edge.runtime.dsp`, for the box.

Samples arrive in chunks of any size (one BLE notification, one GNSS fix, or a whole recording
replayed at once). Each stage here keeps a bounded state, does a constant amount of work per
sample, and gives the same numbers as the batch function on the whole array (tests compare them
with rtol/atol 1e-9 on the same data fed in random chunk sizes):

* :class:`StreamingMovingAverage` - :func:`dsp.moving_average` (causal, same warm-up);
* :class:`StreamingResampler` - :func:`dsp.resample_linear` with ``length = round(n * dst/src)``;
* :class:`GapFiller` - :func:`dsp.interpolate_gaps` with ``max_gap``;
* :class:`ImuStreamPipeline` - ``toolkit.scenario_dataset._preprocess_imu``;
* :class:`GnssStreamPipeline` - :func:`team_context.clean_gnss_track`.

Every stage carries integer host-monotonic nanosecond timestamps next to the values, so the
window assembler can place samples in time. Stages never look ahead further than they must:
the gap filler holds at most ``max_gap`` missing samples (it needs the next good sample to
interpolate), the resampler at most one input sample. ``flush()`` ends a stream the way the
batch function ends an array (a short trailing gap is held at the last good value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fusion_edge.runtime.team_context import MAX_PLAYER_SPEED

__all__ = [
    "StreamingMovingAverage",
    "StreamingResampler",
    "GapFiller",
    "EpochAligner",
    "ImuStreamConfig",
    "ImuStreamPipeline",
    "GnssStreamConfig",
    "GnssStreamPipeline",
]

_EMPTY_T = np.zeros(0, dtype=np.int64)


def _as_rows(x: np.ndarray, channels: int, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1 and channels == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != channels:
        raise ValueError(
            f"{what} expects samples shaped [n, {channels}], got {x.shape}; "
            "pass time first, one column per channel"
        )
    return x


def _as_times(times: np.ndarray | None, n: int, what: str) -> np.ndarray:
    if times is None:
        return np.zeros(n, dtype=np.int64)
    t = np.asarray(times, dtype=np.int64).reshape(-1)
    if t.shape[0] != n:
        raise ValueError(f"{what}: {n} samples but {t.shape[0]} timestamps; give one per sample")
    return t


class StreamingMovingAverage:
    """Causal moving average of ``width`` samples, fed chunk by chunk.

    Keeps the last ``width - 1`` samples; each chunk is summed with local prefix sums over
    ``[history, chunk]``, so the work per sample is constant and, unlike one running sum over
    hours, rounding errors do not accumulate. The first ``width - 1`` outputs of the stream
    average the samples seen so far, as :func:`dsp.moving_average` does. A NaN input makes the
    ``width`` outputs whose window contains it NaN (the batch function needs NaN-free input).

    Args:
        width: Window in samples, at least 1.
        channels: Number of columns.
    """

    def __init__(self, width: int, channels: int) -> None:
        if width < 1:
            raise ValueError(f"moving-average width must be >= 1, got {width}")
        self.width = int(width)
        self.channels = int(channels)
        self.reset()

    def reset(self) -> None:
        """Forget the history: the next sample starts a new warm-up."""
        self._hist = np.zeros((0, self.channels))
        self._seen = 0

    @property
    def buffered(self) -> int:
        """Samples held as history (at most ``width - 1``)."""
        return int(self._hist.shape[0])

    def push(self, x: np.ndarray) -> np.ndarray:
        """Average a chunk ``[n, channels]``; returns ``[n, channels]`` float64."""
        x = _as_rows(x, self.channels, "StreamingMovingAverage.push")
        n = x.shape[0]
        if n == 0:
            return x.copy()
        if self.width == 1:
            return x.copy()
        buf = np.concatenate([self._hist, x])
        h = self._hist.shape[0]
        nan = np.isnan(buf)
        z = np.where(nan, 0.0, buf)
        c = np.zeros((buf.shape[0] + 1, self.channels))
        np.cumsum(z, axis=0, out=c[1:])
        cn = np.zeros((buf.shape[0] + 1, self.channels), dtype=np.int64)
        np.cumsum(nan, axis=0, out=cn[1:])
        local = h + np.arange(n)
        start = np.maximum(local - self.width + 1, 0)
        count = np.minimum(self._seen + np.arange(n) + 1, self.width).astype(np.float64)
        out = (c[local + 1] - c[start]) / count[:, None]
        out[(cn[local + 1] - cn[start]) > 0] = np.nan
        self._hist = buf[-(self.width - 1) :].copy()
        self._seen += n
        return out


class StreamingResampler:
    """Linear resampling from ``src_hz`` to ``dst_hz``, fed chunk by chunk.

    Output sample ``t`` is taken at input position ``t * src_hz / dst_hz``, interpolated between
    the two neighbouring inputs exactly as :func:`dsp.resample_linear` does on the whole array
    when ``length = round(n * dst_hz / src_hz)`` and ``n * dst_hz / src_hz`` is a whole number
    (then the batch step ``n / length`` equals ``src_hz / dst_hz``). An output is emitted as soon
    as the input sample after its position has arrived; only the last input sample is kept.
    Timestamps are interpolated the same way (rounded to integer ns).

    Args:
        src_hz: Input rate.
        dst_hz: Output (model) rate.
        channels: Number of columns.
    """

    def __init__(self, src_hz: float, dst_hz: float, channels: int) -> None:
        if src_hz <= 0 or dst_hz <= 0:
            raise ValueError(f"resampling rates must be > 0, got {src_hz} -> {dst_hz} Hz")
        self.src_hz = float(src_hz)
        self.dst_hz = float(dst_hz)
        self.channels = int(channels)
        self.step = self.src_hz / self.dst_hz
        self._n_in = 0
        self._n_out = 0
        self._last = np.zeros((0, self.channels))
        self._last_t = _EMPTY_T

    @property
    def buffered(self) -> int:
        """Input samples held (0 or 1)."""
        return int(self._last.shape[0])

    @property
    def samples_in(self) -> int:
        """Input samples consumed so far."""
        return self._n_in

    @property
    def samples_out(self) -> int:
        """Output samples emitted so far."""
        return self._n_out

    def _emit(
        self, buf: np.ndarray, bt: np.ndarray, base: int, total: int, stop: int, clamp: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        t = np.arange(self._n_out, stop)
        pos = t * self.step
        i0 = np.floor(pos).astype(np.int64)
        if clamp:
            i0 = np.minimum(i0, total - 1)
            i1 = np.minimum(i0 + 1, total - 1)
        else:
            keep = i0 + 1 <= total - 1
            t, pos, i0 = t[keep], pos[keep], i0[keep]
            i1 = i0 + 1
        frac = pos - i0
        a, b = buf[i0 - base], buf[i1 - base]
        y = a * (1.0 - frac)[:, None] + b * frac[:, None]
        ta, tb = bt[i0 - base], bt[i1 - base]
        if clamp:
            # Past the last input there is no next timestamp: step on at the nominal period.
            ty = ta + np.rint((pos - i0) * (1e9 / self.src_hz)).astype(np.int64)
        else:
            ty = ta + np.rint(frac * (tb - ta)).astype(np.int64)
        self._n_out += t.shape[0]
        return y, ty

    def push(
        self, x: np.ndarray, times_ns: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Take a chunk ``[n, channels]`` (and its int64 ns times); return what is ready."""
        x = _as_rows(x, self.channels, "StreamingResampler.push")
        tx = _as_times(times_ns, x.shape[0], "StreamingResampler.push")
        if x.shape[0] == 0:
            return np.zeros((0, self.channels)), _EMPTY_T.copy()
        base = self._n_in - self._last.shape[0]
        buf = np.concatenate([self._last, x])
        bt = np.concatenate([self._last_t, tx])
        total = self._n_in + x.shape[0]
        # Outputs whose position lies before the last input (so both neighbours are known).
        stop = int(np.floor((total - 1) / self.step)) + 2
        y, ty = self._emit(buf, bt, base, total, max(stop, self._n_out), clamp=False)
        self._n_in = total
        self._last = buf[-1:].copy()
        self._last_t = bt[-1:].copy()
        return y, ty

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        """End the stream: emit the outputs up to ``round(n * dst / src)``, clamped at the end."""
        length = int(round(self._n_in * self.dst_hz / self.src_hz))
        if self._n_in == 0 or length <= self._n_out:
            return np.zeros((0, self.channels)), _EMPTY_T.copy()
        base = self._n_in - 1
        return self._emit(self._last, self._last_t, base, self._n_in, length, clamp=True)


class GapFiller:
    """Linear interpolation of short gaps, as soon as the next good sample arrives.

    A sample (row) is missing when any channel is NaN. Missing samples are held back until the
    run ends: a run of at most ``max_gap`` samples between good samples is interpolated
    (``np.interp``, as :func:`dsp.interpolate_gaps`), a leading run is held at the first good
    value; once a run grows past ``max_gap`` it is released unchanged (NaN) immediately, and the
    rest of it passes straight through. So the delay is at most ``max_gap`` samples, and only
    while a gap is open. ``flush()`` holds a short trailing run at the last good value.

    Args:
        max_gap: Longest run (samples) that is filled.
        channels: Number of columns.
    """

    def __init__(self, max_gap: int, channels: int) -> None:
        if max_gap < 0:
            raise ValueError(f"max_gap must be >= 0 samples, got {max_gap}")
        self.max_gap = int(max_gap)
        self.channels = int(channels)
        self._index = 0  # global index of the next input sample
        self._good: np.ndarray | None = None  # last good row
        self._good_i = -1
        self._pend: list[tuple[np.ndarray, np.ndarray]] = []  # held (rows, times)
        self._pend_n = 0
        self._long = False  # the open run already passed max_gap

    @property
    def buffered(self) -> int:
        """Missing samples held, waiting for the end of their gap (at most ``max_gap``)."""
        return self._pend_n

    def _release_pending(self, fill_to: np.ndarray | None, fill_i: int) -> tuple:
        rows = np.concatenate([r for r, _ in self._pend])
        times = np.concatenate([t for _, t in self._pend])
        start = fill_i - self._pend_n if fill_to is not None else self._index - self._pend_n
        if fill_to is not None and self._good is not None:
            idx = np.arange(start, start + self._pend_n, dtype=np.float64)
            xp = np.array([self._good_i, fill_i], dtype=np.float64)
            for ch in range(self.channels):
                rows[:, ch] = np.interp(idx, xp, [self._good[ch], fill_to[ch]])
        elif fill_to is not None:
            rows[:] = fill_to  # leading run: held at the first good value
        self._pend, self._pend_n = [], 0
        return rows, times

    def push(
        self, x: np.ndarray, times_ns: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Take a chunk; return ``(rows, times, was_missing)`` for the samples now final."""
        x = _as_rows(x, self.channels, "GapFiller.push")
        tx = _as_times(times_ns, x.shape[0], "GapFiller.push")
        missing = np.isnan(x).any(axis=1)
        out_x: list[np.ndarray] = []
        out_t: list[np.ndarray] = []
        out_m: list[np.ndarray] = []
        edges = np.flatnonzero(np.diff(missing.astype(np.int8))) + 1
        bounds = np.concatenate(([0], edges, [x.shape[0]])).astype(np.int64)
        for s, e in zip(bounds[:-1], bounds[1:], strict=True):
            if e <= s:
                continue
            if missing[s]:
                rows, times = x[s:e].copy(), tx[s:e]
                if self._long:
                    out_x.append(rows), out_t.append(times), out_m.append(np.ones(e - s, bool))
                else:
                    self._pend.append((rows, times))
                    self._pend_n += e - s
                    if self._pend_n > self.max_gap:
                        n = self._pend_n
                        r, t = self._release_pending(None, 0)
                        out_x.append(r), out_t.append(t), out_m.append(np.ones(n, bool))
                        self._long = True
            else:
                if self._pend_n:
                    n = self._pend_n
                    r, t = self._release_pending(x[s], self._index + s)
                    out_x.append(r), out_t.append(t), out_m.append(np.ones(n, bool))
                self._long = False
                out_x.append(x[s:e]), out_t.append(tx[s:e]), out_m.append(np.zeros(e - s, bool))
                self._good = x[e - 1].copy()
                self._good_i = self._index + int(e) - 1
        self._index += x.shape[0]
        if not out_x:
            return np.zeros((0, self.channels)), _EMPTY_T.copy(), np.zeros(0, bool)
        return np.concatenate(out_x), np.concatenate(out_t), np.concatenate(out_m)

    def flush(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """End the stream: a short trailing gap is held at the last good value."""
        if not self._pend_n:
            return np.zeros((0, self.channels)), _EMPTY_T.copy(), np.zeros(0, bool)
        n = self._pend_n
        rows = np.concatenate([r for r, _ in self._pend])
        times = np.concatenate([t for _, t in self._pend])
        if self._good is not None:
            rows[:] = self._good
        self._pend, self._pend_n = [], 0
        return rows, times, np.ones(n, bool)


class EpochAligner:
    """Put timestamped samples of a fixed-rate source onto consecutive epochs.

    A GNSS receiver that misses an epoch simply sends nothing; the stages after this one count
    samples, so a NaN row is inserted for every missed epoch (judged from the time step, so slow
    drift between clocks does not matter). A sample less than half a period after the previous
    one is a duplicate and is dropped (counted in :attr:`duplicates`).
    """

    def __init__(self, rate_hz: float, channels: int) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate must be > 0 Hz, got {rate_hz}")
        self.period_ns = 1e9 / float(rate_hz)
        self.channels = int(channels)
        self._last_t: int | None = None
        self.duplicates = 0
        self.inserted = 0

    def push(self, x: np.ndarray, times_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the chunk with NaN rows (and their times) where epochs were missed."""
        x = _as_rows(x, self.channels, "EpochAligner.push")
        tx = _as_times(times_ns, x.shape[0], "EpochAligner.push")
        rows: list[np.ndarray] = []
        times: list[int] = []
        nan_row = np.full(self.channels, np.nan)
        for row, t in zip(x, tx.tolist(), strict=True):
            if self._last_t is not None:
                steps = int(round((t - self._last_t) / self.period_ns))
                if steps < 1:
                    self.duplicates += 1
                    continue
                for k in range(1, steps):
                    rows.append(nan_row)
                    times.append(self._last_t + int(round(k * self.period_ns)))
                self.inserted += steps - 1
            rows.append(row)
            times.append(t)
            self._last_t = t
        if not rows:
            return np.zeros((0, self.channels)), _EMPTY_T.copy()
        return np.array(rows, dtype=np.float64), np.array(times, dtype=np.int64)


@dataclass(frozen=True)
class ImuStreamConfig:
    """IMU preprocessing on the box (the ``imu`` block of the bundle's preprocessing).

    Attributes:
        source_rate_hz: Pod sample rate.
        model_rate_hz: Rate the model takes (after resampling).
        moving_average: Causal moving-average width, samples at the source rate.
        max_gap_s: Longest gap interpolated; longer gaps stay NaN.
    """

    source_rate_hz: float = 100.0
    model_rate_hz: float = 40.0
    moving_average: int = 5
    max_gap_s: float = 0.5

    @classmethod
    def from_preprocessing(cls, block: dict[str, Any]) -> ImuStreamConfig:
        """Build from the ``imu`` block of ``dataset.json`` / a bundle manifest."""
        return cls(
            source_rate_hz=float(block["source_rate_hz"]),
            model_rate_hz=float(block["resample_hz"]),
            moving_average=int(block["moving_average"]),
            max_gap_s=float(block["max_gap_s"]),
        )

    @property
    def max_gap_samples(self) -> int:
        """``max_gap_s`` in source samples (rounded as the batch pipeline does)."""
        return int(round(self.max_gap_s * self.source_rate_hz))


class ImuStreamPipeline:
    """One pod's IMU stream -> model-rate samples, as the training windows were made.

    Gap filling (``max_gap_s``), a causal moving average over the good samples (long-gap
    samples count as 0 and every output whose average touched one is NaN) and linear
    resampling to ``model_rate_hz``: the same steps and numbers as the batch
    ``_preprocess_imu`` of :mod:`fusion_edge.toolkit.scenario_dataset`.

    Args:
        config: Preprocessing parameters.
        channels: IMU channels (9 for accel, gyro, mag).
    """

    def __init__(self, config: ImuStreamConfig | None = None, channels: int = 9) -> None:
        self.config = config or ImuStreamConfig()
        self.channels = int(channels)
        w = self.config.moving_average
        self._gaps = GapFiller(self.config.max_gap_samples, self.channels)
        self._avg = StreamingMovingAverage(w, self.channels)
        self._smear = StreamingMovingAverage(w, 1)
        self._resample = StreamingResampler(
            self.config.source_rate_hz, self.config.model_rate_hz, self.channels
        )
        # Block adapter state (push_block).
        self._boot: int | None = None
        self._next_index = 0
        self._last_host: int | None = None
        self.lost_samples = 0

    @property
    def buffered(self) -> int:
        """Source samples held inside the stages (bounded by ``max_gap + width + 1``)."""
        return (
            self._gaps.buffered
            + self._avg.buffered
            + self._smear.buffered
            + self._resample.buffered
        )

    def _after_gaps(self, rows: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if rows.shape[0] == 0:
            return np.zeros((0, self.channels)), _EMPTY_T.copy()
        bad = np.isnan(rows).any(axis=1)
        smooth = self._avg.push(np.where(bad[:, None], 0.0, rows))
        smeared = self._smear.push(bad.astype(np.float64)[:, None])[:, 0] > 0
        smooth[smeared] = np.nan
        return self._resample.push(smooth, times)

    def push(
        self, samples: np.ndarray, times_ns: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Feed consecutive source samples ``[n, channels]`` (NaN rows = lost).

        Returns:
            ``(values [m, channels] float64, times [m] int64 host ns)`` at the model rate.
        """
        rows, times, _ = self._gaps.push(samples, times_ns)
        return self._after_gaps(rows, times)

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        """End of stream: release held samples as the batch function ends its array."""
        rows, times, _ = self._gaps.flush()
        y1, t1 = self._after_gaps(rows, times)
        y2, t2 = self._resample.flush()
        return np.concatenate([y1, y2]), np.concatenate([t1, t2])

    def push_block(self, block: Any, clock: Any) -> tuple[np.ndarray, np.ndarray]:
        """Feed one :class:`~fusion_edge.firmware_bridge.reader.SampleBlock`.

        Lost samples before the block (``gap_before`` / the sample index, or after a reboot the
        host-time step) become NaN rows, so the stream stays one sample per source period.

        Args:
            block: The reader's block (SI samples, device timestamps).
            clock: Anything with ``to_host_ns(device_time_us, boot_id)``, e.g. a
                :class:`~fusion_edge.calibration.clock.ClockMapper` that has observed the block.
        """
        rate = float(block.sample_rate_hz)
        period_ns = 1e9 / rate
        dev_us = block.sample_times_us()
        first_host = int(clock.to_host_ns(int(dev_us[0]), block.boot_id))
        times = first_host + (dev_us - dev_us[0]) * 1000
        samples = np.asarray(block.samples, dtype=np.float64)
        if self._last_host is None:
            gap = 0
        elif block.boot_id == self._boot:
            gap = int(block.first_sample_index) - self._next_index
        else:  # a reboot restarts the sample index: judge the hole by host time
            gap = max(int(round((first_host - self._last_host) / period_ns)) - 1, 0)
        if gap < 0:  # overlap (should not happen after the reader): drop what we already have
            samples, times = samples[-gap:], times[-gap:]
            gap = 0
        if gap:
            back = np.rint(np.arange(gap, 0, -1) * period_ns).astype(np.int64)
            samples = np.concatenate([np.full((gap, self.channels), np.nan), samples])
            times = np.concatenate([first_host - back, times])
            self.lost_samples += gap
        if self._last_host is not None and times.shape[0]:
            # A refitted clock may step back a little: keep timestamps increasing.
            times = np.maximum(times, self._last_host + 1 + np.arange(times.shape[0]))
        self._boot = block.boot_id
        self._next_index = int(block.first_sample_index) + block.n_samples
        if times.shape[0]:
            self._last_host = int(times[-1])
        return self.push(samples, times)


@dataclass(frozen=True)
class GnssStreamConfig:
    """GNSS cleaning on the box (the ``position`` block of the bundle's preprocessing).

    Attributes:
        rate_hz: Receiver fix rate.
        moving_average: Causal smoothing width, fixes.
        max_gap_s: Longest gap interpolated.
        max_speed: Fastest plausible player, m/s (faster jumps are multipath and rejected).
    """

    rate_hz: float = 10.0
    moving_average: int = 3
    max_gap_s: float = 3.0
    max_speed: float = MAX_PLAYER_SPEED

    @classmethod
    def from_preprocessing(cls, block: dict[str, Any]) -> GnssStreamConfig:
        """Build from the ``position`` block of ``dataset.json`` / a bundle manifest."""
        return cls(
            rate_hz=float(block["source_rate_hz"]),
            moving_average=int(block["moving_average"]),
            max_gap_s=float(block["max_gap_s"]),
        )


class GnssStreamPipeline:
    """One receiver's fixes ``(x, y, speed, course_rad)`` -> cleaned track ``(x, y, vx, vy)``.

    The same steps and numbers as :func:`team_context.clean_gnss_track`: multipath jumps
    rejected, gaps up to ``max_gap_s`` interpolated, and a causal moving average that restarts
    after every remaining (long) gap. Positions are pitch coordinates in metres: projecting
    latitude/longitude onto the pitch is the caller's job.

    Args:
        config: Cleaning parameters.
        align_epochs: Insert NaN rows for epochs missed, judged from the timestamps (needs
            ``times_ns`` on every push). Without it, rows must be consecutive epochs.
    """

    def __init__(
        self, config: GnssStreamConfig | None = None, *, align_epochs: bool = True
    ) -> None:
        self.config = config or GnssStreamConfig()
        self.dt = 1.0 / self.config.rate_hz
        self._align = EpochAligner(self.config.rate_hz, 4) if align_epochs else None
        self._gaps = GapFiller(int(round(self.config.max_gap_s * self.config.rate_hz)), 4)
        self._avg = StreamingMovingAverage(self.config.moving_average, 4)
        self._index = 0
        self._last_xy: np.ndarray | None = None
        self._last_i = 0
        self.rejected = 0

    @property
    def buffered(self) -> int:
        """Fixes held inside the stages (bounded by ``max_gap + width``)."""
        return self._gaps.buffered + self._avg.buffered

    def _reject_jumps(self, fixes: np.ndarray) -> np.ndarray:
        xy = fixes[:, :2].copy()
        for k in range(xy.shape[0]):
            i = self._index + k
            if np.isnan(xy[k]).any():
                continue
            if self._last_xy is not None:
                dist = float(np.hypot(*(xy[k] - self._last_xy)))
                if dist > self.config.max_speed * self.dt * (i - self._last_i) + 3.0:
                    xy[k] = np.nan
                    self.rejected += 1
                    continue
            self._last_xy = xy[k].copy()
            self._last_i = i
        self._index += xy.shape[0]
        return xy

    def _smooth(self, rows: np.ndarray) -> np.ndarray:
        out = np.full_like(rows, np.nan)
        bad = np.isnan(rows).any(axis=1)
        edges = np.flatnonzero(np.diff(bad.astype(np.int8))) + 1
        bounds = np.concatenate(([0], edges, [rows.shape[0]])).astype(np.int64)
        for s, e in zip(bounds[:-1], bounds[1:], strict=True):
            if e <= s:
                continue
            if bad[s]:
                self._avg.reset()  # a long gap ends a stretch: the next one warms up afresh
            else:
                out[s:e] = self._avg.push(rows[s:e])
        return out

    def push(
        self, fixes: np.ndarray, times_ns: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Feed fixes ``[k, 4]``; return ``(track [m, 4], times [m] int64)`` now final."""
        fixes = _as_rows(fixes, 4, "GnssStreamPipeline.push")
        if self._align is not None:
            if times_ns is None:
                raise ValueError(
                    "GnssStreamPipeline.push needs times_ns to align epochs; pass the fixes' "
                    "host times, or build the pipeline with align_epochs=False"
                )
            fixes, times_ns = self._align.push(fixes, times_ns)
        times = _as_times(times_ns, fixes.shape[0], "GnssStreamPipeline.push")
        if fixes.shape[0] == 0:
            return np.zeros((0, 4)), _EMPTY_T.copy()
        xy = self._reject_jumps(fixes)
        vel = np.column_stack(
            [fixes[:, 2] * np.cos(fixes[:, 3]), fixes[:, 2] * np.sin(fixes[:, 3])]
        )
        track = np.column_stack([xy, vel])
        track[np.isnan(track).any(axis=1)] = np.nan
        rows, t, _ = self._gaps.push(track, times)
        return self._smooth(rows), t

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        """End of stream: a short trailing gap is held at the last good fix, then smoothed."""
        rows, t, _ = self._gaps.flush()
        return self._smooth(rows), t
