"""Find NMEA sentences, TAG-blocked sentences and UBX frames in a GNSS byte stream.

Bytes arrive in arbitrary chunks (whatever the serial driver hands over). The reader keeps what
it has not consumed, looks for the three frame starts (``$``, ``\\`` and the UBX sync ``B5 62``),
skips whatever lies between frames as garbage, and resynchronizes after noise: a text frame cut
short by a new start byte or a non-printable byte is dropped as garbage, a UBX frame with a bad
checksum is dropped by skipping only its two sync bytes, so a false sync in noise never swallows
the good frames behind it.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import re
import struct
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import BinaryIO, NamedTuple

from fusion_edge.firmware_bridge.gnss_parse import (
    UBX_MESSAGES,
    GnssFix,
    GnssMessage,
    GnssParseError,
    MessageKind,
    NmeaChecksumError,
    TagBlockError,
    UbxChecksumError,
    UnsupportedMessage,
    parse_nmea,
    parse_ubx,
)

logger = logging.getLogger(__name__)

#: Longest text frame accepted, TAG block included. NMEA limits a sentence to 82 characters;
#: proprietary sentences (u-blox PUBX) and TAG blocks run longer.
MAX_TEXT_FRAME = 512
#: Largest UBX payload accepted; a bigger length field is taken for a false sync in noise.
MAX_UBX_PAYLOAD = 4096

#: UBX message classes u-blox defines (NAV, RXM, INF, ACK, CFG, UPD, MON, AID, TIM, ESF, MGA,
#: LOG, SEC, HNR, NAV2). A sync followed by another class is noise, rejected without waiting
#: for a made-up payload length to arrive.
UBX_CLASSES = frozenset(
    {0x01, 0x02, 0x04, 0x05, 0x06, 0x09, 0x0A, 0x0B, 0x0D, 0x10, 0x13, 0x21, 0x27, 0x28, 0x29}
)

_START = re.compile(rb"[$\\\xb5]")
_TEXT_END = re.compile(rb"[^\x20-\x7e]")
_TEXT_FRAME = re.compile(rb"(?:\\[^\\$]*\\)?\$[^$\\]*")


class BadFramePolicy(str, enum.Enum):
    """What the reader does with a complete frame that fails to decode."""

    RAISE = "raise"
    LOG = "log"
    IGNORE = "ignore"


@dataclasses.dataclass
class GnssCounters:
    """Running totals of what a :class:`GnssStreamReader` has seen.

    Attributes:
        sentences_ok: NMEA sentences decoded and delivered.
        bad_checksum: NMEA sentences or TAG blocks whose checksum did not match.
        malformed: NMEA sentences with a valid checksum that still did not parse.
        unknown: well-formed NMEA sentences of a type or talker not decoded (GSV, GLL...).
        proprietary: ``$P...`` sentences, skipped.
        garbage_bytes: bytes that were part of no frame (noise, truncated frames).
        ubx_ok: UBX frames decoded and delivered.
        ubx_bad: UBX frames with a bad checksum or a length that does not fit.
        ubx_unknown: valid UBX frames of a message not decoded.
    """

    sentences_ok: int = 0
    bad_checksum: int = 0
    malformed: int = 0
    unknown: int = 0
    proprietary: int = 0
    garbage_bytes: int = 0
    ubx_ok: int = 0
    ubx_bad: int = 0
    ubx_unknown: int = 0


class GnssReading(NamedTuple):
    """One decoded frame: its bytes, the message and when its last byte reached the host.

    ``host_time_ns`` is the host monotonic clock (``time.monotonic_ns``) of the chunk that
    completed the frame; mapping it to other clocks is the caller's job.
    """

    raw: bytes
    message: GnssMessage
    host_time_ns: int


class GnssStreamReader:
    """Incremental NMEA + UBX frame finder and decoder.

    Args:
        policy: what to do with a frame that fails its checksum or does not parse.
        complete_dates: give GGA fixes a full ``utc`` from the last RMC/NAV-PVT date seen
            from the same source (GGA carries only the time of day).

    Example:
        >>> reader = GnssStreamReader()
        >>> for raw, message, host_ns in reader.feed(chunk):
        ...     print(message)
    """

    def __init__(
        self, *, policy: BadFramePolicy = BadFramePolicy.LOG, complete_dates: bool = True
    ) -> None:
        self.policy = BadFramePolicy(policy)
        self.complete_dates = complete_dates
        self._buf = bytearray()
        self._counters = GnssCounters()
        self._pending: list[GnssReading] = []
        self._last_utc: dict[str | None, datetime] = {}
        self._error: GnssParseError | None = None

    @property
    def counters(self) -> GnssCounters:
        """A snapshot of the running totals."""
        return dataclasses.replace(self._counters)

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partial frame (after a disconnect), counting its bytes as garbage."""
        self._counters.garbage_bytes += len(self._buf)
        self._buf.clear()

    def feed(self, data: bytes, host_time_ns: int | None = None) -> list[GnssReading]:
        """Add a chunk of bytes and return every frame it completed, in stream order.

        Args:
            data: the bytes just read; any size, frames may span calls.
            host_time_ns: when they were read (host monotonic ns); now if None.

        Raises:
            GnssParseError: a bad frame, under ``BadFramePolicy.RAISE``. The bad frame is
                consumed first, and readings already decoded from this chunk are returned by
                the next call, so the reader can simply be fed on.
        """
        stamp = time.monotonic_ns() if host_time_ns is None else host_time_ns
        out, self._pending = self._pending, []
        self._buf += data
        try:
            self._scan(stamp, out)
        except GnssParseError:
            self._pending = out
            raise
        return out

    def iter_stream(self, stream: BinaryIO, chunk_size: int = 4096) -> Iterator[GnssReading]:
        """Read a file-like object (a capture, a socket file) to its end, yielding readings."""
        while chunk := stream.read(chunk_size):
            yield from self.feed(chunk)

    def iter_chunks(self, chunks: Iterable[bytes]) -> Iterator[GnssReading]:
        """Feed an iterable of chunks, yielding readings as they complete."""
        for chunk in chunks:
            yield from self.feed(chunk)

    # ----------------------------------------------------------------------------- scanning

    def _scan(self, stamp: int, out: list[GnssReading]) -> None:
        buf = self._buf
        i = 0
        try:
            while i < len(buf):
                start = _START.search(buf, i)
                if start is None:
                    self._counters.garbage_bytes += len(buf) - i
                    i = len(buf)
                    break
                if start.start() > i:
                    self._counters.garbage_bytes += start.start() - i
                    i = start.start()
                step = self._ubx_frame(i, stamp, out) if buf[i] == 0xB5 else self._text_frame(
                    i, stamp, out
                )
                if step == 0:  # incomplete: wait for more bytes
                    break
                i += step
                if self._error is not None:  # RAISE policy: consume the frame, then raise
                    error, self._error = self._error, None
                    raise error
        finally:
            del buf[:i]

    def _garbage(self, count: int) -> int:
        self._counters.garbage_bytes += count
        return count

    def _text_frame(self, i: int, stamp: int, out: list[GnssReading]) -> int:
        """Handle a frame starting with ``$`` or ``\\`` at ``i``; return bytes consumed."""
        buf = self._buf
        limit = min(len(buf), i + MAX_TEXT_FRAME)
        end = _TEXT_END.search(buf, i + 1, limit)
        if end is None:
            return self._garbage(1) if limit - i >= MAX_TEXT_FRAME else 0
        j = end.start()
        terminator = buf[j]
        if terminator not in (0x0D, 0x0A):  # binary inside a sentence: it was cut short
            return self._garbage(j - i)
        if terminator == 0x0D:
            if j + 1 >= len(buf):
                return 0  # the LF may still come
            frame_end = j + 2 if buf[j + 1] == 0x0A else j + 1
        else:
            frame_end = j + 1
        line = bytes(buf[i:j])
        if not _TEXT_FRAME.fullmatch(line):
            # A start byte inside the line: the frame before it was truncated. Resync there.
            restart = _START.search(buf, i + 1, j)
            return self._garbage((restart.start() if restart else frame_end) - i)
        raw = bytes(buf[i:frame_end])
        try:
            message = parse_nmea(line)
        except (NmeaChecksumError, TagBlockError) as error:
            self._counters.bad_checksum += 1
            self._bad_frame(error, raw)
            return frame_end - i
        except GnssParseError as error:
            self._counters.malformed += 1
            self._bad_frame(error, raw)
            return frame_end - i
        if isinstance(message, UnsupportedMessage):
            if message.proprietary:
                self._counters.proprietary += 1
            else:
                self._counters.unknown += 1
        else:
            self._counters.sentences_ok += 1
            out.append(GnssReading(raw, self._with_date(message), stamp))
        return frame_end - i

    def _ubx_frame(self, i: int, stamp: int, out: list[GnssReading]) -> int:
        """Handle a candidate UBX frame at ``i``; return bytes consumed (0: need more)."""
        buf = self._buf
        if len(buf) - i < 2:
            return 0
        if buf[i + 1] != 0x62:
            return self._garbage(1)
        if len(buf) - i < 6:
            return 0
        msg_class, msg_id, length = struct.unpack_from("<BBH", buf, i + 2)
        layout = UBX_MESSAGES.get((msg_class, msg_id))
        if (
            msg_class not in UBX_CLASSES
            or length > MAX_UBX_PAYLOAD
            or (layout is not None and length != layout.length)
        ):
            # Most likely a false sync in noise: skip the sync bytes only.
            self._counters.ubx_bad += 1
            self._bad_frame(
                UbxChecksumError(
                    f"UBX header class 0x{msg_class:02X} id 0x{msg_id:02X} length {length} "
                    "is not a valid UBX message: a false sync in noise or a corrupted header; "
                    "check the baud rate and cabling"
                ),
                bytes(buf[i : i + 6]),
            )
            return 2
        total = 8 + length
        if len(buf) - i < total:
            return 0
        raw = bytes(buf[i : i + total])
        try:
            message = parse_ubx(raw)
        except GnssParseError as error:
            self._counters.ubx_bad += 1
            self._bad_frame(error, raw)
            return 2  # resync inside the frame: the length byte itself may be corrupt
        if isinstance(message, UnsupportedMessage):
            self._counters.ubx_unknown += 1
        else:
            self._counters.ubx_ok += 1
            out.append(GnssReading(raw, self._with_date(message), stamp))
        return total

    def _bad_frame(self, error: GnssParseError, raw: bytes) -> None:
        if self.policy is BadFramePolicy.RAISE:
            self._error = error
        if self.policy is BadFramePolicy.LOG:
            logger.warning("dropped GNSS frame %r: %s", raw[:96], error)

    def _with_date(self, message: GnssMessage) -> GnssMessage:
        """Remember the date of dated fixes; give undated GGA fixes the remembered date."""
        if not self.complete_dates or not isinstance(message, GnssFix):
            return message
        source = message.source
        if message.utc is not None:
            self._last_utc[source] = message.utc
            return message
        last = self._last_utc.get(source)
        if message.kind is not MessageKind.GGA or message.utc_time is None or last is None:
            return message
        utc = datetime.combine(last.date(), message.utc_time)
        # Around midnight the GGA may belong to the day after (or before) the last RMC.
        if utc - last > timedelta(hours=12):
            utc -= timedelta(days=1)
        elif last - utc > timedelta(hours=12):
            utc += timedelta(days=1)
        return dataclasses.replace(message, utc=utc)
