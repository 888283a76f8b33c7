"""Replay documented receiver output (tests/data/firmware_bridge/captures) through the reader."""

from __future__ import annotations

import random
from datetime import datetime, time, timezone
from pathlib import Path

import pytest

from fusion_edge.firmware_bridge.gnss_messages import FixQuality, GnssDop, GnssFix, MessageKind
from fusion_edge.firmware_bridge.gnss_reader import BadFramePolicy, GnssReading, GnssStreamReader

CAPTURES = Path(__file__).parents[1] / "data" / "firmware_bridge" / "captures"
UTC = timezone.utc
KNOT = 1852.0 / 3600.0
KMH = 1.0 / 3.6


def replay(name: str, chunking: str = "whole") -> tuple[list[GnssReading], GnssStreamReader]:
    data = (CAPTURES / name).read_bytes()
    reader = GnssStreamReader(policy=BadFramePolicy.RAISE)  # a capture must not hold bad frames
    if chunking == "whole":
        chunks = [data]
    elif chunking == "bytes":
        chunks = [data[i : i + 1] for i in range(len(data))]
    else:
        rng, chunks, i = random.Random(7), [], 0
        while i < len(data):
            n = rng.randint(1, 40)
            chunks.append(data[i : i + n])
            i += n
    readings = [r for chunk in chunks for r in reader.feed(chunk, 0)]
    assert reader.buffered == 0, "the capture ends with a complete frame"
    return readings, reader


def fixes(readings: list[GnssReading]) -> list[GnssFix]:
    return [r.message for r in readings if isinstance(r.message, GnssFix)]


@pytest.mark.parametrize("chunking", ["whole", "bytes", "random"])
def test_nmea2_reference_examples(chunking: str) -> None:
    readings, reader = replay("nmea2_reference.nmea", chunking)
    gga, rmc, vtg = fixes(readings)
    assert (gga.kind, gga.talker) == (MessageKind.GGA, "GP")
    assert gga.utc_time == time(12, 35, 19, tzinfo=UTC) and gga.utc is None  # no date seen yet
    assert gga.lat_deg == pytest.approx(48 + 7.038 / 60, abs=1e-12)
    assert gga.lon_deg == pytest.approx(11 + 31.0 / 60, abs=1e-12)
    assert (gga.alt_m, gga.num_sats, gga.hdop) == (545.4, 8, 0.9)
    assert gga.fix_quality is FixQuality.GPS
    assert rmc.utc == datetime(1994, 3, 23, 12, 35, 19, tzinfo=UTC)
    assert rmc.speed_mps == pytest.approx(22.4 * KNOT) and rmc.course_deg == 84.4
    assert vtg.course_deg == 54.7 and vtg.speed_mps == pytest.approx(10.2 * KMH)
    (dop,) = [r.message for r in readings if isinstance(r.message, GnssDop)]
    assert dop.satellite_ids == (4, 5, 9, 12, 24) and (dop.pdop, dop.hdop, dop.vdop) == (
        2.5,
        1.3,
        2.1,
    )
    c = reader.counters
    assert (c.sentences_ok, c.bad_checksum, c.malformed, c.garbage_bytes) == (4, 0, 0, 0)


@pytest.mark.parametrize("chunking", ["whole", "bytes", "random"])
def test_ublox_mixed_nmea_pubx_and_ubx(chunking: str) -> None:
    readings, reader = replay("ublox_mixed.bin", chunking)
    kinds = [(r.message.kind, getattr(r.message, "talker", None)) for r in readings]
    assert kinds == [
        (MessageKind.RMC, "GP"),
        (MessageKind.VTG, "GP"),
        (MessageKind.GGA, "GP"),
        (MessageKind.GSA, "GP"),
        (MessageKind.NAV_PVT, None),
        (MessageKind.GGA, "GN"),
    ]
    rmc, vtg, gga, pvt, gn_gga = fixes(readings)
    assert rmc.utc == datetime(2002, 12, 9, 8, 35, 59, tzinfo=UTC)
    assert rmc.lat_deg == pytest.approx(47 + 17.11437 / 60, abs=1e-12)
    assert rmc.lon_deg == pytest.approx(8 + 33.91522 / 60, abs=1e-12)
    assert rmc.speed_mps == pytest.approx(0.004 * KNOT) and rmc.course_deg == 77.52
    assert vtg.fix_quality is FixQuality.GPS and vtg.speed_mps == pytest.approx(0.008 * KMH)
    # GGA carries only the time of day: the reader dates it from the RMC before it.
    assert gga.utc == datetime(2002, 12, 9, 9, 27, 25, tzinfo=UTC)
    assert (gga.alt_m, gga.num_sats, gga.hdop) == (499.6, 8, 1.01)
    assert gga.lat_deg == pytest.approx(47 + 17.11399 / 60, abs=1e-12)
    assert pvt.utc == datetime(2024, 6, 15, 10, 0, 0, 100000, tzinfo=UTC)
    assert pvt.lat_deg == pytest.approx(51.5560456, abs=1e-9)
    assert pvt.fix_quality is FixQuality.DGPS and pvt.num_sats == 17
    assert gn_gga.utc == datetime(2024, 6, 15, 9, 27, 25, tzinfo=UTC)  # dated by the NAV-PVT
    c = reader.counters
    assert (c.sentences_ok, c.unknown, c.proprietary) == (5, 2, 2)  # GLL+ZDA, PUBX 00+04
    assert (c.ubx_ok, c.ubx_unknown, c.ubx_bad) == (1, 1, 0)  # NAV-PVT, ACK-ACK
    assert (c.bad_checksum, c.malformed, c.garbage_bytes) == (0, 0, 0)


