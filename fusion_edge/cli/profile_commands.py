"""Engineer's commands: `profile` (latency per stage in a LoadGen-style mode), `profile capacity`
(most players under a deadline) and `profile compare` (two reports side by side)."""

from __future__ import annotations

import difflib
import json
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from fusion_edge.cli.common import cli_errors, console, err_console

profile_app = typer.Typer(
    help="Latency profiling per sport scenario: stages, modes, capacity, reports "
    "(docs/profile.md).",
    no_args_is_help=False,
    invoke_without_command=True,
)

_MODES = ("single-stream", "multi-stream", "server", "offline")


def register(app: typer.Typer) -> None:
    """Add the `profile` group to the root app."""
    app.add_typer(profile_app, name="profile")


def _model(stack: ExitStack, bundle: Path, backend: list[str] | None, escalation: bool) -> Any:
    from fusion_edge.runtime.bundle_model import DEFAULT_PREFERENCE, BundleModel

    model = BundleModel(
        bundle, preference=backend or list(DEFAULT_PREFERENCE), escalation=escalation
    )
    stack.callback(model.close)
    return model


def _check_out_folder(out: Path, flag: str = "--out") -> None:
    """Refuse a report folder that cannot be made before the run, not after it."""
    from fusion_edge.errors import ConfigError
    from fusion_edge.file_access import nearest_existing

    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"{flag} {out} is a file; give a folder for the report (report.json, report.md, "
            "plots), e.g. a new name"
        )
    parent = nearest_existing(out)
    if not parent.is_dir():
        raise ConfigError(f"{flag} {out}: {parent} is a file, not a folder; choose another path")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"{flag} {out}: cannot write into {parent}; choose a writable folder")


def _check_report_folder(out: Path, bundle: Path | None) -> None:
    """Refuse an --out whose files a report would replace when they are not a profile's: the
    bundle's own report.json (export's), a kit run's events.jsonl."""
    from fusion_edge.errors import ConfigError

    _check_out_folder(out)
    if bundle is not None and (bundle / "manifest.json").is_file():
        o, b = out.resolve(), bundle.resolve()
        if o == b or b in o.parents:
            raise ConfigError(
                f"--out {out} is inside the bundle {bundle}: the report would change the bundle "
                "(and replace its own report.json); give a folder outside it, e.g. "
                "--out profile-report"
            )
    report = out / "report.json"
    if report.exists():
        try:
            doc = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = None
        if not (isinstance(doc, dict) and doc.get("format") == "fusion-edge-profile"):
            raise ConfigError(
                f"--out {out} holds a report.json that is not a profile report; the profile "
                "would replace it: give a new folder"
            )
    elif (out / "events.jsonl").exists():
        raise ConfigError(
            f"--out {out} holds an events.jsonl that no profile wrote (a kit run's?); the "
            "profile would replace it: give a new folder"
        )


def _refuse_group_options(ctx: typer.Context) -> None:
    """Options given before a subcommand belong to the plain profile run: say so rather than
    let `profile --deadline-ms 50 capacity ...` search with the default deadline."""
    given = []
    for p in ctx.command.params:
        source = ctx.get_parameter_source(p.name) if p.name else None
        if source is not None and source.name != "DEFAULT":
            given.append(p.opts[0])
    if given:
        err_console.print(
            f"[red]error:[/] {', '.join(given)} before '{ctx.invoked_subcommand}' would be "
            f"ignored; put the options after it: fusion-edge profile {ctx.invoked_subcommand} "
            "--help lists them"
        )
        raise typer.Exit(2)


