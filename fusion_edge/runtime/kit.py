"""The kit file: which players, pods, GNSS receivers, sinks and backends a session uses.

A kit is a TOML file (docs/kit-file.md, examples/kit.toml). :func:`load_kit` reads it into frozen
dataclasses and validates everything it can before the session starts, because a typo found at
the pitch with twenty players waiting is expensive. Every error names the file, the LINE and the
key: ``tomllib`` reports line and column for syntax errors only, so semantic errors are located
by :class:`TomlLocator`, which scans the text and maps key paths such as ``players[3].pod`` to the
line where that key is written.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_edge.errors import ConfigError, MissingDependencyError
from fusion_edge.firmware_bridge.ble import is_pod_address, pod_address_hint
from fusion_edge.runtime.backends import BackendKind
from fusion_edge.runtime.bundle_model import ESCALATION_BACKENDS
from fusion_edge.toml_lines import KeyPath, TomlLocator, format_key

__all__ = [
    "BackendName",
    "KitError",
    "TomlLocator",
    "PlayerConfig",
    "GnssPortConfig",
    "SseConfig",
    "SinksConfig",
    "EscalationConfig",
    "WindowOverrides",
    "RecordingConfig",
    "LoadConfig",
    "PitchConfig",
    "KitConfig",
    "load_kit",
    "parse_kit",
]

_BAUDS = (4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


# The backend names a kit may ask for are the runtime's own (one list, one place).
BackendName = BackendKind


class KitError(ConfigError):
    """A kit file is invalid; carries where.

    Attributes:
        path: The kit file.
        line: 1-based line of the offending key (None when it cannot be placed).
        key: Dotted key path, e.g. ``players[2].pod``.
    """

    def __init__(self, path: Path, line: int | None, key: str, message: str) -> None:
        self.path = path
        self.line = line
        self.key = key
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


@dataclass(frozen=True)
class PlayerConfig:
    """One player and their sensors.

    Attributes:
        id: Short id used in events (``p01``).
        name: Display name.
        team: Team label (``home``/``away``/a bib colour).
        pod: BLE address of the IMU pod (upper case), None without a pod.
        gnss_port: Name of the declared GNSS port the player's fixes come from, None without GNSS.
        gnss_tag: NMEA 4.x TAG-block source that marks this player's sentences on a shared port.
        calibration: The pod's IMU calibration file (absolute), or a folder holding
            ``<pod>.imu-calibration.json`` (what ``calibrate --out cal/`` writes); None to use
            the pod uncalibrated.
    """

    id: str
    name: str
    team: str
    pod: str | None = None
    gnss_port: str | None = None
    gnss_tag: str | None = None
    calibration: Path | None = None


@dataclass(frozen=True)
class GnssPortConfig:
    """A serial GNSS receiver: port name in the kit, device path and baud rate."""

    name: str
    path: str
    baud: int = 115200


@dataclass(frozen=True)
class SseConfig:
    """The live-events HTTP endpoint (host 127.0.0.1 keeps it on the box)."""

    host: str = "127.0.0.1"
    port: int = 8765


@dataclass(frozen=True)
class SinksConfig:
    """Where feedback events go."""

    jsonl: Path | None = None
    terminal: bool = True
    sse: SseConfig | None = None


@dataclass(frozen=True)
class EscalationConfig:
    """Falling back to the full model when the fast one is unsure.

    Attributes:
        enabled: Escalate at all.
        threshold: Top-class probability under which to escalate; None uses the bundle's.
        backend: Backend that runs the full model; None chooses by the kit (the bundle's
            PyTorch model on the GPU for a kit with a GPU backend, else the FP32 ONNX on
            onnxruntime's CPU: `fusion_edge.runtime.bundle_model.full_model_specs`).
    """

    enabled: bool = True
    threshold: float | None = None
    backend: BackendName | None = None


@dataclass(frozen=True)
class WindowOverrides:
    """Window and hop in seconds; None keeps the bundle's."""

    window_s: float | None = None
    hop_s: float | None = None


@dataclass(frozen=True)
class RecordingConfig:
    """Session recording (raw packets and sentences)."""

    enabled: bool = True
    path: Path = Path("recordings")


@dataclass(frozen=True)
class LoadConfig:
    """Daily-load history for ACWR and which metric is the daily load."""

    history: Path | None = None
    metric: str = "player_load"


@dataclass(frozen=True)
class PitchConfig:
    """Where the pitch is, so GNSS fixes become pitch coordinates (the model's position input).

    Attributes:
        lat: WGS84 latitude of the pitch centre, degrees.
        lon: WGS84 longitude of the pitch centre, degrees.
        bearing_deg: Bearing of the pitch's +x axis (along the touchline, towards one goal),
            degrees clockwise from true north.
        attacks_plus_x: Team label (as in ``[[players]] team``) attacking towards +x; the other
            team attacks towards -x. None: the first team in the file.
    """

    lat: float
    lon: float
    bearing_deg: float = 90.0
    attacks_plus_x: str | None = None


@dataclass(frozen=True)
class KitConfig:
    """A validated kit file."""

    path: Path
    name: str
    players: tuple[PlayerConfig, ...]
    gnss_ports: tuple[GnssPortConfig, ...] = ()
    sinks: SinksConfig = SinksConfig()
    backends: tuple[BackendName, ...] = (BackendName.ONNXRUNTIME_CPU,)
    escalation: EscalationConfig = EscalationConfig()
    windows: WindowOverrides = WindowOverrides()
    recording: RecordingConfig = RecordingConfig()
    load: LoadConfig = LoadConfig()
    pitch: PitchConfig | None = None

    def player(self, player_id: str) -> PlayerConfig:
        """The player with this id (KeyError if none)."""
        for p in self.players:
            if p.id == player_id:
                return p
        raise KeyError(player_id)

    def gnss_port(self, name: str) -> GnssPortConfig:
        """The GNSS port with this name (KeyError if none)."""
        for g in self.gnss_ports:
            if g.name == name:
                return g
        raise KeyError(name)


_LOAD_METRICS = ("player_load", "distance_m", "hsr_m", "sprint_m")
_ALLOWED: dict[str, tuple[str, ...]] = {
    "": ("name", "players", "gnss_ports", "sinks", "backend", "escalation", "windows",
         "recording", "load", "pitch"),
    "players": ("id", "name", "team", "pod", "gnss_port", "gnss_tag", "calibration"),
    "gnss_ports": ("path", "baud"),
    "sinks": ("jsonl", "terminal", "sse"),
    "sinks.sse": ("host", "port"),
    "backend": ("preference",),
    "escalation": ("enabled", "threshold", "backend"),
    "windows": ("window_s", "hop_s"),
    "recording": ("enabled", "path"),
    "load": ("history", "metric"),
    "pitch": ("lat", "lon", "bearing_deg", "attacks_plus_x"),
}


class _Checker:
    """Typed access to the parsed document with line-numbered errors."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.base = path.parent
        self.locator = TomlLocator(text)

    def fail(self, key: KeyPath, message: str) -> KitError:
        return KitError(self.path, self.locator.line_of(key), format_key(key), message)

    def table(self, doc: Mapping[str, Any], key: KeyPath, schema: str) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise self.fail(key, f"must be a table, got {type(doc).__name__}; write it as "
                                 f"[{format_key(key)}] with keys {', '.join(_ALLOWED[schema])}")
        allowed = _ALLOWED[schema]
        for name in doc:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise self.fail(key + (name,), f"unknown key; {hint}allowed here: "
                                               f"{', '.join(allowed)}")
        return doc

    def get(self, doc: Mapping[str, Any], key: KeyPath, kind: type | tuple[type, ...],
            default: Any = None, *, required: bool = False) -> Any:
        name = str(key[-1])
        if name not in doc:
            if required:
                raise self.fail(key, "is missing; add it")
            return default
        value = doc[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            value_ok = False
        else:
            value_ok = isinstance(value, kinds)
        if not value_ok:
            want = " or ".join(k.__name__ for k in kinds)
            raise self.fail(key, f"must be a {want}, got {type(value).__name__} {value!r}")
        return value

    def file(self, value: str, key: KeyPath, what: str, *, must_exist: bool,
             folder_ok: bool = False) -> Path:
        p = Path(value).expanduser()
        p = p if p.is_absolute() else self.base / p
        if must_exist and folder_ok and p.is_dir():
            return p
        if must_exist and p.is_dir():
            raise self.fail(key, f"{what} {p} is a folder; give the file in it")
        if must_exist and not p.is_file():
            raise self.fail(key, f"{what} {p} does not exist; fix the path (relative paths "
                                 f"are read from the kit file's folder) or remove the key")
        return p


def _parse_players(c: _Checker, doc: dict[str, Any], ports: dict[str, str]) -> tuple[PlayerConfig, ...]:
    raw = doc.get("players")
    if not isinstance(raw, list) or not raw:
        raise c.fail(("players",), "the kit has no players; add one [[players]] table per "
                                   "player with id, name, pod and/or gnss_port")
    players: list[PlayerConfig] = []
    seen_ids: dict[str, int] = {}
    seen_pods: dict[str, int] = {}
    seen_tags: dict[tuple[str, str | None], int] = {}
    for i, entry in enumerate(raw):
        k: KeyPath = ("players", i)
        c.table(entry, k, "players")
        pid = c.get(entry, k + ("id",), str, required=True)
        if not _ID.match(pid):
            raise c.fail(k + ("id",), f"'{pid}' is not a valid id: use 1-32 letters, digits, "
                                      "'_', '-' or '.' (it names the player in every event)")
        if pid in seen_ids:
            raise c.fail(k + ("id",), f"'{pid}' is already used by players[{seen_ids[pid]}]; "
                                      "give each player a distinct id")
        seen_ids[pid] = i
        pod = c.get(entry, k + ("pod",), str)
        if pod is not None:
            pod = pod.strip().upper()
            if not is_pod_address(pod):
                raise c.fail(k + ("pod",), f"'{entry['pod']}' is not a BLE address: "
                                           f"{pod_address_hint(pod)}")
            if pod in seen_pods:
                raise c.fail(k + ("pod",), f"pod {pod} is also given to "
                                           f"players[{seen_pods[pod]}]; each pod is worn by one "
                                           "player: check the address on the pod's label")
            seen_pods[pod] = i
        port = c.get(entry, k + ("gnss_port",), str)
        tag = c.get(entry, k + ("gnss_tag",), str)
        if tag is not None and port is None:
            raise c.fail(k + ("gnss_tag",), "a TAG source needs the port it arrives on: add "
                                            "gnss_port = \"<declared port>\"")
        if port is not None:
            if port not in ports:
                declared = ", ".join(sorted(ports)) or "none"
                owner = next((name for name, path in ports.items() if path == port), None)
                if owner is not None:  # the device path instead of the table's name
                    fix = (f"gnss_port names a [gnss_ports] table, not a device: '{port}' is "
                           f"{owner}'s path, so write gnss_port = \"{owner}\"")
                elif "/" in port:
                    fix = ("gnss_port names a [gnss_ports] table, not a device: declare e.g. "
                           f"[gnss_ports.rx9] with path = \"{port}\" and write gnss_port = \"rx9\"")
                else:
                    fix = f"add a [gnss_ports.{port}] table with path and baud"
                raise c.fail(k + ("gnss_port",), f"port '{port}' is not declared (declared: "
                                                 f"{declared}); {fix}")
            if (port, tag) in seen_tags:
                other = seen_tags[(port, tag)]
                raise c.fail(k + ("gnss_tag",) if tag else k + ("gnss_port",),
                             f"players[{other}] reads the same port '{port}'"
                             + (f" with TAG source '{tag}'" if tag else " without a TAG source")
                             + "; give players sharing a receiver distinct gnss_tag values")
            seen_tags[(port, tag)] = i
        if pod is None and port is None:
            raise c.fail(k, f"player '{pid}' has no sensor: give it a pod address, a "
                            "gnss_port, or both")
        calib = c.get(entry, k + ("calibration",), str)
        players.append(PlayerConfig(
            id=pid,
            name=c.get(entry, k + ("name",), str, pid),
            team=c.get(entry, k + ("team",), str, ""),
            pod=pod,
            gnss_port=port,
            gnss_tag=tag,
            calibration=(c.file(calib, k + ("calibration",), "calibration file",
                                must_exist=True, folder_ok=True) if calib is not None else None),
        ))
    return tuple(players)


def _parse_ports(c: _Checker, doc: dict[str, Any]) -> tuple[GnssPortConfig, ...]:
    raw = doc.get("gnss_ports", {})
    if not isinstance(raw, dict):
        raise c.fail(("gnss_ports",), "must be tables: write [gnss_ports.rx1] with path and baud")
    out = []
    for name, entry in raw.items():
        k: KeyPath = ("gnss_ports", name)
        c.table(entry, k, "gnss_ports")
        baud = c.get(entry, k + ("baud",), int, 115200)
        if baud not in _BAUDS:
            raise c.fail(k + ("baud",), f"{baud} is not a standard baud rate; use one of "
                                        f"{', '.join(map(str, _BAUDS))} (the receiver's setting)")
        path = c.get(entry, k + ("path",), str, required=True)
        twin = next((o for o in out if o.path == path), None)
        if twin is not None:
            raise c.fail(k + ("path",), f"'{path}' is also gnss_ports.{twin.name}'s path: one "
                                        "serial port can be opened once, so declare it once "
                                        f"and point every player on it at gnss_port = "
                                        f"\"{twin.name}\" (with distinct gnss_tag values)")
        out.append(GnssPortConfig(name, path, baud))
    return tuple(out)


def _backend(c: _Checker, value: Any, key: KeyPath) -> BackendName:
    try:
        return BackendName(value)
    except ValueError:
        names = [b.value for b in BackendName]
        close = difflib.get_close_matches(str(value), names, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise c.fail(key, f"unknown backend '{value}'; {hint}known: {', '.join(names)}") from None


def parse_kit(doc: dict[str, Any], text: str, path: Path) -> KitConfig:
    """Validate an already parsed kit document (``text`` is used to locate lines)."""
    c = _Checker(path, text)
    c.table(doc, (), "")
    ports = _parse_ports(c, doc)
    players = _parse_players(c, doc, {p.name: p.path for p in ports})

    sinks_doc = c.table(doc.get("sinks", {}), ("sinks",), "sinks")
    jsonl = c.get(sinks_doc, ("sinks", "jsonl"), (str, bool), None)
    if jsonl is True:
        raise c.fail(("sinks", "jsonl"), 'needs a file path, e.g. jsonl = "events.jsonl" '
                                         "(false or leaving it out writes no JSON lines)")
    sse = None
    if "sse" in sinks_doc:
        sse_doc = c.table(sinks_doc["sse"], ("sinks", "sse"), "sinks.sse")
        port = c.get(sse_doc, ("sinks", "sse", "port"), int, 8765)
        if not 0 <= port <= 65535:
            raise c.fail(("sinks", "sse", "port"), f"{port} is not a TCP port: use 0-65535 "
                                                   "(0 picks a free one)")
        sse = SseConfig(c.get(sse_doc, ("sinks", "sse", "host"), str, "127.0.0.1"), port)
    sinks = SinksConfig(
        jsonl=c.file(jsonl, ("sinks", "jsonl"), "", must_exist=False)
        if isinstance(jsonl, str) else None,
        terminal=c.get(sinks_doc, ("sinks", "terminal"), bool, True),
        sse=sse,
    )

    backend_doc = c.table(doc.get("backend", {}), ("backend",), "backend")
    pref = c.get(backend_doc, ("backend", "preference"), list, ["onnxruntime-cpu"])
    if not pref:
        raise c.fail(("backend", "preference"), "is empty; list at least one backend, "
                                                'e.g. ["onnxruntime-cpu"]')
    backends = tuple(_backend(c, v, ("backend", "preference", i)) for i, v in enumerate(pref))
    if len(set(backends)) != len(backends):
        raise c.fail(("backend", "preference"), "names a backend twice; list each once")

    esc_doc = c.table(doc.get("escalation", {}), ("escalation",), "escalation")
    threshold = c.get(esc_doc, ("escalation", "threshold"), (int, float), None)
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise c.fail(("escalation", "threshold"), f"{threshold} is not a probability between "
                                                  "0 and 1 (exclusive); e.g. 0.6")
    esc_backend = c.get(esc_doc, ("escalation", "backend"), str, None)
    esc_kind = None
    if esc_backend is not None:
        esc_kind = _backend(c, esc_backend, ("escalation", "backend"))
        if esc_kind.value not in ESCALATION_BACKENDS:
            raise c.fail(("escalation", "backend"), f"'{esc_backend}' cannot run the full-precision model "
                                                    f"(it runs compressed variants); choose one of "
                                                    f"{', '.join(ESCALATION_BACKENDS)}, or leave it out")
    escalation = EscalationConfig(
        enabled=c.get(esc_doc, ("escalation", "enabled"), bool, True),
        threshold=float(threshold) if threshold is not None else None,
        backend=esc_kind,
    )

    win_doc = c.table(doc.get("windows", {}), ("windows",), "windows")
    win: dict[str, float | None] = {}
    for name in ("window_s", "hop_s"):
        v = c.get(win_doc, ("windows", name), (int, float), None)
        if v is not None and not v > 0:
            raise c.fail(("windows", name), f"{v} must be a positive number of seconds")
        win[name] = float(v) if v is not None else None
    if win["window_s"] and win["hop_s"] and win["hop_s"] > win["window_s"]:
        raise c.fail(("windows", "hop_s"), f"hop {win['hop_s']} s is longer than the window "
                                           f"{win['window_s']} s: samples would be skipped")

    rec_doc = c.table(doc.get("recording", {}), ("recording",), "recording")
    recording = RecordingConfig(
        enabled=c.get(rec_doc, ("recording", "enabled"), bool, True),
        path=c.file(c.get(rec_doc, ("recording", "path"), str, "recordings"),
                    ("recording", "path"), "", must_exist=False),
    )

    load_doc = c.table(doc.get("load", {}), ("load",), "load")
    history = c.get(load_doc, ("load", "history"), str, None)
    metric = c.get(load_doc, ("load", "metric"), str, "player_load")
    if metric not in _LOAD_METRICS:
        raise c.fail(("load", "metric"), f"unknown load metric '{metric}'; use one of "
                                         f"{', '.join(_LOAD_METRICS)} (the history's unit)")
    load = LoadConfig(
        history=c.file(history, ("load", "history"), "load history", must_exist=True)
        if history is not None else None,
        metric=metric,
    )
    pitch = _parse_pitch(c, doc, {p.team for p in players})
    return KitConfig(
        path=path,
        name=c.get(doc, ("name",), str, path.stem),
        players=players,
        gnss_ports=ports,
        sinks=sinks,
        backends=backends,
        escalation=escalation,
        windows=WindowOverrides(**win),
        recording=recording,
        load=load,
        pitch=pitch,
    )


def _parse_pitch(c: _Checker, doc: dict[str, Any], teams: set[str]) -> PitchConfig | None:
    if "pitch" not in doc:
        return None
    k: KeyPath = ("pitch",)
    d = c.table(doc["pitch"], k, "pitch")
    lat = float(c.get(d, k + ("lat",), (int, float), required=True))
    lon = float(c.get(d, k + ("lon",), (int, float), required=True))
    if not -85.0 <= lat <= 85.0:
        raise c.fail(k + ("lat",), f"{lat} is not a latitude in -85..85 degrees: give the pitch "
                                   "centre's WGS84 latitude (e.g. 51.556)")
    if not -180.0 <= lon <= 180.0:
        raise c.fail(k + ("lon",), f"{lon} is not a longitude in -180..180 degrees: give the "
                                   "pitch centre's WGS84 longitude (e.g. -0.2796)")
    bearing = float(c.get(d, k + ("bearing_deg",), (int, float), 90.0))
    if not 0.0 <= bearing < 360.0:
        raise c.fail(k + ("bearing_deg",), f"{bearing} must be in 0..360 degrees clockwise from "
                                           "true north (the direction of the pitch's +x axis)")
    team = c.get(d, k + ("attacks_plus_x",), str, None)
    if team is not None and team not in teams:
        known = ", ".join(sorted(repr(t) for t in teams)) or "none"
        raise c.fail(k + ("attacks_plus_x",), f"team '{team}' is no player's team (teams in "
                                              f"this kit: {known}); use one of them")
    return PitchConfig(lat=lat, lon=lon, bearing_deg=bearing, attacks_plus_x=team)


def _toml() -> Any:
    """tomllib (Python 3.11+) or its backport tomli (JetPack 6 ships Python 3.10)."""
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:
        import tomli
    except ModuleNotFoundError:
        raise MissingDependencyError("tomli", "edge", "Reading a kit file on Python 3.10") from None
    return tomli


def load_kit(path: str | os.PathLike[str]) -> KitConfig:
    """Read and validate a kit file.

    Args:
        path: The TOML kit file; relative paths inside it are read from its folder.

    Returns:
        The validated kit.

    Raises:
        KitError: The file is missing, is not valid TOML (tomllib's line and column are kept),
            or a value is wrong (the message names the line and key and what to do).
    """
    p = Path(path).resolve()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KitError(p, None, "", "kit file does not exist; copy examples/kit.toml and "
                                    "edit it for your squad") from None
    except IsADirectoryError:
        raise KitError(p, None, "", "is a folder; give the kit file inside it (e.g. "
                                    f"{p / 'kit.toml'})") from None
    except UnicodeDecodeError as exc:
        raise KitError(p, None, "", f"is not a text file ({exc}); give the TOML kit file "
                                    "(start from examples/kit.toml)") from None
    except OSError as exc:
        raise KitError(p, None, "", f"cannot be read ({exc.strerror or exc}); check the path "
                                    "and its permissions") from None
    toml = _toml()
    try:
        doc = toml.loads(text)
    except toml.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise KitError(p, int(m.group(1)) if m else None, "",
                       f"not valid TOML ({exc}); fix the syntax there") from None
    return parse_kit(doc, text, p)
