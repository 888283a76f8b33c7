"""Kit operator commands: run (a real kit or a simulated one) and replay."""

from __future__ import annotations

import asyncio
import json
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from fusion_edge.cli.common import cli_errors, console, err_console


def register(app: typer.Typer) -> None:
    """Add `run` and `replay` to the root app."""
    app.command("run")(run)
    app.command("replay")(replay)


def _sinks(stack: ExitStack, events: Path | None, table: bool, sse: int | None,
           sse_host: str = "127.0.0.1") -> tuple[Any, Any]:
    """The run's sink hub, and its events-file sink (to mark the session done)."""
    from fusion_edge.runtime.sinks import SessionJsonLinesSink, SinkHub, SseSink, TerminalTableSink

    sinks: list[Any] = []
    fresh = None
    if events is not None:
        fresh = SessionJsonLinesSink(events)
        sinks.append(fresh)
    if table:
        sinks.append(TerminalTableSink(console=console))
    if sse is not None:
        s = SseSink(host=sse_host, port=sse)
        console.print(f"coach's tablet: open [bold]{s.url}[/] on the kit's network")
        sinks.append(s)
    hub = SinkHub(sinks)
    stack.callback(hub.close)
    return hub, fresh


def _is_sqlite(path: Path) -> bool:
    """Whether ``path`` is a SQLite file (a session recording, most likely)."""
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _check_outputs(**paths: Path | None) -> None:
    """Refuse output paths that cannot be written before the session, not after it, and any
    that would destroy data: two outputs on one file, or events/stats over a recording."""
    from fusion_edge.errors import ConfigError
    from fusion_edge.file_access import nearest_existing

    given = {k: p for k, p in paths.items() if p is not None}
    seen: dict[Path, str] = {}
    for option, path in given.items():
        other = seen.setdefault(path.resolve(), option)
        if other != option:
            raise ConfigError(
                f"--{other} and --{option} name the same file {path}; one would overwrite the "
                "other: give two different files"
            )
    for option, path in given.items():
        flag = "--" + option.replace("_", "-")
        if option != "record" and path.is_file() and _is_sqlite(path):
            raise ConfigError(
                f"{flag} {path} is a SQLite file (a recording?); writing there would replace it: "
                f"give another file, e.g. {flag} {_DEFAULT_NAMES[option]}"
            )
        if option == "record" and path.is_file() and path.stat().st_size and not _is_sqlite(path):
            raise ConfigError(
                f"--record {path} exists and is not a session recording (an events or stats "
                "file?); it was left as it was: give a new file, or an earlier recording to add "
                "this session to"
            )
        if option == "record":
            from fusion_edge.runtime.recording import SessionRecorder

            SessionRecorder.check_target(path)  # another program's database, damaged, newer
        if path.is_dir():
            raise ConfigError(f"{flag} {path} is a folder; give a file name inside it, "
                              f"e.g. {flag} {path / _DEFAULT_NAMES[option]}")
        parent = nearest_existing(path.parent)
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise ConfigError(f"{flag} {path}: cannot write into {parent}; choose a path in a "
                              "writable folder")
        if path.exists() and not os.access(path, os.W_OK):
            raise ConfigError(f"{flag} {path} is read-only; choose another file or make it writable")


_DEFAULT_NAMES = {"events": "events.jsonl", "stats": "stats.json", "record": "session.sqlite"}


def print_stats(summary: Any, title: str) -> None:
    """The run's closing table."""
    lat = summary.latency_ms
    t = Table(title=title)
    t.add_column("players", justify="right")
    t.add_column("events", justify="right")
    t.add_column("p50 ms", justify="right")
    t.add_column("p90 ms", justify="right")
    t.add_column("p99 ms", justify="right")
    t.add_column("max ms", justify="right")
    t.add_column("lost samples", justify="right")
    t.add_column("escalated", justify="right")
    t.add_column("CPU %", justify="right")
    t.add_column("RSS MB", justify="right")
    t.add_row(str(summary.players), str(summary.events), f"{lat['p50']:.1f}", f"{lat['p90']:.1f}",
              f"{lat['p99']:.1f}", f"{lat['max']:.1f}", str(summary.lost_samples), str(summary.escalated),
              f"{summary.cpu_percent:.0f}", f"{summary.rss_mb:.0f}")
    console.print(t)
    if summary.not_scored:
        console.print("not scored: " + ", ".join(f"{k} {v}" for k, v in summary.not_scored.items()))
    if summary.backends:
        console.print("answered by: " + ", ".join(f"{k} {v}" for k, v in summary.backends.items()))



