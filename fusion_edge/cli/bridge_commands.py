"""Kit-operator commands for the sensors: ``fusion-edge pods scan`` and ``fusion-edge gnss ...``.

Registered on the root app by :func:`register` (idempotent). bleak, bumble and pyserial are
imported inside the commands, so ``fusion-edge --help`` stays fast on a box without them.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from fusion_edge.cli.common import cli_errors, console, err_console
from fusion_edge.errors import ConfigError, MissingDependencyError, TransportError
from fusion_edge.file_access import probe_writable

pods_app = typer.Typer(help="IMU pods over Bluetooth LE.", no_args_is_help=True)
gnss_app = typer.Typer(help="GNSS receivers over serial.", no_args_is_help=True)

NO_ADAPTER = "no Bluetooth adapter found: plug in a USB BLE dongle or run with --simulate N"


def register(app: typer.Typer) -> None:
    """Add the ``pods`` and ``gnss`` groups to ``app``; calling it again changes nothing."""
    names = {group.name for group in app.registered_groups}
    if "pods" not in names:
        app.add_typer(pods_app, name="pods")
    if "gnss" not in names:
        app.add_typer(gnss_app, name="gnss")


# ---------------------------------------------------------------------------------- pods scan


@dataclass(frozen=True)
class ScannedPod:
    """A pod heard advertising the pod service during a scan."""

    address: str
    name: str | None
    rssi: int | None
    allowed: bool | None  # None: no allow-list given


@contextmanager
def _bleak_errors() -> Iterator[None]:
    """Turn what bleak raises when there is no usable adapter into a TransportError."""
    import bleak.exc

    # OSError: no D-Bus socket / BlueZ not running (FileNotFoundError, ConnectionRefused).
    no_stack: tuple[type[BaseException], ...] = (bleak.exc.BleakError, OSError)
    try:
        from dbus_fast.errors import DBusError

        no_stack += (DBusError,)
    except ImportError:  # not on macOS/Windows
        pass
    try:
        yield
    except bleak.exc.BleakBluetoothNotAvailableError as exc:
        raise TransportError(f"{NO_ADAPTER} (bleak: {exc})") from exc
    except no_stack as exc:
        raise TransportError(
            f"{NO_ADAPTER}; if one is plugged in, check that BlueZ runs "
            f"(`systemctl status bluetooth`) and the adapter is up (`bluetoothctl power on`) "
            f"({type(exc).__name__}: {exc})"
        ) from exc


async def _scan(
    seconds: float, scanner_backend: type | None
) -> dict[str, tuple[str | None, int | None]]:
    import bleak

    from fusion_edge.firmware_bridge.ble import normalize_address
    from fusion_edge.firmware_bridge.protocol import POD_SERVICE_UUID

    seen: dict[str, tuple[str | None, int | None]] = {}

    def on_advertisement(device: Any, adv: Any) -> None:
        seen[normalize_address(device.address)] = (adv.local_name or device.name, adv.rssi)

    scanner = bleak.BleakScanner(
        on_advertisement, service_uuids=[POD_SERVICE_UUID], backend=scanner_backend
    )
    async with scanner:
        await asyncio.sleep(seconds)
    return seen


async def _scan_simulated(count: int, seconds: float) -> dict[str, tuple[str | None, int | None]]:
    from fusion_edge.firmware_bridge.backends.bumble_backend import SimulatedPodField

    async with SimulatedPodField.with_sine_pods(count) as field:
        return await _scan(seconds, field.backend.scanner)


def scan_pods(
    seconds: float, *, simulate: int = 0, allow: list[str] | None = None
) -> list[ScannedPod]:
    """Scan for pods advertising the pod service.

    Args:
        seconds: how long to listen.
        simulate: scan this many simulated bumble pods instead of the radio (0: the radio).
        allow: the kit's allow-list, to mark each pod found; None: not marked.

    Raises:
        TransportError: no usable Bluetooth adapter.
    """
    from fusion_edge.firmware_bridge.ble import is_pod_address, normalize_address, pod_address_hint

    try:
        import bleak  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("bleak", "edge", "Scanning for pods") from exc
    if not 0 < seconds < math.inf:
        raise TransportError(
            f"--seconds {seconds} must be a positive number: give how long to listen (5 s is "
            "usually enough)"
        )
    allowed = {normalize_address(a) for a in allow} if allow else None
    for address in sorted(allowed or ()):
        if not is_pod_address(address):
            # A pod's address in another format would silently read 'no' for every pod heard.
            raise ConfigError(f"--allow '{address}' is not a BLE address: {pod_address_hint(address)}")
    with _bleak_errors():
        if simulate:
            seen = asyncio.run(_scan_simulated(simulate, seconds))
        else:
            seen = asyncio.run(_scan(seconds, None))
    return [
        ScannedPod(addr, name, rssi, None if allowed is None else addr in allowed)
        for addr, (name, rssi) in sorted(seen.items())
    ]


@pods_app.command("scan")
def pods_scan(
    seconds: float = typer.Option(5.0, "--seconds", help="How long to listen for pods."),
    simulate: int = typer.Option(0, "--simulate", help="Scan N simulated pods (no radio needed)."),
    allow: Annotated[
        list[str] | None, typer.Option("--allow", help="A pod of the kit; repeat for each.")
    ] = None,
) -> None:
    """List the pods in range (address, name, RSSI, on the kit's allow-list?)."""
    if simulate < 0:
        raise typer.BadParameter("--simulate must be 0 or a number of pods")
    with cli_errors():
        pods = scan_pods(seconds, simulate=simulate, allow=allow)
    table = Table(title=f"Pods heard in {seconds:g} s" + (" (simulated)" if simulate else ""))
    for col in ("address", "name", "RSSI (dBm)", "on allow-list"):
        table.add_column(col)
    for p in pods:
        table.add_row(
            escape(p.address),
            escape(p.name or "-"),  # a name is what any device nearby advertises: not markup
            "-" if p.rssi is None else str(p.rssi),
            "-" if p.allowed is None else ("yes" if p.allowed else "no"),
        )
    console.print(table)
    if not pods:
        console.print("no pod heard: are they charged, switched on and in range?")


# ----------------------------------------------------------------------------------- gnss read

_FIX_FIELDS = (
    "source",
    "utc",
    "lat",
    "lon",
    "alt_m",
    "speed_mps",
    "course_deg",
    "fix_quality",
    "sats",
    "hdop",
    "host_ns",
)


class EpochMerger:
    """Merges the GGA/RMC/VTG (and NAV-PVT) of one epoch and source into one fix record.

    A record is complete when a message of the same source carries another time of day (or at
    :meth:`flush`); VTG, which has no time, joins the open record of its source. The first
    message to give a field wins, so a NAV-PVT and the NMEA of the same epoch agree.
    """

    def __init__(self, emit: Callable[[dict[str, Any]], None]) -> None:
        self._emit = emit
        self._open: dict[str | None, tuple[Any, dict[str, Any]]] = {}

    def add(self, message: Any, host_ns: int) -> None:
        key = message.source
        tod = message.utc_time
        current = self._open.get(key)
        if current is not None and tod is not None and current[0] is not None and current[0] != tod:
            self._emit(self._open.pop(key)[1])
            current = None
        if current is None:
            current = (tod, dict.fromkeys(_FIX_FIELDS))
            current[1]["source"] = key
            current[1]["host_ns"] = host_ns
            self._open[key] = current
        elif current[0] is None and tod is not None:
            self._open[key] = current = (tod, current[1])
        record = current[1]
        quality = None if message.fix_quality is None else int(message.fix_quality)
        for name, value in (
            ("utc", message.utc.isoformat() if message.utc is not None else None),
            ("lat", message.lat_deg),
            ("lon", message.lon_deg),
            ("alt_m", message.alt_m),
            ("speed_mps", message.speed_mps),
            ("course_deg", message.course_deg),
            ("fix_quality", quality),
            ("sats", message.num_sats),
            ("hdop", message.hdop),
        ):
            if record[name] is None and value is not None:
                record[name] = value

    def flush(self) -> None:
        for _tod, record in self._open.values():
            self._emit(record)
        self._open.clear()


def read_gnss(
    port: str,
    *,
    baud: int,
    seconds: float | None,
    on_fix: Callable[[dict[str, Any]], None],
    on_open: Callable[[], None] | None = None,
    on_link: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Read a receiver for ``seconds`` (None: until Ctrl-C), calling ``on_fix`` per epoch record.

    ``on_open`` is called once the port is open, before the first fix (open output files there,
    so that a port that cannot be opened leaves the last session's files alone). ``on_link``
    hears, in words, when the receiver is lost and when it comes back.

    Returns:
        The stats: ``sentences``, ``checksum_errors``, ``unknown``, ``fixes`` and the raw
        reader/link counters.

    Raises:
        TransportError: the port cannot be opened, or vanished and did not come back.
    """
    from fusion_edge.firmware_bridge.gnss_messages import GnssFix
    from fusion_edge.firmware_bridge.serial_gnss import SerialGnssConfig, SerialGnssTransport

    fixes = 0

    def emit(record: dict[str, Any]) -> None:
        nonlocal fixes
        fixes += 1
        on_fix(record)

    if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
        raise ConfigError(
            f"--baud {baud} is not a line speed: give the receiver's baud rate (115200 for a "
            "u-blox at 10 Hz; 9600 or 38400 on many older receivers)"
        )
    from fusion_edge.errors import TransportError

    merger = EpochMerger(emit)
    transport = SerialGnssTransport(port, SerialGnssConfig(baudrate=baud))
    lost: str | None = None
    with transport:
        if on_open is not None:
            on_open()
        deadline = None if seconds is None else time.monotonic() + seconds
        started = time.monotonic()
        seen = (0, 0)  # disconnects, reconnects already told
        lost_at = 0.0
        try:
            while deadline is None or time.monotonic() < deadline:
                wait = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
                reading = transport.get(timeout_s=wait)
                if reading is not None and isinstance(reading.message, GnssFix):
                    merger.add(reading.message, reading.host_time_ns)
                now = (transport.counters.disconnects, transport.counters.reconnects)
                if on_link is not None and now != seen:
                    if now[0] > seen[0]:
                        lost_at = time.monotonic()
                        on_link(f"receiver on {port} lost; waiting up to "
                                f"{transport.config.reconnect_timeout_s:g} s for it to come back")
                    if now[1] > seen[1]:
                        on_link(f"receiver on {port} came back after "
                                f"{time.monotonic() - lost_at:.1f} s; reading on")
                    seen = now
        except KeyboardInterrupt:
            pass
        except TransportError as exc:
            # The receiver vanished mid-read: what it sent is kept (the open epoch flushed,
            # the counters returned), and the caller reports the loss after them.
            lost = str(exc)
    merger.flush()
    c = transport.reader.counters
    link = transport.counters
    return {
        "port": port,
        "baud": baud,
        "seconds": round(time.monotonic() - started, 3),
        "fixes": fixes,
        "sentences": c.sentences_ok + c.bad_checksum + c.malformed + c.unknown + c.proprietary,
        "checksum_errors": c.bad_checksum + c.ubx_bad,
        "unknown": c.unknown + c.ubx_unknown,
        "proprietary": c.proprietary,
        "malformed": c.malformed,
        "ubx_frames": c.ubx_ok + c.ubx_bad + c.ubx_unknown,
        "garbage_bytes": c.garbage_bytes,
        "bytes_read": link.bytes_read,
        "disconnects": link.disconnects,
        "reconnects": link.reconnects,
        "reader": vars(c),
        "error": lost,
    }


def _output_path(path: Path, option: str) -> Path:
    """Refuse an output path that cannot be written, before the port is read (nothing written)."""
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give the file to write")
    try:
        probe_writable(path.parent)
    except OSError as exc:
        raise ConfigError(
            f"{option} {path} cannot be written ({exc.strerror or exc}: {exc.filename}); give a "
            "file in a writable folder"
        ) from None
    return path


def no_fix_advice(result: dict[str, Any]) -> str | None:
    """What to check when a read gave no fix, from its counters; None when fixes came."""
    if result["fixes"]:
        return None
    port, secs = result["port"], result["seconds"]
    if not result["bytes_read"]:
        return (
            f"no byte arrived on {port} in {secs:g} s: is this the receiver's port, and is the "
            "receiver powered and configured to output NMEA or UBX on it?"
        )
    if not result["sentences"] and not result["ubx_frames"]:
        return (
            f"{result['bytes_read']} bytes arrived on {port} but not one NMEA sentence or UBX "
            f"frame: the line speed is probably wrong (--baud {result['baud']}); try the "
            "receiver's rate (9600, 38400, 115200), or check that this port is the GNSS receiver"
        )
    return (
        f"{result['sentences']} sentences and {result['ubx_frames']} UBX frames arrived on {port} "
        "but no position message: enable GGA/RMC (or UBX NAV-PVT) output on the receiver"
    )


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "-"
    return str(value)


@gnss_app.command("read")
def gnss_read(
    port: str = typer.Argument(..., help="Serial port, e.g. /dev/serial/by-id/usb-u-blox_..."),
    baud: int = typer.Option(115200, "--baud", help="Line speed of the receiver."),
    seconds: float | None = typer.Option(
        None, "--seconds", help="How long to read (default: until Ctrl-C)."
    ),
    out: Annotated[
        Path | None, typer.Option("--out", help="Write one JSON object per fix (JSON lines).")
    ] = None,
    stats: Annotated[
        Path | None, typer.Option("--stats", help="Write the sentence/fix counters as JSON.")
    ] = None,
    show: int = typer.Option(20, "--show", help="Fixes to show in the table (the last N)."),
) -> None:
    """Read fixes from a GNSS receiver (NMEA and UBX NAV-PVT), one record per epoch."""
    last: list[dict[str, Any]] = []
    handle: IO[str] | None = None
    with cli_errors():
        if seconds is not None and not 0 < seconds < math.inf:
            raise TransportError(
                f"--seconds {seconds} must be a positive number of seconds, or left out to read "
                "until Ctrl-C"
            )
        if show < 0:
            raise ConfigError(f"--show {show} must be 0 (no table) or a number of fixes to show")
        if out is not None:
            _output_path(out, "--out")
        if stats is not None:
            _output_path(stats, "--stats")

        def on_open() -> None:
            nonlocal handle
            if out is not None:  # only now: a port that does not open keeps the last file
                handle = out.open("w", encoding="utf-8")

        def on_fix(record: dict[str, Any]) -> None:
            if handle is not None:
                handle.write(json.dumps(record) + "\n")
                handle.flush()  # a pulled cable loses at most the fix being written
            if show:
                last.append(record)
                del last[:-show]

        try:
            result = read_gnss(port, baud=baud, seconds=seconds, on_fix=on_fix, on_open=on_open,
                               on_link=lambda m: err_console.print(f"[yellow]{escape(m)}[/]"))
        finally:
            if handle is not None:
                handle.close()
        if stats is not None:
            stats.write_text(json.dumps(result, indent=2), encoding="utf-8")
    table = Table(title=escape(f"Last {len(last)} of {result['fixes']} fixes on {port}"))
    for col in ("source", "utc", "lat", "lon", "alt m", "speed m/s", "course", "q", "sats", "hdop"):
        table.add_column(col, no_wrap=True)
    for r in last:
        table.add_row(
            escape(_fmt(r["source"], 0)),  # a TAG source comes off the wire: not markup
            _fmt(r["utc"], 0),
            _fmt(r["lat"], 7),
            _fmt(r["lon"], 7),
            _fmt(r["alt_m"], 1),
            _fmt(r["speed_mps"], 2),
            _fmt(r["course_deg"], 1),
            _fmt(r["fix_quality"], 0),
            _fmt(r["sats"], 0),
            _fmt(r["hdop"], 2),
        )
    console.print(table)
    summary = Table(title="Stream counters")
    summary.add_column("counter")
    summary.add_column("value", justify="right")
    for key in (
        "seconds",
        "fixes",
        "sentences",
        "ubx_frames",
        "checksum_errors",
        "unknown",
        "proprietary",
        "malformed",
        "garbage_bytes",
        "bytes_read",
        "reconnects",
    ):
        summary.add_row(key, str(result[key]))
    console.print(summary)
    if result.get("error"):
        kept = ", ".join(str(p) for p in (out, stats) if p is not None)
        err_console.print(
            f"[bold red]error:[/] {escape(result['error'])}"
            + (f" (the {result['fixes']} fixes and counters up to then are in {escape(kept)})" if kept else "")
        )
        raise typer.Exit(2)
    advice = no_fix_advice(result)
    if advice is not None:
        err_console.print(f"[yellow]warning:[/] {escape(advice)}")


@gnss_app.command("simulate")
def gnss_simulate(
    seconds: float | None = typer.Option(
        None, "--seconds", help="How long to run (default: until Ctrl-C)."
    ),
    rate: float = typer.Option(10.0, "--rate", help="Epochs per second."),
    output: str = typer.Option("nmea", "--output", help="nmea, ubx or both."),
    scenario: str | None = typer.Option(
        None, "--scenario", help="Players of this scenario (else a circle track)."
    ),
    players: int = typer.Option(
        1, "--players", help="With --scenario: players on the line (TAG blocks)."
    ),
    link: Annotated[
        Path | None, typer.Option("--link", help="Also keep this symlink pointing at the port.")
    ] = None,
) -> None:
    """Run a simulated receiver on a pseudo-terminal and print its port (for `gnss read`)."""
    from fusion_edge.firmware_bridge.sim_gnss import (
        CircleTrackSource,
        OutputMix,
        SimulatedReceiver,
        SimulatedReceiverConfig,
    )

    with cli_errors():
        try:
            mix = OutputMix(output)
        except ValueError:
            raise typer.BadParameter("--output must be nmea, ubx or both") from None
        if seconds is not None and not 0 < seconds < math.inf:
            raise ConfigError(
                f"--seconds {seconds} must be a positive number of seconds, or left out to run "
                "until Ctrl-C"
            )
        if scenario is None and players != 1:
            raise ConfigError(
                f"--players {players} needs --scenario: the circle track is one receiver; give "
                "e.g. --scenario 11v11 --players 4"
            )
        if players < 1:
            raise ConfigError(f"--players {players} must be 1 or more")
        source: Any = CircleTrackSource()
        if scenario is not None:
            from fusion_edge.firmware_bridge.scenario_fixes import scenario_fix_sources
            from fusion_edge.scenarios import get_scenario, simulate_session

            spec = get_scenario(scenario)
            session = simulate_session(spec, seed=0, duration_s=300.0, lost_samples=False)
            on_pitch = len(session.gnss)
            if players > on_pitch:
                raise ConfigError(
                    f"--players {players} is more than the {on_pitch} players of scenario "
                    f"{scenario!r}; give --players 1 to {on_pitch}"
                )
            source = scenario_fix_sources(session, players)
        cfg = SimulatedReceiverConfig(
            rate_hz=rate,
            output=mix,
            tag_sources=scenario is not None,
            link_path=None if link is None else str(link),
        )
        with SimulatedReceiver(source, cfg) as rx:
            console.print(
                f"simulated receiver writing on [bold]{rx.port}[/] "
                f"({rate:g} Hz, {mix.value}, {rx.link_load:.0%} of the line)"
            )
            try:
                if seconds is None:
                    while True:
                        time.sleep(1.0)
                else:
                    time.sleep(seconds)
            except KeyboardInterrupt:
                pass
            console.print(f"wrote {rx.epochs_written} epochs, {rx.bytes_written} bytes")
