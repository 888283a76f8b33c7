"""GnssStreamReader: framing, resynchronization, policies, chunking and TAG multiplexing."""

from __future__ import annotations

import logging
import random
from datetime import datetime, timezone
from pathlib import Path

import pytest

from fusion_edge.firmware_bridge.gnss_encode import FixSample, format_gga, format_rmc, tag_block
from fusion_edge.firmware_bridge.gnss_parse import (
    GnssDop,
    GnssFix,
    GnssParseError,
    MessageKind,
    NmeaChecksumError,
    UbxChecksumError,
)
from fusion_edge.firmware_bridge.gnss_reader import (
    MAX_TEXT_FRAME,
    BadFramePolicy,
    GnssCounters,
    GnssReading,
    GnssStreamReader,
)
from fusion_edge.firmware_bridge.sim_gnss import (
    CircleTrackSource,
    SimulatedReceiver,
    SimulatedReceiverConfig,
)

DATA = Path(__file__).parents[1] / "data" / "firmware_bridge"
UTC = timezone.utc

GGA = b"$GNGGA,092725.00,4717.11399,N,00833.91590,E,1,08,1.01,499.6,M,48.0,M,,*45\r\n"
RMC = b"$GNRMC,083559.00,A,4717.11437,N,00833.91522,E,0.004,77.52,091202,,,A,V*33\n"  # LF only
VTG = b"$GNVTG,77.52,T,,M,0.004,N,0.008,K,A*18\r\n"
GSA = b"$GLGSA,A,3,65,66,72,81,,,,,,,,,1.94,1.18,1.54,2*0B\r\n"
PUBX = (b"$PUBX,00,081350.00,4717.113210,N,00833.915187,E,546.589,G3,2.1,2.0,0.007,77.52,"
        b"0.007,,0.92,1.19,0.77,9,0,0*5F\r\n")
GSV = b"$GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00*74\r\n"
BAD_GGA = GGA.replace(b"499.6", b"499.7")


def golden_ubx() -> bytes:
    lines = (DATA / "gnss_nav_pvt_golden.hex").read_text().splitlines()
    return bytes.fromhex("".join(line for line in lines if not line.startswith("#")))


UBX = golden_ubx()
BAD_UBX = UBX[:40] + bytes([UBX[40] ^ 0xFF]) + UBX[41:]
NOISE = bytes([0x00, 0xFF, 0x13, 0x24, 0x01, 0x9C, 0xB5, 0x00, 0x7F, 0x0A])  # has '$', B5, LF
FALSE_SYNC = b"\xb5\x62\x99\x01\xff\xff"  # UBX sync, class 0x99 does not exist
TAGGED = tag_block("VEST07", 1718445072).encode() + VTG

MIXED = (NOISE + GGA + UBX + RMC + PUBX + GSV + BAD_GGA + b"$GNGGA,0927" + VTG + FALSE_SYNC
         + GSA + BAD_UBX + TAGGED + b"\x00\x00" + UBX)
#: The kinds decoded from MIXED, in order, and the counters it must leave.
MIXED_KINDS = ["GGA", "NAV-PVT", "RMC", "VTG", "GSA", "VTG", "NAV-PVT"]
MIXED_COUNTERS = GnssCounters(
    sentences_ok=5, bad_checksum=1, malformed=0, unknown=1, proprietary=1,
    garbage_bytes=len(NOISE) + len(b"$GNGGA,0927") + 2 + len(BAD_UBX) - 2 + 4,
    ubx_ok=2, ubx_bad=2, ubx_unknown=0,
)


def kinds(readings: list[GnssReading]) -> list[str]:
    return [reading.message.kind.value for reading in readings]  # type: ignore[union-attr]


def strip_time(readings: list[GnssReading]) -> list[tuple[bytes, object]]:
    return [(reading.raw, reading.message) for reading in readings]


def test_mixed_stream_with_garbage() -> None:
    reader = GnssStreamReader(policy=BadFramePolicy.IGNORE)
    readings = reader.feed(MIXED, host_time_ns=123)
    assert kinds(readings) == MIXED_KINDS
    assert reader.counters == MIXED_COUNTERS
    assert all(reading.host_time_ns == 123 for reading in readings)
    assert readings[0].raw == GGA and readings[1].raw == UBX and readings[2].raw == RMC
    tagged = readings[5].message
    assert isinstance(tagged, GnssFix) and tagged.source == "VEST07"
    assert readings[5].raw == TAGGED
    assert reader.buffered == 0


def test_one_byte_at_a_time_gives_identical_results() -> None:
    whole = GnssStreamReader(policy=BadFramePolicy.IGNORE)
    expected = whole.feed(MIXED, 0)
    single = GnssStreamReader(policy=BadFramePolicy.IGNORE)
    got: list[GnssReading] = []
    for i in range(len(MIXED)):
        got += single.feed(MIXED[i : i + 1], i)
    assert strip_time(got) == strip_time(expected)
    assert single.counters == whole.counters
    # Each reading carries the time of the chunk holding its last byte.
    assert got[0].host_time_ns == len(NOISE) + len(GGA) - 1


@pytest.mark.parametrize("seed", range(5))
def test_random_chunking_gives_identical_results(seed: int) -> None:
    rng = random.Random(seed)
    expected = strip_time(GnssStreamReader(policy=BadFramePolicy.IGNORE).feed(MIXED * 3))
    reader = GnssStreamReader(policy=BadFramePolicy.IGNORE)
    stream, got, i = MIXED * 3, [], 0
    while i < len(stream):
        size = rng.randint(1, 97)
        got += reader.feed(stream[i : i + size])
        i += size
    assert strip_time(got) == expected
    assert reader.counters.garbage_bytes == 3 * MIXED_COUNTERS.garbage_bytes


