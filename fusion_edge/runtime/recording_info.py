"""What a recording holds, session by session (``fusion-edge recording info``).

Sessions append to one file, so after a few runs an operator needs to see which sessions it
holds before replaying one with ``--session-id``. Only reads (through :class:`SessionReader`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_edge.runtime.recording import _TABLES, SessionReader

__all__ = ["RecordingSummary", "SessionSummary", "summarize_recording", "wall_clock_utc"]

# started_ns is the recorder's clock: time.monotonic_ns() by default (time since boot), but a
# caller may pass time.time_ns. Nanoseconds since 1970 are past 1e18 from September 2001 on;
# a monotonic clock gets there after 31 years of uptime.
_WALL_CLOCK_NS = 10**18


def _started_utc(metadata: dict) -> str | None:
    """The date `session_metadata` stores with every session the kit records."""
    value = metadata.get("started_utc")
    return value if isinstance(value, str) and value else None


def wall_clock_utc(ns: int) -> str | None:
    """``ns`` as a UTC ISO time when it looks like wall-clock ns (time.time_ns), else None."""
    if ns < _WALL_CLOCK_NS:
        return None
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class SessionSummary:
    """One session of a recording.

    Attributes:
        id: Session id (``--session-id`` of ``fusion-edge replay``).
        started_ns: The recorder's clock at the start (host monotonic ns by default).
        started_utc: When the session started, UTC ISO: the date stored in its metadata by
            `session_metadata`, else ``started_ns`` when it is wall-clock time, else None.
        first_ns / last_ns: Host times of the session's first and last record (None if empty).
        closed: The recorder closed it (``ended_ns`` set); False after a crash or power cut.
        players: Players in the kit description (None when the metadata has none).
        metadata_lost: Its session row was lost and made up by a salvage.
        packets / gnss / events / devices: Records of each kind.
    """

    id: int
    started_ns: int
    started_utc: str | None
    first_ns: int | None
    last_ns: int | None
    closed: bool
    players: int | None
    metadata_lost: bool
    packets: int
    gnss: int
    events: int
    devices: int
    metadata: dict[str, Any]

    @property
    def duration_s(self) -> float | None:
        """Seconds from the first to the last record."""
        if self.first_ns is None or self.last_ns is None:
            return None
        return (self.last_ns - self.first_ns) / 1e9


@dataclass(frozen=True)
class RecordingSummary:
    """A recording file: its size and sessions."""

    path: Path
    size_bytes: int
    wal_bytes: int | None  # size of the -wal file next to it (a session not closed), or None
    sessions: tuple[SessionSummary, ...]


def _players(meta: dict[str, Any]) -> int | None:
    players = meta.get("players")
    if isinstance(players, list):
        return len(players)
    if isinstance(players, int) and not isinstance(players, bool):
        return players
    return None


def summarize_recording(path: str | Path, *, verify: bool = True) -> RecordingSummary:
    """Sessions of the recording at ``path`` with their record counts and times.

    Raises:
        RecordingError: As :class:`SessionReader` (missing, not a recording, damaged...).
    """
    path = Path(path)
    wal = Path(f"{path}-wal")
    wal_bytes = wal.stat().st_size if wal.is_file() else None  # before opening merges it
    with SessionReader(path, verify=verify) as reader:
        infos = reader.sessions()
        per: dict[int, dict[str, Any]] = {}
        for kind, table in _TABLES.items():
            for sid, n, lo, hi in reader._query(
                f"SELECT session_id, COUNT(*), MIN(host_time_ns), MAX(host_time_ns) FROM {table} "
                "GROUP BY session_id"
            ):
                d = per.setdefault(int(sid), {"first": None, "last": None})
                d[kind.value] = int(n)
                d["first"] = lo if d["first"] is None else min(d["first"], lo)
                d["last"] = hi if d["last"] is None else max(d["last"], hi)
        devices: dict[int, int] = {}
        for d in reader.devices():
            devices[d["session_id"]] = devices.get(d["session_id"], 0) + 1
    sessions = []
    for info in infos:
        c = per.get(info.id, {"first": None, "last": None})
        sessions.append(
            SessionSummary(
                id=info.id,
                started_ns=info.started_ns,
                started_utc=_started_utc(info.metadata) or wall_clock_utc(info.started_ns),
                first_ns=c["first"],
                last_ns=c["last"],
                closed=info.ended_ns is not None,
                players=_players(info.metadata),
                metadata_lost=bool(info.metadata.get("metadata_lost")),
                packets=c.get("packet", 0),
                gnss=c.get("gnss", 0),
                events=c.get("event", 0),
                devices=devices.get(info.id, 0),
                metadata=info.metadata,
            )
        )
    return RecordingSummary(
        path=path,
        size_bytes=path.stat().st_size,
        wal_bytes=wal_bytes,
        sessions=tuple(sessions),
    )