def _save(path: Path | None, doc: dict) -> None:
    if path is None:
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, path)
        console.print(f"stats: [bold]{escape(str(path))}[/]")
    except OSError as exc:
        if tmp.is_file():
            tmp.unlink()
        # The session is over and scored: say where the figures could not go, print them instead.
        err_console.print(f"[bold red]error:[/] could not write the statistics to {escape(str(path))} "
                          f"({escape(str(exc))}); they follow here as JSON")
        console.print_json(json.dumps(doc))
        raise typer.Exit(1) from None


def run(
    bundle: Path = typer.Option(..., "--bundle", "-b", help="Bundle folder from 'fusion-edge export'."),
    kit: Path = typer.Option(None, "--kit", help="Kit file (players, pods, GNSS ports, sinks)."),
    simulate: str = typer.Option(None, "--simulate", help="Run simulated pods and receivers of this scenario."),
    seconds: float = typer.Option(None, "--seconds", help="Stop after this long (simulate: default 30)."),
    players: int = typer.Option(None, "--players", help="Simulate only the first N players."),
    seed: int = typer.Option(1, "--seed", help="Seed of the simulated session."),
    events: Path = typer.Option(None, "--events", help="Write feedback events here (JSON lines)."),
    stats: Path = typer.Option(None, "--stats", help="Write run statistics here (JSON)."),
    record: Path = typer.Option(None, "--record", help="Record raw packets and sentences (SQLite) here."),
    backend: list[str] = typer.Option(None, "--backend", help="Backend preference, best first (repeat)."),
    escalation_backend: str = typer.Option(
        None, "--escalation-backend",
        help="Backend of the full model for unsure windows: torch-cuda, onnxruntime-cuda, onnxruntime-cpu "
             "or torch-cpu (default: the kit file's, else torch-cuda on a GPU kit, onnxruntime-cpu otherwise).",
    ),
    sse: int = typer.Option(None, "--sse", help="Serve live events on http://127.0.0.1:PORT/ (0: any port)."),
    table: bool = typer.Option(
        None, "--table/--no-table", help="Live terminal table (default: the kit file's \\[sinks] terminal, else on)."
    ),
) -> None:
    """Run the field kit: per-player feedback from pods over BLE and GNSS over serial."""
    from fusion_edge.runtime.bundle_model import DEFAULT_PREFERENCE, BundleModel
    from fusion_edge.runtime.field_kit import ProcessorConfig
    from fusion_edge.runtime.kit_runner import check_kit_ports, run_kit, session_metadata, setups_from_kit
    from fusion_edge.runtime.recording import SessionRecorder
    from fusion_edge.runtime.simulated_kit import SimulatedKitConfig, run_simulated_kit

    if (kit is None) == (simulate is None):
        err_console.print("[red]error:[/] give exactly one of --kit KIT.toml or --simulate SCENARIO")
        raise typer.Exit(2)
    with cli_errors(), ExitStack() as stack:
        kit_cfg = None
        setups = None
        sse_host = "127.0.0.1"
        if kit is not None:
            from fusion_edge.runtime.kit import load_kit

            kit_cfg = load_kit(kit)
            # Everything the kit file decides is checked before the bundle loads and before any
            # output (events, recording) is touched.
            setups = setups_from_kit(kit_cfg)
            check_kit_ports(kit_cfg)
            prefs = backend or [b.value for b in kit_cfg.backends]
            events = events or kit_cfg.sinks.jsonl
            if table is None:
                table = kit_cfg.sinks.terminal
            if sse is None and kit_cfg.sinks.sse is not None:
                sse, sse_host = kit_cfg.sinks.sse.port, kit_cfg.sinks.sse.host
        else:
            prefs = backend or list(DEFAULT_PREFERENCE)
        table = True if table is None else table
        _check_outputs(events=events, stats=stats, record=record)
        esc = kit_cfg.escalation if kit_cfg is not None else None
        if escalation_backend is None and esc is not None and esc.backend is not None:
            escalation_backend = esc.backend.value
        model = BundleModel(bundle, preference=prefs, escalation=esc.enabled if esc else True,
                            threshold=esc.threshold if esc else None, escalation_backend=escalation_backend,
                            players=len(kit_cfg.players) if kit_cfg is not None else None)
        stack.callback(model.close)
        if kit_cfg is not None:
            from fusion_edge.runtime.kit_runner import check_kit_windows

            check_kit_windows(kit_cfg, model.manifest)
        console.print(f"bundle {bundle}: answering with [bold]{model.chain.name}[/] "
                      f"({model.chain.active.precision}); escalation to "
                      f"{model.escalator.full.name if model.escalator.full else 'none'} under "
                      f"{model.threshold:.2f}")
        hub, fresh = _sinks(stack, events, table, sse, sse_host)
        recorder = None
        closing_errors: list[str] = []
        if kit_cfg is not None:
            from fusion_edge.runtime.kit_runner import pitch_origin

            meta = session_metadata(setups, pitch_origin(kit_cfg),
                                    {"bundle": str(bundle), "hop_s": kit_cfg.windows.hop_s})
            if record is None and kit_cfg.recording.enabled:
                record = kit_cfg.recording.path / f"session-{int(__import__('time').time())}.sqlite"
                _check_outputs(events=events, stats=stats, record=record)
            ran: list[bool] = []
            if record is not None:
                _make_folder(record.parent, "--record")
                # A file this run creates and never records into (no receiver, no adapter) is removed
                # again; a file given to append to is left alone.
                stack.callback(_drop_unused_recording, record, not record.exists(), ran)
                recorder = SessionRecorder(record, meta)
                recorder.start()
                stack.callback(_close_recorder, recorder, closing_errors)
            processor, summary = asyncio.run(run_kit(kit_cfg, model, seconds=seconds, sinks=hub, recorder=recorder,
                                                     on_progress=lambda m: console.print(m)))
            ran.append(True)
        else:
            cfg = SimulatedKitConfig(scenario=simulate, seconds=30.0 if seconds is None else seconds, seed=seed,
                                     players=players)
            if record is not None:
                _make_folder(record.parent, "--record")
                # A new file into which nothing was streamed (stopped while connecting) is removed.
                stack.callback(_drop_unused_recording, record, not record.exists(), [])
                recorder = _LazyRecorder(record, {"bundle": str(bundle), "simulate": simulate})
                stack.callback(_close_recorder, recorder, closing_errors)
            processor, summary = asyncio.run(run_simulated_kit(
                cfg, model, sinks=hub, recorder=recorder, processor_config=ProcessorConfig(),
                on_progress=lambda m: console.print(m)))
        if fresh is not None:
            _session_done(fresh, events)  # the file is this run's even if the session scored nothing
    print_stats(summary, f"field session: {summary.seconds:.0f} s")
    doc = summary.to_json()
    if closing_errors:
        doc.setdefault("faults", {})["recording_close_error"] = closing_errors[0]
    _save(stats, doc)
    if events:
        console.print(_events_note(events, fresh))
    faults = summary.faults
    if faults.get("recording_errors") or faults.get("recording_dropped") or closing_errors:
        # The session was scored; what the recording lacks is said, counted, and the exit code
        # tells scripts the file is incomplete.
        why = closing_errors[0] if closing_errors else faults.get("last_recording_error")
        err_console.print(f"[bold red]recording incomplete:[/] {faults.get('recording_errors', 0)} record(s) "
                          f"failed, {faults.get('recording_dropped', 0)} dropped; {why}")
        raise typer.Exit(1)
    if record and record.exists():
        console.print(_recording_note(record, recorder, bundle))
    if summary.interrupted:
        kept = ", ".join(n for n, p in (("events", events), ("stats", stats), ("recording", record))
                         if p and (n != "recording" or p.exists()))
        console.print(
            f"[yellow]stopped early[/] (Ctrl-C or SIGTERM) after {summary.seconds:.0f} s: the table"
            + (f" and the {kept} file{'s' if ',' in kept else ''} hold" if kept else " holds")
            + " the session up to then"
        )
        raise typer.Exit(130)


