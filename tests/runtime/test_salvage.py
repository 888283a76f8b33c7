"""Salvaging damaged recordings: truncated copies, random bytes over the middle, a lost session
row or meta, a crashed session's WAL, and the files salvage must refuse.

Every damaged file is made here from a recording written by SessionRecorder (two sessions,
200-byte pod packets, so the tables fill many pages). Bounds on what must come back are
taken from the intact file's pages (SQLite's dbstat): every row on a page the damage did not
touch has to be recovered, and every row recovered must equal the original one.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from fusion_edge.errors import FusionEdgeError
from fusion_edge.runtime.recording import RecordingError, SessionReader, SessionRecorder
from fusion_edge.runtime.salvage import salvage_recording

PAGE = 4096
TABLES = ("pod_packets", "gnss_frames", "events")
T0 = 1_000_000_000  # host monotonic ns of the first record


def _record(path: Path, session: int, n_packets: int, n_gnss: int, n_events: int, t0: int) -> None:
    rng = random.Random(session)
    clock = iter(range(t0 - 10, t0 + 10**12, 1000))
    meta = {"format": "fusion-edge-session", "players": [{"player_id": f"p{i}"} for i in range(4)],
            "session": session}
    with SessionRecorder(path, meta, clock_ns=lambda: next(clock)) as rec:
        rec.add_device("pod", "pod-0", {"mac": "F0:ED:00:00:00:00"}, host_time_ns=t0)
        for i in range(max(n_packets, n_gnss, n_events)):
            t = t0 + i * 10_000_000
            if i < n_packets:
                rec.record_packet(f"F0:ED:00:00:00:0{i % 4}", t, b"\x01\x07" + rng.randbytes(198))
            if i < n_gnss:
                rec.record_gnss("/dev/ttyACM0", t + 1, f"$GNGGA,{i:06d},5133.36,N,00016.77,W*{i % 97:02X}\r\n".encode())
            if i < n_events:
                rec.record_event("feedback", {"player": f"p{i % 4}", "i": i, "pad": "x" * 200},
                                 host_time_ns=t + 2)


@pytest.fixture(scope="module")
def intact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recording of two sessions (400 + 200 packets, 300 + 150 GNSS frames, 40 + 20 events)."""
    path = tmp_path_factory.mktemp("intact") / "match.sqlite"
    _record(path, 1, 400, 300, 40, T0)
    _record(path, 2, 200, 150, 20, T0 + 10**11)
    return path


def _rows(path: Path) -> dict[str, dict[int, tuple]]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {
            t: {r[0]: tuple(r[1:]) for r in con.execute(f"SELECT * FROM {t}")}
            for t in (*TABLES, "sessions", "devices")
        }
    finally:
        con.close()


