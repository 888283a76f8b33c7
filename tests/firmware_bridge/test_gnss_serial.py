"""End to end: SimulatedReceiver writes into a pty, SerialGnssTransport reads it via pyserial."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from fusion_edge.errors import ConfigError, TransportError
from fusion_edge.firmware_bridge.gnss_parse import GnssFix, MessageKind
from fusion_edge.firmware_bridge.gnss_reader import GnssReading
from fusion_edge.firmware_bridge.serial_gnss import SerialGnssConfig, SerialGnssTransport
from fusion_edge.firmware_bridge.sim_gnss import (
    CircleTrackSource,
    FaultConfig,
    OutputMix,
    SimulatedReceiver,
    SimulatedReceiverConfig,
)

pytest.importorskip("serial")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals need POSIX")

START = datetime(2024, 6, 15, 10, 0, 0, tzinfo=timezone.utc)
SOURCE = CircleTrackSource(radius_m=15.0, speed_mps=6.5)
FAST = SerialGnssConfig(reconnect_timeout_s=3.0, backoff_initial_s=0.02, backoff_max_s=0.1)


def collect(transport: SerialGnssTransport, seconds: float) -> list[GnssReading]:
    readings: list[GnssReading] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reading = transport.get(timeout_s=0.05)
        if reading is not None:
            readings.append(reading)
    return readings


def fixes(readings: list[GnssReading], kind: MessageKind) -> list[GnssFix]:
    return [r.message for r in readings
            if isinstance(r.message, GnssFix) and r.message.kind is kind]


def epoch_of(fix: GnssFix) -> int:
    assert fix.utc is not None
    return round((fix.utc - START).total_seconds() * 10)


def check_against_source(fix: GnssFix, *, ubx: bool = False) -> None:
    truth = SOURCE.next_fix(epoch_of(fix) / 10.0)
    tol_deg = 1e-7 if ubx else 2e-7  # 1e-7 deg integers vs 1e-5 arc minutes
    assert fix.lat_deg == pytest.approx(truth.lat_deg, abs=tol_deg)
    assert fix.lon_deg == pytest.approx(truth.lon_deg, abs=tol_deg)
    if fix.alt_m is not None:
        assert fix.alt_m == pytest.approx(truth.alt_m, abs=0.051)
    if fix.speed_mps is not None:
        assert fix.speed_mps == pytest.approx(truth.speed_mps, abs=6e-4)
        assert fix.course_deg == pytest.approx(truth.course_deg, abs=0.006)


def test_ten_hz_nmea_fixes_match_the_source() -> None:
    config = SimulatedReceiverConfig(start_utc=START)
    with SimulatedReceiver(SOURCE, config) as receiver, \
            SerialGnssTransport(receiver.port, FAST) as transport:
        readings = collect(transport, 1.3)
    gga, rmc = fixes(readings, MessageKind.GGA), fixes(readings, MessageKind.RMC)
    assert len(gga) >= 9 and len(rmc) >= 9
    for fix in gga + rmc:
        check_against_source(fix)
    epochs = [epoch_of(fix) for fix in gga]
    assert epochs == list(range(epochs[0], epochs[0] + len(epochs)))  # none lost or repeated
    stamps = [r.host_time_ns for r in readings if r.message in gga]
    period_ms = statistics.median(b - a for a, b in zip(stamps, stamps[1:], strict=False)) / 1e6
    assert 80.0 < period_ms < 120.0
    assert transport.reader.counters.bad_checksum == 0
    assert transport.reader.counters.garbage_bytes == 0
    assert transport.running is False and transport.connected is False


def test_nmea_and_ubx_together() -> None:
    config = SimulatedReceiverConfig(start_utc=START, output=OutputMix.BOTH)
    with SimulatedReceiver(SOURCE, config) as receiver, \
            SerialGnssTransport(receiver.port, FAST) as transport:
        readings = collect(transport, 0.8)
    readings += collect(transport, 0.1)  # closed: drain what is still queued
    pvt = fixes(readings, MessageKind.NAV_PVT)
    assert len(pvt) >= 5 and len(fixes(readings, MessageKind.GGA)) >= 5
    for fix in pvt:
        check_against_source(fix, ubx=True)
    assert transport.reader.counters.ubx_ok == len(pvt)


def test_faults_are_counted_and_never_deliver_wrong_fixes() -> None:
    faults = FaultConfig(garbage_every=2, garbage_bytes=32, corrupt_every=3, dropout_every=4,
                         seed=7)
    config = SimulatedReceiverConfig(start_utc=START, output=OutputMix.BOTH, faults=faults)
    with SimulatedReceiver(SOURCE, config) as receiver, \
            SerialGnssTransport(receiver.port, FAST) as transport:
        readings = collect(transport, 1.3)
    counters = transport.reader.counters
    assert counters.garbage_bytes > 0 and counters.bad_checksum > 0
    pvt = fixes(readings, MessageKind.NAV_PVT)
    gga = fixes(readings, MessageKind.GGA)
    assert len(gga) >= 5 and len(pvt) >= 5
    for fix in gga + pvt:
        check_against_source(fix, ubx=fix.kind is MessageKind.NAV_PVT)
    assert all(epoch_of(fix) % 4 != 3 for fix in gga)  # dropped epochs stay dropped


def test_unplug_and_come_back(tmp_path: Path) -> None:
    link = tmp_path / "ttyGNSS"  # like /dev/serial/by-id/..., follows the new pty
    config = SimulatedReceiverConfig(start_utc=START, link_path=str(link))
    with SimulatedReceiver(SOURCE, config) as receiver, \
            SerialGnssTransport(str(link), FAST) as transport:
        readings = collect(transport, 0.4)
        unplugged_ns = time.monotonic_ns()
        receiver.unplug()
        time.sleep(0.3)
        assert not link.exists()
        replugged_ns = time.monotonic_ns()
        receiver.replug()
        assert transport.wait_connected(2.0)
        readings += collect(transport, 0.5)
        counters = transport.counters
    # A sentence already written when the port vanished may still be read just after: allow
    # 100 ms for it, then nothing may arrive while the port is missing.
    assert not [r for r in readings if unplugged_ns + 100_000_000 < r.host_time_ns < replugged_ns]
    before = fixes([r for r in readings if r.host_time_ns < unplugged_ns], MessageKind.GGA)
    after = fixes([r for r in readings if r.host_time_ns > replugged_ns], MessageKind.GGA)
    assert len(before) >= 2 and len(after) >= 3
    assert epoch_of(after[0]) >= epoch_of(before[-1]) + 3  # 0.3 s unplugged: epochs lost
    for fix in after:
        check_against_source(fix)
    assert counters.disconnects == 1 and counters.reconnects == 1
    assert counters.reconnect_attempts >= 2  # it failed while the port was missing


def test_port_that_never_comes_back_names_port_and_checks(tmp_path: Path) -> None:
    link = tmp_path / "ttyGNSS"
    errors: list[TransportError] = []
    config = SerialGnssConfig(reconnect_timeout_s=0.4, backoff_initial_s=0.02)
    receiver = SimulatedReceiver(SOURCE, SimulatedReceiverConfig(link_path=str(link))).start()
    transport = SerialGnssTransport(str(link), config, on_error=errors.append).start()
    try:
        assert transport.get(timeout_s=1.0) is not None
        receiver.unplug()
        with pytest.raises(TransportError) as info:
            while True:
                transport.get(timeout_s=3.0)
        message = str(info.value)
        assert str(link) in message and "did not come back within 0.4 s" in message
        assert "ls /dev/ttyUSB* /dev/ttyACM*" in message and "dialout" in message
        assert errors == [info.value] and transport.error is info.value
        assert not transport.running
    finally:
        transport.close()
        receiver.close()


def test_missing_port_fails_fast_with_advice(tmp_path: Path) -> None:
    missing = str(tmp_path / "ttyUSB9")
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"could not be opened \(last error") as info:
        SerialGnssTransport(missing).start()
    assert missing in str(info.value) and "dialout" in str(info.value)
    assert "within 0.0 s" not in str(info.value)
    assert time.monotonic() - started < 1.0
    with pytest.raises(TransportError, match="within 0.2 s"):
        SerialGnssTransport(missing, SerialGnssConfig(open_timeout_s=0.2)).start()


def test_close_is_prompt_and_idempotent_and_callbacks_get_readings() -> None:
    got: list[GnssReading] = []
    config = SerialGnssConfig(read_timeout_s=1.0)  # close must not wait out a long read
    with SimulatedReceiver(SOURCE, SimulatedReceiverConfig(start_utc=START)) as receiver:
        transport = SerialGnssTransport(receiver.port, config, on_reading=got.append).start()
        time.sleep(0.35)
        started = time.monotonic()
        transport.close()
        assert time.monotonic() - started < 0.5
        transport.close()
        assert not transport.running and transport.error is None
    assert len(got) >= 8 and transport.counters.bytes_read > 0


def test_full_queue_drops_oldest() -> None:
    config = SerialGnssConfig(queue_size=4)
    with SimulatedReceiver(SOURCE, SimulatedReceiverConfig(start_utc=START)) as receiver, \
            SerialGnssTransport(receiver.port, config) as transport:
        time.sleep(0.45)
    kept = collect(transport, 0.1)  # closed: only what the queue held
    assert len(kept) == 4
    assert transport.counters.queue_dropped == transport.reader.counters.sentences_ok - 4
    assert transport.counters.queue_dropped >= 8
    cycle = ["RMC", "VTG", "GGA", "GSA"] * 2
    got = [r.message.kind.value for r in kept]  # type: ignore[union-attr]
    assert any(cycle[i : i + 4] == got for i in range(4))  # the newest four, in order
    assert max(r.host_time_ns for r in kept) == max(r.host_time_ns for r in kept[-1:])


def test_three_tagged_receivers_over_one_pty() -> None:
    sources = {"A": SOURCE, "B": CircleTrackSource(center_lat_deg=10.0), "C": SOURCE}
    config = SimulatedReceiverConfig(start_utc=START, tag_sources=True)
    with SimulatedReceiver(sources, config) as receiver, \
            SerialGnssTransport(receiver.port, FAST) as transport:
        readings = collect(transport, 0.6)
    gga = fixes(readings, MessageKind.GGA)
    assert {fix.source for fix in gga} == {"A", "B", "C"}
    for fix in gga:
        if fix.source != "B":
            check_against_source(fix)
        else:
            assert fix.lat_deg == pytest.approx(10.0, abs=1e-3)


def test_link_budget_is_checked() -> None:
    sources = {f"V{i}": SOURCE for i in range(3)}
    config = SimulatedReceiverConfig(rate_hz=10, tag_sources=True, output=OutputMix.BOTH,
                                     baudrate=9600)
    with pytest.raises(ConfigError, match="GSV/GLL"):
        SimulatedReceiver(sources, config)
    with pytest.raises(ConfigError, match="TAG"):
        SimulatedReceiver(sources, SimulatedReceiverConfig())
    assert SimulatedReceiver(SOURCE).link_load < 0.35  # GGA+RMC+VTG+GSA at 10 Hz, 115200


def test_package_import_does_not_load_pyserial() -> None:
    code = ("import sys, fusion_edge.firmware_bridge, fusion_edge.firmware_bridge.sim_gnss;"
            "print('serial' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
