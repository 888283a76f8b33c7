"""Map device clocks (pods, GNSS receivers) onto the host monotonic clock, online.

Every packet gives one observation: the device timestamp ``d`` and the host receive time ``h``.
With ``x = d`` and ``y = h - d`` (both in ns)::

    y = offset + drift * x + delay,      delay >= 0

Transport delay is always positive and only its *minimum* is stable, so a least-squares line
through all observations would sit in the middle of the delay distribution and wander with it.
The mapping instead follows the **lower envelope**:

1. observations are reduced to the minimum ``y`` in each window of ``window_s`` of device time
   (bounded memory: the last ``max_windows`` windows are kept);
2. the slope (drift) is the Theil-Sen estimate over the window minima (the median of pairwise
   slopes: robust to a stretch of congested windows), bounded by ``max_drift_ppm`` so a short
   history cannot produce an absurd drift;
3. the line is lowered until it touches the lowest window minimum, so it lies below all of
   them: the envelope of the smallest delays, not their average.

The fit is recomputed when a window closes (about once per ``window_s``), not per packet.

The mapped time is therefore the host time a sample would have reached the host with the
smallest delay seen, minus ``latency_ns`` (a known constant transport latency, 0 by default).
A constant minimum delay shared by all devices does not affect their mutual alignment.

A new boot id means the device clock restarted: the fit starts over (the previous boot's fit is
kept for late packets of that boot). Device timestamps narrower than 64 bits are unwrapped
(``wrap_bits``). A clock that jumps backwards within one boot is refused.
"""

from __future__ import annotations

import csv
import math
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fusion_edge.csv_text import sniff_delimiter
from fusion_edge.errors import CalibrationError

