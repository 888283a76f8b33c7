"""Immutable GNSS messages and the errors their parsers raise.

Shared by :mod:`~fusion_edge.firmware_bridge.gnss_parse` (which returns them),
:mod:`~fusion_edge.firmware_bridge.gnss_reader` and the transports.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, time

from fusion_edge.errors import ProtocolError

# --------------------------------------------------------------------------------------- errors


class GnssParseError(ProtocolError):
    """A GNSS frame (NMEA sentence, TAG block or UBX frame) could not be decoded."""


class NmeaChecksumError(GnssParseError):
    """An NMEA sentence's ``*hh`` checksum does not match its content."""


class TagBlockError(GnssParseError):
    """An NMEA 4.x TAG block is malformed or its checksum does not match."""


class MalformedSentenceError(GnssParseError):
    """An NMEA sentence is structurally wrong (no checksum, too few fields, bad number)."""


class UbxChecksumError(GnssParseError):
    """A UBX frame's Fletcher-8 checksum does not match."""


class MalformedUbxError(GnssParseError):
    """A UBX frame is truncated or its payload length does not fit its message type."""


# ------------------------------------------------------------------------------------- messages


class MessageKind(str, enum.Enum):
    """Which sentence or frame a message was decoded from."""

    GGA = "GGA"
    RMC = "RMC"
    VTG = "VTG"
    GSA = "GSA"
    NAV_PVT = "NAV-PVT"


class FixQuality(enum.IntEnum):
    """GGA fix quality indicator; UBX and RMC/VTG mode indicators are mapped onto it."""

    INVALID = 0
    GPS = 1
    DGPS = 2
    PPS = 3
    RTK_FIXED = 4
    RTK_FLOAT = 5
    ESTIMATED = 6
    MANUAL = 7
    SIMULATION = 8


@dataclass(frozen=True)
class TagBlock:
    """An NMEA 4.x TAG block (``\\s:GPS1,c:1700000000*hh\\``) in front of a sentence.

    Attributes:
        source: ``s:`` the source identifier (which receiver on a shared line), or None.
        unix_time_s: ``c:`` the source's UNIX time in seconds, or None.
        params: every parameter as written, including ones not interpreted here.
    """

    source: str | None
    unix_time_s: float | None
    params: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class GnssFix:
    """What one sentence or frame says about the receiver's position and motion.

    Fields a message does not carry are None (GGA has no speed, VTG has no position). When the
    receiver has no fix, the position fields are None and ``fix_quality`` is ``INVALID``.

    Attributes:
        kind: the sentence or frame it came from.
        source: TAG-block source (``s:``), None when untagged.
        talker: NMEA talker (``GP``, ``GN``...), None for UBX.
        utc: full UTC timestamp, when the message carries a date (RMC, NAV-PVT) or the stream
            reader completed it from an earlier RMC.
        utc_time: UTC time of day, whenever the message carries it.
        lat_deg, lon_deg: WGS84 degrees, north and east positive.
        alt_m: altitude above mean sea level in metres.
        speed_mps: speed over ground in m/s.
        course_deg: course over ground, degrees true.
        fix_quality: see :class:`FixQuality`.
        num_sats: satellites used in the solution.
        hdop: horizontal dilution of precision (NMEA only).
        pdop: position dilution of precision (UBX NAV-PVT only).
        h_acc_m, v_acc_m: receiver's horizontal/vertical accuracy estimates (UBX only).
        tag: the whole TAG block, when there was one.
    """

    kind: MessageKind
    source: str | None = None
    talker: str | None = None
    utc: datetime | None = None
    utc_time: time | None = None
    lat_deg: float | None = None
    lon_deg: float | None = None
    alt_m: float | None = None
    speed_mps: float | None = None
    course_deg: float | None = None
    fix_quality: FixQuality | None = None
    num_sats: int | None = None
    hdop: float | None = None
    pdop: float | None = None
    h_acc_m: float | None = None
    v_acc_m: float | None = None
    tag: TagBlock | None = None

    @property
    def has_position(self) -> bool:
        """True when latitude and longitude are both known."""
        return self.lat_deg is not None and self.lon_deg is not None


@dataclass(frozen=True)
class GnssDop:
    """GSA: the satellites used and the dilutions of precision.

    Attributes:
        fix_type: 1 no fix, 2 2D, 3 3D (None when empty).
        mode: ``A`` automatic or ``M`` manual 2D/3D selection.
        satellite_ids: PRNs used in the solution, in sentence order.
        system_id: NMEA 4.10 GNSS system id (1 GPS, 2 GLONASS, 3 Galileo, 4 BeiDou), or None.
    """

    kind: MessageKind
    source: str | None
    talker: str
    mode: str | None
    fix_type: int | None
    satellite_ids: tuple[int, ...]
    pdop: float | None
    hdop: float | None
    vdop: float | None
    system_id: int | None = None
    tag: TagBlock | None = None


@dataclass(frozen=True)
class UnsupportedMessage:
    """A well-formed frame this module does not decode; the stream reader counts and skips it.

    Attributes:
        name: the NMEA address (``GPGSV``, ``PUBX``) or ``UBX-0xCC-0xII``.
        proprietary: True for ``$P...`` manufacturer sentences.
    """

    name: str
    source: str | None
    proprietary: bool


GnssMessage = GnssFix | GnssDop | UnsupportedMessage
