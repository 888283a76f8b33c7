"""Pure GNSS message parsing: NMEA 0183 sentences (with NMEA 4.x TAG blocks) and u-blox UBX frames.

No I/O happens here: functions take one complete frame and return an immutable message (defined
in :mod:`~fusion_edge.firmware_bridge.gnss_messages`, re-exported here) or raise a
:class:`GnssParseError` subclass. Finding frames in a byte stream is
:mod:`fusion_edge.firmware_bridge.gnss_reader`'s job.

Both codecs are tables plus one generic engine (the pyubx2 habit): an NMEA sentence is a list of
typed fields, a UBX message is a list of ``(name, type code)`` pairs, so supporting another
sentence or message means adding a table entry, not a parser.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from fusion_edge.firmware_bridge.gnss_messages import (
    FixQuality,
    GnssDop,
    GnssFix,
    GnssMessage,
    GnssParseError,
    MalformedSentenceError,
    MalformedUbxError,
    MessageKind,
    NmeaChecksumError,
    TagBlock,
    TagBlockError,
    UbxChecksumError,
    UnsupportedMessage,
)

# The message types are re-exported: they are what the parsers return.
__all__ = [
    "GNSS_TALKERS", "KMH_TO_MPS", "KNOTS_TO_MPS", "NAV_PVT", "NMEA_SENTENCES", "UBX_MESSAGES",
    "UBX_SYNC", "FixQuality", "GnssDop", "GnssFix", "GnssMessage", "GnssParseError",
    "MalformedSentenceError", "MalformedUbxError", "MessageKind", "NmeaChecksumError",
    "TagBlock", "TagBlockError", "UbxChecksumError", "UbxLayout", "UnsupportedMessage",
    "decode_ubx_payload", "encode_ubx_frame", "encode_ubx_payload", "nmea_checksum",
    "parse_nmea", "parse_tag_block", "parse_ubx", "ubx_checksum",
]

KNOTS_TO_MPS = 1852.0 / 3600.0
KMH_TO_MPS = 1.0 / 3.6

#: Talker ids of GNSS receivers: GPS, GLONASS, Galileo, BeiDou (two spellings), multi-GNSS,
#: QZSS, NavIC. Other talkers (e.g. ``II`` instruments) are counted as unknown, not decoded.
GNSS_TALKERS = frozenset({"GP", "GL", "GA", "GB", "BD", "GN", "GQ", "GI"})

UBX_SYNC = b"\xb5\x62"


# ------------------------------------------------------------------------------- NMEA primitives


def nmea_checksum(body: str | bytes) -> int:
    """XOR of every byte of ``body`` (the text between ``$``/``\\`` and ``*``)."""
    data = body.encode("ascii") if isinstance(body, str) else body
    value = 0
    for byte in data:
        value ^= byte
    return value


def _split_checksum(text: str, what: str) -> str:
    """Return the checked body of ``BODY*hh``; raise when the checksum is missing or wrong."""
    star = text.rfind("*")
    if star < 0 or len(text) - star != 3:
        raise MalformedSentenceError(
            f"{what} {text!r} has no '*hh' checksum: every NMEA sentence this reader accepts must "
            "carry one; enable checksums in the receiver's configuration"
        )
    body, given = text[:star], text[star + 1 :]
    try:
        expected = int(given, 16)
    except ValueError:
        raise MalformedSentenceError(
            f"{what} {text!r} has a checksum {given!r} that is not two hex digits: the line is "
            "corrupted; check the baud rate and cabling"
        ) from None
    actual = nmea_checksum(body)
    if actual != expected:
        error = TagBlockError if what == "TAG block" else NmeaChecksumError
        raise error(
            f"{what} {text!r} has checksum {expected:02X} but its content gives {actual:02X}: "
            "the line was corrupted in transit; check the baud rate, cable and grounding"
        )
    return body


def parse_tag_block(text: str) -> TagBlock:
    """Parse the inside of a TAG block, ``s:GPS1,c:1700000000*hh`` (without the backslashes)."""
    body = _split_checksum(text, "TAG block")
    params: list[tuple[str, str]] = []
    source: str | None = None
    unix_time: float | None = None
    for item in body.split(","):
        key, sep, value = item.partition(":")
        if not sep or len(key) != 1:
            raise TagBlockError(
                f"TAG block {text!r} has a parameter {item!r} that is not 'x:value': the source "
                "writes a non-standard TAG block; fix its configuration or strip the tags"
            )
        params.append((key, value))
        if key == "s":
            source = value
        elif key == "c":
            try:
                stamp = int(value)
            except ValueError:
                raise TagBlockError(
                    f"TAG block {text!r} has a c: time {value!r} that is not an integer: "
                    "c: must be UNIX seconds"
                ) from None
            # NMEA 4.10 says seconds; some emitters write milliseconds. Anything beyond the
            # year 5138 in seconds can only be milliseconds.
            unix_time = stamp / 1000.0 if stamp > 10**11 else float(stamp)
    return TagBlock(source=source, unix_time_s=unix_time, params=tuple(params))


# ------------------------------------------------------------------------------ field converters


def _float(text: str) -> float | None:
    return float(text) if text else None


def _int(text: str) -> int | None:
    return int(text) if text else None


def _char(text: str) -> str | None:
    return text or None


def _utc_time(text: str) -> time | None:
    if not text:
        return None
    hours, minutes, seconds = int(text[0:2]), int(text[2:4]), float(text[4:])
    whole = int(seconds)
    micro = min(round((seconds - whole) * 1e6), 999_999)
    return time(hours, minutes, whole, micro, tzinfo=timezone.utc)


def _utc_date(text: str) -> date | None:
    if not text:
        return None
    year = int(text[4:6])
    # NMEA carries two-digit years; GNSS receivers postdate 1980.
    return date(2000 + year if year < 80 else 1900 + year, int(text[2:4]), int(text[0:2]))


def _angle(text: str) -> float | None:
    """``ddmm.mmmm`` / ``dddmm.mmmm`` to decimal degrees."""
    if not text:
        return None
    value = float(text)
    degrees = int(value // 100)
    return degrees + (value - 100 * degrees) / 60.0


_CONVERTERS: dict[str, Callable[[str], object]] = {
    "time": _utc_time,
    "date": _utc_date,
    "angle": _angle,
    "float": _float,
    "int": _int,
    "char": _char,
    "skip": lambda _text: None,
}


@dataclass(frozen=True)
class _SentenceLayout:
    """One NMEA sentence: its fields (name, converter code), how many are mandatory, a builder."""

    fields: tuple[tuple[str, str], ...]
    min_fields: int
    build: Callable[[dict[str, object], str, TagBlock | None], GnssMessage]


def _signed(value: object, hemisphere: object, negative: str) -> float | None:
    if value is None:
        return None
    return -float(value) if hemisphere == negative else float(value)  # type: ignore[arg-type]


def _position(values: dict[str, object]) -> tuple[float | None, float | None]:
    return _signed(values["lat"], values["ns"], "S"), _signed(values["lon"], values["ew"], "W")


#: RMC/VTG/GNS mode indicator (NMEA 2.3+) to a GGA-style fix quality.
_MODE_TO_QUALITY = {
    "A": FixQuality.GPS,
    "D": FixQuality.DGPS,
    "P": FixQuality.GPS,
    "R": FixQuality.RTK_FIXED,
    "F": FixQuality.RTK_FLOAT,
    "E": FixQuality.ESTIMATED,
    "M": FixQuality.MANUAL,
    "S": FixQuality.SIMULATION,
    "N": FixQuality.INVALID,
}


def _build_gga(values: dict[str, object], talker: str, tag: TagBlock | None) -> GnssMessage:
    raw_quality = values["quality"]
    if raw_quality is None:
        quality = FixQuality.INVALID
    elif raw_quality == 9:
        quality = FixQuality.DGPS  # some vendors write 9 for an SBAS-corrected fix
    elif isinstance(raw_quality, int) and raw_quality in FixQuality._value2member_map_:
        quality = FixQuality(raw_quality)
    else:
        raise MalformedSentenceError(
            f"GGA fix quality {raw_quality} is not one NMEA defines (0-8): the receiver writes "
            "a non-standard sentence; check its NMEA version setting"
        )
    valid = quality != FixQuality.INVALID
    lat, lon = _position(values) if valid else (None, None)
    return GnssFix(
        kind=MessageKind.GGA,
        source=tag.source if tag else None,
        talker=talker,
        utc_time=values["time"],  # type: ignore[arg-type]
        lat_deg=lat,
        lon_deg=lon,
        alt_m=values["alt"] if valid else None,  # type: ignore[arg-type]
        fix_quality=quality,
        num_sats=values["num_sats"],  # type: ignore[arg-type]
        hdop=values["hdop"],  # type: ignore[arg-type]
        tag=tag,
    )


def _build_rmc(values: dict[str, object], talker: str, tag: TagBlock | None) -> GnssMessage:
    mode = values.get("mode")
    if mode in _MODE_TO_QUALITY:
        quality = _MODE_TO_QUALITY[mode]  # type: ignore[index]
    else:
        quality = FixQuality.GPS if values["status"] == "A" else FixQuality.INVALID
    if values["status"] != "A":
        quality = FixQuality.INVALID
    valid = quality != FixQuality.INVALID
    lat, lon = _position(values) if valid else (None, None)
    day, clock = values["date"], values["time"]
    utc = datetime.combine(day, clock) if day and clock else None  # type: ignore[arg-type]
    speed_kn = values["speed_kn"]
    return GnssFix(
        kind=MessageKind.RMC,
        source=tag.source if tag else None,
        talker=talker,
        utc=utc,
        utc_time=clock,  # type: ignore[arg-type]
        lat_deg=lat,
        lon_deg=lon,
        speed_mps=speed_kn * KNOTS_TO_MPS if valid and speed_kn is not None else None,  # type: ignore[operator]
        course_deg=values["course"] if valid else None,  # type: ignore[arg-type]
        fix_quality=quality,
        tag=tag,
    )


def _build_vtg(values: dict[str, object], talker: str, tag: TagBlock | None) -> GnssMessage:
    mode = values.get("mode")
    quality = _MODE_TO_QUALITY.get(mode) if isinstance(mode, str) else None
    valid = quality != FixQuality.INVALID
    speed_kmh, speed_kn = values["speed_kmh"], values["speed_kn"]
    if speed_kmh is not None:
        speed = float(speed_kmh) * KMH_TO_MPS  # type: ignore[arg-type]
    elif speed_kn is not None:
        speed = float(speed_kn) * KNOTS_TO_MPS  # type: ignore[arg-type]
    else:
        speed = None
    return GnssFix(
        kind=MessageKind.VTG,
        source=tag.source if tag else None,
        talker=talker,
        speed_mps=speed if valid else None,
        course_deg=values["course_true"] if valid else None,  # type: ignore[arg-type]
        fix_quality=quality,
        tag=tag,
    )


def _build_gsa(values: dict[str, object], talker: str, tag: TagBlock | None) -> GnssMessage:
    sats = tuple(int(values[f"sv{i}"]) for i in range(12) if values[f"sv{i}"] is not None)  # type: ignore[call-overload]
    return GnssDop(
        kind=MessageKind.GSA,
        source=tag.source if tag else None,
        talker=talker,
        mode=values["mode"],  # type: ignore[arg-type]
        fix_type=values["fix_type"],  # type: ignore[arg-type]
        satellite_ids=sats,
        pdop=values["pdop"],  # type: ignore[arg-type]
        hdop=values["hdop"],  # type: ignore[arg-type]
        vdop=values["vdop"],  # type: ignore[arg-type]
        system_id=values.get("system_id"),  # type: ignore[arg-type]
        tag=tag,
    )


#: The decoded sentences. Field lists follow NMEA 0183 4.11; trailing fields added by newer
#: versions are optional (``min_fields``), so 2.x, 3.x and 4.x receivers all parse.
NMEA_SENTENCES: Mapping[str, _SentenceLayout] = {
    "GGA": _SentenceLayout(
        fields=(
            ("time", "time"), ("lat", "angle"), ("ns", "char"), ("lon", "angle"),
            ("ew", "char"), ("quality", "int"), ("num_sats", "int"), ("hdop", "float"),
            ("alt", "float"), ("alt_unit", "skip"), ("geoid_sep", "float"),
            ("sep_unit", "skip"), ("diff_age", "float"), ("diff_station", "char"),
        ),
        min_fields=9,
        build=_build_gga,
    ),
    "RMC": _SentenceLayout(
        fields=(
            ("time", "time"), ("status", "char"), ("lat", "angle"), ("ns", "char"),
            ("lon", "angle"), ("ew", "char"), ("speed_kn", "float"), ("course", "float"),
            ("date", "date"), ("mag_var", "float"), ("mag_var_dir", "char"), ("mode", "char"),
            ("nav_status", "char"),
        ),
        min_fields=9,
        build=_build_rmc,
    ),
    "VTG": _SentenceLayout(
        fields=(
            ("course_true", "float"), ("t", "skip"), ("course_mag", "float"), ("m", "skip"),
            ("speed_kn", "float"), ("n", "skip"), ("speed_kmh", "float"), ("k", "skip"),
            ("mode", "char"),
        ),
        min_fields=8,
        build=_build_vtg,
    ),
    "GSA": _SentenceLayout(
        fields=(
            ("mode", "char"), ("fix_type", "int"),
            *((f"sv{i}", "int") for i in range(12)),
            ("pdop", "float"), ("hdop", "float"), ("vdop", "float"), ("system_id", "int"),
        ),
        min_fields=17,
        build=_build_gsa,
    ),
}


def parse_nmea(line: str | bytes) -> GnssMessage:
    """Parse one NMEA sentence, optionally preceded by a TAG block.

    Args:
        line: ``[\\tag*hh\\]$ADDRESS,fields*hh`` with or without the trailing CR/LF.

    Returns:
        A :class:`GnssFix` (GGA, RMC, VTG), a :class:`GnssDop` (GSA), or an
        :class:`UnsupportedMessage` for proprietary (``$P...``) and other well-formed sentences.

    Raises:
        NmeaChecksumError: the sentence checksum does not match.
        TagBlockError: the TAG block is malformed or its checksum does not match.
        MalformedSentenceError: anything else structurally wrong.
    """
    if isinstance(line, bytes):
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedSentenceError(
                f"NMEA line {line!r} contains non-ASCII bytes: the serial settings (baud rate, "
                "8N1) probably do not match the receiver"
            ) from None
    else:
        text = line
    text = text.rstrip("\r\n")
    tag: TagBlock | None = None
    if text.startswith("\\"):
        end = text.find("\\", 1)
        if end < 0:
            raise TagBlockError(
                f"TAG block in {text!r} is not closed by a backslash: the line is truncated"
            )
        tag = parse_tag_block(text[1:end])
        text = text[end + 1 :]
    if not text.startswith("$"):
        raise MalformedSentenceError(
            f"NMEA sentence {text!r} does not start with '$': the line is truncated or is not NMEA"
        )
    body = _split_checksum(text[1:], "NMEA sentence")
    fields = body.split(",")
    address = fields[0]
    source = tag.source if tag else None
    if address.startswith("P"):
        return UnsupportedMessage(name=address, source=source, proprietary=True)
    talker, formatter = address[:2], address[2:]
    layout = NMEA_SENTENCES.get(formatter)
    if layout is None or talker not in GNSS_TALKERS:
        return UnsupportedMessage(name=address, source=source, proprietary=False)
    raw = fields[1:]
    if len(raw) < layout.min_fields:
        raise MalformedSentenceError(
            f"{address} sentence {text!r} has {len(raw)} fields, fewer than the "
            f"{layout.min_fields} NMEA requires: the receiver's NMEA version is not supported "
            "or the line is truncated"
        )
    values: dict[str, object] = {}
    for (name, code), field in zip(layout.fields, raw, strict=False):
        try:
            values[name] = _CONVERTERS[code](field)
        except ValueError:
            raise MalformedSentenceError(
                f"{address} field '{name}' is {field!r}, which is not a valid {code}: the "
                "receiver writes a non-standard sentence or the line is corrupted"
            ) from None
    for name, _code in layout.fields[len(raw) :]:
        values[name] = None
    return layout.build(values, talker, tag)


# ------------------------------------------------------------------------------------------ UBX

#: UBX type codes (as in the u-blox interface description) to struct format characters.
_UBX_TYPES = {"U1": "B", "I1": "b", "X1": "B", "U2": "H", "I2": "h", "X2": "H",
              "U4": "I", "I4": "i", "X4": "I"}


@dataclass(frozen=True)
class UbxLayout:
    """A fixed-length UBX message: class, id and its fields in payload order."""

    name: str
    msg_class: int
    msg_id: int
    fields: tuple[tuple[str, str], ...]

    @property
    def struct(self) -> struct.Struct:
        """Little-endian struct for the whole payload."""
        return struct.Struct("<" + "".join(_UBX_TYPES[code] for _name, code in self.fields))

    @property
    def length(self) -> int:
        """Payload length in bytes."""
        return self.struct.size


NAV_PVT = UbxLayout(
    name="NAV-PVT",
    msg_class=0x01,
    msg_id=0x07,
    fields=(
        ("iTOW", "U4"), ("year", "U2"), ("month", "U1"), ("day", "U1"), ("hour", "U1"),
        ("min", "U1"), ("sec", "U1"), ("valid", "X1"), ("tAcc", "U4"), ("nano", "I4"),
        ("fixType", "U1"), ("flags", "X1"), ("flags2", "X1"), ("numSV", "U1"), ("lon", "I4"),
        ("lat", "I4"), ("height", "I4"), ("hMSL", "I4"), ("hAcc", "U4"), ("vAcc", "U4"),
        ("velN", "I4"), ("velE", "I4"), ("velD", "I4"), ("gSpeed", "I4"), ("headMot", "I4"),
        ("sAcc", "U4"), ("headAcc", "U4"), ("pDOP", "U2"), ("flags3", "X2"),
        ("reserved0", "U4"), ("headVeh", "I4"), ("magDec", "I2"), ("magAcc", "U2"),
    ),
)

#: Decoded UBX messages by (class, id).
UBX_MESSAGES: Mapping[tuple[int, int], UbxLayout] = {
    (NAV_PVT.msg_class, NAV_PVT.msg_id): NAV_PVT,
}


def ubx_checksum(data: bytes) -> bytes:
    """8-bit Fletcher checksum (CK_A, CK_B) over class, id, length and payload."""
    ck_a = ck_b = 0
    for byte in data:
        ck_a = (ck_a + byte) & 0xFF
        ck_b = (ck_b + ck_a) & 0xFF
    return bytes((ck_a, ck_b))


def decode_ubx_payload(layout: UbxLayout, payload: bytes) -> dict[str, int]:
    """Unpack a payload into raw integer fields named as in the u-blox documentation."""
    if len(payload) != layout.length:
        raise MalformedUbxError(
            f"UBX {layout.name} payload is {len(payload)} bytes, expected {layout.length}: the "
            "receiver uses another protocol version; check its firmware"
        )
    names = (name for name, _code in layout.fields)
    return dict(zip(names, layout.struct.unpack(payload), strict=True))


def encode_ubx_payload(layout: UbxLayout, values: Mapping[str, int]) -> bytes:
    """Pack raw integer fields (missing ones are 0) into a payload; inverse of decoding."""
    unknown = set(values) - {name for name, _code in layout.fields}
    if unknown:
        raise ValueError(f"UBX {layout.name} has no fields {sorted(unknown)}; check the spelling")
    return layout.struct.pack(*(int(values.get(name, 0)) for name, _code in layout.fields))


def encode_ubx_frame(msg_class: int, msg_id: int, payload: bytes) -> bytes:
    """Wrap a payload in sync chars, header and checksum."""
    body = struct.pack("<BBH", msg_class, msg_id, len(payload)) + payload
    return UBX_SYNC + body + ubx_checksum(body)


def _nav_pvt_to_fix(fields: Mapping[str, int]) -> GnssFix:
    flags = fields["flags"]
    fix_ok = bool(flags & 0x01)
    fix_type = fields["fixType"]
    carrier = (flags >> 6) & 0x03
    if fix_type == 1:
        quality = FixQuality.ESTIMATED
    elif not fix_ok or fix_type not in (2, 3, 4):
        quality = FixQuality.INVALID
    elif carrier == 2:
        quality = FixQuality.RTK_FIXED
    elif carrier == 1:
        quality = FixQuality.RTK_FLOAT
    elif flags & 0x02:
        quality = FixQuality.DGPS
    else:
        quality = FixQuality.GPS
    valid = quality != FixQuality.INVALID and not (fields["flags3"] & 0x01)
    utc: datetime | None = None
    if fields["valid"] & 0x03 == 0x03:  # validDate and validTime
        try:
            utc = datetime(fields["year"], fields["month"], fields["day"], fields["hour"],
                           fields["min"], fields["sec"], tzinfo=timezone.utc)
            utc += timedelta(microseconds=fields["nano"] / 1000.0)  # nano may be negative
        except ValueError:
            utc = None
    return GnssFix(
        kind=MessageKind.NAV_PVT,
        utc=utc,
        utc_time=utc.timetz() if utc else None,
        lat_deg=fields["lat"] * 1e-7 if valid else None,
        lon_deg=fields["lon"] * 1e-7 if valid else None,
        alt_m=fields["hMSL"] / 1000.0 if valid else None,
        speed_mps=fields["gSpeed"] / 1000.0 if valid else None,
        course_deg=fields["headMot"] * 1e-5 if valid else None,
        fix_quality=quality,
        num_sats=fields["numSV"],
        pdop=fields["pDOP"] * 0.01,
        h_acc_m=fields["hAcc"] / 1000.0,
        v_acc_m=fields["vAcc"] / 1000.0,
    )


def parse_ubx(frame: bytes) -> GnssMessage:
    """Parse one complete UBX frame (``B5 62 class id len payload ck_a ck_b``).

    Returns:
        A :class:`GnssFix` for NAV-PVT, :class:`UnsupportedMessage` for other valid frames.

    Raises:
        UbxChecksumError: the Fletcher checksum does not match.
        MalformedUbxError: the frame is truncated or its length does not fit the message.
    """
    if len(frame) < 8 or frame[:2] != UBX_SYNC:
        raise MalformedUbxError(
            f"UBX frame {frame[:16].hex()} is shorter than 8 bytes or lacks the B5 62 sync: "
            "pass whole frames as found by GnssStreamReader"
        )
    msg_class, msg_id, length = struct.unpack_from("<BBH", frame, 2)
    if len(frame) != 8 + length:
        raise MalformedUbxError(
            f"UBX frame 0x{msg_class:02X}/0x{msg_id:02X} declares a {length}-byte payload but "
            f"is {len(frame)} bytes long: the frame is truncated"
        )
    expected = frame[-2:]
    actual = ubx_checksum(frame[2:-2])
    if actual != expected:
        raise UbxChecksumError(
            f"UBX frame 0x{msg_class:02X}/0x{msg_id:02X} has checksum {expected.hex()} but its "
            f"content gives {actual.hex()}: the frame was corrupted in transit; check the baud "
            "rate, cable and grounding"
        )
    layout = UBX_MESSAGES.get((msg_class, msg_id))
    if layout is None:
        return UnsupportedMessage(
            name=f"UBX-0x{msg_class:02X}-0x{msg_id:02X}", source=None, proprietary=True
        )
    return _nav_pvt_to_fix(decode_ubx_payload(layout, frame[6:-2]))
