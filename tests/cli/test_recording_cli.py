"""`fusion-edge recording salvage` and `fusion-edge recording info` on recordings made here."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fusion_edge.cli.app import app
from fusion_edge.runtime.recording import SessionRecorder

runner = CliRunner()


def invoke(*args: Any):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


def text(r: Any) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(r.output.split())


def _record(path: Path, n: int, t0: int, clock_start: int, players: int = 3) -> None:
    clock = iter(range(clock_start, clock_start + 10**9, 1000))
    meta = {"format": "fusion-edge-session", "players": [{"player_id": f"p{i}"} for i in range(players)]}
    with SessionRecorder(path, meta, clock_ns=lambda: next(clock)) as rec:
        for i in range(n):
            t = t0 + i * 10_000_000
            rec.record_packet("F0:ED:00:00:00:01", t, b"\x01\x07" + bytes([i % 251]) * 198)
            rec.record_gnss("/dev/ttyACM0", t + 1, f"$GNGGA,{i:06d},5133.36,N*00\r\n".encode())
            if i % 10 == 0:
                rec.record_event("feedback", {"i": i, "pad": "x" * 100}, host_time_ns=t + 2)


@pytest.fixture
def match(tmp_path: Path) -> Path:
    """Two sessions in one file (the second appended), 300 and 100 records of each kind."""
    path = tmp_path / "match[1].sqlite"  # square brackets: must reach the user unmangled
    _record(path, 300, 1_000_000_000, 999_000_000)
    _record(path, 100, 5_000_000_000, 4_999_000_000, players=2)
    return path


def test_salvage_of_a_truncated_recording_prints_what_it_recovered(match: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "cut[2].sqlite"
    data = match.read_bytes()
    damaged.write_bytes(data[: int(len(data) * 0.7)])
    before = hashlib.sha256(damaged.read_bytes()).hexdigest()
    r = invoke("recording", "info", damaged)
    assert r.exit_code == 2 and "fusion-edge recording salvage" in text(r), r.output
    out = tmp_path / "recovered.sqlite"
    r = invoke("recording", "salvage", damaged, "--out", out)
    assert r.exit_code == 0, r.output
    assert hashlib.sha256(damaged.read_bytes()).hexdigest() == before
    assert "cut[2].sqlite" in r.output
    for word in ("pod_packets", "gnss_frames", "events", "damaged regions skipped", "sessions recovered"):
        assert word in r.output
    assert f"fusion-edge replay {out} --bundle B --session-id 1" in text(r)
    r = invoke("recording", "info", out)
    assert r.exit_code == 0 and "session(s)" in r.output, r.output


def test_salvage_refusals_exit_2_with_what_to_do(match: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.sqlite"
    r = invoke("recording", "salvage", tmp_path / "missing.sqlite", "--out", out)
    assert r.exit_code == 2 and "does not exist" in r.output
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    r = invoke("recording", "salvage", match, "--out", notes)
    assert r.exit_code == 2 and "--overwrite" in r.output, r.output
    r = invoke("recording", "salvage", match, "--out", notes, "--overwrite")
    assert r.exit_code == 2 and "not a readable fusion-edge recording" in text(r), r.output
    assert notes.read_text() == "keep me"
    r = invoke("recording", "salvage", match, "--out", match)
    assert r.exit_code == 2 and "the damaged recording itself" in text(r), r.output
    assert invoke("recording", "salvage", match, "--out", out).exit_code == 0
    assert invoke("recording", "salvage", match, "--out", out, "--overwrite").exit_code == 0


def test_salvage_says_which_sessions_lost_their_kit_description(match: Path, tmp_path: Path) -> None:
    con = sqlite3.connect(f"file:{match}?mode=ro", uri=True)
    (page,) = con.execute("SELECT pageno FROM dbstat WHERE name = 'sessions'").fetchone()
    (size,) = con.execute("PRAGMA page_size").fetchone()
    con.close()
    data = bytearray(match.read_bytes())
    data[(page - 1) * size : page * size] = b"\xff" * size
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(bytes(data))
    out = tmp_path / "out.sqlite"
    r = invoke("recording", "salvage", damaged, "--out", out)
    assert r.exit_code == 0, r.output
    assert "session(s) 1, 2: their session row" in text(r) and "metadata_lost" in text(r)
    assert "--session-id" not in r.output  # nothing that can be replayed
    r = invoke("recording", "info", out)
    assert r.exit_code == 0 and r.output.count("kit description lost (salvaged)") == 2, r.output


def test_info_lists_every_session_of_an_appended_file(match: Path) -> None:
    con = sqlite3.connect(match)
    with con:
        con.execute("UPDATE sessions SET ended_ns = NULL WHERE id = 2")  # as after a power cut
    con.close()
    r = invoke("recording", "info", match)
    assert r.exit_code == 0, r.output
    assert "match[1].sqlite: 2 session(s)" in text(r)
    lines = {line.split()[1]: line for line in r.output.splitlines() if line.startswith("│")}
    s1, s2 = lines["1"], lines["2"]
    assert "999000000" in s1 and "closed" in s1 and "not closed" not in s1
    assert "3.0 s" in s1 and " 300 " in s1 and " 30 " in s1 and " 3 " in s1
    assert "not closed (the recorder stopped: crash or power cut)" in s2
    assert "1.0 s" in s2 and " 100 " in s2 and " 10 " in s2 and " 2 " in s2
    assert "monotonic clock" in text(r)
    assert "--session-id N (without --session-id: session 2, the last)" in text(r)


def test_info_shows_a_wall_clock_start_as_utc(tmp_path: Path) -> None:
    path = tmp_path / "wall.sqlite"
    _record(path, 20, 1_000_000_000, 1_700_000_000 * 10**9)
    r = invoke("recording", "info", path)
    assert r.exit_code == 0, r.output
    assert "2023-11-14T22:13:20+00:00" in r.output and "monotonic clock" not in text(r)


def test_info_shows_the_date_the_kit_stored_with_the_session(tmp_path: Path) -> None:
    """A kit's recorder clock is monotonic (time since boot), so the session's date comes from
    the metadata `session_metadata` writes."""
    from fusion_edge.firmware_bridge.scenario_fixes import PitchOrigin
    from fusion_edge.runtime.field_kit import session_metadata

    meta = session_metadata([], PitchOrigin())
    assert meta["started_utc"].endswith("+00:00")
    path = tmp_path / "kit.sqlite"
    with SessionRecorder(path, meta) as rec:
        rec.record_packet("F0:ED:00:00:00:01", 1, b"\x01")
    r = invoke("recording", "info", path)
    assert r.exit_code == 0, r.output
    assert meta["started_utc"] in r.output and "monotonic clock" not in text(r)


def test_every_recording_command_has_help() -> None:
    for args in (("recording", "--help"), ("recording", "info", "--help"), ("recording", "salvage", "--help")):
        r = invoke(*args)
        assert r.exit_code == 0 and "Usage" in r.output, r.output
    r = invoke("recording")
    assert "salvage" in r.output and "info" in r.output
