"""A simulated GNSS receiver writing NMEA and/or UBX into a pseudo-terminal.

The receiver is handed its fixes: anything with ``next_fix(t_s)``, a plain callable of ``t_s``,
or an iterable, each giving a :class:`~fusion_edge.firmware_bridge.gnss_encode.FixSample`. It
knows nothing about where they come from (a scenario simulator, a recorded track, the
:class:`CircleTrackSource` test source). At ``rate_hz`` it writes each epoch into the master
side of a pty; readers open the slave path like any serial port, through pyserial.

Several sources on one receiver share the line the way NMEA 4.x allows: each sentence carries
a TAG block ``\\s:NAME*hh\\`` so a reader can tell them apart.

Faults a field kit meets are injectable: garbage bytes, corrupted sentences, dropped epochs,
and unplugging (the pty is closed, so the reader gets an I/O error, and a new one is opened on
replug; give ``link_path`` to get a stable symlink, the way udev's ``/dev/serial/by-id``
follows a re-enumerated USB receiver).
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import logging
import math
import os
import random
import threading
import time
import tty
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from fusion_edge.errors import ConfigError, TransportError
from fusion_edge.firmware_bridge.gnss_encode import (
    FixSample,
    check_talker,
    format_gga,
    format_gsa,
    format_nav_pvt,
    format_rmc,
    format_vtg,
    tag_block,
)

__all__ = [
    "CircleTrackSource",
    "FaultConfig",
    "FixSample",
    "FixSource",
    "OutputMix",
    "SimulatedReceiver",
    "SimulatedReceiverConfig",
    "as_fix_source",
    "link_load",
]

logger = logging.getLogger(__name__)

_EARTH_RADIUS_M = 6_371_000.0
_NMEA_SENTENCES = ("RMC", "VTG", "GGA", "GSA")


@runtime_checkable
class FixSource(Protocol):
    """Whatever gives the simulated receiver its fix for time ``t_s`` since start.

    Returning None means the receiver outputs nothing for that source this epoch.
    """

    def next_fix(self, t_s: float) -> FixSample | tuple[Any, ...] | None:
        """Fix at ``t_s`` seconds: (lat, lon, alt, speed_mps, course_deg, quality, sats, hdop)."""
        ...


class _CallableSource:
    def __init__(self, fn: Callable[[float], Any]) -> None:
        self._fn = fn

    def next_fix(self, t_s: float) -> Any:
        return self._fn(t_s)


class _IterableSource:
    def __init__(self, items: Iterable[Any]) -> None:
        self._it = iter(items)

    def next_fix(self, t_s: float) -> Any:
        return next(self._it, None)  # an exhausted track goes quiet, like a receiver off


def as_fix_source(obj: Any) -> FixSource:
    """Wrap an object with ``next_fix``, a callable of ``t_s`` or an iterable as a FixSource."""
    if isinstance(obj, FixSource):
        return obj
    if callable(obj):
        return _CallableSource(obj)
    if isinstance(obj, Iterable):
        return _IterableSource(obj)
    raise ConfigError(
        f"{type(obj).__name__} is not a fix source: pass an object with next_fix(t_s), a "
        "function of t_s, or an iterable of FixSample tuples"
    )


@dataclasses.dataclass(frozen=True)
class CircleTrackSource:
    """A player running laps of a circle at constant speed, counter-clockwise.

    Attributes:
        center_lat_deg, center_lon_deg: circle centre.
        radius_m: circle radius.
        speed_mps: ground speed.
        alt_m: constant altitude above mean sea level.
        fix_quality, num_sats, hdop: reported constant.
    """

    center_lat_deg: float = 51.556
    center_lon_deg: float = -0.2796
    radius_m: float = 20.0
    speed_mps: float = 5.0
    alt_m: float = 45.0
    fix_quality: int = 1
    num_sats: int = 14
    hdop: float = 0.7

    def next_fix(self, t_s: float) -> FixSample:
        """Position on the circle after ``t_s`` seconds; course is the tangent, degrees true."""
        angle = self.speed_mps * t_s / self.radius_m  # from east, counter-clockwise
        east, north = self.radius_m * math.cos(angle), self.radius_m * math.sin(angle)
        lat = self.center_lat_deg + math.degrees(north / _EARTH_RADIUS_M)
        lon = self.center_lon_deg + math.degrees(
            east / (_EARTH_RADIUS_M * math.cos(math.radians(self.center_lat_deg)))
        )
        course = math.degrees(math.atan2(-math.sin(angle), math.cos(angle))) % 360.0
        return FixSample(lat, lon, self.alt_m, self.speed_mps, course, self.fix_quality,
                         self.num_sats, self.hdop)


class OutputMix(str, enum.Enum):
    """What the receiver writes each epoch."""

    NMEA = "nmea"
    UBX = "ubx"
    BOTH = "both"


@dataclasses.dataclass(frozen=True)
class FaultConfig:
    """Periodic faults, every Nth epoch (0 = never); ``seed`` makes garbage reproducible."""

    garbage_every: int = 0
    garbage_bytes: int = 24
    corrupt_every: int = 0
    dropout_every: int = 0
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class SimulatedReceiverConfig:
    """How the simulated receiver talks.

    Attributes:
        rate_hz: epochs per second (10 Hz like a sports vest).
        output: NMEA sentences, UBX NAV-PVT, or both.
        sentences: NMEA sentences per epoch, in order (u-blox order: RMC, VTG, GGA, GSA).
        talker: NMEA talker id (``GN`` multi-GNSS, ``GP`` GPS only...).
        tag_sources: prefix every sentence with a TAG block naming its source; required when
            there is more than one source.
        tag_unix_time: add ``c:`` (UNIX seconds) to TAG blocks.
        baudrate: the line the output must fit (8N1: baudrate / 10 bytes per second).
        start_utc: UTC of epoch 0; the current time, floored to the second, when None.
        link_path: a symlink kept pointing at the current pty slave, or None.
        faults: periodic fault injection.
    """

    rate_hz: float = 10.0
    output: OutputMix = OutputMix.NMEA
    sentences: tuple[str, ...] = _NMEA_SENTENCES
    talker: str = "GN"
    tag_sources: bool = False
    tag_unix_time: bool = True
    baudrate: int = 115200
    start_utc: datetime | None = None
    link_path: str | None = None
    faults: FaultConfig = FaultConfig()

    def __post_init__(self) -> None:
        if not 0 < self.rate_hz <= 50:
            raise ConfigError(f"rate_hz={self.rate_hz} is outside 0-50 Hz; receivers run 1-25 Hz")
        unknown = set(self.sentences) - set(_NMEA_SENTENCES)
        if unknown:
            raise ConfigError(
                f"sentences {sorted(unknown)} cannot be simulated; choose from {_NMEA_SENTENCES}"
            )
        try:
            check_talker(self.talker)
        except ValueError as error:
            raise ConfigError(str(error)) from None


def link_load(bytes_per_epoch: int, rate_hz: float, baudrate: int) -> float:
    """Fraction of an 8N1 serial line an output needs (above 1.0 the receiver falls behind)."""
    return bytes_per_epoch * rate_hz * 10.0 / baudrate


#: A fix as long as any real one formats, to size the output against the line budget.
_WIDEST_FIX = FixSample(-33.8568, -151.2153, 1234.5, 12.345, 359.99, 1, 24, 0.55)


class SimulatedReceiver:
    """Writes GNSS epochs from one or more fix sources into a pseudo-terminal.

    Args:
        source: a fix source, or a mapping ``{name: source}`` for several receivers sharing
            the line (then ``config.tag_sources`` must be True).
        config: output, rate, line and faults.
        name: the TAG source name of a single source.

    Example:
        >>> with SimulatedReceiver(CircleTrackSource()) as rx:
        ...     transport = SerialGnssTransport(rx.port).start()
    """

    def __init__(
        self,
        source: Any,
        config: SimulatedReceiverConfig | None = None,
        *,
        name: str = "rx1",
    ) -> None:
        self.config = config or SimulatedReceiverConfig()
        raw_sources = dict(source) if isinstance(source, Mapping) else {name: source}
        if len(raw_sources) > 1 and not self.config.tag_sources:
            raise ConfigError(
                f"{len(raw_sources)} sources on one line cannot be told apart without TAG "
                "blocks: set SimulatedReceiverConfig(tag_sources=True)"
            )
        self.sources = {key: as_fix_source(value) for key, value in raw_sources.items()}
        for key in self.sources:
            tag_block(key)  # validates the name now rather than on the writer thread
        start = self.config.start_utc or datetime.now(timezone.utc).replace(microsecond=0)
        self.start_utc = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
        widest = sum(len(self._render_source(key, _WIDEST_FIX, self.start_utc))
                     for key in self.sources)
        self.link_load = link_load(widest, self.config.rate_hz, self.config.baudrate)
        if self.link_load > 1.0:
            raise ConfigError(
                f"{len(self.sources)} source(s) x {widest // len(self.sources)} bytes per epoch "
                f"at {self.config.rate_hz:g} Hz need {self.link_load:.0%} of a "
                f"{self.config.baudrate} baud line: lower the rate, send fewer sentences (never "
                "GSV/GLL at 10 Hz), send UBX NAV-PVT only, or raise the baud rate"
            )
        self._rng = random.Random(self.config.faults.seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._slave_path: str | None = None
        self.epochs_written = 0
        self.bytes_written = 0
        self.bytes_dropped = 0

    # ------------------------------------------------------------------------------ output

    def _render_source(self, key: str, sample: FixSample, utc: datetime) -> bytes:
        cfg = self.config
        tag = None
        if cfg.tag_sources:
            tag = tag_block(key, utc.timestamp() if cfg.tag_unix_time else None)
        out = b""
        if cfg.output in (OutputMix.NMEA, OutputMix.BOTH):
            writers = {
                "RMC": lambda: format_rmc(sample, utc, talker=cfg.talker, tag=tag),
                "VTG": lambda: format_vtg(sample, talker=cfg.talker, tag=tag),
                "GGA": lambda: format_gga(sample, utc, talker=cfg.talker, tag=tag),
                "GSA": lambda: format_gsa(sample, talker=cfg.talker, tag=tag),
            }
            out += b"".join(writers[name]() for name in cfg.sentences)
        if cfg.output in (OutputMix.UBX, OutputMix.BOTH):
            out += format_nav_pvt(sample, utc)
        return out

    def epoch_utc(self, index: int) -> datetime:
        """UTC of epoch ``index`` (exact multiples of the epoch period)."""
        return self.start_utc + timedelta(microseconds=round(index * 1e6 / self.config.rate_hz))

    def render_epoch(self, index: int) -> bytes:
        """Every source's output for epoch ``index``, faults included (no I/O)."""
        faults = self.config.faults
        if faults.dropout_every and index % faults.dropout_every == faults.dropout_every - 1:
            return b""
        t_s = index / self.config.rate_hz
        utc = self.epoch_utc(index)
        out = bytearray()
        for key, source in self.sources.items():
            fix = source.next_fix(t_s)
            if fix is not None:
                out += self._render_source(key, FixSample(*fix), utc)
        corrupt = faults.corrupt_every and index % faults.corrupt_every == faults.corrupt_every - 1
        if corrupt and out:
            # Flip a bit of a byte in the first frame's content: its checksum no longer matches.
            out[8] ^= 0x01
        if faults.garbage_every and index % faults.garbage_every == faults.garbage_every - 1:
            out[0:0] = bytes(self._rng.randrange(256) for _ in range(faults.garbage_bytes))
        return bytes(out)

    # --------------------------------------------------------------------------- the pty

    @property
    def port(self) -> str:
        """Path a reader opens: ``link_path`` when set, else the current pty slave."""
        if self.config.link_path:
            return self.config.link_path
        if self._slave_path is None:
            raise TransportError("the simulated receiver has no pty yet: call start() first")
        return self._slave_path

    @property
    def plugged(self) -> bool:
        """True while a pty is open."""
        return self._master is not None

    def _check_link_path(self) -> None:
        """Refuse a ``link_path`` that would replace a real file, or whose folder is missing."""
        link = self.config.link_path
        if not link:
            return
        if os.path.lexists(link) and not os.path.islink(link):
            raise ConfigError(
                f"--link {link} exists and is not a symlink; the simulator would replace it "
                "(and remove it at the end): give a new path, e.g. /tmp/gnss-sim"
            )
        folder = os.path.dirname(os.path.abspath(link))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise ConfigError(
                f"--link {link}: the folder {folder} does not exist or cannot be written; give "
                "a path in a writable folder, e.g. /tmp/gnss-sim"
            )

    def _open_pty(self) -> None:
        self._check_link_path()
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation before the reader configures it
        os.set_blocking(master, False)  # a full buffer drops bytes, like a UART nobody reads
        self._master, self._slave = master, slave
        self._slave_path = os.ttyname(slave)
        if self.config.link_path:
            tmp = f"{self.config.link_path}.tmp{os.getpid()}"
            os.symlink(self._slave_path, tmp)
            os.replace(tmp, self.config.link_path)

    def unplug(self) -> None:
        """Close the pty (readers get an I/O error) and remove ``link_path``."""
        with self._lock:
            if self.config.link_path:
                try:
                    os.unlink(self.config.link_path)
                except FileNotFoundError:
                    pass
            for fd in (self._master, self._slave):
                if fd is not None:
                    os.close(fd)
            self._master = self._slave = None

    def replug(self) -> str:
        """Open a new pty (a new slave path) and point ``link_path`` at it; return the port."""
        with self._lock:
            if self._master is None:
                self._open_pty()
        return self.port

    def write_raw(self, data: bytes) -> int:
        """Write bytes now (injected noise, a capture); returns how many went out."""
        with self._lock:
            if self._master is None:
                return 0
            sent = 0
            try:
                while sent < len(data):
                    sent += os.write(self._master, data[sent:])
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EIO):
                    raise
            self.bytes_written += sent
            self.bytes_dropped += len(data) - sent
            return sent

    # --------------------------------------------------------------------------- running

    def start(self) -> SimulatedReceiver:
        """Open the pty and start writing epochs at ``rate_hz`` on a background thread."""
        if self._thread is not None:
            raise TransportError("simulated receiver already started; create a new one")
        self._open_pty()
        self._thread = threading.Thread(target=self._run, name="sim-gnss", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        period = 1.0 / self.config.rate_hz
        t0 = time.monotonic()
        index = 0
        while not self._stop.is_set():
            try:
                data = self.render_epoch(index)
                if data and self.plugged:
                    self.write_raw(data)
            except Exception:  # a broken fix source must not die silently on this thread
                logger.exception("simulated GNSS receiver stopped at epoch %d", index)
                return
            self.epochs_written += 1
            index += 1
            # Sleep to the absolute deadline so the rate does not drift with write time.
            self._stop.wait(max(0.0, t0 + index * period - time.monotonic()))

    def close(self) -> None:
        """Stop writing and close the pty."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        self.unplug()

    def __enter__(self) -> SimulatedReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
