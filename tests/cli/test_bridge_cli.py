"""CLI tests for `fusion-edge pods scan` and `fusion-edge gnss read/simulate`."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fusion_edge.cli.app import app
from fusion_edge.cli.bridge_commands import EpochMerger, register
from fusion_edge.firmware_bridge.gnss_parse import parse_nmea
from fusion_edge.firmware_bridge.sim_gnss import (
    CircleTrackSource,
    SimulatedReceiver,
    SimulatedReceiverConfig,
)

register(app)  # idempotent: the lead's app.py may already have done it

runner = CliRunner()
FIX_KEYS = {
    "source",
    "utc",
    "lat",
    "lon",
    "alt_m",
    "speed_mps",
    "course_deg",
    "fix_quality",
    "sats",
    "hdop",
    "host_ns",
}


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def test_register_is_idempotent() -> None:
    register(app)
    names = [g.name for g in app.registered_groups]
    assert names.count("pods") == 1 and names.count("gnss") == 1


def test_pods_scan_simulated_lists_every_pod_and_marks_the_allow_list() -> None:
    result = runner.invoke(
        app, ["pods", "scan", "--simulate", "3", "--seconds", "1", "--allow", "c0:fe:00:00:00:02"]
    )
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if "C0:FE:00:00:00:0" in ln]
    assert len(lines) == 3
    marks = {ln.split("│")[1].strip(): ln.split("│")[4].strip() for ln in lines}
    assert marks == {
        "C0:FE:00:00:00:01": "no",
        "C0:FE:00:00:00:02": "yes",
        "C0:FE:00:00:00:03": "no",
    }
    assert "pod-00:01" in result.output


@pytest.mark.parametrize(
    ("given", "advice"),
    [
        ("c0-fe-00-00-00-02", "'C0:FE:00:00:00:02'"),  # as Windows shows it
        ("C0FE00000002", "'C0:FE:00:00:00:02'"),
        ("pod-02", "AA:BB:CC:DD:EE:FF"),
    ],
)
def test_pods_scan_refuses_an_allow_list_entry_that_is_no_address(given: str, advice: str) -> None:
    """It used to scan and mark every pod 'no', as if the kit's pods were out of range."""
    result = runner.invoke(app, ["pods", "scan", "--simulate", "2", "--seconds", "1", "--allow", given])
    assert result.exit_code == 2, result.output
    text = flat(result.output)
    assert "is not a BLE address" in text and advice in text
    assert "Pods heard" not in text


def test_pods_scan_without_adapter_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    import bleak

    class NoAdapterScanner:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        async def __aenter__(self) -> None:
            raise FileNotFoundError(2, "No such file or directory")  # what BlueZ-less Linux gives

        async def __aexit__(self, *args: object) -> None:
            return None

    monkeypatch.setattr(bleak, "BleakScanner", NoAdapterScanner)
    result = runner.invoke(app, ["pods", "scan", "--seconds", "0.1"])
    assert result.exit_code == 2
    assert "no Bluetooth adapter found" in flat(result.output)
    assert "--simulate N" in flat(result.output)
    assert "Traceback" not in result.output


def test_pods_scan_bleak_not_available_is_a_transport_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import bleak
    from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason

    class Unavailable:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise BleakBluetoothNotAvailableError(
                "adapter off", BleakBluetoothNotAvailableReason.POWERED_OFF
            )

    monkeypatch.setattr(bleak, "BleakScanner", Unavailable)
    result = runner.invoke(app, ["pods", "scan", "--seconds", "0.1"])
    assert result.exit_code == 2
    assert "no Bluetooth adapter found" in flat(result.output)


def test_gnss_read_from_simulated_receiver_writes_fixes_and_stats(tmp_path: Path) -> None:
    out, stats = tmp_path / "fixes.jsonl", tmp_path / "stats.json"
    track = CircleTrackSource()
    cfg = SimulatedReceiverConfig(start_utc=datetime(2024, 6, 15, 12, 0, tzinfo=timezone.utc))
    with SimulatedReceiver(track, cfg) as rx:
        result = runner.invoke(
            app,
            ["gnss", "read", rx.port, "--seconds", "1.5", "--out", str(out), "--stats", str(stats)],
        )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert 8 <= len(records) <= 17  # 10 Hz for 1.5 s, give or take the start
    # The first and last epochs may be cut by opening and closing the port mid-epoch.
    for r in records[1:-1]:
        assert set(r) == FIX_KEYS
        utc = datetime.fromisoformat(r["utc"])
        assert utc.year == 2024 and utc.tzinfo is not None
        # Each epoch's position is where the circle track was at that epoch's time.
        t_s = (utc - cfg.start_utc).total_seconds()
        want = track.next_fix(t_s)
        assert math.isclose(r["lat"], want.lat_deg, abs_tol=2e-7)
        assert math.isclose(r["lon"], want.lon_deg, abs_tol=2e-7)
        assert r["speed_mps"] == pytest.approx(5.0, abs=0.01)
        assert r["alt_m"] == pytest.approx(45.0)
        assert (r["fix_quality"], r["sats"], r["hdop"]) == (1, 14, 0.7)
        assert r["source"] is None and isinstance(r["host_ns"], int)
    utcs = [r["utc"] for r in records]
    assert utcs == sorted(utcs) and len(set(utcs)) == len(utcs)  # one record per epoch
    s = json.loads(stats.read_text())
    assert s["fixes"] == len(records)
    assert s["checksum_errors"] == 0 and s["unknown"] == 0
    # RMC, VTG, GGA, GSA per epoch; the first epoch may have been cut by the port opening.
    assert 4 * len(records) - 4 <= s["sentences"] <= 4 * len(records) + 4
    assert "Stream counters" in result.output and "checksum_errors" in result.output


