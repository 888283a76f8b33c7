"""Run a real kit from its kit file, and replay a recorded session through any bundle.

A live run connects the kit's pods over the platform's BLE adapter (bleak) and opens its GNSS
ports (pyserial), records every raw packet and sentence, and feeds them to the same
`FieldProcessor` a simulated run uses. A replay reads a recording in receive-time order and
feeds the same bytes with the same times, so it gives the same events every time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fusion_edge.errors import ConfigError, FusionEdgeError, TransportError
from fusion_edge.firmware_bridge.scenario_fixes import PitchOrigin
from fusion_edge.runtime.bundle_model import BundleModel
from fusion_edge.runtime.field_kit import (
    FieldProcessor,
    PlayerSetup,
    ProcessorConfig,
    bundle_window_s,
    gnss_feeder,
    session_metadata,
    setups_from_metadata,
)
from fusion_edge.runtime.simulated_kit import RunSummary, stoppable_connect, stream_for, summarize

__all__ = [
    "setups_from_kit",
    "check_kit_ports",
    "pitch_origin",
    "processor_options",
    "session_metadata",
    "setups_from_metadata",
    "run_kit",
    "replay_session",
]

log = logging.getLogger(__name__)


def pitch_origin(kit: Any) -> PitchOrigin:
    """The kit's ``[pitch]`` as a PitchOrigin (the default origin, with a warning, without one)."""
    pitch = getattr(kit, "pitch", None)
    if pitch is None:
        log.warning("%s has no [pitch] table: positions are relative to a default origin, so the "
                    "model's position input is meaningless; add [pitch] lat, lon, bearing_deg",
                    getattr(kit, "path", "the kit file"))
        return PitchOrigin()
    return PitchOrigin(lat_deg=pitch.lat, lon_deg=pitch.lon, x_bearing_deg=pitch.bearing_deg)


def processor_options(kit: Any, base: ProcessorConfig | None = None) -> dict[str, Any]:
    """FieldProcessor keyword arguments from a kit file: pitch origin, hop override, and the
    ``[load] history`` for ACWR risk bands."""
    from dataclasses import replace

    cfg = base or ProcessorConfig()
    hop = getattr(getattr(kit, "windows", None), "hop_s", None)
    if hop is not None and cfg.hop_s is None:
        cfg = replace(cfg, hop_s=hop)
    opts: dict[str, Any] = {"origin": pitch_origin(kit), "config": cfg}
    load = getattr(kit, "load", None)
    if load is not None and load.history is not None:
        from fusion_edge.runtime.risk import load_history

        opts["history"] = load_history(load.history)
        opts["load_metric"] = load.metric
    return opts


def _kit_error(kit: Any, key: tuple[str | int, ...], message: str) -> ConfigError:
    """A KitError pointing at the kit file's line of ``key`` (the file is read again to find it)."""
    from fusion_edge.runtime.kit import KitError, TomlLocator, format_key

    path = getattr(kit, "path", None)
    if path is None:
        return ConfigError(message)
    try:
        line = TomlLocator(Path(path).read_text(encoding="utf-8")).line_of(key)
    except (OSError, UnicodeDecodeError):
        line = None
    return KitError(Path(path), line, format_key(key), message)


def check_kit_windows(kit: Any, manifest: Mapping[str, Any]) -> None:
    """Refuse a kit whose ``[windows]`` disagrees with the bundle it runs.

    The window is the model's input length, fixed at export: a different ``window_s`` cannot be
    honoured, so it is an error rather than silently ignored. The hop may be anything up to the
    window.
    """
    windows = getattr(kit, "windows", None)
    if windows is None:
        return
    bundle_window = bundle_window_s(manifest)
    if bundle_window is None:
        return  # the bundle check names a bundle without an IMU input
    if windows.window_s is not None and abs(windows.window_s - bundle_window) > 1e-6:
        raise _kit_error(
            kit, ("windows", "window_s"),
            f"window {windows.window_s:g} s, but this bundle's model takes {bundle_window:g} s windows "
            f"(its input length, fixed at export); set window_s = {bundle_window:g} or remove it, or "
            "export a model trained on the window you want",
        )
    if windows.hop_s is not None and windows.hop_s > bundle_window + 1e-9:
        raise _kit_error(
            kit, ("windows", "hop_s"),
            f"hop {windows.hop_s:g} s is longer than this bundle's {bundle_window:g} s window: samples "
            f"between windows would never be scored; use a hop of at most {bundle_window:g} s",
        )


def _port_users(kit: Any) -> dict[str, list[str]]:
    """Declared GNSS port name -> the ids of the players whose fixes arrive on it."""
    users: dict[str, list[str]] = {}
    for p in kit.players:
        if p.gnss_port is not None:
            users.setdefault(p.gnss_port, []).append(p.id)
    return users


