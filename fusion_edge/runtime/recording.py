"""Crash-safe session recording in SQLite: raw pod packets, raw GNSS frames, events.

What is recorded is what arrived, before any processing (packet bytes, sentence/frame bytes,
host receive time), so a session can be replayed through any later bundle or DSP. The caller's
thread never waits on the disk: :meth:`SessionRecorder.record_packet` and friends put a tuple
on a bounded queue and return; a writer thread inserts in batches and commits at least every
``commit_interval_s``. When the queue is full the record is dropped and counted (a live kit
must keep scoring players even if the SD card stalls); the counts are stored with the session.

Durability (see docs/recording.md): the database is in WAL mode with ``synchronous=NORMAL``,
so a committed transaction survives the process being killed. For a pulled power cable, the
writer also checkpoints the WAL every ``durable_interval_s`` (a checkpoint syncs the WAL to
disk), so at most about that much is lost. The file always opens again.
"""

from __future__ import annotations

import enum
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from fusion_edge.errors import FusionEdgeError

__all__ = [
    "FORMAT_VERSION",
    "RecordingError",
    "RecordKind",
    "Record",
    "RecorderStats",
    "SessionInfo",
    "SessionRecorder",
    "SessionReader",
    "check_recording_file",
]

FORMAT_VERSION = 1
_APP = "fusion-edge-recording"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY, started_ns INTEGER NOT NULL, ended_ns INTEGER,
    metadata TEXT NOT NULL, stats TEXT);
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL, kind TEXT NOT NULL,
    name TEXT NOT NULL, host_time_ns INTEGER NOT NULL, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pod_packets (
    id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL, pod_id TEXT NOT NULL,
    host_time_ns INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS gnss_frames (
    id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL, source TEXT NOT NULL,
    host_time_ns INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL, kind TEXT NOT NULL,
    host_time_ns INTEGER NOT NULL, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS pod_packets_time ON pod_packets (host_time_ns);
CREATE INDEX IF NOT EXISTS gnss_frames_time ON gnss_frames (host_time_ns);
CREATE INDEX IF NOT EXISTS events_time ON events (host_time_ns);
"""

_INSERT = {
    "packet": "INSERT INTO pod_packets (session_id, pod_id, host_time_ns, data) VALUES (?,?,?,?)",
    "gnss": "INSERT INTO gnss_frames (session_id, source, host_time_ns, data) VALUES (?,?,?,?)",
    "event": "INSERT INTO events (session_id, kind, host_time_ns, payload) VALUES (?,?,?,?)",
    "device": "INSERT INTO devices (session_id, kind, name, host_time_ns, info) VALUES (?,?,?,?,?)",
}
_STOP = object()
_SQLITE_MAGIC = b"SQLite format 3\x00"


class RecordingError(FusionEdgeError):
    """A session recording cannot be written or read."""


class RecordKind(str, enum.Enum):
    """Kinds of record a :class:`SessionReader` yields."""

    PACKET = "packet"  # one pod notification, raw bytes
    GNSS = "gnss"  # one NMEA sentence or UBX frame, raw bytes
    EVENT = "event"  # a JSON event (feedback, calibration, operator note)


_TABLES = {
    RecordKind.PACKET: "pod_packets",
    RecordKind.GNSS: "gnss_frames",
    RecordKind.EVENT: "events",
}


@dataclass(frozen=True)
class Record:
    """One recorded item, as :meth:`SessionReader.records` yields it.

    Attributes:
        kind: ``"packet"`` (pod notification), ``"gnss"`` (sentence/frame) or ``"event"``.
        host_time_ns: Host monotonic receive time, ns.
        source: Pod id, GNSS port/source, or the event kind.
        data: Raw bytes (packet, GNSS); for events the JSON text.
        session_id: Session the record belongs to.
    """

    kind: RecordKind
    host_time_ns: int
    source: str
    data: bytes
    session_id: int

    def json(self) -> Any:
        """An event's payload, decoded."""
        return json.loads(self.data.decode("utf-8"))


@dataclass
class RecorderStats:
    """What a recorder has done so far (a snapshot).

    Attributes:
        queued: Records accepted onto the queue, by kind.
        written: Records committed to the file, by kind.
        dropped: Records dropped because the queue was full, by kind.
        commits: Transactions committed.
    """

    queued: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    commits: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return {
            "queued": dict(self.queued),
            "written": dict(self.written),
            "dropped": dict(self.dropped),
            "commits": self.commits,
        }


@dataclass(frozen=True)
class SessionInfo:
    """One recorded session: its id, times, metadata and final counters (None if it crashed)."""

    id: int
    started_ns: int
    ended_ns: int | None
    metadata: dict[str, Any]
    stats: dict[str, Any] | None


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(str(path), timeout=10.0, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    return con


class SessionRecorder:
    """Record one session into a SQLite file (created if needed; sessions append).

    Use as a context manager::

        with SessionRecorder("pitch-2024-06-01.sqlite", {"scenario": "rondo"}) as rec:
            rec.add_device("pod", "pod-07", {"mac": "..."})
            rec.record_packet("pod-07", time.monotonic_ns(), data)

    Args:
        path: Database file.
        metadata: JSON-able session metadata (kit, bundle, scenario, operator notes...).
        queue_size: Records the queue holds before new ones are dropped.
        commit_interval_s: Longest time between commits (what a killed process can lose).
        durable_interval_s: Longest time between WAL checkpoints (what a power cut can lose).
        clock_ns: Host clock for the session start/end and events (``time.monotonic_ns``).
    """

    def __init__(
        self,
        path: str | Path,
        metadata: dict[str, Any] | None = None,
        *,
        queue_size: int = 100_000,
        commit_interval_s: float = 0.25,
        durable_interval_s: float = 1.0,
        clock_ns: Any = time.monotonic_ns,
    ) -> None:
        if queue_size < 1 or commit_interval_s <= 0 or durable_interval_s <= 0:
            raise ValueError("SessionRecorder needs queue_size >= 1 and positive intervals")
        self.path = Path(path)
        self.metadata = dict(metadata or {})
        try:
            self._metadata_json = json.dumps(self.metadata, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise RecordingError(
                f"session metadata for {self.path} is not JSON-able ({exc}); pass plain "
                "dicts, lists, strings and numbers"
            ) from None
        self.commit_interval_s = commit_interval_s
        self.durable_interval_s = durable_interval_s
        self._clock = clock_ns
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._stats = RecorderStats()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self.session_id: int | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> SessionRecorder:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Open the file, add the session row and start the writer thread."""
        if self._thread is not None:
            raise RecordingError(f"recorder for {self.path} is already started; start it once")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(
            target=self._run, name=f"recorder:{self.path.name}", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._wrap(self._error, "open")

    def close(self) -> None:
        """Write everything still queued, mark the session ended and close the file.

        Raises:
            RecordingError: The writer failed (disk full, file removed...).
        """
        if self._thread is None:
            return
        self._queue.put(_STOP)  # blocking on purpose: closing waits for the queue to drain
        self._thread.join()
        self._thread = None
        if self._error is not None:
            raise self._wrap(self._error, "write")

    def _wrap(self, exc: BaseException, what: str) -> RecordingError:
        if isinstance(exc, RecordingError):
            return exc
        return RecordingError(
            f"cannot {what} the session recording {self.path}: {exc}. Check that the folder "
            "is writable and the disk is not full, then record to a new file"
        )

    # -- the caller's side: never blocks ------------------------------------------------------

    def _offer(self, kind: str, item: tuple[Any, ...]) -> bool:
        if self._thread is None:
            raise RecordingError(
                f"recorder for {self.path} is not running; use it as a context manager "
                "(with SessionRecorder(...) as rec) or call start() first"
            )
        if self._error is not None:
            # The writer thread has died (disk full, card removed): say so at once, instead of
            # silently queueing records nobody will write until the queue fills.
            raise self._wrap(self._error, "write")
        try:
            self._queue.put_nowait((kind, item))
        except queue.Full:
            with self._lock:
                self._stats.dropped[kind] = self._stats.dropped.get(kind, 0) + 1
            return False
        with self._lock:
            self._stats.queued[kind] = self._stats.queued.get(kind, 0) + 1
        return True

    def record_packet(self, pod_id: str, host_time_ns: int, data: bytes) -> bool:
        """Queue one pod notification. Returns False if it was dropped (queue full)."""
        return self._offer("packet", (str(pod_id), int(host_time_ns), bytes(data)))

    def record_gnss(self, source: str, host_time_ns: int, data: bytes) -> bool:
        """Queue one GNSS sentence or frame (``source``: the port or receiver name)."""
        return self._offer("gnss", (str(source), int(host_time_ns), bytes(data)))

    def record_event(self, kind: str, payload: Any, host_time_ns: int | None = None) -> bool:
        """Queue an event (feedback, calibration, operator note...): JSON-able ``payload``."""
        t = self._clock() if host_time_ns is None else int(host_time_ns)
        return self._offer("event", (str(kind), t, json.dumps(payload, sort_keys=True)))

    def add_device(
        self,
        kind: str,
        name: str,
        info: dict[str, Any] | None = None,
        host_time_ns: int | None = None,
    ) -> bool:
        """Queue a device description (``kind``: ``"pod"`` or ``"gnss"``)."""
        t = self._clock() if host_time_ns is None else int(host_time_ns)
        return self._offer(
            "device", (str(kind), str(name), t, json.dumps(info or {}, sort_keys=True))
        )

    @property
    def stats(self) -> RecorderStats:
        """A snapshot of queued / written / dropped counts."""
        with self._lock:
            return RecorderStats(
                dict(self._stats.queued),
                dict(self._stats.written),
                dict(self._stats.dropped),
                self._stats.commits,
            )

    @property
    def queue_depth(self) -> int:
        """Records waiting for the writer."""
        return self._queue.qsize()

    # -- the writer thread --------------------------------------------------------------------

    @staticmethod
    def check_target(path: str | Path) -> None:
        """Refuse, before anything is written, a file a session must not be appended to.

        A missing or empty file is fine (it becomes a new recording), and so is an earlier
        recording of this format. Anything else is left exactly as it was: a SQLite file of
        another program (its tables would gain ours), a recording of a newer format, or a
        damaged one (appending to it could lose what is still readable).

        Raises:
            RecordingError: naming the file and what to do.
        """
        path = Path(path)
        if not path.is_file() or path.stat().st_size == 0:
            return
        new_file = "record this session into a new file (e.g. session.sqlite)"
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError as exc:
            raise RecordingError(f"cannot read {path} ({exc.strerror or exc}); {new_file}") from None
        if head != _SQLITE_MAGIC and not Path(f"{path}-wal").exists():
            raise RecordingError(f"{path} exists and is not a session recording (not a SQLite file); "
                                 f"it was left as it was: {new_file}")
        try:
            # Read-write on purpose, though only read: the last connection to close removes the
            # -wal/-shm files a read-only one would leave behind.
            con = sqlite3.connect(str(path), timeout=10.0)
            try:
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                meta = dict(con.execute("SELECT key, value FROM meta").fetchall()) if "meta" in tables else {}
                problems = [r[0] for r in con.execute("PRAGMA quick_check").fetchall()]
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
            tables, meta = set(), {}
        if meta.get("app") != _APP and tables:
            raise RecordingError(
                f"{path} is a SQLite file of another program, not a fusion-edge recording; it was "
                f"left as it was: {new_file}"
            )
        if problems != ["ok"]:
            raise RecordingError(  # a damaged file, or one whose tables cannot even be listed
                f"{path} is a damaged recording ({'; '.join(problems[:2])}); appending could lose "
                f"what is still readable, so it was left as it was: {new_file}, and salvage the "
                f"old one with 'fusion-edge recording salvage {path} --out recovered.sqlite'"
            )
        written = str(meta.get("format_version", "0"))
        version = int(written) if written.isdigit() else 0
        if version > FORMAT_VERSION:
            raise RecordingError(
                f"{path} is recording format {version}, newer than this fusion-edge writes "
                f"({FORMAT_VERSION}); it was left as it was: {new_file}"
            )

    def _run(self) -> None:
        try:
            self.check_target(self.path)
            con = _connect(self.path)
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
            return
        try:
            with con:
                con.executescript(_SCHEMA)
                con.execute("INSERT OR IGNORE INTO meta VALUES ('app', ?)", (_APP,))
                con.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('format_version', ?)",
                    (str(FORMAT_VERSION),),
                )
                cur = con.execute(
                    "INSERT INTO sessions (started_ns, metadata) VALUES (?, ?)",
                    (int(self._clock()), self._metadata_json),
                )
                self.session_id = int(cur.lastrowid or 0)
        except BaseException as exc:  # noqa: BLE001
            self._error = exc
            con.close()
            self._ready.set()
            return
        self._ready.set()
        try:
            self._write_loop(con)
        except BaseException as exc:  # noqa: BLE001 - surfaced by close()
            self._error = exc
        finally:
            con.close()

    def _write_loop(self, con: sqlite3.Connection) -> None:
        batch: dict[str, list[tuple[Any, ...]]] = {k: [] for k in _INSERT}
        pending = 0
        last_commit = last_sync = time.monotonic()
        stopping = False
        while not stopping:
            timeout = max(0.0, self.commit_interval_s - (time.monotonic() - last_commit))
            try:
                item = self._queue.get(timeout=timeout)
                while True:
                    if item is _STOP:
                        stopping = True
                        break
                    kind, values = item
                    batch[kind].append((self.session_id, *values))
                    pending += 1
                    if pending >= 5000:
                        break
                    item = self._queue.get_nowait()
            except queue.Empty:
                pass
            now = time.monotonic()
            if pending and (
                stopping or pending >= 5000 or now - last_commit >= self.commit_interval_s
            ):
                with con:
                    for kind, rows in batch.items():
                        if rows:
                            con.executemany(_INSERT[kind], rows)
                with self._lock:
                    for kind, rows in batch.items():
                        if rows:
                            self._stats.written[kind] = self._stats.written.get(kind, 0) + len(rows)
                    self._stats.commits += 1
                batch = {k: [] for k in _INSERT}
                pending = 0
                last_commit = now
            elif not pending:
                last_commit = now
            if now - last_sync >= self.durable_interval_s:
                # Syncs the WAL: commits so far survive a power cut, not only a crash.
                con.execute("PRAGMA wal_checkpoint(PASSIVE)")
                last_sync = now
        with con:
            con.execute(
                "UPDATE sessions SET ended_ns = ?, stats = ? WHERE id = ?",
                (int(self._clock()), json.dumps(self.stats.to_json()), self.session_id),
            )
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def check_recording_file(path: Path) -> None:
    """Refuse, with what it is, a path that cannot hold a recording: a folder, a missing file,
    an empty one, or a file that is not SQLite at all (a report.json, a CSV...). SQLite's own
    answer ("file is not a database", or an empty file opening as an empty database) would send
    the user to salvage a file that holds no recording. Nothing is opened as a database.

    Raises:
        RecordingError: naming the file and what to give instead.
    """
    if path.is_dir():
        raise RecordingError(
            f"{path} is a folder, not a recording; give the .sqlite file that "
            "'fusion-edge run --record' wrote (e.g. session.sqlite)"
        )
    if not path.is_file():
        raise RecordingError(f"recording {path} does not exist; check the path")
    if Path(f"{path}-wal").exists():
        return  # a crashed recording's pages may all be in its WAL: let SQLite replay it
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise RecordingError(
            f"cannot read recording {path} ({exc.strerror or exc}); check its permissions"
        ) from None
    if not head:
        raise RecordingError(
            f"recording {path} is empty (0 bytes): nothing was recorded into it; give "
            "the .sqlite file that 'fusion-edge run --record' wrote"
        )
    if head != _SQLITE_MAGIC:
        shown = head.decode("ascii", "replace").strip()[:12]
        raise RecordingError(
            f"{path} is not a recording: it is not a SQLite file (it starts with "
            f"{shown!r}); give the .sqlite file that 'fusion-edge run --record' wrote"
        )


class SessionReader:
    """Read a recording (also one left behind by a crash), in host-time order.

    Args:
        path: Database file written by :class:`SessionRecorder`.
        verify: Run SQLite's ``quick_check`` on open (reads the whole file once), so damage
            is reported up front rather than half-way through a replay.

    Raises:
        RecordingError: The file is missing, not a recording, of a newer format, or damaged;
            the message names the file and what to do.
    """

    def __init__(self, path: str | Path, *, verify: bool = True) -> None:
        self.path = Path(path)
        check_recording_file(self.path)
        try:
            self._con = self._open()
            rows = dict(self._con.execute("SELECT key, value FROM meta").fetchall())
            problems = (
                [r[0] for r in self._con.execute("PRAGMA quick_check").fetchall()]
                if verify
                else ["ok"]
            )
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None
        if problems != ["ok"]:
            raise self._damaged(RuntimeError("; ".join(problems[:3])))
        if rows.get("app") != _APP:
            raise RecordingError(
                f"{self.path} is a SQLite file but not a fusion-edge recording; give a file "
                "written by SessionRecorder"
            )
        version = int(rows.get("format_version", "0"))
        if version > FORMAT_VERSION:
            raise RecordingError(
                f"{self.path} is recording format {version}, newer than this fusion-edge reads "
                f"({FORMAT_VERSION}); upgrade fusion-edge to replay it"
            )

    def _open(self) -> sqlite3.Connection:
        """Read-write where possible: SQLite replays a crashed session's WAL on open. On
        read-only media (an archive share, a locked SD card) a closed recording is opened
        immutable, since SQLite could not create its -shm file there."""
        writable = os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK)
        if writable:
            return sqlite3.connect(str(self.path), timeout=10.0)
        if Path(f"{self.path}-wal").exists():
            raise RecordingError(
                f"recording {self.path} was not closed (its -wal file is next to it) and lies in a "
                "read-only place, so SQLite cannot replay its last writes: copy the file together "
                "with its -wal file to a writable folder and read the copy"
            )
        uri = Path(self.path).resolve().as_uri() + "?mode=ro&immutable=1"
        return sqlite3.connect(uri, uri=True, timeout=10.0)

    def _damaged(self, exc: BaseException) -> RecordingError:
        return RecordingError(
            f"recording {self.path} is damaged or not a SQLite database ({exc}). If it was "
            "copied while recording, copy it again together with its -wal file; otherwise "
            "salvage what is readable with: "
            f"fusion-edge recording salvage '{self.path}' --out recovered.sqlite"
        )

    def __enter__(self) -> SessionReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._con.close()

    def sessions(self) -> list[SessionInfo]:
        """Every session in the file (``ended_ns``/``stats`` are None for one that crashed)."""
        out = []
        for sid, start, end, meta, stats in self._query(
            "SELECT id, started_ns, ended_ns, metadata, stats FROM sessions ORDER BY id"
        ):
            out.append(
                SessionInfo(
                    sid, start, end, json.loads(meta), None if stats is None else json.loads(stats)
                )
            )
        return out

    def devices(self, session_id: int | None = None) -> list[dict[str, Any]]:
        """Devices announced with :meth:`SessionRecorder.add_device`."""
        where, args = (
            ("WHERE session_id = ?", (session_id,)) if session_id is not None else ("", ())
        )
        return [
            {"session_id": s, "kind": k, "name": n, "host_time_ns": t, "info": json.loads(i)}
            for s, k, n, t, i in self._query(
                "SELECT session_id, kind, name, host_time_ns, info FROM devices "
                f"{where} ORDER BY id",
                args,
            )
        ]

    def count(self, kind: RecordKind | str) -> int:
        """Number of records of ``kind`` (``packet``, ``gnss``, ``event``)."""
        table = _TABLES[RecordKind(kind)]
        return int(self._query(f"SELECT COUNT(*) FROM {table}")[0][0])

    def records(
        self, session_id: int | None = None, kinds: tuple[RecordKind | str, ...] = tuple(RecordKind)
    ) -> Iterator[Record]:
        """Every record, in host-time order (ties: packets, GNSS, events, each as recorded)."""
        kinds = tuple(RecordKind(k) for k in kinds)
        parts = []
        if "packet" in kinds:
            parts.append(
                "SELECT 'packet', host_time_ns, pod_id, data, session_id, id, 0 FROM pod_packets"
            )
        if "gnss" in kinds:
            parts.append(
                "SELECT 'gnss', host_time_ns, source, data, session_id, id, 1 FROM gnss_frames"
            )
        if "event" in kinds:
            parts.append(
                "SELECT 'event', host_time_ns, kind, CAST(payload AS BLOB), session_id, id, 2 "
                "FROM events"
            )
        if not parts:
            return
        sql = " UNION ALL ".join(parts)
        args: tuple[Any, ...] = ()
        if session_id is not None:
            sql = f"SELECT * FROM ({sql}) WHERE session_id = ?"
            args = (session_id,)
        sql += " ORDER BY 2, 7, 6"
        try:
            for kind, t, src, data, sid, _, _ in self._con.execute(sql, args):
                yield Record(RecordKind(kind), int(t), src, bytes(data), int(sid))
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._con.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None
