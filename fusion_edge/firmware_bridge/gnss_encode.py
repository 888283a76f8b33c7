"""Write GNSS epochs as NMEA sentences (with optional TAG blocks) and UBX NAV-PVT frames.

The inverse of :mod:`fusion_edge.firmware_bridge.gnss_parse`, used by the simulated receiver
and by tests. Formats follow what a u-blox M8/M9/M10 writes with NMEA 4.10 output: five decimals
of arc minutes (about 2 cm), altitude to 0.1 m, speed to 0.001 knot / km/h, course to 0.01 deg.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import NamedTuple

from fusion_edge.firmware_bridge.gnss_parse import (
    GNSS_TALKERS,
    KNOTS_TO_MPS,
    NAV_PVT,
    encode_ubx_frame,
    encode_ubx_payload,
    nmea_checksum,
)

_GPS_EPOCH = datetime(1980, 1, 6, tzinfo=timezone.utc)
#: GPS - UTC offset, constant since 2017-01-01 (no leap second has been announced since).
GPS_LEAP_SECONDS = 18

#: GGA fix quality to the RMC/VTG mode indicator.
_QUALITY_TO_MODE = {0: "N", 1: "A", 2: "D", 3: "A", 4: "R", 5: "F", 6: "E", 7: "M", 8: "S"}


class FixSample(NamedTuple):
    """One epoch of receiver output, what a fix source hands to the simulated receiver.

    ``fix_quality`` 0 means no fix: position, speed and course are then not written.
    """

    lat_deg: float
    lon_deg: float
    alt_m: float
    speed_mps: float
    course_deg: float
    fix_quality: int
    num_sats: int
    hdop: float


def nmea_sentence(address: str, fields: Sequence[str], *, tag: str | None = None) -> bytes:
    """Build ``[\\tag\\]$ADDRESS,f1,f2*hh\\r\\n`` with its checksum.

    Args:
        address: talker + formatter (``GNGGA``) or a proprietary address (``PUBX``).
        fields: the fields, already formatted.
        tag: a TAG block built by :func:`tag_block`, or None.
    """
    body = ",".join((address, *fields))
    line = f"${body}*{nmea_checksum(body):02X}\r\n"
    return ((tag or "") + line).encode("ascii")


def tag_block(source: str | None = None, unix_time_s: float | None = None) -> str:
    """Build a TAG block ``\\s:SOURCE,c:UNIX*hh\\`` (each part only when given)."""
    params = []
    if unix_time_s is not None:
        params.append(f"c:{int(unix_time_s)}")
    if source is not None:
        if any(ch in source for ch in ",*\\$!") or not source.isascii():
            raise ValueError(
                f"TAG source {source!r} contains a reserved character (, * \\ $ !) or non-ASCII; "
                "use letters, digits, '-' or '_'"
            )
        params.append(f"s:{source}")
    body = ",".join(params)
    return f"\\{body}*{nmea_checksum(body):02X}\\"


def _angle(value: float, degree_digits: int) -> str:
    minutes = round(abs(value) * 60.0, 5)
    degrees = int(minutes // 60)
    return f"{degrees:0{degree_digits}d}{minutes - degrees * 60:08.5f}"


def _time(utc: datetime) -> str:
    return f"{utc:%H%M%S}.{utc.microsecond // 10000:02d}"


def _position_fields(sample: FixSample) -> list[str]:
    return [
        _angle(sample.lat_deg, 2), "N" if sample.lat_deg >= 0 else "S",
        _angle(sample.lon_deg, 3), "E" if sample.lon_deg >= 0 else "W",
    ]


def _course(sample: FixSample) -> str:
    return f"{round(sample.course_deg, 2) % 360.0:.2f}"  # 359.996 must print 0.00, not 360.00


def format_gga(sample: FixSample, utc: datetime, *, talker: str = "GN",
               tag: str | None = None) -> bytes:
    """GGA: time, position, fix quality, satellites, HDOP, altitude."""
    if sample.fix_quality:
        fields = [
            _time(utc), *_position_fields(sample), str(int(sample.fix_quality)),
            f"{sample.num_sats:02d}", f"{sample.hdop:.2f}", f"{sample.alt_m:.1f}", "M",
            "0.0", "M", "", "",
        ]
    else:
        fields = [_time(utc), "", "", "", "", "0", f"{sample.num_sats:02d}", "99.99",
                  "", "", "", "", "", ""]
    return nmea_sentence(f"{talker}GGA", fields, tag=tag)


def format_rmc(sample: FixSample, utc: datetime, *, talker: str = "GN",
               tag: str | None = None) -> bytes:
    """RMC: time, status, position, speed (knots), course, date, mode, nav status."""
    mode = _QUALITY_TO_MODE.get(int(sample.fix_quality), "A")
    if sample.fix_quality:
        fields = [
            _time(utc), "A", *_position_fields(sample),
            f"{sample.speed_mps / KNOTS_TO_MPS:.3f}", _course(sample), f"{utc:%d%m%y}",
            "", "", mode, "V",
        ]
    else:
        fields = [_time(utc), "V", "", "", "", "", "", "", f"{utc:%d%m%y}", "", "", "N", "V"]
    return nmea_sentence(f"{talker}RMC", fields, tag=tag)


def format_vtg(sample: FixSample, *, talker: str = "GN", tag: str | None = None) -> bytes:
    """VTG: course (true), speed in knots and km/h, mode."""
    if sample.fix_quality:
        fields = [
            _course(sample), "T", "", "M", f"{sample.speed_mps / KNOTS_TO_MPS:.3f}", "N",
            f"{sample.speed_mps * 3.6:.3f}", "K",
            _QUALITY_TO_MODE.get(int(sample.fix_quality), "A"),
        ]
    else:
        fields = ["", "T", "", "M", "", "N", "", "K", "N"]
    return nmea_sentence(f"{talker}VTG", fields, tag=tag)


def format_gsa(sample: FixSample, *, talker: str = "GN", tag: str | None = None) -> bytes:
    """GSA: mode, fix type, satellites used (first PRNs), PDOP/HDOP/VDOP, system id (GPS)."""
    if sample.fix_quality:
        used = [f"{prn:02d}" for prn in range(1, min(sample.num_sats, 12) + 1)]
        # Synthetic but plausible: PDOP and VDOP track HDOP on an open pitch.
        dops = [f"{sample.hdop * 1.5:.2f}", f"{sample.hdop:.2f}", f"{sample.hdop * 1.2:.2f}"]
        fix_type = "3"
    else:
        used, dops, fix_type = [], ["99.99", "99.99", "99.99"], "1"
    fields = ["A", fix_type, *used, *([""] * (12 - len(used))), *dops, "1"]
    return nmea_sentence(f"{talker}GSA", fields, tag=tag)


def gps_time_of_week_ms(utc: datetime) -> int:
    """GPS time of week in milliseconds (UBX ``iTOW``) for a UTC instant."""
    seconds = (utc - _GPS_EPOCH).total_seconds() + GPS_LEAP_SECONDS
    return int(round(seconds * 1000.0)) % (7 * 86400 * 1000)


def nav_pvt_fields(sample: FixSample, utc: datetime) -> dict[str, int]:
    """Raw NAV-PVT fields (u-blox units: 1e-7 deg, mm, mm/s, 1e-5 deg) for one epoch."""
    quality = int(sample.fix_quality)
    has_fix = quality != 0
    flags = 0
    if has_fix and quality != 6:
        flags |= 0x01  # gnssFixOK
    if quality == 2:
        flags |= 0x02  # diffSoln
    if quality == 5:
        flags |= 1 << 6  # carrSoln float
    if quality == 4:
        flags |= 2 << 6  # carrSoln fixed
    course = math.radians(sample.course_deg)
    speed_mm = sample.speed_mps * 1000.0 if has_fix else 0.0
    return {
        "iTOW": gps_time_of_week_ms(utc),
        "year": utc.year, "month": utc.month, "day": utc.day,
        "hour": utc.hour, "min": utc.minute, "sec": utc.second,
        "valid": 0x07,  # validDate, validTime, fullyResolved
        "tAcc": 20, "nano": utc.microsecond * 1000,
        "fixType": (1 if quality == 6 else 3) if has_fix else 0,
        "flags": flags, "flags2": 0xE0 if has_fix else 0,
        "numSV": sample.num_sats,
        "lon": round(sample.lon_deg * 1e7) if has_fix else 0,
        "lat": round(sample.lat_deg * 1e7) if has_fix else 0,
        "height": round(sample.alt_m * 1000.0) if has_fix else 0,
        "hMSL": round(sample.alt_m * 1000.0) if has_fix else 0,
        "hAcc": round(sample.hdop * 2500.0) if has_fix else 0xFFFFFFFF,
        "vAcc": round(sample.hdop * 4000.0) if has_fix else 0xFFFFFFFF,
        "velN": round(speed_mm * math.cos(course)),
        "velE": round(speed_mm * math.sin(course)),
        "velD": 0,
        "gSpeed": round(speed_mm),
        "headMot": round((sample.course_deg % 360.0) * 1e5) if has_fix else 0,
        "sAcc": 100, "headAcc": 50000,
        "pDOP": round(sample.hdop * 150.0) if has_fix else 9999,
        "flags3": 0 if has_fix else 0x01,  # invalidLlh without a fix
    }


def format_nav_pvt(sample: FixSample, utc: datetime) -> bytes:
    """A complete UBX NAV-PVT frame for one epoch."""
    payload = encode_ubx_payload(NAV_PVT, nav_pvt_fields(sample, utc))
    return encode_ubx_frame(NAV_PVT.msg_class, NAV_PVT.msg_id, payload)


def check_talker(talker: str) -> str:
    """Return ``talker`` if it is a GNSS talker id, else raise ValueError saying which are."""
    if talker not in GNSS_TALKERS:
        raise ValueError(
            f"talker {talker!r} is not a GNSS talker id; use one of {sorted(GNSS_TALKERS)}"
        )
    return talker