def test_ublox_cold_start_has_no_position() -> None:
    readings, reader = replay("ublox_cold_start.nmea")
    rmc, vtg, gga = fixes(readings)
    for fix in (rmc, vtg, gga):
        assert fix.fix_quality is FixQuality.INVALID and not fix.has_position
        assert fix.speed_mps is None and fix.course_deg is None and fix.utc is None
    assert (gga.num_sats, gga.hdop, gga.alt_m) == (0, 99.99, None)
    (dop,) = [r.message for r in readings if isinstance(r.message, GnssDop)]
    assert dop.fix_type == 1 and dop.satellite_ids == () and dop.pdop == 99.99
    assert reader.counters.sentences_ok == 4


@pytest.mark.parametrize("chunking", ["whole", "random"])
def test_novatel_and_sirf_examples(chunking: str) -> None:
    readings, reader = replay("novatel_sirf.nmea", chunking)
    novatel, sirf_gga, rmc, vtg = fixes(readings)
    assert novatel.fix_quality is FixQuality.DGPS
    assert novatel.lat_deg == pytest.approx(51 + 6.9792 / 60, abs=1e-12)
    assert novatel.lon_deg == pytest.approx(-(114 + 2.3003 / 60), abs=1e-12)
    assert (novatel.alt_m, novatel.num_sats, novatel.hdop) == (1048.47, 9, 1.0)
    assert sirf_gga.utc_time == time(0, 21, 53, tzinfo=UTC)
    assert sirf_gga.lon_deg == pytest.approx(-(117 + 51.3858 / 60), abs=1e-12)
    assert rmc.utc == datetime(1998, 5, 12, 16, 12, 29, 487000, tzinfo=UTC)  # milliseconds kept
    assert rmc.lat_deg == pytest.approx(37 + 23.2475 / 60, abs=1e-12)
    assert rmc.speed_mps == pytest.approx(0.13 * KNOT) and rmc.course_deg == 309.62
    assert (
        vtg.speed_mps == pytest.approx(0.2 * KMH) and vtg.fix_quality is None
    )  # NMEA 2.x: no mode
    assert reader.counters.sentences_ok == 5 and reader.counters.garbage_bytes == 0


def test_every_capture_survives_a_pty_round_trip() -> None:
    """The captures go through a real serial path (pty + pyserial) unchanged."""
    pytest.importorskip("serial")
    from fusion_edge.firmware_bridge.serial_gnss import SerialGnssTransport
    from fusion_edge.firmware_bridge.sim_gnss import SimulatedReceiver, SimulatedReceiverConfig

    data = b"".join(
        (CAPTURES / n).read_bytes()
        for n in sorted(p.name for p in CAPTURES.glob("*.*") if p.suffix != ".md")
    )
    expected = [r.message for r in GnssStreamReader().feed(data, 0)]
    rx = SimulatedReceiver(lambda t: None, SimulatedReceiverConfig(rate_hz=1.0)).start()
    try:
        with SerialGnssTransport(rx.port) as transport:
            rx.write_raw(data)
            got = []
            while len(got) < len(expected):
                reading = transport.get(timeout_s=2.0)
                assert reading is not None, f"only {len(got)} of {len(expected)} frames arrived"
                got.append(reading.message)
    finally:
        rx.close()
    assert got == expected