def _make_folder(folder: Path, option: str) -> None:
    """Create an output's folder, or refuse the option with why (no traceback)."""
    from fusion_edge.errors import ConfigError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{option}: cannot create the folder {folder} ({exc.strerror or exc}); choose a path in "
            "a writable folder"
        ) from None


def _events_note(events: Path, fresh: Any) -> str:
    """Where the events went, and where the earlier file of that name was kept."""
    kept = getattr(fresh, "kept", None)
    aside = f" (the earlier file of that name was kept as {escape(str(kept))})" if kept else ""
    return f"events: [bold]{escape(str(events))}[/]{aside}"


def _session_done(fresh: Any, events: Path | None) -> None:
    """Mark the events file as this session's; a write that fails is said, and the session's
    table and stats still follow (they are not lost to a traceback)."""
    try:
        fresh.session_done()
    except OSError as exc:
        err_console.print(
            f"[bold red]error:[/] could not write the events file {escape(str(events))} "
            f"({escape(str(exc.strerror or exc))}); the session's table and stats follow"
        )


def _drop_unused_recording(path: Path, created: bool, ran: list[bool]) -> None:
    """Remove a recording this run created when its session never started and holds nothing."""
    if ran or not created or not path.is_file():
        return
    from fusion_edge.errors import FusionEdgeError
    from fusion_edge.runtime.recording import SessionReader

    try:
        with SessionReader(path, verify=False) as reader:
            empty = all(reader.count(kind) == 0 for kind in ("packet", "gnss"))
    except (FusionEdgeError, OSError, ValueError):
        return
    if empty:
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)