__all__ = [
    "ClockConfig",
    "ClockEstimate",
    "ClockMapper",
    "ClockAlignment",
    "ClockObservation",
    "utc_to_us",
    "read_clock_csv",
    "fit_clock_observations",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # noqa: UP017 (py3.10)


@dataclass(frozen=True)
class ClockConfig:
    """How device clocks are mapped.

    Attributes:
        window_s: Device-time window over which the minimum delay is kept, s.
        max_windows: Windows kept (memory bound; the fit spans ``window_s * max_windows``).
        max_drift_ppm: Largest drift the fit may report; crystals are within ~100 ppm.
        wrap_bits: Width of the device timestamp; ``None`` for 64-bit (never wraps).
        max_backstep_us: Largest backwards step accepted as reordering, microseconds.
        latency_ns: Known constant transport latency subtracted from the mapped time, ns.
        keep_boots: Previous boots whose fits are kept for late packets.
    """

    window_s: float = 1.0
    max_windows: int = 300
    max_drift_ppm: float = 200.0
    wrap_bits: int | None = None
    max_backstep_us: int = 1_000_000
    latency_ns: int = 0
    keep_boots: int = 2

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.max_windows < 2:
            raise ValueError("ClockConfig needs window_s > 0 and max_windows >= 2")
        if self.wrap_bits is not None and not 16 <= self.wrap_bits <= 64:
            raise ValueError("ClockConfig.wrap_bits must be between 16 and 64, or None")


@dataclass(frozen=True)
class ClockObservation:
    """One packet: which device, its boot, its timestamp and when the host received it."""

    device: str
    boot_id: int
    device_time_us: int
    host_time_ns: int


@dataclass(frozen=True)
class ClockEstimate:
    """The current mapping of one device's clock.

    ``host_ns = device_us * 1000 + intercept_ns + drift * (device_us * 1000 - ref_ns)``.

    Attributes:
        device: Device name.
        boot_id: Boot the mapping belongs to.
        ref_ns: Device time (ns) the intercept refers to.
        intercept_ns: ``host - device`` at ``ref_ns``, ns (offset plus the minimum delay).
        drift_ppm: How much faster the host clock runs than the device clock, ppm.
        observations: Packets seen in this boot.
        windows: Window minima the fit used.
        span_s: Device time covered by those windows, s.
        spread_ns: Median gap between the window minima and the fitted envelope, ns: a
            conservative figure for how far the envelope may sit above the true minimum delay.
    """

    device: str
    boot_id: int
    ref_ns: int
    intercept_ns: float
    drift_ppm: float
    observations: int
    windows: int
    span_s: float
    spread_ns: float

    @property
    def offset_ns(self) -> int:
        """Host time (ns) at device time zero of this boot."""
        return int(round(self.intercept_ns - self.drift_ppm * 1e-6 * self.ref_ns))

    def host_ns(self, device_ns: int, latency_ns: int = 0) -> int:
        """Map a device time in ns (already unwrapped) to host ns."""
        corr = self.intercept_ns + self.drift_ppm * 1e-6 * (device_ns - self.ref_ns)
        return int(device_ns + round(corr)) - latency_ns


def utc_to_us(utc: datetime) -> int:
    """Microseconds since the Unix epoch of an aware UTC datetime (a GNSS fix time)."""
    if utc.tzinfo is None:
        raise CalibrationError(
            f"GNSS time {utc.isoformat()} has no time zone; pass it as an aware UTC datetime"
        )
    delta = utc - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def envelope_line(x: np.ndarray, y: np.ndarray, max_slope: float) -> tuple[float, float]:
    """``(intercept at mean x, slope)`` of the lower envelope of window minima.

    The slope is the Theil-Sen estimate (median of pairwise slopes): window minima still carry
    some delay noise, and a congested stretch of windows is an outlier the median ignores. The
    line is then lowered until it touches the lowest minimum, so it lies below every window
    minimum (a delay is never negative).

    Args:
        x: Window abscissae (relative device time), float, increasing.
        y: Window minima of ``host - device``.
        max_slope: Bound on ``|slope|``.
    """
    xm = float(x.mean())
    if x.shape[0] < 2:
        return float(y.min()), 0.0
    i, j = np.triu_indices(x.shape[0], k=1)
    dx = x[j] - x[i]
    keep = dx > 0
    slope = float(np.median((y[j] - y[i])[keep] / dx[keep])) if keep.any() else 0.0
    slope = float(np.clip(slope, -max_slope, max_slope))
    return float(np.min(y - slope * (x - xm))), slope


class _BootFit:
    """Windowed minima of one boot of one device."""

    def __init__(self, device: str, boot_id: int, cfg: ClockConfig, first_ns: int) -> None:
        self.device = device
        self.boot_id = boot_id
        self.cfg = cfg
        self.window_ns = int(cfg.window_s * 1e9)
        self.minima: OrderedDict[int, tuple[int, int]] = OrderedDict()  # window -> (x_ns, y_ns)
        self.count = 0
        self.last_ns = first_ns
        self._estimate: ClockEstimate | None = None

    def add(self, device_ns: int, host_ns: int) -> None:
        self.count += 1
        self.last_ns = max(self.last_ns, device_ns)
        w = device_ns // self.window_ns
        y = host_ns - device_ns
        current = self.minima.get(w)
        if current is None:
            if self.minima and w < next(iter(self.minima)):
                return  # older than anything kept: no longer part of the fit
            self.minima[w] = (device_ns, y)
            if len(self.minima) > 1 and w < next(reversed(self.minima)):
                self.minima = OrderedDict(sorted(self.minima.items()))
            while len(self.minima) > self.cfg.max_windows + 1:
                self.minima.popitem(last=False)
            self._estimate = None
        elif y < current[1]:
            self.minima[w] = (device_ns, y)
            # The open (newest) window joins the fit when it closes; until then only a change
            # to a closed window, or the very first window, moves the line.
            if len(self.minima) == 1 or w != next(reversed(self.minima)):
                self._estimate = None

    def estimate(self) -> ClockEstimate:
        if self._estimate is not None:
            return self._estimate
        pts = list(self.minima.values())
        if len(pts) > 1:
            pts = pts[:-1]  # closed windows only
        xs = np.array([p[0] for p in pts], dtype=np.int64)
        ref = int(xs[0])
        x = (xs - ref).astype(np.float64)
        y = np.array([p[1] for p in pts], dtype=np.float64)
        intercept, slope = envelope_line(x, y, self.cfg.max_drift_ppm * 1e-6)
        xm = float(x.mean())
        gaps = y - (intercept + slope * (x - xm))
        self._estimate = ClockEstimate(
            device=self.device,
            boot_id=self.boot_id,
            ref_ns=ref + int(round(xm)),
            intercept_ns=intercept,
            drift_ppm=slope * 1e6,
            observations=self.count,
            windows=len(pts),
            span_s=float(x[-1] - x[0]) / 1e9,
            spread_ns=float(np.median(gaps)),
        )
        return self._estimate


class ClockMapper:
    """Online mapping of one device's clock onto the host clock.

    Args:
        device: Device name (pod id or receiver port), for messages.
        config: Mapping options.

    Feed every packet with :meth:`observe`; map sample times with :meth:`to_host_ns`.
    """

    def __init__(self, device: str, config: ClockConfig | None = None) -> None:
        self.device = device
        self.config = config or ClockConfig()
        self._fit: _BootFit | None = None
        self._previous: OrderedDict[int, _BootFit] = OrderedDict()

    @property
    def boot_id(self) -> int | None:
        """The current boot id, or ``None`` before the first observation."""
        return None if self._fit is None else self._fit.boot_id

    def _unwrap(self, raw_us: int, near_ns: int) -> int:
        bits = self.config.wrap_bits
        if bits is None or bits >= 64:
            return int(raw_us) * 1000
        m = 1 << bits
        near_us = near_ns // 1000
        delta = (int(raw_us) - near_us) % m
        if delta >= m // 2:
            delta -= m
        return (near_us + delta) * 1000

    def observe(self, device_time_us: int, host_time_ns: int, boot_id: int = 0) -> None:
        """Add one packet: its device timestamp and the host time it arrived.

        Raises:
            CalibrationError: The device clock went backwards within one boot.
        """
        if self._fit is None or boot_id != self._fit.boot_id:
            if boot_id in self._previous:
                old = self._previous[boot_id]
                old.add(self._unwrap(device_time_us, old.last_ns), int(host_time_ns))
                return
            if self._fit is not None:
                self._previous[self._fit.boot_id] = self._fit
                while len(self._previous) > self.config.keep_boots:
                    self._previous.popitem(last=False)
            first = int(device_time_us) * 1000
            self._fit = _BootFit(self.device, boot_id, self.config, first)
        fit = self._fit
        device_ns = self._unwrap(device_time_us, fit.last_ns)
        if device_ns < fit.last_ns - self.config.max_backstep_us * 1000:
            raise CalibrationError(
                f"the clock of {self.device} went back by {(fit.last_ns - device_ns) / 1e9:.3f} s "
                f"within boot {boot_id}: a device clock may only restart with a new boot id. "
                "Check the firmware's boot id handling (or set wrap_bits if its timestamp wraps)"
            )
        fit.add(device_ns, int(host_time_ns))

    def estimate(self, boot_id: int | None = None) -> ClockEstimate:
        """The current mapping (of ``boot_id``, default the current boot).

        Raises:
            CalibrationError: No observation yet, or an unknown boot.
        """
        return self._fit_for(boot_id).estimate()

    def _fit_for(self, boot_id: int | None) -> _BootFit:
        if self._fit is None:
            raise CalibrationError(
                f"no packet from {self.device} has been seen yet, so its clock cannot be mapped; "
                "start streaming before mapping its sample times"
            )
        if boot_id is None or boot_id == self._fit.boot_id:
            return self._fit
        if boot_id in self._previous:
            return self._previous[boot_id]
        raise CalibrationError(
            f"{self.device} boot {boot_id} is not known (current boot {self._fit.boot_id}); "
            "samples from an old boot can only be mapped while its fit is kept"
        )

    def to_host_ns(self, device_time_us: int, boot_id: int | None = None) -> int:
        """Host monotonic time (integer ns) of a device timestamp (microseconds)."""
        fit = self._fit_for(boot_id)
        device_ns = self._unwrap(device_time_us, fit.last_ns)
        return fit.estimate().host_ns(device_ns, self.config.latency_ns)


class ClockAlignment:
    """One :class:`ClockMapper` per device (pods and GNSS receivers), created on first sight."""

    def __init__(self, config: ClockConfig | None = None) -> None:
        self.config = config or ClockConfig()
        self._mappers: dict[Hashable, ClockMapper] = {}

    def __contains__(self, device: Hashable) -> bool:
        return device in self._mappers

    @property
    def devices(self) -> tuple[Hashable, ...]:
        """Devices seen so far."""
        return tuple(self._mappers)

    def mapper(self, device: Hashable) -> ClockMapper:
        """The mapper of ``device`` (created if new)."""
        if device not in self._mappers:
            self._mappers[device] = ClockMapper(str(device), self.config)
        return self._mappers[device]

    def observe(
        self, device: Hashable, device_time_us: int, host_time_ns: int, boot_id: int = 0
    ) -> None:
        """Add one packet of ``device``."""
        self.mapper(device).observe(device_time_us, host_time_ns, boot_id)

    def reset(self, device: Hashable) -> None:
        """Forget ``device``'s mapping: its clock stepped and the next packet starts a new fit."""
        self._mappers.pop(device, None)

    def observe_utc(self, receiver: Hashable, utc: datetime, host_time_ns: int) -> None:
        """Add one GNSS fix: its UTC time and the host time its sentence arrived."""
        self.mapper(receiver).observe(utc_to_us(utc), host_time_ns, 0)

    def to_host_ns(self, device: Hashable, device_time_us: int, boot_id: int | None = None) -> int:
        """Host time (ns) of a device timestamp.

        Raises:
            CalibrationError: The device has not been seen.
        """
        if device not in self._mappers:
            raise CalibrationError(
                f"no packet from {device} has been seen yet, so its clock cannot be mapped; "
                "start streaming before mapping its sample times"
            )
        return self._mappers[device].to_host_ns(device_time_us, boot_id)

    def estimates(self) -> list[ClockEstimate]:
        """The current mapping of every device."""
        return [m.estimate() for m in self._mappers.values() if m.boot_id is not None]

    def alignment_error_ns(self) -> float:
        """Estimated worst misalignment between two devices, ns.

        Each envelope sits at most about its ``spread_ns`` above the true minimum delay and
        never far below it, so two devices disagree by up to the largest spread.
        """
        spreads = [e.spread_ns for e in self.estimates()]
        return float(max(spreads)) if spreads else float("nan")


def read_clock_csv(path: str | Path) -> list[ClockObservation]:
    """Read observations from a CSV with columns ``device,boot_id,device_time_us,host_time_ns``.

    Raises:
        CalibrationError: Missing file or columns, or values that are not integers.
    """
    path = Path(path)
    wanted = ("device", "boot_id", "device_time_us", "host_time_ns")
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise CalibrationError(
            f"clock recording {path} {what}; give a CSV with columns {','.join(wanted)}"
        )
    out: list[ClockObservation] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # a BOM (Excel) is not part of the header
            # ';' files (Excel, decimal-comma locales) read as ',' ones
            reader = csv.DictReader(f, delimiter=sniff_delimiter(f))
            names = [n.strip() for n in (reader.fieldnames or [])]
            missing = [c for c in wanted if c not in names]
            if missing:
                raise CalibrationError(
                    f"{path}: the header lacks column(s) {', '.join(missing)}; the header must be "
                    f"{','.join(wanted)}"
                )
            for line_no, row in enumerate(reader, start=2):
                row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
                try:
                    obs = ClockObservation(
                        device=row["device"],
                        boot_id=int(row["boot_id"]),
                        device_time_us=int(row["device_time_us"]),
                        host_time_ns=int(row["host_time_ns"]),
                    )
                except ValueError:
                    raise CalibrationError(
                        f"{path}: line {line_no} is not device,<int>,<int>,<int> ({row}); fix or "
                        "drop that row"
                    ) from None
                if not obs.device:
                    raise CalibrationError(f"{path}: line {line_no} has no device name; fix that row")
                out.append(obs)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CalibrationError(
            f"{path} is not a text CSV ({exc}); give a UTF-8 CSV with columns {','.join(wanted)}"
        ) from None
    if not out:
        raise CalibrationError(f"{path}: no observations; record some packets first")
    return out


def check_clock_units(observations: Sequence[ClockObservation], where: str = "the recording") -> None:
    """Refuse observations whose two clocks do not advance together, naming the likely cause.

    A device clock in microseconds and a host clock in nanoseconds advance 1 us : 1000 ns, give
    or take a crystal's ppm. A CSV with host times in microseconds, device times in
    milliseconds, or the two columns swapped used to fit anyway, to a drift pinned at the fit's
    bound and an alignment error of hours.

    Raises:
        CalibrationError: for the first device whose ratio is off, with the columns to fix.
    """
    spans: dict[tuple[str, int], list[int]] = {}
    for o in observations:
        s = spans.setdefault((o.device, o.boot_id), [o.device_time_us, o.device_time_us,
                                                     o.host_time_ns, o.host_time_ns])
        s[0], s[1] = min(s[0], o.device_time_us), max(s[1], o.device_time_us)
        s[2], s[3] = min(s[2], o.host_time_ns), max(s[3], o.host_time_ns)
    for (device, boot), (d0, d1, h0, h1) in spans.items():
        device_ns, host_ns = (d1 - d0) * 1000, h1 - h0
        if host_ns < 1_000_000_000 and device_ns < 1_000_000_000:
            continue  # under a second on both clocks: too short to judge (the fit says so)
        ratio = host_ns / device_ns if device_ns else math.inf
        if 0.5 <= ratio <= 2.0:
            continue
        seen = (f"device {device!r} (boot {boot}): device_time_us spans {(d1 - d0) / 1e6:.6g} s "
                f"if it is in microseconds, host_time_ns spans {host_ns / 1e9:.6g} s if it is in "
                "nanoseconds")
        if 1e-7 < ratio < 1e-5:
            cause = ("the two time columns look swapped (device_time_us holds nanoseconds, "
                     "host_time_ns microseconds): swap them in the header")
        elif 1e-4 < ratio < 1e-2:
            cause = ("one clock is a thousand times off: host_time_ns looks like microseconds "
                     "(multiply it by 1000), or device_time_us like nanoseconds (divide it by 1000)")
        elif 1e2 < ratio < 1e4:
            cause = ("one clock is a thousand times off: device_time_us looks like milliseconds "
                     "(multiply it by 1000)")
        else:
            cause = ("the two clocks do not advance together (host/device ratio "
                     f"{ratio:.3g}, expected 1): check which columns the times are in")
        raise CalibrationError(f"{where}: {seen}; {cause}")


def fit_clock_observations(
    observations: Iterable[ClockObservation], config: ClockConfig | None = None,
    where: str = "the recording",
) -> ClockAlignment:
    """Run recorded observations through a :class:`ClockAlignment` (the offline report),
    after `check_clock_units`."""
    observations = list(observations)
    check_clock_units(observations, where)
    alignment = ClockAlignment(config)
    for obs in observations:
        alignment.observe(obs.device, obs.device_time_us, obs.host_time_ns, obs.boot_id)
    return alignment