def _port_label(kit: Any, port_name: str, users: Mapping[str, list[str]]) -> str:
    ids = users.get(port_name, [])
    who = ", ".join(ids[:4]) + (f" and {len(ids) - 4} more" if len(ids) > 4 else "")
    return f"gnss_ports.{port_name} (player{'s' if len(ids) != 1 else ''} {who})"


def check_kit_ports(kit: Any) -> None:
    """Refuse, before the bundle loads, a GNSS port path that cannot be the receiver now.

    An absolute path that does not exist (the receiver is unplugged, or the path has a typo) or
    that is a folder or a regular file would otherwise fail only after the bundle has loaded,
    which on a TensorRT kit can take minutes. Other paths (``COM3``) are left to the open.
    """
    import os

    from fusion_edge.firmware_bridge.serial_gnss import not_a_device

    users = _port_users(kit)
    for port in kit.gnss_ports:
        if port.name not in users or not os.path.isabs(port.path):
            continue
        if not os.path.exists(port.path):
            problem = (f"{port.path} does not exist: plug in and power the receiver of "
                       f"{_port_label(kit, port.name, users)}, or fix the path (list ports with "
                       "`ls /dev/ttyUSB* /dev/ttyACM* /dev/serial/by-id/`), then re-run")
        elif (kind := not_a_device(port.path)) is not None:
            problem = (f"{port.path} is {kind}, not a serial port: give the receiver's device "
                       "of " + _port_label(kit, port.name, users) + ", e.g. "
                       "/dev/serial/by-id/usb-u-blox_...")
        else:
            continue
        raise _kit_error(kit, ("gnss_ports", port.name, "path"), problem)


def _player_calibration(kit: Any, index: int, player: Any) -> Any:
    """The player's IMU calibration, checked against the pod it is worn on.

    A calibration made with ``--pod ADDR`` or ``--pod-id ADDR`` stores the pod's address, and
    one for another pod is refused (pods swapped between vests would otherwise run with each
    other's corrections). One stored under another name (a CSV's) cannot be checked, which is
    said once per run.
    """
    from fusion_edge.calibration import load_calibration
    from fusion_edge.errors import CalibrationError
    from fusion_edge.firmware_bridge.ble import is_pod_address, normalize_address

    key = ("players", index, "calibration")
    pod = normalize_address(player.pod)
    try:
        cal = load_calibration(player.calibration, pod_id=pod if player.calibration.is_dir() else None)
    except CalibrationError as exc:
        raise _kit_error(kit, key, str(exc)) from None
    stored = normalize_address(cal.pod_id) if cal.pod_id.strip() else cal.pod_id
    if is_pod_address(stored):
        if stored != pod:
            raise _kit_error(
                kit, key,
                f"{player.calibration} is the calibration of pod {cal.pod_id}, but player "
                f"'{player.id}' wears pod {player.pod}: swap the calibration files (or the pods) "
                "back, or calibrate this pod",
            )
    else:
        log.warning("%s: player '%s': calibration %s is stored for pod '%s', not an address, so "
                    "it cannot be checked against pod %s; recalibrate with --pod-id %s to have "
                    "it checked", getattr(kit, "path", "kit file"), player.id, player.calibration,
                    cal.pod_id, player.pod, player.pod)
    return cal


def setups_from_kit(kit: Any) -> list[PlayerSetup]:
    """Players of a kit file as the processor needs them.

    Teams are numbered in the order they first appear in the kit file. The team named by
    ``[pitch] attacks_plus_x`` (default: the first team) attacks towards the pitch's +x, the
    others towards -x (see docs/kit-file.md).
    """
    from fusion_edge.firmware_bridge.ble import normalize_address

    ports = {p.name: p.path for p in kit.gnss_ports}
    teams: dict[str, int] = {}
    pitch = getattr(kit, "pitch", None)
    if pitch is not None and pitch.attacks_plus_x is not None:
        teams[pitch.attacks_plus_x] = 0
    out = []
    for i, p in enumerate(kit.players):
        if p.pod is None or p.gnss_port is None:
            missing = "pod" if p.pod is None else "gnss_port"
            raise _kit_error(
                kit, ("players", i),
                f"player '{p.id}' has no {missing}: a live session needs both a pod and a GNSS "
                f"port per player (the model's IMU and position inputs); add {missing}, or leave "
                "the player out of this session's kit file",
            )
        team = teams.setdefault(p.team, len(teams))
        cal = _player_calibration(kit, i, p) if p.calibration is not None else None
        out.append(PlayerSetup(
            player_id=p.id, pod=normalize_address(p.pod), gnss=(ports.get(p.gnss_port, p.gnss_port), p.gnss_tag),
            team=team, attack_dir=1.0 if team == 0 else -1.0, calibration=cal,
        ))
    return out