def _recording_note(record: Path, recorder: Any, bundle: Path) -> str:
    """Where the session was recorded and how to replay it; in a file holding several sessions,
    which one is this run's and which earlier ones were never closed."""
    from fusion_edge.errors import FusionEdgeError
    from fusion_edge.runtime.recording import SessionReader

    rec = getattr(recorder, "_rec", recorder)  # a _LazyRecorder holds the SessionRecorder
    sid = getattr(rec, "session_id", None)
    replay = f"fusion-edge replay {record} --bundle {bundle}"
    try:
        with SessionReader(record, verify=False) as reader:
            sessions = reader.sessions()
    except (FusionEdgeError, OSError):
        sessions = []
    if len(sessions) < 2 or sid is None:
        return f"recording: [bold]{escape(str(record))}[/] (replay with '{escape(replay)}')"
    open_ = [s.id for s in sessions if s.ended_ns is None and s.id != sid]
    unclosed = (f"; session{'s' if len(open_) > 1 else ''} {', '.join(map(str, open_))} "
                f"{'were' if len(open_) > 1 else 'was'} not closed (crash or power cut)") if open_ else ""
    return (f"recording: [bold]{escape(str(record))}[/], session {sid} (the file holds "
            f"{len(sessions)} sessions{unclosed}; 'fusion-edge recording info {escape(str(record))}' "
            f"lists them); replay it with '{escape(replay)} --session-id {sid}'")


def _close_recorder(recorder: Any, errors: list[str]) -> None:
    """Close a recorder; a write error found at close (disk full) is kept, not raised, so the
    session's stats are still printed and saved."""
    from fusion_edge.errors import FusionEdgeError

    try:
        recorder.close()
    except FusionEdgeError as exc:
        errors.append(str(exc))


