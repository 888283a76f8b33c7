"""Salvage what is readable from a damaged recording into a new, valid recording.

A recording is damaged when a copy was cut short, a card has bad sectors, or a power cut hit
a card that lies about its writes. SQLite's own ``.recover`` is no help on the kits' SQLite
(3.40: "SQL logic error" and an empty file on every damaged sample), so this does it itself,
in two ways whose results are merged by row id:

1. **Tree walks through SQLite** on a temporary copy (with its ``-wal`` when there is one, so
   a crashed session's last commits count). The copy is opened with ``writable_schema=ON``,
   so the schema loads even when an index's pages lie past the end of a truncated file. Each
   table is read by rowid, ascending; where a read fails, the walk probes forward with steps
   1, 2, 4, ... for the next readable row and goes on from there. Every gap left between the
   rows read so far is then walked downwards from its top, and upwards again, until a pass
   finds nothing new. A walk only ever moves away from where it started and each probe
   sequence is at most 64 queries, so the whole is bounded; ``time_limit_s`` bounds it in
   time as well (a progress handler interrupts a query that runs past it).
2. **A scan of the raw pages** of the copy: every table leaf page is decoded by hand, and its
   rows are given to the table whose B-tree the page hangs under (followed from the root
   pages in the schema) or, for a page whose parent is lost, to the table whose rows look
   like them (their shape, then the pod ids / GNSS sources already seen, then what the data
   starts with). This finds the rows of a table whose root or interior page was hit.

The source file is never written to. See docs/recording.md ("Salvaging a damaged recording").
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import sqlite3
import struct
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_edge.file_access import make_ordinary, probe_writable
from fusion_edge.runtime.recording import (
    _APP,
    _SCHEMA,
    _SQLITE_MAGIC,
    FORMAT_VERSION,
    RecordingError,
    SessionReader,
    check_recording_file,
)

__all__ = ["SalvageReport", "SalvagedSession", "TableSalvage", "salvage_recording"]

# What each table holds, as the tree walk and the page scan check it. Types: "i" integer,
# "t" text, "b" blob, "j" JSON text (an object for "jo"), a trailing "?" allows NULL.
_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "meta": (("key", "t"), ("value", "t")),
    "sessions": (("started_ns", "i"), ("ended_ns", "i?"), ("metadata", "jo"), ("stats", "jo?")),
    "devices": (
        ("session_id", "i"), ("kind", "t"), ("name", "t"), ("host_time_ns", "i"), ("info", "j"),
    ),
    "pod_packets": (("session_id", "i"), ("pod_id", "t"), ("host_time_ns", "i"), ("data", "b")),
    "gnss_frames": (("session_id", "i"), ("source", "t"), ("host_time_ns", "i"), ("data", "b")),
    "events": (("session_id", "i"), ("kind", "t"), ("host_time_ns", "i"), ("payload", "j")),
}
TABLES = tuple(_COLUMNS)
_RECORD_TABLES = ("devices", "pod_packets", "gnss_frames", "events")  # rows with a session_id
_MIN_ID, _MAX_ID = -(2**63), 2**63 - 1
_LOST_METADATA = {"salvaged": True, "metadata_lost": True}


@dataclass(frozen=True)
class TableSalvage:
    """What was recovered of one table.

    Attributes:
        rows: Rows recovered (for ``sessions``, not counting the rows made up for records
            whose session row was lost).
        regions_skipped: Damaged stretches of the table that were skipped: runs of lost rows
            (between two recovered rows, before the first or after the last one).
        holes: Row ids missing between the first and last recovered row (the recorder
            numbers rows 1, 2, 3...: each is a row lost). Rows after the last recovered one
            (a truncated file) are lost too but cannot be counted.
        from_pages: Rows found only by the raw page scan (their page was cut off from the
            table's B-tree).
        rejected: Rows read but dropped because their values did not make sense (garbage).
    """

    rows: int
    regions_skipped: int
    holes: int
    from_pages: int
    rejected: int


@dataclass(frozen=True)
class SalvagedSession:
    """One session of the salvaged file and how many records it kept."""

    id: int
    packets: int
    gnss: int
    events: int
    devices: int
    closed: bool
    metadata_lost: bool


@dataclass(frozen=True)
class SalvageReport:
    """What :func:`salvage_recording` recovered.

    Attributes:
        src: The damaged recording (unchanged).
        dst: The salvaged recording written.
        tables: Per table (``meta``, ``sessions``, ``devices``, ``pod_packets``,
            ``gnss_frames``, ``events``): what was recovered.
        meta_lost: The ``meta`` table was unreadable; fusion-edge's meta was written.
        sessions_lost: Ids of sessions whose row was lost: a session row marked
            ``{"salvaged": true, "metadata_lost": true}`` was made for their records.
        sessions: Every session of the salvaged file.
        unclassified_rows: Rows found on orphaned pages that could not be told apart as
            pod packets or GNSS frames (left out).
        timed_out: ``time_limit_s`` ran out: what was found until then was written.
        elapsed_s: Time taken.
    """

    src: Path
    dst: Path
    tables: dict[str, TableSalvage]
    meta_lost: bool
    sessions_lost: tuple[int, ...]
    sessions: tuple[SalvagedSession, ...]
    unclassified_rows: int
    timed_out: bool
    elapsed_s: float

    @property
    def records(self) -> int:
        """Pod packets, GNSS frames and events recovered."""
        return sum(self.tables[t].rows for t in ("pod_packets", "gnss_frames", "events"))


class _OutOfTime(Exception):
    pass


# ------------------------------------------------------------------------------ validation


def _check_row(table: str, values: list[tuple[str, Any]]) -> tuple[Any, ...] | None:
    """Typed values -> the row to insert, or None when they cannot be a row of ``table``.

    ``values`` holds (SQLite type name, value) per column: "integer", "text" (bytes), "blob",
    "null" or "real".
    """
    spec = _COLUMNS[table]
    if len(values) != len(spec):
        return None
    out: list[Any] = []
    for (kind, value), (_, want) in zip(values, spec, strict=True):
        if kind == "null":
            if not want.endswith("?"):
                return None
            out.append(None)
            continue
        base = want.rstrip("?")
        if base == "i":
            if kind != "integer":
                return None
            out.append(int(value))
        elif base == "b":
            if kind != "blob":
                return None
            out.append(bytes(value))
        else:  # text, JSON text
            if kind != "text":
                return None
            try:
                text = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                return None
            if base in ("j", "jo"):
                try:
                    decoded = json.loads(text)
                except ValueError:
                    return None
                if base == "jo" and not isinstance(decoded, dict):
                    return None
            out.append(text)
    return tuple(out)


# ------------------------------------------------------------------------------ tree walks


class _TreeWalker:
    """Reads one table by rowid through SQLite, skipping what cannot be read."""

    def __init__(self, con: sqlite3.Connection, table: str, out_of_time: Callable[[], bool]):
        self.con = con
        self.table = table
        self.out_of_time = out_of_time
        key = "rowid" if table == "meta" else "id"
        cols = ", ".join(f"typeof({c}), {c}" for c, _ in _COLUMNS[table])
        self.sql_up = (
            f"SELECT {key}, {cols} FROM {table} WHERE {key} > ? AND {key} < ? ORDER BY {key}"
        )
        self.sql_down = (
            f"SELECT {key}, {cols} FROM {table} WHERE {key} < ? AND {key} > ? ORDER BY {key} DESC"
        )
        self.probe_up = (
            f"SELECT {key} FROM {table} WHERE {key} > ? AND {key} < ? ORDER BY {key} LIMIT 1"
        )
        self.probe_down = (
            f"SELECT {key} FROM {table} WHERE {key} < ? AND {key} > ? ORDER BY {key} DESC LIMIT 1"
        )
        self.rows: dict[int, tuple[Any, ...]] = {}
        self.rejected: set[int] = set()
        self.errors: list[tuple[bool, int]] = []  # (upwards, position the read failed after)
        self.unreadable = False  # the table could not be opened at all

    def _fail(self, exc: sqlite3.DatabaseError) -> None:
        if self.out_of_time():
            raise _OutOfTime from None
        if "no such table" in str(exc):
            self.unreadable = True

    def _take(self, row: tuple[Any, ...]) -> None:
        rid = int(row[0])
        if rid in self.rows:
            return
        checked = _check_row(
            self.table, [(row[i].decode(), row[i + 1]) for i in range(1, len(row), 2)]
        )
        if checked is None:
            self.rejected.add(rid)
        else:
            self.rows[rid] = checked

    def walk(self, lo: int, hi: int, upwards: bool) -> None:
        """Read every row with lo < id < hi that can be read, from one end."""
        pos = lo if upwards else hi
        sql = self.sql_up if upwards else self.sql_down
        while True:
            if self.out_of_time():
                raise _OutOfTime
            try:
                bound = hi if upwards else lo
                for row in self.con.execute(sql, (pos, bound)):
                    rid = int(row[0])
                    # A damaged page can hand back a row out of order (or outside the range
                    # asked for): count it as damage, so that the walk only ever moves on.
                    if not (pos < rid < hi if upwards else lo < rid < pos):
                        raise sqlite3.DatabaseError("row out of order")
                    self._take(row)
                    pos = rid
                return
            except sqlite3.DatabaseError as exc:
                self._fail(exc)
                if self.unreadable:
                    return
                self.errors.append((upwards, pos))
                nxt = self._probe(pos, lo, hi, upwards)
                if nxt is None:
                    return
                # Go on so that ``nxt`` is the first row read: strictly past ``pos``.
                pos = nxt - 1 if upwards else nxt + 1

    def _probe(self, pos: int, lo: int, hi: int, upwards: bool) -> int | None:
        """The first readable row id past a failed read at ``pos`` (at most 64 queries)."""
        for cand in self._candidates(pos, lo, hi, upwards):
            try:
                if upwards:
                    got = self.con.execute(self.probe_up, (cand, hi)).fetchone()
                else:
                    got = self.con.execute(self.probe_down, (cand, lo)).fetchone()
            except sqlite3.DatabaseError as exc:
                self._fail(exc)
                continue
            if got is None:
                return None
            rid = int(got[0])
            if cand < rid < hi if upwards else lo < rid < cand:
                return rid
            # out of order: damage at this candidate too, try the next one
        return None

    def _candidates(self, pos: int, lo: int, hi: int, upwards: bool) -> Iterable[int]:
        if upwards:
            base = -1 if pos == _MIN_ID else pos  # rowids the recorder makes start at 1
            for k in range(63):
                cand = base + (1 << k)
                if cand >= hi:
                    return
                yield cand
        elif pos == _MAX_ID:
            # Nothing read from the top yet (the file's end is cut off): close in from far
            # above on the highest row id read so far, coarse to fine.
            base = max(max(self.rows, default=0), lo)
            for k in range(62, -1, -1):
                cand = base + (1 << k)
                if cand < hi:
                    yield cand
        else:
            for k in range(63):
                cand = pos - (1 << k)
                if cand <= lo:
                    return
                yield cand

    def run(self) -> None:
        """Walk the whole table, then every gap from both ends until nothing new turns up."""
        self.walk(_MIN_ID, _MAX_ID, True)
        if self.unreadable:
            return
        done: set[tuple[int, int, bool]] = {(_MIN_ID, _MAX_ID, True)}
        while True:
            todo = [
                (lo, hi, up)
                for lo, hi in _gaps(self.rows.keys() | self.rejected)
                for up in (False, True)
                if (lo, hi, up) not in done
            ]
            if not todo:
                return
            for lo, hi, up in todo:
                done.add((lo, hi, up))
                self.walk(lo, hi, up)


def _gaps(ids: Iterable[int]) -> list[tuple[int, int]]:
    """The open intervals (lo, hi) between known ids (and past both ends) that may hold rows."""
    known = sorted(ids)
    if not known:
        return [(_MIN_ID, _MAX_ID)]
    out = [(_MIN_ID, known[0])] if known[0] > _MIN_ID + 1 else []
    out += [(a, b) for a, b in zip(known, known[1:], strict=False) if b - a > 1]
    if known[-1] < _MAX_ID - 1:
        out.append((known[-1], _MAX_ID))
    return out


# ------------------------------------------------------------------------------- page scan


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    """SQLite varint at ``buf[i]`` -> (value, next index). IndexError past the end."""
    v = 0
    for n in range(8):
        b = buf[i + n]
        v = (v << 7) | (b & 0x7F)
        if b < 0x80:
            return v, i + n + 1
    return (v << 8) | buf[i + 8], i + 9


_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


def _decode_record(payload: bytes) -> list[tuple[str, Any]] | None:
    """A record's values as (type name, value), or None when it is not a valid record."""
    try:
        hsize, i = _varint(payload, 0)
        if hsize < 1 or hsize > len(payload):
            return None
        types = []
        while i < hsize:
            t, i = _varint(payload, i)
            types.append(t)
        if i != hsize:
            return None
        pos = hsize
        out: list[tuple[str, Any]] = []
        for t in types:
            if t == 0:
                out.append(("null", None))
            elif t in _INT_SIZES:
                n = _INT_SIZES[t]
                raw = payload[pos : pos + n]
                if len(raw) != n:
                    return None
                out.append(("integer", int.from_bytes(raw, "big", signed=True)))
                pos += n
            elif t == 7:
                raw = payload[pos : pos + 8]
                if len(raw) != 8:
                    return None
                out.append(("real", struct.unpack(">d", raw)[0]))
                pos += 8
            elif t in (8, 9):
                out.append(("integer", t - 8))
            elif t >= 12:
                n = (t - 12) // 2
                raw = payload[pos : pos + n]
                if len(raw) != n:
                    return None
                out.append(("blob" if t % 2 == 0 else "text", raw))
                pos += n
            else:
                return None
        return out if pos == len(payload) else None
    except IndexError:
        return None


def _geometry(head: bytes) -> tuple[int, int]:
    """(page size, reserved bytes per page) from a database header; 4096 and 0 when the header
    is unreadable (SQLite's default page size)."""
    if len(head) >= 100 and head[:16] == _SQLITE_MAGIC:
        raw = int.from_bytes(head[16:18], "big")
        raw = 65536 if raw == 1 else raw
        if 512 <= raw <= 65536 and raw & (raw - 1) == 0:
            return raw, head[20] if head[20] < raw - 480 else 0
    return 4096, 0


def _cut_partial_page(path: Path) -> tuple[bytes, int]:
    """Remove a partial last page from ``path`` (a truncated copy): its bytes and number.

    SQLite reads the missing part of such a page as zeros and hands back its last rows with
    zeros for data, without an error; without the page it reports the damage instead, and the
    page scan takes from the partial page only the rows it holds whole.
    """
    with open(path, "r+b") as f:
        size, _ = _geometry(f.read(100))
        total = os.fstat(f.fileno()).st_size
        keep = total - total % size
        if keep == total:
            return b"", 0
        f.seek(keep)
        tail = f.read()
        f.truncate(keep)
    return tail, keep // size + 1


class _Pages:
    """The raw pages of a database file (plus the partial last page cut off from it)."""

    def __init__(self, path: Path, tail: tuple[bytes, int] = (b"", 0)) -> None:
        self.data: bytes | mmap.mmap = b""
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size:
                # Mapped, not read: a match's recording can be larger than the box's memory.
                self.data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        head = self.data[:100] if len(self.data) >= 100 else tail[0][:100]
        self.size, reserved = _geometry(head)
        self.usable = self.size - reserved
        whole = len(self.data) // self.size
        # The partial page counts unless a WAL checkpoint has since written that page whole.
        self.tail = tail[0] if tail[0] and tail[1] == whole + 1 else b""
        self.count = whole + (1 if self.tail else 0)
        # Cut short: a partial page, or fewer pages than the header says the file holds (that
        # count is valid when the "version-valid-for" number matches the change counter).
        declared = int.from_bytes(head[28:32], "big") if head[24:28] == head[92:96] else 0
        self.truncated = bool(tail[0]) or len(self.data) % self.size != 0 or whole < declared

    def close(self) -> None:
        if isinstance(self.data, mmap.mmap):
            self.data.close()

    def page(self, n: int) -> bytes:
        if self.tail and n == self.count:
            return self.tail
        return self.data[(n - 1) * self.size : n * self.size]

    def kind(self, n: int) -> int:
        page = self.page(n)
        off = 100 if n == 1 else 0
        return page[off] if len(page) > off else -1

    def children(self, n: int) -> list[int]:
        """Child page numbers of a table interior page (type 5)."""
        page = self.page(n)
        off = 100 if n == 1 else 0
        if len(page) < off + 12 or page[off] != 5:
            return []
        ncells = int.from_bytes(page[off + 3 : off + 5], "big")
        out = [int.from_bytes(page[off + 8 : off + 12], "big")]
        for c in range(ncells):
            p = off + 12 + 2 * c
            cell = int.from_bytes(page[p : p + 2], "big")
            if cell + 4 <= len(page):
                out.append(int.from_bytes(page[cell : cell + 4], "big"))
        return [c for c in out if 1 <= c <= self.count]

    def leaf_cells(self, n: int) -> Iterable[tuple[int, list[tuple[str, Any]]]]:
        """(rowid, values) of every cell of table leaf page ``n`` that decodes."""
        page = self.page(n)
        off = 100 if n == 1 else 0
        if len(page) < off + 8 or page[off] != 13:
            return
        ncells = int.from_bytes(page[off + 3 : off + 5], "big")
        u = self.usable
        x = u - 35
        m = ((u - 12) * 32 // 255) - 23
        for c in range(min(ncells, (len(page) - off - 8) // 2)):
            p = off + 8 + 2 * c
            cell = int.from_bytes(page[p : p + 2], "big")
            try:
                plen, i = _varint(page, cell)
                rowid, i = _varint(page, i)
                if rowid >= 1 << 63:
                    rowid -= 1 << 64
                if plen <= x:
                    payload = page[i : i + plen]
                else:
                    k = m + ((plen - m) % (u - 4))
                    local = k if k <= x else m
                    payload = page[i : i + local]
                    first = int.from_bytes(page[i + local : i + local + 4], "big")
                    more = self._overflow(first, plen - local)
                    if more is None:
                        continue
                    payload += more
                if len(payload) != plen:
                    continue
            except IndexError:
                continue
            values = _decode_record(payload)
            if values is not None:
                yield rowid, values

    def _overflow(self, first: int, need: int) -> bytes | None:
        out = bytearray()
        seen: set[int] = set()
        page_no = first
        while need > 0:
            if not 1 <= page_no <= self.count or page_no in seen:
                return None
            seen.add(page_no)
            page = self.page(page_no)
            chunk = page[4 : min(self.usable, 4 + need)]
            if len(chunk) < min(self.usable - 4, need):
                return None
            out += chunk
            need -= len(chunk)
            page_no = int.from_bytes(page[:4], "big")
        return bytes(out)


def _shape(values: list[tuple[str, Any]]) -> tuple[str, ...]:
    """The tables a raw record (rowid alias first) may belong to, by its column types."""
    kinds = [k for k, _ in values]
    if len(kinds) == 2 and kinds == ["text", "text"]:
        return ("meta",)
    if not kinds or kinds[0] != "null":
        return ()
    rest = kinds[1:]
    if rest == ["integer", "text", "integer", "blob"]:
        return ("pod_packets", "gnss_frames")
    if rest == ["integer", "text", "integer", "text"]:
        return ("events",)
    if rest == ["integer", "text", "text", "integer", "text"]:
        return ("devices",)
    if len(rest) == 4 and rest[0] == "integer" and rest[1] in ("integer", "null") and (
        rest[2] == "text" and rest[3] in ("text", "null")
    ):
        return ("sessions",)
    return ()


def _looks_like_gnss(data: bytes) -> bool:
    """NMEA sentence (optionally after an NMEA 4 tag block) or UBX frame."""
    return data[:1] in (b"$", b"!", b"\\") or data[:2] == b"\xb5\x62"


def _page_owners(pages: _Pages, roots: dict[str, int]) -> dict[int, str]:
    """Leaf page -> table, following each table's B-tree from its root in the raw pages."""
    owner: dict[int, str] = {}
    clash: set[int] = set()
    for table, root in roots.items():
        stack, seen = [root], set()
        while stack:
            n = stack.pop()
            if n in seen or not 1 <= n <= pages.count:
                continue
            seen.add(n)
            kind = pages.kind(n)
            if kind == 5:
                stack.extend(pages.children(n))
            elif kind == 13:
                if owner.get(n, table) != table:
                    clash.add(n)
                owner[n] = table
    for n in clash:
        owner.pop(n, None)
    return owner


def _scan_pages(
    pages: _Pages,
    roots: dict[str, int],
    known_text: dict[str, set[str]],
    have: dict[str, dict[int, Any]],
    found: dict[str, dict[int, list[tuple[tuple[Any, ...], bool]]]],
    out_of_time: Callable[[], bool],
) -> int:
    """Put in ``found`` every decodable row of every table leaf page that the walks did not
    read (``have``), per table: id -> [(row, on a page of that table's tree)]. Returns the
    number of rows that could not be given to a table."""
    owners = _page_owners(pages, roots)
    unclassified = 0
    for n in range(1, pages.count + 1):
        if n % 256 == 0 and out_of_time():
            raise _OutOfTime
        if pages.kind(n) != 13:
            continue
        by_table: dict[str, list[tuple[int, list[tuple[str, Any]]]]] = {}
        loose: list[tuple[int, list[tuple[str, Any]]]] = []
        owner = owners.get(n)
        for rowid, values in pages.leaf_cells(n):
            shape = _shape(values)
            if not shape:
                continue
            if owner in shape:
                by_table.setdefault(owner, []).append((rowid, values))
            elif len(shape) == 1:
                by_table.setdefault(shape[0], []).append((rowid, values))
            else:
                loose.append((rowid, values))
        if loose:
            table = _packet_or_gnss(loose, known_text)
            if table is None:
                unclassified += sum(
                    r not in have["pod_packets"] and r not in have["gnss_frames"] for r, _ in loose
                )
            else:
                by_table.setdefault(table, []).extend(loose)
        for table, cells in by_table.items():
            for rowid, values in cells:
                if rowid in have[table]:
                    continue
                row_values = values if table == "meta" else values[1:]
                row = _check_row(table, row_values)
                if row is not None:
                    found[table].setdefault(rowid, []).append((row, owner == table))
    return unclassified


def _packet_or_gnss(
    cells: list[tuple[int, list[tuple[str, Any]]]], known_text: dict[str, set[str]]
) -> str | None:
    """Which of pod_packets / gnss_frames the cells of an orphaned page belong to, if clear."""
    names = {bytes(values[2][1]).decode("utf-8", "replace") for _, values in cells}
    pods, gnss = known_text.get("pod_packets", set()), known_text.get("gnss_frames", set())
    if names <= pods and not names & gnss:
        return "pod_packets"
    if names <= gnss and not names & pods:
        return "gnss_frames"
    if names & (pods | gnss):
        return None  # names of both: a page of mixed garbage
    looks = {_looks_like_gnss(bytes(values[4][1])) for _, values in cells}
    if looks == {True}:
        return "gnss_frames"
    if looks == {False}:
        return "pod_packets"
    return None


# ---------------------------------------------------------------------------------- checks


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _is_recording(path: Path) -> bool:
    """Whether ``path`` is a readable SQLite file whose meta says fusion-edge recording."""
    try:
        with open(path, "rb") as f:
            if f.read(16) != _SQLITE_MAGIC:
                return False
        # immutable: no locks, and no -wal/-shm left next to a file that may not be ours
        con = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'app'").fetchone()
        finally:
            con.close()
    except (OSError, sqlite3.DatabaseError):
        return False
    return row is not None and row[0] == _APP


def _check_dst(src: Path, dst: Path, overwrite: bool) -> None:
    for own in (src, Path(f"{src}-wal"), Path(f"{src}-shm")):
        if _same_file(dst, own):
            raise RecordingError(
                f"--out {dst} is the damaged recording itself (or its -wal/-shm file); salvage "
                "never writes over the damaged file: give --out a new file, e.g. recovered.sqlite"
            )
    if dst.is_dir():
        raise RecordingError(
            f"--out {dst} is a folder; give the salvaged recording a file name, e.g. "
            f"{dst / 'recovered.sqlite'}"
        )
    if dst.exists():
        if not overwrite:
            raise RecordingError(
                f"--out {dst} already exists; give a new file name, or pass --overwrite "
                "(overwrite=True) to replace it when it is an earlier salvaged recording"
            )
        wal = Path(f"{dst}-wal")
        if wal.is_file() and wal.stat().st_size:
            raise RecordingError(
                f"--out {dst} has a -wal file: it is a recording still being written, or one "
                "whose session did not close; --overwrite would destroy that session. Give "
                "--out a new file name"
            )
        if not _is_recording(dst):
            raise RecordingError(
                f"--out {dst} exists and is not a readable fusion-edge recording; --overwrite "
                "only replaces a recording (never another file): give --out a new file name"
            )
    elif Path(f"{dst}-wal").exists():
        raise RecordingError(
            f"{dst}-wal exists next to --out {dst}: SQLite would apply it to the salvaged file; "
            "remove it (and any -shm) or give --out another name"
        )
    try:
        probe_writable(dst.parent)
    except OSError as exc:
        raise RecordingError(
            f"cannot write the salvaged recording into {dst.parent} ({exc.strerror or exc}); "
            "give --out a file in a writable folder with free space"
        ) from None


# ------------------------------------------------------------------------------------ main


def salvage_recording(
    src: str | Path,
    dst: str | Path,
    *,
    overwrite: bool = False,
    time_limit_s: float = 600.0,
) -> SalvageReport:
    """Copy every readable row of the damaged recording ``src`` into a new recording ``dst``.

    ``src`` (and its ``-wal``) are only read: the work is done on a temporary copy in
    ``dst``'s folder. ``dst`` gets the recording schema, fusion-edge's meta and every row
    recovered, with its row id. Records whose session row was lost get a session row marked
    ``{"salvaged": true, "metadata_lost": true}`` starting at their earliest host time. The
    result is checked by opening it with :class:`SessionReader` before it is put in place.

    Args:
        src: The damaged recording.
        dst: Where to write the salvaged recording (a new file).
        overwrite: Replace ``dst`` when it exists and is itself a recording.
        time_limit_s: Stop searching after this long and write what was found.

    Raises:
        RecordingError: ``src`` is missing, empty, not SQLite, not a recording, or nothing in
            it could be read; ``dst`` exists, is ``src``, or cannot be written.
    """
    started = time.monotonic()
    deadline = started + time_limit_s
    src, dst = Path(src), Path(dst)
    check_recording_file(src)
    _check_dst(src, dst, overwrite)
    work = Path(tempfile.mkdtemp(prefix=".salvage-", dir=dst.parent))
    try:
        copy = work / "damaged.sqlite"
        shutil.copyfile(src, copy)
        if Path(f"{src}-wal").is_file():
            shutil.copyfile(f"{src}-wal", f"{copy}-wal")
        found = _recover(copy, deadline)
        report = _write(src, dst, work / "salvaged.sqlite", found, overwrite, started)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


@dataclass
class _Found:
    rows: dict[str, dict[int, tuple[Any, ...]]]
    walk_ids: dict[str, set[int]]
    errors: dict[str, list[tuple[bool, int]]]
    rejected: dict[str, int]
    unclassified: int
    timed_out: bool
    meta_readable: bool
    unreadable: dict[str, bool]
    truncated: bool


def _recover(copy: Path, deadline: float) -> _Found:
    def out_of_time() -> bool:
        return time.monotonic() > deadline

    rows: dict[str, dict[int, tuple[Any, ...]]] = {t: {} for t in TABLES}
    errors: dict[str, list[tuple[bool, int]]] = {t: [] for t in TABLES}
    rejected: dict[str, set[int]] = {t: set() for t in TABLES}
    unreadable = {t: False for t in TABLES}
    roots: dict[str, int] = {}
    timed_out = False
    meta_readable = False
    truncated = False
    tail = _cut_partial_page(copy)
    con = sqlite3.connect(str(copy), isolation_level=None)
    try:
        con.text_factory = bytes  # text is checked (UTF-8) row by row, not left to fail a walk
        con.set_progress_handler(lambda: 1 if out_of_time() else 0, 10_000)
        try:
            con.execute("PRAGMA writable_schema=ON")
            # A crashed session's last commits are in the WAL: put them in the copy's pages,
            # where the page scan sees them too.
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.DatabaseError:
            pass
        try:
            for name, root in con.execute("SELECT name, rootpage FROM sqlite_master"):
                name = bytes(name or b"").decode("utf-8", "replace")
                if name in _COLUMNS and isinstance(root, int):
                    roots[name] = root
        except sqlite3.DatabaseError:
            pass
        try:
            for table in TABLES:
                walker = _TreeWalker(con, table, out_of_time)
                walker.run()
                rows[table] = walker.rows
                errors[table] = walker.errors
                rejected[table] = walker.rejected
                unreadable[table] = walker.unreadable
                if table == "meta":
                    meta_readable = not walker.unreadable and not walker.errors
        except _OutOfTime:
            timed_out = True
    finally:
        con.close()
    walk_ids = {t: set(r) for t, r in rows.items()}
    unclassified = 0
    if not timed_out:
        known_text = {
            t: {r[1] for r in rows[t].values()} for t in ("pod_packets", "gnss_frames")
        }
        pages = _Pages(copy, tail)
        truncated = pages.truncated
        scanned: dict[str, dict[int, list[tuple[tuple[Any, ...], bool]]]] = {t: {} for t in TABLES}
        try:
            unclassified = _scan_pages(pages, roots, known_text, rows, scanned, out_of_time)
        except _OutOfTime:
            timed_out = True  # keep what the scan found until then
        finally:
            pages.close()
        for table, by_id in scanned.items():
            for rid, versions in by_id.items():
                if rid in rows[table]:
                    continue
                versions.sort(key=lambda v: (not v[1], _staleness(table, v[0])))
                rows[table][rid] = versions[0][0]
                rejected[table].discard(rid)
    return _Found(
        rows, walk_ids, errors, {t: len(r) for t, r in rejected.items()}, unclassified,
        timed_out, meta_readable, unreadable, truncated,
    )


def _staleness(table: str, row: tuple[Any, ...]) -> int:
    """Sort key among copies of one row found on several pages: a session row that has its
    end time is the later version (the recorder only ever adds it)."""
    return 1 if table == "sessions" and row[1] is None else 0


def _regions(
    ids: set[int], walk_ids: set[int], errors: list[tuple[bool, int]], unreadable: bool,
    truncated: bool,
) -> tuple[int, int]:
    """(damaged regions with lost rows, holes between recovered ids).

    A region is a run of missing ids between two recovered rows, the rows before the first
    one (the recorder's ids start at 1), or the rest of the table after the last one: when a
    walk failed past it and either the file is cut short or the page scan found nothing the
    walks did not (when it did, it got past the damage, and what may follow is unknown)."""
    known = sorted(ids)
    if not known:
        return (1 if errors or unreadable else 0), 0
    runs = [(a, b) for a, b in zip(known, known[1:], strict=False) if b - a > 1]
    holes = sum(b - a - 1 for a, b in runs)
    head = known[0] > 1
    walk_last = max(walk_ids, default=_MIN_ID)
    failed_past = any(pos >= walk_last if up else walk_last < pos for up, pos in errors)
    tail = failed_past and (truncated or known[-1] <= walk_last)
    return len(runs) + head + tail, holes


def _write(
    src: Path, dst: Path, tmp: Path, found: _Found, overwrite: bool, started: float
) -> SalvageReport:
    rows = found.rows
    meta = {r[0]: r[1] for r in rows["meta"].values()}
    if meta.get("app") not in (None, _APP):
        raise RecordingError(
            f"{src} is a SQLite file but not a fusion-edge recording (its meta says app = "
            f"{meta['app']!r}); salvage only fusion-edge recordings"
        )
    try:
        version = int(meta.get("format_version", "1"))
    except ValueError:
        version = 1
    if version > FORMAT_VERSION:
        raise RecordingError(
            f"{src} is recording format {version}, newer than this fusion-edge reads "
            f"({FORMAT_VERSION}); upgrade fusion-edge to salvage it"
        )
    n_records = sum(len(rows[t]) for t in _RECORD_TABLES)
    if not n_records and not rows["sessions"]:
        more = " (stopped by the time limit)" if found.timed_out else ""
        raise RecordingError(
            f"nothing could be recovered from {src}{more}: no session, packet, GNSS frame or "
            "event in it is readable. If it was copied while recording, copy it again "
            "together with its -wal file and salvage that copy; otherwise look for another "
            "copy of the recording (the kit's card, a backup)"
        )
    meta_lost = not found.meta_readable and meta.get("app") != _APP
    # Sessions whose row was lost: one made up for their records.
    first_time: dict[int, int] = {}
    for table in _RECORD_TABLES:
        t_col = [c for c, _ in _COLUMNS[table]].index("host_time_ns")
        for row in rows[table].values():
            sid, t = row[0], row[t_col]
            first_time[sid] = min(t, first_time.get(sid, t))
    lost = sorted(sid for sid in first_time if sid not in rows["sessions"])
    sessions = dict(rows["sessions"])
    for sid in lost:
        sessions[sid] = (first_time[sid], None, json.dumps(_LOST_METADATA, sort_keys=True), None)

    con = sqlite3.connect(str(tmp), isolation_level=None)
    try:
        con.executescript(_SCHEMA)
        con.execute("BEGIN")
        out_meta = {**meta, "app": _APP, "format_version": str(FORMAT_VERSION)}
        out_meta["salvaged_from"] = src.name
        con.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", sorted(out_meta.items()))
        con.executemany(
            "INSERT INTO sessions (id, started_ns, ended_ns, metadata, stats) VALUES (?,?,?,?,?)",
            [(sid, *row) for sid, row in sorted(sessions.items())],
        )
        for table in _RECORD_TABLES:
            cols = ", ".join(c for c, _ in _COLUMNS[table])
            marks = ", ".join("?" * (len(_COLUMNS[table]) + 1))
            con.executemany(
                f"INSERT INTO {table} (id, {cols}) VALUES ({marks})",
                [(rid, *row) for rid, row in sorted(rows[table].items())],
            )
        con.execute("COMMIT")
    finally:
        con.close()
    make_ordinary(tmp)
    _verify(tmp, src, sessions, rows)
    if overwrite:
        for side in ("-wal", "-shm"):
            Path(f"{dst}{side}").unlink(missing_ok=True)
    os.replace(tmp, dst)

    tables = {}
    for table in TABLES:
        ids = set(rows[table])  # recovered from the file (not the session rows made up)
        regions, holes = _regions(
            ids, found.walk_ids[table], found.errors[table], found.unreadable[table],
            found.truncated,
        )
        tables[table] = TableSalvage(
            rows=len(ids),
            regions_skipped=regions,
            holes=holes,
            from_pages=len(ids - found.walk_ids[table]),
            rejected=found.rejected[table],
        )
    per: dict[int, dict[str, int]] = {sid: {} for sid in sessions}
    for table in _RECORD_TABLES:
        for row in rows[table].values():
            per[row[0]][table] = per[row[0]].get(table, 0) + 1
    summary = tuple(
        SalvagedSession(
            id=sid,
            packets=per[sid].get("pod_packets", 0),
            gnss=per[sid].get("gnss_frames", 0),
            events=per[sid].get("events", 0),
            devices=per[sid].get("devices", 0),
            closed=sessions[sid][1] is not None,
            metadata_lost=sid in lost,
        )
        for sid in sorted(sessions)
    )
    return SalvageReport(
        src=src,
        dst=dst,
        tables=tables,
        meta_lost=meta_lost,
        sessions_lost=tuple(lost),
        sessions=summary,
        unclassified_rows=found.unclassified,
        timed_out=found.timed_out,
        elapsed_s=time.monotonic() - started,
    )


def _verify(
    path: Path,
    src: Path,
    sessions: dict[int, tuple[Any, ...]],
    rows: dict[str, dict[int, tuple[Any, ...]]],
) -> None:
    """Open the written file as a recording and check it holds what was recovered."""
    try:
        with SessionReader(path) as reader:
            ok = [s.id for s in reader.sessions()] == sorted(sessions) and all(
                reader.count(kind) == len(rows[table])
                for kind, table in (("packet", "pod_packets"), ("gnss", "gnss_frames"),
                                    ("event", "events"))
            )
            len(reader.devices())
    except RecordingError as exc:
        raise RecordingError(
            f"the salvaged copy of {src} does not open as a recording ({exc}); this is a bug in "
            "fusion-edge's salvage: keep the damaged file and report it"
        ) from None
    if not ok:
        raise RecordingError(
            f"the salvaged copy of {src} does not hold what was recovered; this is a bug in "
            "fusion-edge's salvage: keep the damaged file and report it"
        )