def test_gnss_read_missing_port_exits_2_with_checklist(tmp_path: Path) -> None:
    result = runner.invoke(app, ["gnss", "read", str(tmp_path / "ttyNOPE"), "--seconds", "0.5"])
    assert result.exit_code == 2
    assert "could not be opened" in flat(result.output)
    assert "dialout" in flat(result.output)
    assert "Traceback" not in result.output


def test_epoch_merger_joins_one_epoch_and_splits_the_next() -> None:
    records: list[dict] = []
    merger = EpochMerger(records.append)
    lines = [
        "$GNRMC,120000.00,A,5133.36000,N,00016.77600,W,9.719,45.00,150624,,,A,V*0E",
        "$GNVTG,45.00,T,,M,9.719,N,18.000,K,A*1A",
        "$GNGGA,120000.00,5133.36000,N,00016.77600,W,1,14,0.70,45.0,M,0.0,M,,*55",
        "$GNRMC,120000.10,A,5133.36100,N,00016.77600,W,9.719,45.00,150624,,,A,V*0E",
    ]
    for k, line in enumerate(lines):
        body = line[1 : line.index("*")]
        checksum = 0
        for ch in body.encode():
            checksum ^= ch
        merger.add(parse_nmea(f"${body}*{checksum:02X}"), k)
    assert len(records) == 1
    merger.flush()
    assert len(records) == 2
    first = records[0]
    assert first["utc"] == "2024-06-15T12:00:00+00:00"
    assert first["alt_m"] == 45.0 and first["sats"] == 14  # from GGA
    assert first["speed_mps"] == pytest.approx(9.719 * 0.514444, rel=1e-4)  # from RMC
    assert first["host_ns"] == 0
    assert records[1]["lat"] == pytest.approx(51 + 33.361 / 60)


def test_gnss_simulate_runs_for_the_given_time() -> None:
    result = runner.invoke(app, ["gnss", "simulate", "--seconds", "0.3", "--output", "ubx"])
    assert result.exit_code == 0, result.output
    assert "/dev/pts/" in result.output or "/dev/tty" in result.output
    assert "epochs" in result.output


def test_gnss_read_says_when_the_receiver_is_lost_and_when_it_comes_back(tmp_path: Path) -> None:
    """A receiver that came back was only a 'reconnects 1' in the final table: the operator
    watching the terminal saw the fixes stop and start again without a word."""
    import dataclasses
    import threading

    link = tmp_path / "rx"
    cfg = dataclasses.replace(SimulatedReceiverConfig(), link_path=str(link))
    with SimulatedReceiver(CircleTrackSource(), cfg) as rx:
        threading.Timer(0.8, rx.unplug).start()
        threading.Timer(1.6, rx.replug).start()
        result = runner.invoke(app, ["gnss", "read", str(link), "--seconds", "4"])
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert f"receiver on {link} lost; waiting up to 10 s for it to come back" in text
    assert re.search(rf"receiver on {re.escape(str(link))} came back after \d+\.\d s; reading on", text)


def test_gnss_read_receiver_that_disappears_keeps_the_fixes_and_the_counters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stats file and the counter table used to be lost when the receiver did not come back."""
    import dataclasses
    import threading

    import fusion_edge.firmware_bridge.serial_gnss as sg

    real = sg.SerialGnssConfig
    monkeypatch.setattr(sg, "SerialGnssConfig", lambda **kw: real(**{**kw, "reconnect_timeout_s": 0.5}))
    out, stats, link = tmp_path / "fixes.jsonl", tmp_path / "stats.json", tmp_path / "rx"
    cfg = dataclasses.replace(SimulatedReceiverConfig(), link_path=str(link))
    with SimulatedReceiver(CircleTrackSource(), cfg) as rx:
        threading.Timer(1.2, rx.unplug).start()
        result = runner.invoke(
            app, ["gnss", "read", str(link), "--seconds", "20", "--out", str(out), "--stats", str(stats)]
        )
    assert result.exit_code == 2, result.output
    text = flat(result.output)
    assert "disappeared and did not come back" in text and "Stream counters" in text
    s = json.loads(stats.read_text())
    assert s["fixes"] >= 5 and s["fixes"] == len(out.read_text().splitlines())
    assert s["error"] and "disappeared" in s["error"] and s["disconnects"] >= 1
    assert f"the {s['fixes']} fixes and counters up to then are in" in text