def _check_backends(backend: list[str] | None) -> None:
    """Refuse a misspelt backend before any search runs (capacity searches one at a time)."""
    from fusion_edge.errors import ConfigError
    from fusion_edge.runtime.backends import BackendKind

    names = [k.value for k in BackendKind]
    for b in backend or []:
        if b not in names:
            close = difflib.get_close_matches(b, names, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(f"--backend {b!r} is unknown; {hint}choose from {', '.join(names)}")


def _stage_table(doc: dict, title: str) -> Table:
    t = Table(title=title)
    t.add_column("stage")
    t.add_column("count", justify="right")
    for k in ("p50", "p90", "p99", "p99.9", "max"):
        t.add_column(f"{k} ms", justify="right")
    rows = [*doc["stages"].items(), ("end to end", doc["end_to_end"])]
    for name, r in rows:
        t.add_row(
            name,
            str(r.get("count", "")),
            *(
                "-" if r.get(k) is None else f"{r[k]:.3f}"
                for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")
            ),
        )
    return t


@profile_app.callback()
def profile(
    ctx: typer.Context,
    bundle: Path = typer.Option(
        None, "--bundle", "-b", help="Bundle folder from 'fusion-edge export'."
    ),
    scenario: str = typer.Option(
        "5v5", "--scenario", "-s", help="Scenario (catalogue or --scenario-file)."
    ),
    mode: str = typer.Option(
        "multi-stream", "--mode", "-m", help="single-stream, multi-stream, server or offline."
    ),
    duration: float = typer.Option(
        None, "--duration", help="Seconds to run (offline: of generated session)."
    ),
    queries: int = typer.Option(
        None, "--queries", help="single-stream only: hops to time (default 1024)."
    ),
    backend: list[str] = typer.Option(
        None, "--backend", help="Backend preference, best first (repeat)."
    ),
    out: Path = typer.Option(
        None, "--out", "-o", help="Report folder (default profile-SCENARIO-MODE)."
    ),
    session: Path = typer.Option(
        None, "--session", help="Replay this recording instead of simulating."
    ),
    scenario_file: Path = typer.Option(
        None, "--scenario-file", help="TOML file of user scenarios."
    ),
    players: int = typer.Option(
        None, "--players", help="Players to simulate (default: the squad; not single-stream)."
    ),
    seed: int = typer.Option(1, "--seed", help="Simulation seed."),
    rate: float = typer.Option(
        None, "--rate", help="server: windows per second (default squad / hop)."
    ),
    burst: float = typer.Option(
        1.0, "--burst", help="server: mean windows per burst (1: Poisson)."
    ),
    deadline_ms: float = typer.Option(
        None, "--deadline-ms", help="Late above this (default: the hop)."
    ),
    hop: float = typer.Option(None, "--hop", help="Hop override, s (default: the bundle's)."),
    sinks: bool = typer.Option(
        True, "--sinks/--no-sinks", help="Write events.jsonl (the sinks stage)."
    ),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write PNG plots."),
    escalation: bool = typer.Option(
        True, "--escalation/--no-escalation", help="Escalate unsure windows."
    ),
) -> None:
    """Profile the box's latency per stage for a scenario; write report.json, report.md, plots."""
    if ctx.invoked_subcommand is not None:
        _refuse_group_options(ctx)
        return
    from fusion_edge.runtime.profile.modes import ProfileConfig, run_profile
    from fusion_edge.runtime.profile.report import budget_lines, write_outputs

    if bundle is None:
        err_console.print(
            "[red]error:[/] give --bundle B (a bundle from 'fusion-edge export'); "
            "or use 'fusion-edge profile compare A B' / 'fusion-edge profile capacity'"
        )
        raise typer.Exit(2)
    if mode not in _MODES:
        err_console.print(f"[red]error:[/] --mode {escape(repr(mode))}: choose one of {', '.join(_MODES)}")
        raise typer.Exit(2)
    out = out or Path(f"profile-{scenario}-{mode}")
    with cli_errors(), ExitStack() as stack:
        _check_report_folder(out, bundle)
        cfg = ProfileConfig(
            scenario=scenario,
            mode=mode,
            duration_s=duration,
            queries=queries,
            players=players,
            seed=seed,
            scenario_file=str(scenario_file) if scenario_file else None,
            session=str(session) if session else None,
            rate=rate,
            burst=burst,
            deadline_ms=deadline_ms,
            hop_s=hop,
            sinks_dir=str(out) if sinks else None,
        )
        if session is None:  # a typo is found before the backends load (minutes with TensorRT)
            from fusion_edge.scenarios import get_scenario

            get_scenario(scenario, scenario_file)
        model = _model(stack, bundle, backend, escalation)
        console.print(
            f"profiling [bold]{scenario}[/] ({mode}) with {model.chain.name} "
            f"({model.chain.active.precision})"
        )
        result = run_profile(cfg, model, on_progress=lambda m: console.print(m))
        doc = write_outputs(result, out, plots=plots)
    console.print(
        _stage_table(
            doc, f"{doc['scenario']} {doc['mode']}: {doc['backend']}, {doc['players']} players"
        )
    )
    console.print(
        f"throughput {doc['throughput']['windows_per_s']} windows/s; CPU {doc['cpu_percent']}%; "
        f"RSS {doc['rss_mb']} MB; drops "
        + (", ".join(f"{k} {v}" for k, v in doc["drops"].items()) or "none")
    )
    for line in budget_lines(doc):
        console.print(escape(line))
    for w in doc["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    console.print(
        f"report: [bold]{out / 'report.json'}[/], {out / 'report.md'}"
        + (f", {', '.join(doc['plots'])}" if doc["plots"] else "")
    )


@profile_app.command("capacity")
def capacity(
    bundle: Path = typer.Option(
        ..., "--bundle", "-b", help="Bundle folder from 'fusion-edge export'."
    ),
    scenario: str = typer.Option(
        "11v11", "--scenario", "-s", help="Scenario the players come from."
    ),
    backend: list[str] = typer.Option(
        None, "--backend", help="Search each of these backends (repeat)."
    ),
    deadline_ms: float = typer.Option(None, "--deadline-ms", help="p99 limit (default: the hop)."),
    seconds: float = typer.Option(20.0, "--seconds", help="Measured seconds per probe."),
    warmup: float = typer.Option(
        8.0, "--warmup", help="Unmeasured seconds at the start of a probe."
    ),
    start: int = typer.Option(16, "--start", help="First player count."),
    max_players: int = typer.Option(512, "--max-players", help="Never try more."),
    resolution: int = typer.Option(8, "--resolution", help="Stop when the bracket is this narrow."),
    out: Path = typer.Option(Path("profile-capacity"), "--out", "-o", help="Report folder."),
    scenario_file: Path = typer.Option(
        None, "--scenario-file", help="TOML file of user scenarios."
    ),
    hop: float = typer.Option(None, "--hop", help="Hop override, s (default: the bundle's)."),
    seed: int = typer.Option(1, "--seed", help="Simulation seed."),
    escalation: bool = typer.Option(
        True, "--escalation/--no-escalation", help="Escalate unsure windows."
    ),
    plots: bool = typer.Option(
        True, "--plots/--no-plots", help="Write the latency-against-players plot."
    ),
) -> None:
    """Find the most players the box sustains with the hop's p99 under the deadline, per backend."""
    from fusion_edge.runtime.profile.capacity import CapacityConfig, search_capacity
    from fusion_edge.runtime.profile.report import write_outputs

    backends = backend or [None]
    summary = Table(title=f"capacity ({scenario})")
    for col in ("backend", "players", "deadline ms", "p99 ms at capacity", "report"):
        summary.add_column(col)
    with cli_errors():
        _check_backends(backend)
        for b in backend if backend and len(backend) > 1 else [None]:
            _check_report_folder(out / b if b else out, bundle)
        cfg = CapacityConfig(
            scenario=scenario,
            deadline_ms=deadline_ms,
            seconds=seconds,
            warmup_s=warmup,
            start=start,
            max_players=max_players,
            resolution=resolution,
            seed=seed,
            scenario_file=str(scenario_file) if scenario_file else None,
            hop_s=hop,
        )
        from fusion_edge.scenarios import get_scenario

        get_scenario(scenario, scenario_file)  # a typo is found before the backends load
        for b in backends:
            with ExitStack() as stack:
                model = _model(stack, bundle, [b] if b else None, escalation)
                console.print(
                    f"capacity search: {model.chain.name} ({model.chain.active.precision})"
                )
                result = search_capacity(cfg, model, on_progress=lambda m: console.print(m))
            folder = out if len(backends) == 1 else out / (b or "default")
            doc = write_outputs(None, folder, capacity=result, plots=plots)
            at = [p for p in result.points if p.players == result.max_players]
            summary.add_row(
                result.backend,
                f"{result.max_players}{'+' if result.capped else ''}",
                f"{result.deadline_ms:g}",
                f"{at[0].p99_ms:.1f}" if at else "-",
                str(folder / "report.json"),
            )
            del doc
    console.print(summary)


@profile_app.command("compare")
def compare(
    a: Path = typer.Argument(..., help="First report.json (or its folder): the baseline."),
    b: Path = typer.Argument(..., help="Second report.json (or its folder)."),
    out: Path = typer.Option(None, "--out", "-o", help="Also write the comparison here (JSON)."),
) -> None:
    """Two reports side by side; ratios are B / A (above 1: B is slower, or has more throughput).

    The table shows p50 and p99; --out writes every key (p50, p90, p99, p99.9, max) as JSON."""
    from fusion_edge.runtime.profile.report import compare_reports, load_report

    with cli_errors():
        if out is not None:
            _check_comparison_file(out)
        ra, rb = load_report(a), load_report(b)
        cmp = compare_reports(ra, rb)
    t = Table(title=f"A {a}  vs  B {b}")
    t.add_column("row")
    for k in ("p50", "p99"):
        t.add_column(f"{k} A", justify="right")
        t.add_column(f"{k} B", justify="right")
        t.add_column("B/A", justify="right")

    def cell(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    for name, row in cmp["latency"].items():
        cells = []
        for k in ("p50_ms", "p99_ms"):
            cells += [cell(row[k]["a"]), cell(row[k]["b"]), cell(row[k]["ratio"])]
        t.add_row(name, *cells)
    for k, v in cmp["throughput"].items():
        t.add_row(k, cell(v["a"]), cell(v["b"]), cell(v["ratio"]), "", "", "")
    console.print(f"A: {cmp['a']}")
    console.print(f"B: {cmp['b']}")
    console.print(t)
    if not cmp["same_hardware"]:
        console.print("[yellow]note:[/] the two reports come from different CPUs")
    if cmp["differs"]:
        console.print(
            f"[yellow]note:[/] the reports differ in {', '.join(cmp['differs'])}: the ratios "
            "compare different loads, not only two boxes or bundles"
        )
    for side in ("a", "b"):
        if cmp["latency"]["end_to_end"]["p50_ms"][side] is None:
            console.print(
                f"[yellow]note:[/] {side.upper()} measured no queries: its end to end and throughput show '-'"
            )
    if out is not None:
        with cli_errors():
            _write_comparison(out, cmp)
        console.print(f"comparison: [bold]{out}[/]")


def _check_comparison_file(out: Path) -> None:
    """Refuse an --out for `compare` that is a folder, or a report it would overwrite."""
    from fusion_edge.errors import ConfigError
    from fusion_edge.file_access import nearest_existing

    if out.is_dir():
        raise ConfigError(
            f"--out {out} is a folder; give a file name, e.g. --out {out / 'comparison.json'}"
        )
    if out.is_file():
        try:
            head = json.loads(out.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            head = None
        if isinstance(head, dict) and head.get("format") == "fusion-edge-profile":
            raise ConfigError(
                f"--out {out} is a profile report; writing the comparison there would replace "
                "it: give another file name, e.g. comparison.json"
            )
    parent = nearest_existing(out.parent)
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ConfigError(f"--out {out}: cannot write into {parent}; choose a writable folder")


def _write_comparison(out: Path, cmp: dict) -> None:
    """Write the comparison whole or not at all (tmp file, then rename)."""
    from fusion_edge.errors import ConfigError

    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(cmp, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the comparison to {out} ({exc.strerror or exc}); choose a writable path"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