def test_raise_policy_consumes_the_bad_frame_and_keeps_good_ones() -> None:
    reader = GnssStreamReader(policy=BadFramePolicy.RAISE)
    errors: list[GnssParseError] = []
    got: list[GnssReading] = []
    chunk = MIXED
    for _ in range(10):
        try:
            got += reader.feed(chunk)
            break
        except GnssParseError as error:
            errors.append(error)
            chunk = b""
    assert kinds(got) == MIXED_KINDS
    assert [type(e) for e in errors] == [NmeaChecksumError, UbxChecksumError, UbxChecksumError]
    assert "class 0x99" in str(errors[1]) and "check the baud rate" in str(errors[2])


def test_log_policy_logs_and_ignore_policy_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fusion_edge.firmware_bridge.gnss_reader"):
        GnssStreamReader(policy=BadFramePolicy.LOG).feed(BAD_GGA + GGA)
    assert len(caplog.records) == 1 and "checksum" in caplog.records[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fusion_edge.firmware_bridge.gnss_reader"):
        readings = GnssStreamReader(policy="ignore").feed(BAD_GGA + GGA)  # type: ignore[arg-type]
    assert not caplog.records and len(readings) == 1


def test_overlong_line_and_binary_noise_resync() -> None:
    reader = GnssStreamReader()
    junk = b"$" + b"A" * (MAX_TEXT_FRAME + 10)
    readings = reader.feed(junk + GGA + bytes(range(256)) + RMC)
    assert kinds(readings) == ["GGA", "RMC"]
    assert reader.counters.garbage_bytes == len(junk) + 256


def test_incomplete_frames_wait_for_more() -> None:
    reader = GnssStreamReader()
    assert reader.feed(GGA[:-1]) == []  # CR seen, LF may follow
    assert kinds(reader.feed(GGA[-1:])) == ["GGA"]
    assert reader.feed(UBX[:50]) == []
    assert kinds(reader.feed(UBX[50:])) == ["NAV-PVT"]
    # A lone CR terminates the sentence once the next byte shows no LF follows.
    readings = reader.feed(GGA[:-1]) + reader.feed(RMC)
    assert kinds(readings) == ["GGA", "RMC"] and readings[0].raw == GGA[:-1]
    assert reader.counters.garbage_bytes == 0


def test_reset_drops_a_partial_frame() -> None:
    reader = GnssStreamReader()
    reader.feed(GGA[:30])
    reader.reset()
    assert kinds(reader.feed(RMC)) == ["RMC"]
    assert reader.counters.garbage_bytes == 30


def test_gga_gets_the_date_of_the_last_rmc_per_source() -> None:
    sample = FixSample(51.5, -0.25, 40.0, 4.0, 90.0, 1, 12, 0.8)
    before = datetime(2024, 6, 15, 23, 59, 59, 900000, tzinfo=UTC)
    after = datetime(2024, 6, 16, 0, 0, 0, 0, tzinfo=UTC)
    tag_a, tag_b = tag_block("A"), tag_block("B")
    stream = (format_rmc(sample, before, tag=tag_a) + format_gga(sample, before, tag=tag_a)
              + format_gga(sample, after, tag=tag_a) + format_gga(sample, after, tag=tag_b))
    readings = GnssStreamReader().feed(stream)
    utcs = [reading.message.utc for reading in readings]  # type: ignore[union-attr]
    assert utcs == [before, before, after, None]  # B never sent a date
    plain = GnssStreamReader(complete_dates=False).feed(stream)
    assert plain[1].message.utc is None  # type: ignore[union-attr]


def test_tag_blocks_multiplex_three_receivers_on_one_stream() -> None:
    sources = {
        "VEST01": CircleTrackSource(radius_m=10.0, speed_mps=3.0),
        "VEST02": CircleTrackSource(center_lat_deg=48.1, center_lon_deg=11.5, speed_mps=6.0),
        "BALL": CircleTrackSource(center_lat_deg=-33.9, center_lon_deg=151.2, radius_m=30.0),
    }
    config = SimulatedReceiverConfig(tag_sources=True,
                                     start_utc=datetime(2024, 6, 15, 10, tzinfo=UTC))
    receiver = SimulatedReceiver(sources, config)  # rendering only: no pty is opened
    stream = b"".join(receiver.render_epoch(k) for k in range(20))
    reader = GnssStreamReader(policy=BadFramePolicy.RAISE)
    readings = []
    for i in range(0, len(stream), 61):
        readings += reader.feed(stream[i : i + 61])
    by_source: dict[str | None, list[object]] = {}
    for reading in readings:
        by_source.setdefault(reading.message.source, []).append(reading.message)  # type: ignore[union-attr]
    assert set(by_source) == set(sources)
    for name, messages in by_source.items():
        assert len(messages) == 20 * 4  # RMC, VTG, GGA, GSA per epoch
        gga = [m for m in messages if isinstance(m, GnssFix) and m.kind is MessageKind.GGA]
        assert len(gga) == 20 and all(isinstance(m, (GnssFix, GnssDop)) for m in messages)
        for k, fix in enumerate(gga):
            truth = sources[name].next_fix(k / 10.0)  # type: ignore[index]
            assert fix.utc == receiver.epoch_utc(k)  # date completed from this source's RMC
            assert fix.lat_deg == pytest.approx(truth.lat_deg, abs=2e-7)
            assert fix.lon_deg == pytest.approx(truth.lon_deg, abs=2e-7)
            assert fix.tag is not None and fix.tag.unix_time_s == int(fix.utc.timestamp())
    assert reader.counters.sentences_ok == 3 * 20 * 4 and reader.counters.garbage_bytes == 0
