"""`fusion-edge recording info|salvage`: which sessions a recording holds, and rescuing what is
readable from a damaged one (docs/recording.md)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from fusion_edge.cli.common import cli_errors, console

recording_app = typer.Typer(
    help="Session recordings from 'fusion-edge run --record': list their sessions, salvage a "
    "damaged one.",
    no_args_is_help=True,
)

NOT_CLOSED = "not closed (the recorder stopped: crash or power cut)"


def register(app: typer.Typer) -> None:
    """Add the `recording` group to the root app; calling it again changes nothing."""
    if "recording" not in {group.name for group in app.registered_groups}:
        app.add_typer(recording_app, name="recording")


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, s = divmod(seconds, 60)
    return f"{int(minutes)} min {s:04.1f} s" if minutes else f"{s:.1f} s"


@recording_app.command("info")
def info(
    recording: Path = typer.Argument(..., help="Recording (.sqlite) from 'fusion-edge run --record'."),
    verify: bool = typer.Option(
        True, "--verify/--no-verify", help="Check the whole file for damage first (reads it once)."
    ),
) -> None:
    """List the sessions a recording holds: start, duration, closed or not, players, records."""
    from fusion_edge.runtime.recording_info import summarize_recording

    with cli_errors():
        summary = summarize_recording(recording, verify=verify)
    wal = f" (+ {_size(summary.wal_bytes)} -wal)" if summary.wal_bytes else ""
    t = Table(
        title=f"{escape(str(recording))}: {len(summary.sessions)} session(s), "
        f"{_size(summary.size_bytes)}{wal}"
    )
    for col in ("session", "started", "duration", "closed", "players", "pod packets",
                "GNSS frames", "events"):
        t.add_column(col, justify="left" if col in ("started", "closed", "players") else "right")
    monotonic = False
    for s in summary.sessions:
        if s.started_utc is None:
            monotonic = True
        players = (
            "kit description lost (salvaged)" if s.metadata_lost
            else "-" if s.players is None else str(s.players)
        )
        t.add_row(
            str(s.id),
            s.started_utc or str(s.started_ns),
            _duration(s.duration_s),
            "closed" if s.closed else f"[yellow]{NOT_CLOSED}[/]",
            players,
            str(s.packets),
            str(s.gnss),
            str(s.events),
        )
    console.print(t)
    if monotonic:
        console.print(
            "started: the kit's monotonic clock in ns (time since it booted), not a date; "
            "duration: first to last record"
        )
    replayable = [s.id for s in summary.sessions if not s.metadata_lost]
    if replayable:
        console.print(
            f"replay one with: fusion-edge replay {escape(str(recording))} --bundle B "
            f"--session-id N (without --session-id: session {summary.sessions[-1].id}, the last)"
        )


@recording_app.command("salvage")
def salvage(
    recording: Path = typer.Argument(..., help="The damaged recording (only read, never changed)."),
    out: Path = typer.Option(..., "--out", "-o", help="New recording to write every readable row into."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace --out when it exists and is itself a recording."
    ),
    time_limit: float = typer.Option(
        600.0, "--time-limit", min=1.0, help="Stop searching after this many seconds and write what was found."
    ),
) -> None:
    """Copy every readable row of a damaged or truncated recording into a new, valid one."""
    from fusion_edge.runtime.salvage import salvage_recording

    with cli_errors():
        report = salvage_recording(recording, out, overwrite=overwrite, time_limit_s=time_limit)
    t = Table(title=f"salvaged {escape(str(recording))} into {escape(str(out))} "
              f"({report.elapsed_s:.1f} s)")
    for col in ("table", "rows recovered", "damaged regions skipped", "ids missing",
                "found by page scan"):
        t.add_column(col, justify="left" if col == "table" else "right")
    for name, s in report.tables.items():
        t.add_row(name, str(s.rows), str(s.regions_skipped), str(s.holes), str(s.from_pages))
    console.print(t)
    console.print(
        "ids missing: rows lost between the first and last row recovered; rows after the last "
        "one (a cut-short file) are lost too but cannot be counted"
    )
    if report.meta_lost:
        console.print("[yellow]note:[/] the file's format marker (meta) was unreadable; a "
                      "current one was written")
    if report.unclassified_rows:
        console.print(
            f"[yellow]note:[/] {report.unclassified_rows} rows on pages cut off from their table "
            "could not be told apart as pod packets or GNSS frames and were left out"
        )
    if report.timed_out:
        console.print(
            f"[yellow]warning:[/] the search stopped at --time-limit {time_limit:g} s; rerun "
            "with a longer --time-limit to look further"
        )
    s_table = Table(title="sessions recovered")
    for col in ("session", "pod packets", "GNSS frames", "events", "closed", "kit description"):
        s_table.add_column(col, justify="right" if col not in ("closed", "kit description") else "left")
    for s in report.sessions:
        s_table.add_row(
            str(s.id), str(s.packets), str(s.gnss), str(s.events),
            "closed" if s.closed else "not closed",
            "[yellow]lost: cannot be replayed[/]" if s.metadata_lost else "kept",
        )
    console.print(s_table)
    for s in report.sessions:
        if not s.metadata_lost:
            console.print(
                f"fusion-edge replay {escape(str(out))} --bundle B --session-id {s.id}"
            )
    if report.sessions_lost:
        ids = ", ".join(str(i) for i in report.sessions_lost)
        console.print(
            f"session(s) {ids}: their session row (players, pitch) was lost; their raw records "
            "are kept, marked {\"salvaged\": true, \"metadata_lost\": true}, but cannot be "
            "replayed"
        )