def _leaf_pages(path: Path) -> dict[str, list[tuple[int, int]]]:
    """Per table: (page number, cells) of its leaf pages."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out: dict[str, list[tuple[int, int]]] = {}
        for name, page, ncell in con.execute(
            "SELECT name, pageno, ncell FROM dbstat WHERE pagetype = 'leaf'"
        ):
            out.setdefault(name, []).append((page, ncell))
        return out
    finally:
        con.close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _damaged(intact: Path, tmp_path: Path, data: bytes) -> Path:
    src = tmp_path / "damaged.sqlite"
    src.write_bytes(data)
    return src


def _check_salvaged(src: Path, dst: Path, original: dict[str, dict[int, tuple]], allowed_wrong: int = 0) -> dict:
    """dst opens, replays in host-time order, and holds only original rows (by id)."""
    got = _rows(dst)
    wrong = 0
    for table in (*TABLES, "devices"):
        for rid, row in got[table].items():
            if original[table].get(rid) != row:
                wrong += 1
    assert wrong <= allowed_wrong, f"{wrong} recovered rows differ from the original"
    with SessionReader(dst) as reader:
        times = [r.host_time_ns for r in reader.records()]
        assert times == sorted(times)
        assert len(times) == sum(len(got[t]) for t in TABLES)
    return got


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7, 0.9, 0.97])
def test_a_truncated_copy_gives_back_every_row_before_the_cut(intact: Path, tmp_path: Path, fraction: float) -> None:
    data = intact.read_bytes()
    cut = int(len(data) * fraction) + 123  # not on a page boundary
    src = _damaged(intact, tmp_path, data[:cut])
    before = _sha(src)
    with pytest.raises(RecordingError, match="fusion-edge recording salvage"):
        with SessionReader(src) as reader:
            list(reader.records())
    dst = tmp_path / "recovered.sqlite"
    report = salvage_recording(src, dst)
    assert _sha(src) == before
    assert not report.timed_out and report.elapsed_s < 2
    original = _rows(intact)
    got = _check_salvaged(src, dst, original)
    pages = _leaf_pages(intact)
    for table in TABLES:
        whole = sum(n for page, n in pages[table] if page * PAGE <= cut)
        assert whole <= len(got[table]) <= len(original[table]), table
        assert report.tables[table].rows == len(got[table])
        if len(got[table]) < len(original[table]):
            assert report.tables[table].regions_skipped >= 1
    assert set(got["sessions"]) == {1, 2}  # both session rows are on an early page
    assert got["sessions"] == original["sessions"]  # metadata and ended_ns kept
    if fraction == 0.7:
        # Most early rows: session 1's records were written first.
        assert len(got["pod_packets"]) >= 0.5 * len(original["pod_packets"])


@pytest.mark.parametrize("seed", range(6))
def test_random_bytes_over_the_middle_lose_only_the_pages_they_hit(intact: Path, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    data = bytearray(intact.read_bytes())
    start = rng.randrange(2 * PAGE, len(data) - 4000)
    data[start : start + 3000] = rng.randbytes(3000)
    src = _damaged(intact, tmp_path, bytes(data))
    before = _sha(src)
    dst = tmp_path / "recovered.sqlite"
    report = salvage_recording(src, dst)
    assert _sha(src) == before
    assert report.elapsed_s < 2
    hit = set(range(start // PAGE + 1, (start + 2999) // PAGE + 2))
    pages = _leaf_pages(intact)
    on_hit = sum(n for table in pages for page, n in pages[table] if page in hit)
    got = _check_salvaged(src, dst, _rows(intact), allowed_wrong=on_hit)
    for table in TABLES:
        untouched = sum(n for page, n in pages[table] if page not in hit)
        assert len(got[table]) >= untouched, (table, sorted(hit))


def test_an_intact_recording_is_copied_whole(intact: Path, tmp_path: Path) -> None:
    src = tmp_path / "match.sqlite"
    shutil.copyfile(intact, src)
    dst = tmp_path / "copy.sqlite"
    report = salvage_recording(src, dst)
    assert _rows(dst) == _rows(intact)
    assert all(t.regions_skipped == 0 and t.holes == 0 for t in report.tables.values())
    assert not report.meta_lost and report.sessions_lost == ()
    assert [(s.id, s.packets, s.gnss, s.events, s.closed) for s in report.sessions] == [
        (1, 400, 300, 40, True), (2, 200, 150, 20, True)
    ]
    with SessionReader(intact) as a, SessionReader(dst) as b:
        assert list(a.records()) == list(b.records())
        assert a.sessions() == b.sessions()


def _overwrite_page(intact: Path, tmp_path: Path, table: str) -> Path:
    (page, _), *_ = _leaf_pages(intact)[table]
    data = bytearray(intact.read_bytes())
    data[(page - 1) * PAGE : page * PAGE] = random.Random(page).randbytes(PAGE)
    return _damaged(intact, tmp_path, bytes(data))


def test_records_whose_session_row_was_lost_get_a_marked_session(intact: Path, tmp_path: Path) -> None:
    src = _overwrite_page(intact, tmp_path, "sessions")
    dst = tmp_path / "recovered.sqlite"
    report = salvage_recording(src, dst)
    assert report.sessions_lost == (1, 2)
    assert [s.metadata_lost for s in report.sessions] == [True, True]
    original = _rows(intact)
    got = _check_salvaged(src, dst, original)
    for table in TABLES:
        assert got[table] == original[table]  # every record kept, with its session id
    with SessionReader(dst) as reader:
        for info in reader.sessions():
            assert info.metadata == {"salvaged": True, "metadata_lost": True}
            assert info.ended_ns is None and info.stats is None
            first = min(r.host_time_ns for r in reader.records(session_id=info.id))
            first_device = min(d["host_time_ns"] for d in reader.devices(info.id))
            assert info.started_ns == min(first, first_device)
        from fusion_edge.runtime.field_kit import setups_from_metadata

        with pytest.raises(FusionEdgeError, match="was lost"):
            setups_from_metadata(reader.sessions()[0].metadata)


def test_an_unreadable_meta_is_written_anew(intact: Path, tmp_path: Path) -> None:
    src = _overwrite_page(intact, tmp_path, "meta")
    dst = tmp_path / "recovered.sqlite"
    report = salvage_recording(src, dst)
    assert report.meta_lost
    con = sqlite3.connect(dst)
    meta = dict(con.execute("SELECT key, value FROM meta"))
    con.close()
    assert meta["app"] == "fusion-edge-recording" and meta["format_version"] == "1"
    assert _rows(dst)["pod_packets"] == _rows(intact)["pod_packets"]


def test_a_lost_table_root_is_found_again_by_the_page_scan(intact: Path, tmp_path: Path) -> None:
    con = sqlite3.connect(f"file:{intact}?mode=ro", uri=True)
    (root,) = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'pod_packets'").fetchone()
    con.close()
    data = bytearray(intact.read_bytes())
    data[(root - 1) * PAGE : root * PAGE] = bytes(PAGE)
    src = _damaged(intact, tmp_path, bytes(data))
    report = salvage_recording(src, tmp_path / "recovered.sqlite")
    assert report.tables["pod_packets"].rows == 600
    assert report.tables["pod_packets"].from_pages == 600
    assert _rows(tmp_path / "recovered.sqlite")["pod_packets"] == _rows(intact)["pod_packets"]


def test_a_crashed_sessions_wal_is_salvaged_and_left_alone(intact: Path, tmp_path: Path) -> None:
    live = tmp_path / "live" / "match.sqlite"
    live.parent.mkdir()
    shutil.copyfile(intact, live)
    con = sqlite3.connect(live)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")
    with con:
        con.executemany(
            "INSERT INTO pod_packets (session_id, pod_id, host_time_ns, data) VALUES (2, 'F0', ?, ?)",
            [(T0 + 10**12 + i, b"\x01" * 200) for i in range(50)],
        )
    # The copy a crashed kit leaves: the main file and its -wal, not checkpointed.
    src = tmp_path / "crashed.sqlite"
    shutil.copyfile(live, src)
    shutil.copyfile(f"{live}-wal", f"{src}-wal")
    con.close()
    before = (_sha(src), _sha(Path(f"{src}-wal")))
    report = salvage_recording(src, tmp_path / "recovered.sqlite")
    assert (_sha(src), _sha(Path(f"{src}-wal"))) == before
    assert report.tables["pod_packets"].rows == 650


def test_refusals_say_what_to_do(intact: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out.sqlite"
    with pytest.raises(RecordingError, match="does not exist"):
        salvage_recording(tmp_path / "missing.sqlite", dst)
    with pytest.raises(RecordingError, match="is a folder, not a recording"):
        salvage_recording(tmp_path, dst)
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(RecordingError, match=r"is empty \(0 bytes\)"):
        salvage_recording(empty, dst)
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"format": "fusion-edge-profile"}))
    with pytest.raises(RecordingError, match="not a SQLite file"):
        salvage_recording(report, dst)
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    with con:
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        con.execute("INSERT INTO meta VALUES ('app', 'something-else')")
    con.close()
    with pytest.raises(RecordingError, match="not a fusion-edge recording"):
        salvage_recording(other, dst)
    src = tmp_path / "match.sqlite"
    shutil.copyfile(intact, src)
    with pytest.raises(RecordingError, match="is the damaged recording itself"):
        salvage_recording(src, tmp_path / "." / "match.sqlite", overwrite=True)
    with pytest.raises(RecordingError, match="is the damaged recording itself"):
        salvage_recording(src, Path(f"{src}-wal"))
    head = tmp_path / "head.sqlite"
    head.write_bytes(intact.read_bytes()[:PAGE])  # the schema page only
    with pytest.raises(RecordingError, match="nothing could be recovered.*-wal"):
        salvage_recording(head, dst)
    with pytest.raises(RecordingError, match="time limit"):
        salvage_recording(src, dst, time_limit_s=0)
    assert not dst.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".salvage-")]  # cleaned up


def test_an_existing_out_is_replaced_only_when_asked_and_only_if_a_recording(intact: Path, tmp_path: Path) -> None:
    src = tmp_path / "match.sqlite"
    shutil.copyfile(intact, src)
    dst = tmp_path / "out.sqlite"
    dst.write_text("operator notes")
    with pytest.raises(RecordingError, match="already exists.*--overwrite"):
        salvage_recording(src, dst)
    with pytest.raises(RecordingError, match="not a readable fusion-edge recording"):
        salvage_recording(src, dst, overwrite=True)
    assert dst.read_text() == "operator notes"
    dst.unlink()
    head = tmp_path / "half.sqlite"
    head.write_bytes(intact.read_bytes()[: len(intact.read_bytes()) // 2])
    salvage_recording(head, dst)
    small = len(_rows(dst)["pod_packets"])
    Path(f"{dst}-wal").write_bytes(b"x" * 100)  # a session still being written into it
    with pytest.raises(RecordingError, match="has a -wal file"):
        salvage_recording(src, dst, overwrite=True)
    Path(f"{dst}-wal").unlink()
    salvage_recording(src, dst, overwrite=True)  # an earlier salvage is replaced
    assert small < len(_rows(dst)["pod_packets"]) == 600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half.sqlite", "match.sqlite", "out.sqlite"]
