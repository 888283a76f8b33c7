"""Session recording: round trip, host-time order, drop policy, kill -9, damaged files."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fusion_edge.runtime.recording import (
    RecordingError,
    RecordKind,
    SessionReader,
    SessionRecorder,
)

REPO = Path(__file__).resolve().parents[2]


def test_round_trip_in_host_time_order(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SessionRecorder(path, {"scenario": "rondo", "players": 6}) as rec:
        rec.add_device("pod", "pod-01", {"mac": "AA"}, host_time_ns=1)
        rec.record_packet("pod-01", 300, b"\x01\x02")
        rec.record_gnss("/dev/ttyUSB0", 100, b"$GNRMC,...*00\r\n")
        rec.record_packet("pod-02", 100, b"\x03")
        rec.record_event("feedback", {"player": "p1", "action": "passing"}, host_time_ns=200)
    assert rec.stats.written == {"device": 1, "packet": 2, "gnss": 1, "event": 1}
    with SessionReader(path) as reader:
        (info,) = reader.sessions()
        assert info.metadata == {"scenario": "rondo", "players": 6}
        assert info.ended_ns is not None and info.stats["dropped"] == {}
        assert reader.devices() == [
            {
                "session_id": info.id,
                "kind": "pod",
                "name": "pod-01",
                "host_time_ns": 1,
                "info": {"mac": "AA"},
            }
        ]
        recs = list(reader.records())
        assert [(r.kind, r.host_time_ns, r.source) for r in recs] == [
            (RecordKind.PACKET, 100, "pod-02"),
            (RecordKind.GNSS, 100, "/dev/ttyUSB0"),
            (RecordKind.EVENT, 200, "feedback"),
            (RecordKind.PACKET, 300, "pod-01"),
        ]
        assert recs[3].data == b"\x01\x02" and recs[2].json()["action"] == "passing"
        assert [r.kind for r in reader.records(kinds=("gnss",))] == [RecordKind.GNSS]
        assert reader.count("packet") == 2


def test_sessions_append_to_one_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    for k in range(2):
        with SessionRecorder(path, {"k": k}) as rec:
            rec.record_packet("pod", k, bytes([k]))
    with SessionReader(path) as reader:
        infos = reader.sessions()
        assert [i.metadata["k"] for i in infos] == [0, 1]
        assert [r.session_id for r in reader.records(session_id=infos[1].id)] == [infos[1].id]


def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    rec = SessionRecorder(path, queue_size=10, commit_interval_s=0.01)
    rec.start()
    # Another connection holds the write lock, as a stalled disk would: the writer blocks.
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    rec.record_packet("pod", -1, b"x")
    time.sleep(0.3)  # the writer is now stuck committing that one
    t0 = time.perf_counter()
    accepted = sum(rec.record_packet("pod", i, b"x") for i in range(5000))
    elapsed = time.perf_counter() - t0
    other.execute("ROLLBACK")
    other.close()
    rec.close()
    stats = rec.stats
    assert accepted == 10  # the queue's size; everything else was dropped, not waited for
    assert stats.dropped == {"packet": 4990}
    assert stats.queued["packet"] == stats.written["packet"] == 11
    assert elapsed < 1.0
    with SessionReader(path) as reader:
        assert reader.count("packet") == 11
        assert reader.sessions()[0].stats["dropped"] == {"packet": 4990}


def test_a_dead_writer_is_reported_at_the_next_record(tmp_path: Path) -> None:
    """When the writer thread dies (here: a write the database refuses, as a full disk or a
    removed card would), the next record raises at once instead of queueing into the void, and
    what was committed before stays readable."""
    path = tmp_path / "s.sqlite"
    rec = SessionRecorder(path, commit_interval_s=0.01)
    rec.start()
    for i in range(20):
        rec.record_packet("pod", i, b"ok")
    deadline = time.monotonic() + 5.0
    while rec.stats.written.get("packet", 0) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    rec._offer("packet", ("pod",))  # too few values: the INSERT fails in the writer thread
    rec._thread.join(timeout=5.0)
    assert not rec._thread.is_alive()
    t0 = time.perf_counter()
    with pytest.raises(RecordingError, match="cannot write the session recording"):
        rec.record_packet("pod", 99, b"lost")
    assert time.perf_counter() - t0 < 0.1
    with pytest.raises(RecordingError, match="disk is not full"):
        rec.close()
    with SessionReader(path) as reader:
        assert reader.count("packet") == 20


def test_record_before_start_is_refused(tmp_path: Path) -> None:
    rec = SessionRecorder(tmp_path / "s.sqlite")
    with pytest.raises(RecordingError, match="context manager"):
        rec.record_packet("pod", 0, b"")


_CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from fusion_edge.runtime.recording import SessionRecorder
    rec = SessionRecorder({path!r}, {{"child": True}}, commit_interval_s=0.2)
    rec.start()
    i = 0
    while True:
        for _ in range(50):
            rec.record_packet("pod-1", i, i.to_bytes(4, "little"))
            i += 1
        print(i, flush=True)
        time.sleep(0.01)
    """
)


