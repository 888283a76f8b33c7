"""Kit operator commands: run (a real kit or a simulated one) and replay."""

from __future__ import annotations

import asyncio
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from fusion_edge.cli.common import cli_errors, console, err_console


def register(app: typer.Typer) -> None:
    """Add `run` and `replay` to the root app."""
    app.command("run")(run)
    app.command("replay")(replay)


def _sinks(stack: ExitStack, events: Path | None, table: bool, sse: int | None) -> Any:
    from fusion_edge.runtime.sinks import JsonLinesSink, SinkHub, SseSink, TerminalTableSink

    sinks: list[Any] = []
    if events is not None:
        events.parent.mkdir(parents=True, exist_ok=True)
        if events.exists():
            events.unlink()  # one run, one events file
        sinks.append(JsonLinesSink(events))
    if table:
        sinks.append(TerminalTableSink(console=console))
    if sse is not None:
        s = SseSink(port=sse)
        console.print(f"coach's tablet: open [bold]{s.url}[/] on the kit's network")
        sinks.append(s)
    hub = SinkHub(sinks)
    stack.callback(hub.close)
    return hub


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
    console.print("answered by: " + ", ".join(f"{k} {v}" for k, v in summary.backends.items()))


def _save(path: Path | None, doc: dict) -> None:
    if path is None:
        return
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


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
    table: bool = typer.Option(True, "--table/--no-table", help="Live terminal table."),
) -> None:
    """Run the field kit: per-player feedback from pods over BLE and GNSS over serial."""
    from fusion_edge.runtime.bundle_model import DEFAULT_PREFERENCE, BundleModel
    from fusion_edge.runtime.field_kit import ProcessorConfig
    from fusion_edge.runtime.kit_runner import run_kit, session_metadata, setups_from_kit
    from fusion_edge.runtime.recording import SessionRecorder
    from fusion_edge.runtime.simulated_kit import SimulatedKitConfig, run_simulated_kit

    if (kit is None) == (simulate is None):
        err_console.print("[red]error:[/] give exactly one of --kit KIT.toml or --simulate SCENARIO")
        raise typer.Exit(2)
    with cli_errors(), ExitStack() as stack:
        kit_cfg = None
        if kit is not None:
            from fusion_edge.runtime.kit import load_kit

            kit_cfg = load_kit(kit)
            prefs = backend or [b.value for b in kit_cfg.backends]
            events = events or kit_cfg.sinks.jsonl
        else:
            prefs = backend or list(DEFAULT_PREFERENCE)
        esc = kit_cfg.escalation if kit_cfg is not None else None
        if escalation_backend is None and esc is not None and esc.backend is not None:
            escalation_backend = esc.backend.value
        model = BundleModel(bundle, preference=prefs, escalation=esc.enabled if esc else True,
                            threshold=esc.threshold if esc else None, escalation_backend=escalation_backend)
        stack.callback(model.close)
        console.print(f"bundle {bundle}: answering with [bold]{model.chain.name}[/] "
                      f"({model.chain.active.precision}); escalation to "
                      f"{model.escalator.full.name if model.escalator.full else 'none'} under "
                      f"{model.threshold:.2f}")
        hub = _sinks(stack, events, table, sse)
        recorder = None
        closing_errors: list[str] = []
        if kit_cfg is not None:
            from fusion_edge.runtime.kit_runner import pitch_origin

            meta = session_metadata(setups_from_kit(kit_cfg), pitch_origin(kit_cfg),
                                    {"bundle": str(bundle), "hop_s": kit_cfg.windows.hop_s})
            if record is None and kit_cfg.recording.enabled:
                record = kit_cfg.recording.path / f"session-{int(__import__('time').time())}.sqlite"
            if record is not None:
                record.parent.mkdir(parents=True, exist_ok=True)
                recorder = SessionRecorder(record, meta)
                recorder.start()
                stack.callback(_close_recorder, recorder, closing_errors)
            processor, summary = asyncio.run(run_kit(kit_cfg, model, seconds=seconds, sinks=hub, recorder=recorder,
                                                     on_progress=lambda m: console.print(m)))
        else:
            cfg = SimulatedKitConfig(scenario=simulate, seconds=seconds or 30.0, seed=seed, players=players)
            if record is not None:
                record.parent.mkdir(parents=True, exist_ok=True)
                recorder = _LazyRecorder(record, {"bundle": str(bundle), "simulate": simulate})
                stack.callback(_close_recorder, recorder, closing_errors)
            processor, summary = asyncio.run(run_simulated_kit(
                cfg, model, sinks=hub, recorder=recorder, processor_config=ProcessorConfig(),
                on_progress=lambda m: console.print(m)))
    print_stats(summary, f"field session: {summary.seconds:.0f} s")
    doc = summary.to_json()
    if closing_errors:
        doc.setdefault("faults", {})["recording_close_error"] = closing_errors[0]
    _save(stats, doc)
    if events:
        console.print(f"events: [bold]{events}[/]")
    faults = summary.faults
    if faults.get("recording_errors") or faults.get("recording_dropped") or closing_errors:
        # The session was scored; what the recording lacks is said, counted, and the exit code
        # tells scripts the file is incomplete.
        why = closing_errors[0] if closing_errors else faults.get("last_recording_error")
        err_console.print(f"[bold red]recording incomplete:[/] {faults.get('recording_errors', 0)} record(s) "
                          f"failed, {faults.get('recording_dropped', 0)} dropped; {why}")
        raise typer.Exit(1)
    if record:
        console.print(f"recording: [bold]{record}[/] (replay with 'fusion-edge replay {record} --bundle B')")


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
    from fusion_edge.runtime.kit_runner import replay_session

    with cli_errors(), ExitStack() as stack:
        model = BundleModel(bundle, preference=backend or ["onnxruntime-cpu"])
        stack.callback(model.close)
        hub = _sinks(stack, events, False, None)
        processor, summary = replay_session(session, model, session_id=session_id, sinks=hub)
    print_stats(summary, f"replay of {session}")
    _save(stats, summary.to_json())