async def run_kit(
    kit: Any,
    model: BundleModel,
    *,
    seconds: float | None,
    sinks: Any = None,
    recorder: Any = None,
    processor_config: ProcessorConfig | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> tuple[FieldProcessor, RunSummary]:
    """Run the kit's real pods and receivers until ``seconds`` pass (or Ctrl-C)."""
    from fusion_edge.firmware_bridge.ble import BleTransport
    from fusion_edge.firmware_bridge.serial_gnss import SerialGnssConfig, SerialGnssTransport

    say = on_progress or (lambda _m: None)
    setups = setups_from_kit(kit)
    processor = FieldProcessor(setups, model, sinks=sinks, recorder=recorder,
                               **processor_options(kit, processor_config))
    loop = asyncio.get_running_loop()
    ports = sorted({s.gnss[0] for s in setups})
    bauds = {p.path: p.baud for p in kit.gnss_ports}


    transports = [
        SerialGnssTransport(
            p, SerialGnssConfig(baudrate=bauds.get(p, 115200)), on_reading=gnss_feeder(loop, processor, p)
        )
        for p in ports
    ]
    cpu0, t0 = time.process_time(), time.monotonic()
    names = {p.path: p.name for p in kit.gnss_ports}
    users = _port_users(kit)
    try:
        for t in transports:
            try:
                t.start()
            except TransportError as exc:
                where = _port_label(kit, names[t.port], users) if t.port in names else t.port
                raise TransportError(f"{getattr(kit, 'path', 'kit file')}: {where}: {exc}") from None
        ble = BleTransport(
            [s.pod for s in setups], sink=lambda _b: None, raw_sink=processor.on_pod_packet, decode=False
        )
        say(f"connecting {len(setups)} pods and {len(ports)} GNSS port(s)")
        interrupted = False
        try:
            async with stoppable_connect(say) as stopped, ble:
                say("streaming: Ctrl-C to stop" if seconds is None else f"streaming for {seconds:.0f} s")
                interrupted = await stream_for(seconds)
            interrupted = interrupted or bool(stopped)
        except (OSError, FileNotFoundError) as exc:
            raise TransportError(
                f"Bluetooth is not available ({exc}): plug in a BLE adapter and check 'bluetoothctl "
                "show', or try the kit with 'fusion-edge run --simulate 5v5'"
            ) from None
    finally:
        for t in transports:
            t.close()
    processor.finish()
    summary = summarize(processor, time.monotonic() - t0, time.process_time() - cpu0)
    # No --seconds: Ctrl-C while streaming is the normal end; while connecting it is not.
    summary.interrupted = interrupted and (seconds is not None or bool(stopped))
    return processor, summary


def replay_session(
    path: str | Path,
    model: BundleModel,
    *,
    session_id: int | None = None,
    sinks: Any = None,
    processor_config: ProcessorConfig | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> tuple[FieldProcessor, RunSummary]:
    """Rerun a recorded session through ``model``: same bytes, same receive times.

    ``on_progress`` hears which session of the file is replayed and whether it was closed; the
    summary's ``counters["recorded_s"]`` is the span of its pod and GNSS data.
    """
    from fusion_edge.runtime.recording import RecordKind, SessionReader

    with SessionReader(path) as reader:  # closed on every path: no -wal/-shm left behind
        sessions = reader.sessions()
        if not sessions:
            raise FusionEdgeError(f"{path} holds no session; record one with 'fusion-edge run --record'")
        info = sessions[-1] if session_id is None else next((s for s in sessions if s.id == session_id), None)
        if info is None:
            raise FusionEdgeError(f"{path} has no session {session_id}; it has {[s.id for s in sessions]}")
        if on_progress is not None:
            closed = ("closed" if info.ended_ns is not None
                      else "not closed: the recorder stopped (crash or power cut), replaying what it kept")
            of = f" of {len(sessions)} in the file" if len(sessions) > 1 else ""
            on_progress(f"replaying session {info.id}{of} ({closed})")
        setups, origin = setups_from_metadata(info.metadata)
        if processor_config is None and info.metadata.get("hop_s") is not None:
            processor_config = ProcessorConfig(hop_s=float(info.metadata["hop_s"]))  # the kit's override
        processor = FieldProcessor(setups, model, config=processor_config, origin=origin, sinks=sinks, replay=True)
        cpu0, t0 = time.process_time(), time.monotonic()
        first_ns = last_ns = None
        for rec in reader.records(session_id=info.id, kinds=(RecordKind.PACKET, RecordKind.GNSS)):
            if first_ns is None:
                first_ns = rec.host_time_ns
            last_ns = rec.host_time_ns
            if rec.kind == RecordKind.PACKET:
                processor.on_pod_packet(rec.source, rec.data, rec.host_time_ns)
            else:
                processor.on_gnss_bytes(rec.source, rec.data, rec.host_time_ns)
    processor.finish()
    summary = summarize(processor, time.monotonic() - t0, time.process_time() - cpu0)
    summary.counters["recorded_s"] = 0.0 if first_ns is None else (last_ns - first_ns) / 1e9
    summary.counters["session_id"] = info.id
    return processor, summary