class _LazyRecorder:
    """A recorder whose session metadata (the simulated kit's players) is known only once the
    kit is built: it opens the store at the first record, with what the processor tells it."""

    def __init__(self, path: Path, extra: dict) -> None:
        self.path, self.extra, self._rec = path, extra, None
        self.metadata: dict | None = None

    def __enter__(self) -> _LazyRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._rec is not None:
            self._rec.close()

    def bind(self, metadata: dict) -> None:
        from fusion_edge.runtime.recording import SessionRecorder

        self._rec = SessionRecorder(self.path, {**metadata, **self.extra}).__enter__()

    def record_packet(self, *a: Any) -> bool:
        return self._rec.record_packet(*a) if self._rec else False

    def record_gnss(self, *a: Any) -> bool:
        return self._rec.record_gnss(*a) if self._rec else False

    def record_event(self, *a: Any) -> bool:
        return self._rec.record_event(*a) if self._rec else False


def replay(
    session: Path = typer.Argument(..., help="Recording from 'fusion-edge run --record'."),
    bundle: Path = typer.Option(..., "--bundle", "-b", help="Bundle to rerun the session through."),
    events: Path = typer.Option(None, "--events", help="Write feedback events here (JSON lines)."),
    stats: Path = typer.Option(None, "--stats", help="Write statistics here (JSON)."),
    backend: list[str] = typer.Option(None, "--backend", help="Backend preference, best first."),
    session_id: int = typer.Option(None, "--session-id", help="Which session of the file (default: last)."),
) -> None:
    """Rerun a recorded session through any bundle: the same events every time."""
    from fusion_edge.runtime.bundle_model import BundleModel
    from fusion_edge.runtime.field_kit import bundle_window_s
    from fusion_edge.runtime.kit_runner import replay_session

    with cli_errors(), ExitStack() as stack:
        _check_replay_targets(session, bundle, events=events, stats=stats)
        _check_outputs(events=events, stats=stats)
        model = BundleModel(bundle, preference=backend or ["onnxruntime-cpu"])
        stack.callback(model.close)
        hub, fresh = _sinks(stack, events, False, None)
        processor, summary = replay_session(session, model, session_id=session_id, sinks=hub,
                                            on_progress=lambda m: console.print(m))
        if fresh is not None:
            _session_done(fresh, events)
    print_stats(summary, f"replay of {session}")
    if not summary.scored:
        recorded = float(summary.counters.get("recorded_s", 0.0))
        window = bundle_window_s(model.manifest)
        if window is not None and recorded < window:
            why = (f"the session holds {recorded:.1f} s of sensor data and the bundle's window is "
                   f"{window:g} s, so no window was complete; replay a longer recording")
        elif summary.not_scored:
            why = "every window was refused for the reasons under 'not scored' above"
        else:
            why = (f"the session holds {recorded:.1f} s of sensor data but none of it could be "
                   "used (no player's pod and GNSS data together?)")
        console.print(f"[yellow]warning:[/] no window was scored, so the latency columns are not "
                      f"measurements: {why}")
    _save(stats, summary.to_json())
    if events:
        console.print(_events_note(events, fresh))


def _check_replay_targets(session: Path, bundle: Path, **paths: Path | None) -> None:
    """Refuse --events/--stats paths that would overwrite what the replay reads: the recording
    (the session's only copy of the raw field data, with its -wal/-shm) or the bundle. Any other
    recording, and one file for both, `_check_outputs` refuses, as for `run`."""
    from fusion_edge.errors import ConfigError

    given = {k: p for k, p in paths.items() if p is not None}
    rec = session.resolve()
    protected = {rec, Path(f"{rec}-wal"), Path(f"{rec}-shm")}
    for option, path in given.items():
        flag = "--" + option
        target = path.resolve()
        if target in protected:
            raise ConfigError(
                f"{flag} {path} is the recording being replayed; writing there would destroy "
                f"it: give another file, e.g. {flag} {_DEFAULT_NAMES[option]}"
            )
        if (bundle / "manifest.json").is_file() and bundle.resolve() in target.parents:
            raise ConfigError(
                f"{flag} {path} is inside the bundle {bundle}; writing there would change the "
                f"bundle: give a file outside it, e.g. {flag} {_DEFAULT_NAMES[option]}"
            )