def test_kill_9_mid_stream_loses_at_most_the_last_second(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(repo=str(REPO), path=str(path))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        start = time.monotonic()
        submitted_a_second_ago = 0
        history: list[tuple[float, int]] = []
        while time.monotonic() - start < 2.5:
            line = child.stdout.readline()
            assert line, "the recording subprocess died on its own"
            history.append((time.monotonic(), int(line)))
        kill_time = time.monotonic()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        submitted_a_second_ago = max(n for t, n in history if t <= kill_time - 1.0)
        submitted = history[-1][1]
    finally:
        if child.poll() is None:
            child.kill()
    with SessionReader(path) as reader:
        (info,) = reader.sessions()
        assert info.ended_ns is None  # it never closed
        got = [int.from_bytes(r.data, "little") for r in reader.records()]
    assert got == list(range(len(got)))  # nothing out of order, no holes
    assert submitted_a_second_ago <= len(got) <= submitted


def test_truncated_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SessionRecorder(path) as rec:
        for i in range(3000):
            rec.record_packet("pod", i, os.urandom(100))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(RecordingError) as err:
        with SessionReader(path) as reader:
            list(reader.records())
    msg = str(err.value)
    assert str(path) in msg and "fusion-edge recording salvage" in msg


def test_not_a_database_or_not_a_recording(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RecordingError, match="not a SQLite file"):
        SessionReader(junk)
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    con.commit()
    con.close()
    with pytest.raises(RecordingError, match="not a fusion-edge recording"):
        SessionReader(other)
    with pytest.raises(RecordingError, match="does not exist"):
        SessionReader(tmp_path / "missing.sqlite")


def test_a_folder_an_empty_file_or_a_json_report_is_named_for_what_it_is(tmp_path: Path) -> None:
    # These used to read "does not exist" (a folder) and "damaged ... salvage with .recover"
    # (an empty file, a report.json), sending the operator to repair a file that is no recording.
    with pytest.raises(RecordingError, match="is a folder, not a recording"):
        SessionReader(tmp_path)
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(RecordingError, match=r"is empty \(0 bytes\)") as err:
        SessionReader(empty)
    assert "salvage" not in str(err.value)
    report = tmp_path / "report.json"
    report.write_text('{"format": "fusion-edge-profile", "version": 1}')
    with pytest.raises(RecordingError, match="not a SQLite file.*'fusion-edge run --record'") as err:
        SessionReader(report)
    assert "salvage" not in str(err.value)


def test_a_crashed_recording_with_an_empty_main_file_is_left_to_sqlite(tmp_path: Path) -> None:
    # With its -wal file next to it, the main file may not hold the header yet: no early refusal.
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"")
    Path(f"{path}-wal").write_bytes(b"")
    with pytest.raises(RecordingError, match="damaged or not a SQLite database"):
        SessionReader(path)


def test_unwritable_location_fails_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises((RecordingError, OSError)):
        SessionRecorder(blocker / "s.sqlite").start()


def _sqlite_file(path: Path, *statements: str) -> bytes:
    con = sqlite3.connect(path)
    for sql in statements:
        con.execute(sql)
    con.commit()
    con.close()
    return path.read_bytes()


def test_a_session_is_never_appended_to_a_file_it_does_not_belong_in(tmp_path: Path) -> None:
    """`--record other.sqlite` used to add the recording's tables to another program's database,
    and a session appended to a newer-format recording could not be replayed."""
    other = tmp_path / "contacts.sqlite"
    before = _sqlite_file(other, "CREATE TABLE contacts (name TEXT)", "INSERT INTO contacts VALUES ('x')")
    newer = tmp_path / "newer.sqlite"
    _sqlite_file(newer, "CREATE TABLE meta (key TEXT, value TEXT)",
                 "INSERT INTO meta VALUES ('app', 'fusion-edge-recording'), ('format_version', '7')")
    for path, says in ((other, "a SQLite file of another program"), (newer, "recording format 7, newer")):
        with pytest.raises(RecordingError, match=says):
            SessionRecorder.check_target(path)
        with pytest.raises(RecordingError, match=says):
            SessionRecorder(path, {}).start()
    assert other.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["contacts.sqlite", "newer.sqlite"]


def test_a_damaged_recording_is_not_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SessionRecorder(path) as rec:
        for i in range(3000):
            rec.record_packet("pod", i, os.urandom(100))
    cut = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(cut)
    with pytest.raises(RecordingError, match="damaged recording.*left as it was.*recording salvage"):
        SessionRecorder.check_target(path)
    assert path.read_bytes() == cut


def test_an_earlier_recording_is_appended_to_and_left_tidy(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SessionRecorder(path, {"n": 1}) as rec:
        rec.record_packet("pod", 1, b"\x01")
    SessionRecorder.check_target(path)
    SessionRecorder.check_target(tmp_path / "new.sqlite")  # a new file is fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.sqlite"], "no -wal/-shm left behind"
    with SessionRecorder(path, {"n": 2}) as rec:
        rec.record_packet("pod", 2, b"\x02")
    with SessionReader(path) as reader:
        assert [s.metadata["n"] for s in reader.sessions()] == [1, 2]


def test_a_closed_recording_on_read_only_media_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A good recording on a write-protected card used to be called damaged: SQLite could not
    create its -shm file there. (The test runs as any user, so read-only is simulated.)"""
    import fusion_edge.runtime.recording as recording

    path = tmp_path / "s.sqlite"
    with SessionRecorder(path, {"kit": "k"}) as rec:
        for i in range(50):
            rec.record_packet("pod", i, b"\x01" * 40)
    real_access = os.access
    monkeypatch.setattr(recording.os, "access",
                        lambda p, mode: False if mode == os.W_OK else real_access(p, mode))
    with SessionReader(path) as reader:
        assert reader.count("packet") == 50 and reader.sessions()[0].metadata == {"kit": "k"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.sqlite"]
    Path(f"{path}-wal").write_bytes(b"")  # not closed: its last writes need a writable place
    with pytest.raises(RecordingError, match="read-only place.*copy the file together with its -wal"):
        SessionReader(path)
