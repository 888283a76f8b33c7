"""Golden vectors for the pure NMEA / TAG block / UBX parsers and their encoders."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, time, timezone
from pathlib import Path

import pytest

from fusion_edge.errors import ProtocolError
from fusion_edge.firmware_bridge.gnss_encode import (
    FixSample,
    format_gga,
    format_gsa,
    format_nav_pvt,
    format_rmc,
    format_vtg,
    nav_pvt_fields,
    tag_block,
)
from fusion_edge.firmware_bridge.gnss_parse import (
    NAV_PVT,
    FixQuality,
    GnssDop,
    GnssFix,
    MalformedSentenceError,
    MalformedUbxError,
    MessageKind,
    NmeaChecksumError,
    TagBlockError,
    UbxChecksumError,
    UnsupportedMessage,
    decode_ubx_payload,
    encode_ubx_frame,
    encode_ubx_payload,
    nmea_checksum,
    parse_nmea,
    parse_tag_block,
    parse_ubx,
)

DATA = Path(__file__).parents[1] / "data" / "firmware_bridge"
UTC = timezone.utc

# Hand-written in the formats real receivers emit (classic NMEA 2.x SiRF-era lines, u-blox M8
# NMEA 4.10 lines); checksums computed independently and cross-checked with pynmeagps below.
GGA_CLASSIC = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
RMC_CLASSIC = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
GGA_UBLOX = "$GNGGA,092725.00,4717.11399,N,00833.91590,E,1,08,1.01,499.6,M,48.0,M,,*45"
RMC_UBLOX = "$GNRMC,083559.00,A,4717.11437,N,00833.91522,E,0.004,77.52,091202,,,A,V*33"
VTG_UBLOX = "$GNVTG,77.52,T,,M,0.004,N,0.008,K,A*18"
GSA_GLONASS = "$GLGSA,A,3,65,66,72,81,,,,,,,,,1.94,1.18,1.54,2*0B"
GSA_GALILEO = "$GAGSA,A,3,04,11,19,,,,,,,,,,1.94,1.18,1.54,3*04"
GGA_BEIDOU = "$GBGGA,101112.50,3954.12345,N,11623.45678,E,1,11,0.80,52.3,M,-8.5,M,,*60"
GSA_BEIDOU_BD = "$BDGSA,A,3,201,203,206,,,,,,,,,,2.10,1.20,1.72*21"
RMC_GALILEO_SW = "$GARMC,101112.50,A,3954.12345,S,11623.45678,W,1.944,270.00,150624,,,D,V*04"
GGA_NO_FIX = "$GPGGA,002153.000,,,,,0,00,,,M,,M,,0000*7D"
RMC_NO_FIX = "$GPRMC,002153.000,V,,,,,,,010124,,,N*4E"
VTG_NO_FIX = "$GPVTG,,T,,M,,N,,K,N*2C"
PUBX = ("$PUBX,00,081350.00,4717.113210,N,00833.915187,E,546.589,G3,2.1,2.0,0.007,77.52,"
        "0.007,,0.92,1.19,0.77,9,0,0*5F")
GSV = "$GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00*74"
GLL = "$GPGLL,4717.11364,N,00833.91565,E,092321.00,A,A*60"

ALL_GOLDEN = [GGA_CLASSIC, RMC_CLASSIC, GGA_UBLOX, RMC_UBLOX, VTG_UBLOX, GSA_GLONASS,
              GSA_GALILEO, GGA_BEIDOU, GSA_BEIDOU_BD, RMC_GALILEO_SW, GGA_NO_FIX, RMC_NO_FIX,
              VTG_NO_FIX, PUBX, GSV, GLL]


def golden_ubx() -> bytes:
    lines = (DATA / "gnss_nav_pvt_golden.hex").read_text().splitlines()
    return bytes.fromhex("".join(line for line in lines if not line.startswith("#")))


def corrupt(line: str, index: int) -> str:
    """Change one character inside the checked body (digits stay digits)."""
    ch = line[index]
    return line[:index] + ("7" if ch != "7" else "8") + line[index + 1 :]


# ------------------------------------------------------------------------------------ NMEA


def test_classic_gga_decodes_to_known_values() -> None:
    fix = parse_nmea(GGA_CLASSIC)
    assert isinstance(fix, GnssFix)
    assert fix.kind is MessageKind.GGA and fix.talker == "GP" and fix.source is None
    assert fix.utc_time == time(12, 35, 19, tzinfo=UTC) and fix.utc is None
    assert fix.lat_deg == pytest.approx(48 + 7.038 / 60, abs=1e-9)
    assert fix.lon_deg == pytest.approx(11 + 31.0 / 60, abs=1e-9)
    assert fix.alt_m == 545.4 and fix.num_sats == 8 and fix.hdop == 0.9
    assert fix.fix_quality is FixQuality.GPS
    assert fix.speed_mps is None and fix.course_deg is None


def test_classic_rmc_without_mode_field_uses_status() -> None:
    fix = parse_nmea(RMC_CLASSIC + "\r\n")
    assert isinstance(fix, GnssFix) and fix.kind is MessageKind.RMC
    assert fix.utc == datetime(1994, 3, 23, 12, 35, 19, tzinfo=UTC)
    assert fix.speed_mps == pytest.approx(22.4 * 1852 / 3600)
    assert fix.course_deg == 84.4 and fix.fix_quality is FixQuality.GPS


def test_ublox_sentences_with_empty_trailing_fields() -> None:
    gga = parse_nmea(GGA_UBLOX)
    rmc = parse_nmea(RMC_UBLOX)
    vtg = parse_nmea(VTG_UBLOX)
    assert isinstance(gga, GnssFix) and gga.talker == "GN"
    assert gga.lat_deg == pytest.approx(47 + 17.11399 / 60, abs=1e-10)
    assert gga.utc_time == time(9, 27, 25, tzinfo=UTC)
    assert isinstance(rmc, GnssFix) and rmc.utc == datetime(2002, 12, 9, 8, 35, 59, tzinfo=UTC)
    assert rmc.lon_deg == pytest.approx(8 + 33.91522 / 60, abs=1e-10)
    assert rmc.fix_quality is FixQuality.GPS
    assert isinstance(vtg, GnssFix) and vtg.lat_deg is None
    assert vtg.speed_mps == pytest.approx(0.008 / 3.6) and vtg.course_deg == 77.52


@pytest.mark.parametrize(
    ("line", "talker", "system_id", "sats"),
    [
        (GSA_GLONASS, "GL", 2, (65, 66, 72, 81)),
        (GSA_GALILEO, "GA", 3, (4, 11, 19)),
        (GSA_BEIDOU_BD, "BD", None, (201, 203, 206)),  # NMEA 4.0: no system id field
    ],
)
def test_gsa_per_constellation(line: str, talker: str, system_id: int | None,
                               sats: tuple[int, ...]) -> None:
    dop = parse_nmea(line)
    assert isinstance(dop, GnssDop)
    assert dop.talker == talker and dop.system_id == system_id and dop.satellite_ids == sats
    assert dop.fix_type == 3 and dop.mode == "A" and dop.hdop is not None


def test_beidou_gga_and_galileo_rmc_southwest() -> None:
    gga = parse_nmea(GGA_BEIDOU)
    rmc = parse_nmea(RMC_GALILEO_SW)
    assert isinstance(gga, GnssFix) and gga.talker == "GB" and gga.num_sats == 11
    assert gga.utc_time == time(10, 11, 12, 500000, tzinfo=UTC)
    assert isinstance(rmc, GnssFix) and rmc.talker == "GA"
    assert rmc.lat_deg == pytest.approx(-(39 + 54.12345 / 60))
    assert rmc.lon_deg == pytest.approx(-(116 + 23.45678 / 60))
    assert rmc.fix_quality is FixQuality.DGPS  # mode indicator D


def test_no_fix_gives_fix_without_position() -> None:
    gga, rmc, vtg = parse_nmea(GGA_NO_FIX), parse_nmea(RMC_NO_FIX), parse_nmea(VTG_NO_FIX)
    for fix in (gga, rmc, vtg):
        assert isinstance(fix, GnssFix)
        assert fix.fix_quality is FixQuality.INVALID
        assert fix.lat_deg is None and fix.lon_deg is None and not fix.has_position
    assert isinstance(gga, GnssFix) and gga.num_sats == 0 and gga.alt_m is None
    assert isinstance(rmc, GnssFix) and rmc.utc == datetime(2024, 1, 1, 0, 21, 53, tzinfo=UTC)


def test_proprietary_and_unknown_are_reported_not_decoded() -> None:
    assert parse_nmea(PUBX) == UnsupportedMessage("PUBX", None, proprietary=True)
    assert parse_nmea(GSV) == UnsupportedMessage("GPGSV", None, proprietary=False)
    assert parse_nmea(GLL) == UnsupportedMessage("GPGLL", None, proprietary=False)
    body = "IIGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
    other_talker = f"${body}*{nmea_checksum(body):02X}"
    assert parse_nmea(other_talker) == UnsupportedMessage("IIGGA", None, proprietary=False)


@pytest.mark.parametrize("line", ALL_GOLDEN)
def test_one_corrupted_byte_fails_the_checksum(line: str) -> None:
    index = next(i for i in range(10, len(line)) if line[i].isdigit())
    with pytest.raises(NmeaChecksumError, match="checksum") as info:
        parse_nmea(corrupt(line, index))
    assert isinstance(info.value, ProtocolError)
    assert "baud rate" in str(info.value)  # says what to check


def test_malformed_sentences_say_what_is_wrong() -> None:
    with pytest.raises(MalformedSentenceError, match="no '\\*hh' checksum"):
        parse_nmea(GGA_CLASSIC[:-3])
    body = "GPGGA,123519,4807.038,N"
    with pytest.raises(MalformedSentenceError, match="fewer than the 9"):
        parse_nmea(f"${body}*{nmea_checksum(body):02X}")
    body = "GPGGA,123519,48x7.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
    with pytest.raises(MalformedSentenceError, match="field 'lat'"):
        parse_nmea(f"${body}*{nmea_checksum(body):02X}")
    with pytest.raises(MalformedSentenceError, match="non-ASCII"):
        parse_nmea(b"$GPGGA,\xff*00")


def test_cross_check_against_pynmeagps() -> None:
    pynmeagps = pytest.importorskip("pynmeagps")
    for line in ALL_GOLDEN:
        parsed = pynmeagps.NMEAReader.parse(line, validate=pynmeagps.VALCKSUM)  # raises if bad
        ours = parse_nmea(line)
        if isinstance(ours, GnssFix) and ours.lat_deg is not None and hasattr(parsed, "lat"):
            assert ours.lat_deg == pytest.approx(float(parsed.lat), abs=1e-9)
            assert ours.lon_deg == pytest.approx(float(parsed.lon), abs=1e-9)


# ------------------------------------------------------------------------------ TAG blocks


def test_tag_block_names_the_source_and_time() -> None:
    line = "\\s:VEST07,c:1718445072*00\\" + RMC_UBLOX
    fixed = tag_block("VEST07", 1718445072)
    assert fixed == "\\c:1718445072,s:VEST07*" + f"{nmea_checksum('c:1718445072,s:VEST07'):02X}\\"
    fix = parse_nmea(fixed + RMC_UBLOX)
    assert isinstance(fix, GnssFix) and fix.source == "VEST07"
    assert fix.tag is not None and fix.tag.unix_time_s == 1718445072.0
    with pytest.raises(TagBlockError, match="TAG block"):
        parse_nmea(line)  # *00 is wrong


def test_tag_block_milliseconds_and_bad_params() -> None:
    assert parse_tag_block(f"c:1718445072123*{nmea_checksum('c:1718445072123'):02X}") \
        .unix_time_s == pytest.approx(1718445072.123)
    with pytest.raises(TagBlockError, match="not 'x:value'"):
        parse_tag_block(f"sVEST*{nmea_checksum('sVEST'):02X}")
    with pytest.raises(ValueError, match="reserved character"):
        tag_block("a,b")


# ------------------------------------------------------------------------------------- UBX


def test_golden_nav_pvt_from_pyubx2() -> None:
    fix = parse_ubx(golden_ubx())
    assert isinstance(fix, GnssFix) and fix.kind is MessageKind.NAV_PVT
    # nano = 99 999 999 ns rounds to the nearest microsecond
    assert fix.utc == datetime(2024, 6, 15, 10, 0, 0, 100000, tzinfo=UTC)
    assert fix.lat_deg == pytest.approx(51.5560456, abs=1e-9)
    assert fix.lon_deg == pytest.approx(-0.2796123, abs=1e-9)
    assert fix.alt_m == pytest.approx(45.123) and fix.speed_mps == pytest.approx(3.002)
    assert fix.course_deg == pytest.approx(299.98764, abs=1e-9)
    assert fix.fix_quality is FixQuality.DGPS  # diffSoln set
    assert fix.num_sats == 17 and fix.pdop == pytest.approx(1.23)
    assert fix.h_acc_m == pytest.approx(1.234) and fix.v_acc_m == pytest.approx(2.345)


def test_nav_pvt_table_round_trips_the_golden_frame() -> None:
    frame = golden_ubx()
    assert NAV_PVT.length == 92 and len(frame) == 100
    fields = decode_ubx_payload(NAV_PVT, frame[6:-2])
    assert fields["iTOW"] == 475218100 and fields["headMot"] == 29998764
    assert encode_ubx_frame(0x01, 0x07, encode_ubx_payload(NAV_PVT, fields)) == frame


def test_golden_frame_matches_pyubx2_today() -> None:
    pyubx2 = pytest.importorskip("pyubx2")
    frame = golden_ubx()
    parsed = pyubx2.UBXReader.parse(frame)
    assert parsed.identity == "NAV-PVT" and parsed.numSV == 17
    ours = format_nav_pvt(FixSample(51.5, -0.25, 40.0, 4.0, 90.0, 1, 12, 0.8),
                          datetime(2024, 6, 15, 10, 0, 0, 200000, tzinfo=UTC))
    theirs = pyubx2.UBXReader.parse(ours)  # our encoder writes frames pyubx2 accepts
    assert theirs.lat == pytest.approx(51.5) and theirs.gSpeed == 4000 and theirs.gnssFixOk == 1


@pytest.mark.parametrize("index", [2, 6, 30, 97, 98, 99])
def test_one_corrupted_ubx_byte_fails(index: int) -> None:
    frame = bytearray(golden_ubx())
    frame[index] ^= 0x10
    with pytest.raises((UbxChecksumError, MalformedUbxError)):
        parse_ubx(bytes(frame))


def test_ubx_truncated_and_unknown() -> None:
    with pytest.raises(MalformedUbxError, match="truncated"):
        parse_ubx(golden_ubx()[:-1])
    other = encode_ubx_frame(0x0A, 0x04, b"ROM CORE 3.01")
    assert parse_ubx(other) == UnsupportedMessage("UBX-0x0A-0x04", None, proprietary=True)


def test_nav_pvt_without_fix_has_no_position() -> None:
    sample = FixSample(51.5, -0.25, 40.0, 4.0, 90.0, 0, 3, 9.9)
    fix = parse_ubx(format_nav_pvt(sample, datetime(2024, 1, 1, tzinfo=UTC)))
    assert isinstance(fix, GnssFix) and fix.fix_quality is FixQuality.INVALID
    assert not fix.has_position and fix.speed_mps is None and fix.num_sats == 3


# -------------------------------------------------------------------------------- encoders


@pytest.mark.parametrize("quality", [1, 2, 4, 5])
def test_encoders_round_trip_within_print_precision(quality: int) -> None:
    sample = FixSample(-33.8568123, 151.2153456, 58.26, 7.123, 359.996, quality, 21, 0.64)
    utc = datetime(2024, 6, 15, 23, 59, 59, 900000, tzinfo=UTC)
    gga = parse_nmea(format_gga(sample, utc, talker="GP"))
    rmc = parse_nmea(format_rmc(sample, utc, talker="GL"))
    vtg = parse_nmea(format_vtg(sample, talker="GA"))
    gsa = parse_nmea(format_gsa(sample, talker="GB"))
    pvt = parse_ubx(format_nav_pvt(sample, utc))
    assert isinstance(gga, GnssFix) and isinstance(rmc, GnssFix) and isinstance(vtg, GnssFix)
    assert isinstance(gsa, GnssDop) and isinstance(pvt, GnssFix)
    for fix in (gga, rmc, pvt):
        assert fix.lat_deg == pytest.approx(sample.lat_deg, abs=1e-7)
        assert fix.lon_deg == pytest.approx(sample.lon_deg, abs=1e-7)
        assert fix.fix_quality == quality
    assert gga.alt_m == pytest.approx(58.3) and gga.hdop == 0.64 and gga.num_sats == 21
    assert rmc.utc == utc and pvt.utc == utc
    for fix in (rmc, vtg, pvt):
        assert fix.speed_mps == pytest.approx(7.123, abs=6e-4)
    assert rmc.course_deg == pytest.approx(0.0, abs=0.01)  # 359.996 prints as 360.00 -> 0.00
    assert gsa.hdop == 0.64 and len(gsa.satellite_ids) == 12
    assert nav_pvt_fields(sample, utc)["numSV"] == 21
    assert utc.date() == date(2024, 6, 15)


def test_import_stays_light() -> None:
    code = ("import sys, fusion_edge.firmware_bridge.gnss_parse;"
            "import fusion_edge.firmware_bridge.gnss_reader;"
            "import fusion_edge.firmware_bridge.gnss_encode;"
            "print(sorted(m for m in ('serial', 'torch', 'pyubx2', 'bleak') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
