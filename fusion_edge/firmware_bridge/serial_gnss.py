"""Read a GNSS receiver over a serial port (pyserial) on a background thread.

The transport opens the port, reads whatever the driver has, feeds a
:class:`~fusion_edge.firmware_bridge.gnss_reader.GnssStreamReader` and hands every decoded
reading to a callback or a bounded queue. When the port vanishes (USB receiver unplugged,
pseudo-terminal closed) it reconnects with exponential backoff, and when the port does not come
back within ``reconnect_timeout_s`` it stops with a :class:`~fusion_edge.errors.TransportError`
naming the port and what to check.

Open the stable name where there is one (``/dev/serial/by-id/usb-u-blox_...``): udev removes it
on unplug and recreates it on replug, even when the kernel picks another ``ttyACMn``.

pyserial is imported here, not in the package ``__init__``, so ``import fusion_edge`` stays light.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from fusion_edge.errors import MissingDependencyError, TransportError
from fusion_edge.firmware_bridge.gnss_parse import GnssParseError
from fusion_edge.firmware_bridge.gnss_reader import BadFramePolicy, GnssReading, GnssStreamReader

logger = logging.getLogger(__name__)

_CHECKLIST = (
    "Is the receiver plugged in and powered? List ports with `ls /dev/ttyUSB* /dev/ttyACM* "
    "/dev/serial/by-id/`. Is the user in the dialout group (`groups`; fix with "
    "`sudo usermod -aG dialout $USER`, then log in again)? Is another program holding the port "
    "(`fuser {port}`)?"
)


@dataclasses.dataclass(frozen=True)
class SerialGnssConfig:
    """How to open, read and re-open the port.

    Attributes:
        baudrate: line speed; 115200 carries GGA+RMC+VTG+GSA or NAV-PVT at 10 Hz, not GSV.
        read_timeout_s: longest a read blocks; bounds how fast ``close`` returns.
        open_timeout_s: how long ``start`` keeps trying to open a port that is not there yet
            (0: fail at once).
        reconnect_timeout_s: after a disconnect, how long to keep trying before giving up.
        backoff_initial_s: first wait between reconnect attempts; doubles up to
            ``backoff_max_s``.
        backoff_max_s: longest wait between reconnect attempts.
        queue_size: readings held for ``get`` when no callback is given; when full, the
            oldest is dropped (fresh positions matter more than old ones) and counted.
        policy: what the stream reader does with bad frames.
        exclusive: lock the port (POSIX ``flock``) so a second reader fails loudly instead of
            silently stealing half the bytes.
    """

    baudrate: int = 115200
    read_timeout_s: float = 0.05
    open_timeout_s: float = 0.0
    reconnect_timeout_s: float = 10.0
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 1.0
    queue_size: int = 1024
    policy: BadFramePolicy = BadFramePolicy.LOG
    exclusive: bool = True

    def __post_init__(self) -> None:
        for name in ("read_timeout_s", "backoff_initial_s", "backoff_max_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SerialGnssConfig.{name} must be > 0 seconds")
        for name in ("open_timeout_s", "reconnect_timeout_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"SerialGnssConfig.{name} must be >= 0 seconds")
        if self.baudrate <= 0 or self.queue_size <= 0:
            raise ValueError("SerialGnssConfig.baudrate and queue_size must be positive")


@dataclasses.dataclass
class SerialCounters:
    """Link-level totals (the frame totals are in ``transport.reader.counters``).

    Attributes:
        bytes_read: bytes received from the port.
        disconnects: times the port failed while open.
        reconnects: times it was re-opened after a disconnect.
        reconnect_attempts: open attempts made while reconnecting (failed ones included).
        queue_dropped: readings dropped because the queue was full.
    """

    bytes_read: int = 0
    disconnects: int = 0
    reconnects: int = 0
    reconnect_attempts: int = 0
    queue_dropped: int = 0


def not_a_device(port: str) -> str | None:
    """``"a regular file"`` / ``"a folder"`` when ``port`` exists but cannot be a serial port."""
    try:
        mode = os.stat(port).st_mode
    except OSError:
        return None  # missing (unplugged): the checklist applies
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a regular file"
    return None


def _import_serial() -> Any:
    try:
        import serial  # noqa: PLC0415 - optional dependency, imported where it is needed
    except ImportError as error:
        raise MissingDependencyError(
            "pyserial", "edge", "Reading a serial GNSS receiver"
        ) from error
    return serial


class SerialGnssTransport:
    """A GNSS receiver on a serial port, read on a background thread.

    Args:
        port: device path (``/dev/ttyACM0``, ``/dev/serial/by-id/...``, a pty slave path).
        config: port, reconnect and delivery settings.
        on_reading: called on the reader thread with every :class:`GnssReading`; when None,
            readings go to a queue read with :meth:`get`. To feed asyncio, pass
            ``lambda r: loop.call_soon_threadsafe(aqueue.put_nowait, r)``.
        on_error: called once on the reader thread with the :class:`TransportError` that
            stopped the transport.
        reader: the stream reader to feed (a fresh one with ``config.policy`` when None).

    Example:
        >>> with SerialGnssTransport("/dev/ttyACM0") as gnss:
        ...     reading = gnss.get(timeout_s=1.0)
    """

    def __init__(
        self,
        port: str,
        config: SerialGnssConfig | None = None,
        *,
        on_reading: Callable[[GnssReading], None] | None = None,
        on_error: Callable[[TransportError], None] | None = None,
        reader: GnssStreamReader | None = None,
    ) -> None:
        self.port = port
        self.config = config or SerialGnssConfig()
        self.reader = reader or GnssStreamReader(policy=self.config.policy)
        self._on_reading = on_reading
        self._on_error = on_error
        self._queue: queue.Queue[GnssReading] = queue.Queue(maxsize=self.config.queue_size)
        self._counters = SerialCounters()
        self._serial_module = _import_serial()
        self._serial: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: TransportError | None = None
        self._connected = threading.Event()
        self._last_open_error: BaseException | None = None

    # ------------------------------------------------------------------------------ public

    @property
    def counters(self) -> SerialCounters:
        """A snapshot of the link-level totals."""
        return dataclasses.replace(self._counters)

    @property
    def error(self) -> TransportError | None:
        """The error that stopped the transport, or None while it runs (or after a clean close)."""
        return self._error

    @property
    def connected(self) -> bool:
        """True while the port is open."""
        return self._connected.is_set()

    @property
    def running(self) -> bool:
        """True while the reader thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> SerialGnssTransport:
        """Open the port and start the reader thread.

        Raises:
            TransportError: the port cannot be opened within ``config.open_timeout_s``.
        """
        if self._thread is not None:
            raise TransportError(f"GNSS transport on {self.port!r} is already started; "
                                 "create a new transport to read the port again")
        deadline = time.monotonic() + self.config.open_timeout_s
        self._serial = self._open_until(deadline, counting=False)
        if self._serial is None:
            raise self._give_up(self._last_open_error, self.config.open_timeout_s, initial=True)
        self._connected.set()
        self._thread = threading.Thread(
            target=self._run, name=f"gnss-serial:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the reader thread and close the port; safe to call twice."""
        self._stop.set()
        ser = self._serial
        if ser is not None and hasattr(ser, "cancel_read"):
            try:
                ser.cancel_read()  # wake a blocked read at once instead of at its timeout
            except (OSError, self._serial_module.SerialException):
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        self._close_port()

    def get(self, timeout_s: float | None = None) -> GnssReading | None:
        """Next queued reading, or None after ``timeout_s`` (only without ``on_reading``).

        Raises:
            TransportError: the transport stopped because the port did not come back, and
                nothing is left in the queue.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                return self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._error is not None and self._queue.empty():
                    raise self._error from None
                if deadline is not None and time.monotonic() >= deadline:
                    return None

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until the port is open (e.g. after a reconnect); False on timeout."""
        return self._connected.wait(timeout_s)

    def __enter__(self) -> SerialGnssTransport:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---------------------------------------------------------------------------- internals

    def _open_once(self) -> Any:
        serial = self._serial_module
        try:
            return serial.Serial(
                self.port,
                self.config.baudrate,
                timeout=self.config.read_timeout_s,
                exclusive=self.config.exclusive or None,
            )
        except (serial.SerialException, OSError) as error:
            self._last_open_error = error
            return None

    def _open_until(self, deadline: float, *, counting: bool) -> Any:
        """Try to open the port with exponential backoff until ``deadline``; None if never."""
        delay = self.config.backoff_initial_s
        while not self._stop.is_set():
            if counting:
                self._counters.reconnect_attempts += 1
            ser = self._open_once()
            if ser is not None:
                return ser
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._stop.wait(min(delay, remaining))
            delay = min(delay * 2.0, self.config.backoff_max_s)
        return None

    def _give_up(
        self, cause: BaseException | None, waited_s: float, *, initial: bool
    ) -> TransportError:
        if initial:
            kind = not_a_device(self.port)
            if kind is not None:
                error = TransportError(
                    f"{self.port!r} is {kind}, not a serial port: give the receiver's device, "
                    "e.g. /dev/serial/by-id/usb-u-blox_... (list them with `ls /dev/ttyUSB* "
                    "/dev/ttyACM* /dev/serial/by-id/`), or the pty that `fusion-edge gnss "
                    "simulate` prints"
                )
                error.__cause__ = cause
                return error
            what = (f"could not be opened within {waited_s:.1f} s" if waited_s > 0
                    else "could not be opened")
        else:
            what = f"disappeared and did not come back within {waited_s:.1f} s"
        error = TransportError(
            f"GNSS receiver on {self.port!r} {what} (last error: {cause}). "
            + _CHECKLIST.format(port=self.port)
        )
        error.__cause__ = cause
        return error

    def _close_port(self) -> None:
        ser, self._serial = self._serial, None
        self._connected.clear()
        if ser is not None:
            try:
                ser.close()
            except (OSError, self._serial_module.SerialException):
                pass  # the device is already gone

    def _deliver(self, reading: GnssReading) -> None:
        if self._on_reading is not None:
            try:
                self._on_reading(reading)
            except Exception:  # a consumer bug must not kill the link
                logger.exception("GNSS on_reading callback failed for %s", self.port)
            return
        while True:
            try:
                self._queue.put_nowait(reading)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self._counters.queue_dropped += 1
                except queue.Empty:
                    pass

    def _run(self) -> None:
        serial = self._serial_module
        while not self._stop.is_set():
            ser = self._serial
            try:
                data = ser.read(ser.in_waiting or 1)
            except (serial.SerialException, OSError, TypeError, AttributeError) as error:
                # TypeError/AttributeError: pyserial touching an fd that close() just released.
                if self._stop.is_set():
                    break
                if not self._reconnect(error):
                    break
                continue
            if not data:
                continue
            stamp = time.monotonic_ns()
            self._counters.bytes_read += len(data)
            for reading in self._decode(data, stamp):
                self._deliver(reading)

    def _decode(self, data: bytes, stamp: int) -> list[GnssReading]:
        """Feed the reader; under the RAISE policy log each bad frame and go on decoding."""
        readings: list[GnssReading] = []
        chunk = data
        while True:
            try:
                readings += self.reader.feed(chunk, stamp)
                return readings
            except GnssParseError as error:
                logger.error("GNSS frame error on %s: %s", self.port, error)
                chunk = b""

    def _reconnect(self, cause: BaseException) -> bool:
        """Re-open a port that failed; False (and ``error`` set) when it never comes back."""
        self._counters.disconnects += 1
        logger.warning("GNSS port %s lost (%s); reconnecting for up to %.1f s",
                       self.port, cause, self.config.reconnect_timeout_s)
        self._close_port()
        self.reader.reset()  # a half sentence from before the unplug must not glue on
        deadline = time.monotonic() + self.config.reconnect_timeout_s
        ser = self._open_until(deadline, counting=True)
        if ser is None:
            if not self._stop.is_set():
                self._error = self._give_up(
                    self._last_open_error or cause, self.config.reconnect_timeout_s,
                    initial=False,
                )
                logger.error("%s", self._error)
                if self._on_error is not None:
                    self._on_error(self._error)
            return False
        self._serial = ser
        self._connected.set()
        self._counters.reconnects += 1
        logger.info("GNSS port %s reconnected", self.port)
        return True
