"""The box's data path, from raw bytes to feedback events, driven by receive times alone.

`FieldProcessor` takes raw pod notifications and raw GNSS frames with their host receive times
(live from the transports, or from a recording) and does everything after the wire:

    pod bytes -> PacketReader -> clock map -> IMU calibration -> streaming DSP --+
    GNSS bytes -> GnssStreamReader -> pitch frame -> GNSS cleaning ---------------+
                                                                                 v
        per-player windows (SquadAssembler) -> one batch per hop -> BundleModel (chain +
        escalation) -> FeedbackEvent per player -> sinks and the recording

Because it never reads the wall clock to decide anything, replaying a recording gives the
same events every time. A hop is scored as soon as every live player's streams have reached
the hop's end (or ``max_wait_s`` after it for stragglers); its latency is measured from the
arrival of the sample that completed it to the events leaving.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from fusion_edge.calibration.clock import ClockAlignment
from fusion_edge.errors import BackendError, BundleError, CalibrationError, FusionEdgeError
from fusion_edge.firmware_bridge.gnss_messages import GnssFix, MessageKind
from fusion_edge.firmware_bridge.gnss_reader import BadFramePolicy, GnssStreamReader
from fusion_edge.firmware_bridge.reader import BadPacketPolicy, PacketReader
from fusion_edge.firmware_bridge.scenario_fixes import PitchOrigin
from fusion_edge.runtime.bundle_model import BundleModel
from fusion_edge.runtime.events import (
    EventStatus,
    FeedbackEvent,
    predictions_from_outputs,
    task_specs,
)
from fusion_edge.runtime.load import PlayerLoadTracker
from fusion_edge.runtime.risk import DailyLoadHistory, assess_risk
from fusion_edge.runtime.streaming import (
    GnssStreamConfig,
    GnssStreamPipeline,
    ImuStreamConfig,
    ImuStreamPipeline,
)
from fusion_edge.runtime.team_context import POSITION_CHANNELS
from fusion_edge.runtime.windows import SquadAssembler, WindowConfig

__all__ = [
    "PlayerSetup",
    "ProcessorConfig",
    "ProcessorStats",
    "FieldProcessor",
    "KIT_IMU_CHANNELS",
    "check_bundle_inputs",
    "window_config_from_manifest",
    "pitch_xy",
    "session_metadata",
    "setups_from_metadata",
]

log = logging.getLogger(__name__)
_EARTH_RADIUS_M = 6_371_000.0
# What a pod's packets give the processor, in this order (PacketReader's SI columns).
KIT_IMU_CHANNELS = ("ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz")


def pitch_xy(origin: PitchOrigin, lat: float, lon: float) -> tuple[float, float]:
    """Pitch coordinates (m) of a WGS84 point: the inverse of ``PitchOrigin.to_lat_lon``."""
    north = math.radians(lat - origin.lat_deg) * _EARTH_RADIUS_M
    east = math.radians(lon - origin.lon_deg) * _EARTH_RADIUS_M * math.cos(math.radians(origin.lat_deg))
    b = math.radians(origin.x_bearing_deg)
    return east * math.sin(b) + north * math.cos(b), -east * math.cos(b) + north * math.sin(b)


@dataclass(frozen=True)
class PlayerSetup:
    """One player of the kit as the processor needs it."""

    player_id: str
    pod: str  # normalized BLE address
    gnss: tuple[str, str | None]  # (port, TAG source or None)
    team: int = 0
    attack_dir: float = 1.0
    calibration: Any = None  # an ImuCalibration, applied to the pod's SI samples


@dataclass(frozen=True)
class ProcessorConfig:
    """How the processor cuts hops.

    Attributes:
        window: Full windowing config; None derives it from the bundle manifest (window length
            and rates must match what the model was trained on, see
            :func:`window_config_from_manifest`).
        hop_s: Hop override (the kit's ``[windows] hop_s``); None keeps the manifest's.
        max_wait_s: After a hop end, how long to wait for a late pod before scoring.
        record_events: Also store every event in the session recording.
    """

    window: WindowConfig | None = None
    hop_s: float | None = None
    max_wait_s: float = 0.3
    record_events: bool = True
    # Called with (stage, ms) for every timing, finer stages included (transport, decoding,
    # clock_calibration, dsp, gnss, queueing): what `fusion-edge profile` listens to. None: off.
    stage_timer: Callable[[str, float], None] | None = field(default=None, compare=False, repr=False)


def check_bundle_inputs(manifest: Mapping[str, Any], where: Any = "the bundle") -> None:
    """Refuse a bundle whose inputs are not what the kit's sensors give.

    The kit gives an ``imu`` input with the pods' nine channels (:data:`KIT_IMU_CHANNELS`) and a
    ``position`` input with the team-context features
    (:data:`~fusion_edge.runtime.team_context.POSITION_CHANNELS`).

    Raises:
        BundleError: naming the input and what differs.
    """
    wanted = {"imu": KIT_IMU_CHANNELS, "position": POSITION_CHANNELS}
    got = {i["name"]: tuple(i["channels"]) for i in manifest["inputs"]}
    for name, channels in got.items():
        if name not in wanted:
            raise BundleError(
                f"{where}: the model wants an input '{name}' that this kit does not have (it gives "
                f"{sorted(wanted)}); export a bundle trained on pod IMU and GNSS data"
            )
        if channels != wanted[name]:
            raise BundleError(
                f"{where}: input '{name}' has channels {list(channels)} but the kit's sensors give "
                f"{list(wanted[name])}; this bundle was trained on other sensors: export one from a "
                "dataset with the pods' channels"
            )
    for name in wanted:
        if name not in got:
            raise BundleError(
                f"{where}: the model has no '{name}' input (it has {sorted(got)}); the field kit "
                "needs a bundle that takes both the pods' IMU and the GNSS position"
            )


def bundle_window_s(manifest: Mapping[str, Any]) -> float | None:
    """The bundle's window in seconds, from its IMU input (None without one)."""
    imu = next((i for i in manifest.get("inputs", ()) if i.get("name") == "imu"), None)
    if imu is None:
        return None
    return float(imu["window_samples"]) / float(imu["sample_rate_hz"])


def window_config_from_manifest(
    manifest: Mapping[str, Any], hop_s: float | None = None, where: Any = "the bundle"
) -> WindowConfig:
    """The box's windowing from the bundle: window length, model rates and hop.

    Raises:
        BundleError: the bundle's inputs are not the kit's (`check_bundle_inputs`).
    """
    check_bundle_inputs(manifest, where)
    inputs = {i["name"]: i for i in manifest["inputs"]}
    imu, pos = inputs["imu"], inputs["position"]
    return WindowConfig(
        window_s=bundle_window_s(manifest),
        hop_s=float(hop_s if hop_s is not None else imu["hop_seconds"]),
        imu_rate_hz=float(imu["sample_rate_hz"]),
        gnss_rate_hz=float(pos["sample_rate_hz"]),
    )


@dataclass
class _Player:
    setup: PlayerSetup
    imu: ImuStreamPipeline
    gnss: GnssStreamPipeline
    load: PlayerLoadTracker
    imu_to: int | None = None  # host ns the IMU stream has reached
    gnss_to: int | None = None


@dataclass
class ProcessorStats:
    """What the processor counted."""

    hops: int = 0
    events: int = 0
    scored: int = 0
    escalated: int = 0
    backend_failures: int = 0  # hops no backend could score (players get not-scored events)
    clock_resets: int = 0  # a device clock jumped back within one boot: its mapping restarted
    pod_errors: int = 0  # packets whose processing failed (the other players went on)
    recording_errors: int = 0  # records the recorder refused with an error (disk full...)
    recording_dropped: int = 0  # records the recorder dropped (its queue was full)
    last_recording_error: str | None = None
    latency_ms: list[float] = field(default_factory=list)
    stage_ms: dict[str, list[float]] = field(default_factory=dict)
    not_scored: dict[str, int] = field(default_factory=dict)
    backends: dict[str, int] = field(default_factory=dict)


class FieldProcessor:
    """Raw bytes in, feedback events out (see module docstring)."""

    def __init__(
        self,
        players: Sequence[PlayerSetup],
        model: BundleModel,
        *,
        config: ProcessorConfig | None = None,
        origin: PitchOrigin | None = None,
        sinks: Any = None,
        recorder: Any = None,
        clock: ClockAlignment | None = None,
        policy: BadPacketPolicy = BadPacketPolicy.LOG,
        replay: bool = False,
        history: Mapping[str, DailyLoadHistory] | None = None,
        today: dt.date | None = None,
        load_metric: str = "player_load",
    ) -> None:
        self.config = config or ProcessorConfig()
        # Replaying, receive times come from the recording: latency is then measured from when
        # the completing record was read, i.e. the processing time alone.
        self.replay = replay
        self.model = model
        self.origin = origin or PitchOrigin()
        self.sinks = sinks
        self.recorder = recorder
        self.clock = clock or ClockAlignment()
        # ACWR: the kit's daily-load history and today's running load (docs/feedback.md).
        self.history = dict(history or {})
        self.today = today or dt.date.today()
        self.load_metric = load_metric
        check_bundle_inputs(model.manifest, getattr(model, "root", "the bundle"))
        pre = model.manifest["preprocessing"]
        imu_cfg = ImuStreamConfig.from_preprocessing(pre["imu"])
        gnss_cfg = GnssStreamConfig.from_preprocessing(pre["position"])
        win = self.config.window or window_config_from_manifest(model.manifest, self.config.hop_s)
        if self.config.window is not None and self.config.hop_s is not None:
            win = replace(win, hop_s=self.config.hop_s)
        self.window_config = win
        self.assembler = SquadAssembler(win, imu_channels=len(KIT_IMU_CHANNELS))
        self.players: dict[str, _Player] = {}
        self.by_pod: dict[str, _Player] = {}
        self.by_gnss: dict[tuple[str, str | None], _Player] = {}
        self.readers: dict[str, PacketReader] = {}
        self.gnss_readers: dict[str, GnssStreamReader] = {}
        for s in players:
            p = _Player(s, ImuStreamPipeline(imu_cfg, channels=len(KIT_IMU_CHANNELS)), GnssStreamPipeline(gnss_cfg),
                        PlayerLoadTracker())
            self.players[s.player_id] = p
            self.by_pod[s.pod] = p
            self.by_gnss[s.gnss] = p
            self.readers[s.pod] = PacketReader(s.pod, policy=policy)
            self.assembler.add_player(s.player_id, team=s.team, attack_dir=s.attack_dir)
        self._tasks = task_specs(model.tasks)  # parsed once, not per player per hop
        self.stats = ProcessorStats()
        self.events: list[FeedbackEvent] = []
        self._next_end: int | None = None
        self._hop = win.hop_ns
        self._window = win.window_ns
        self._wait = int(self.config.max_wait_s * 1e9)
        self._stale = int(win.stale_s * 1e9)

    # ------------------------------------------------------------------ inputs

    def on_pod_packet(self, pod: str, data: bytes, host_ns: int) -> None:
        """One BLE notification of a pod.

        A packet that cannot be processed (a clock that jumped, a broken block) is logged and
        counted; it never stops the other players.
        """
        if self.recorder is not None:
            self._record(self.recorder.record_packet, pod, host_ns, data)
        p = self.by_pod.get(pod)
        if p is None:
            return
        timer = self.config.stage_timer
        if timer is not None and not self.replay:
            timer("transport", (time.monotonic_ns() - host_ns) / 1e6)
        t0 = time.perf_counter()
        t_decoded = t0
        clock_s = 0.0
        try:
            blocks = self.readers[pod].feed(data, host_ns)
            t_decoded = time.perf_counter()
            for block in blocks:
                clock_s += self._pod_block(pod, p, block)
        except FusionEdgeError as exc:
            self.stats.pod_errors += 1
            log.warning("pod %s: packet at %d not processed: %s", pod, host_ns, exc)
        total_s = time.perf_counter() - t0
        self._stage("decode_dsp", total_s * 1e3)
        if timer is not None:
            timer("decoding", (t_decoded - t0) * 1e3)
            timer("clock_calibration", clock_s * 1e3)
            timer("dsp", (total_s - (t_decoded - t0) - clock_s) * 1e3)
        self._advance(time.monotonic_ns() if self.replay else host_ns)

    def _pod_block(self, pod: str, p: _Player, block: Any) -> float:
        """One decoded block into the player's streams; returns the seconds spent on the clock."""
        tc = time.perf_counter()
        try:
            self.clock.observe(pod, block.t0_us, block.host_time_ns, block.boot_id)
        except CalibrationError as exc:
            # The device clock went back inside one boot (a bad SET_TIME, a firmware bug): the
            # old mapping is useless for what follows, so start a new one from this packet.
            # The stream pipeline keeps host times increasing across the step.
            self.stats.clock_resets += 1
            log.warning("pod %s: %s; restarting its clock mapping", pod, exc)
            self.clock.reset(pod)
            self.clock.observe(pod, block.t0_us, block.host_time_ns, block.boot_id)
        if p.setup.calibration is not None:
            block = _calibrated(block, p.setup.calibration)
        clock_s = time.perf_counter() - tc
        values, times = p.imu.push_block(block, _DeviceClock(self.clock, pod))
        if len(times):
            self.assembler.push_imu(p.setup.player_id, values, times)
            p.imu_to = int(times[-1])
        acc = block.samples[:, :3]
        p.load.update_imu(int(self.clock.to_host_ns(pod, block.t0_us, block.boot_id)), acc)
        return clock_s

    def _record(self, write: Any, *args: Any) -> None:
        """Hand one record to the recorder; a failing recorder is counted, never fatal."""
        try:
            ok = write(*args)
        except Exception as exc:  # a full disk, a removed card: scoring goes on regardless
            self.stats.recording_errors += 1
            if self.stats.last_recording_error is None:
                log.error("recording failed (%s); the kit keeps scoring, records are counted as lost", exc)
            self.stats.last_recording_error = str(exc)
            return
        if ok is False:
            self.stats.recording_dropped += 1

    def on_gnss_bytes(self, port: str, data: bytes, host_ns: int) -> None:
        """Bytes (one or more frames, or a fragment) read from a GNSS port."""
        if self.recorder is not None:
            self._record(self.recorder.record_gnss, port, host_ns, data)
        timer = self.config.stage_timer
        if timer is not None and not self.replay:
            timer("transport_gnss", (time.monotonic_ns() - host_ns) / 1e6)
        t_gnss = time.perf_counter()
        reader = self.gnss_readers.get(port)
        if reader is None:
            reader = self.gnss_readers[port] = GnssStreamReader(policy=BadFramePolicy.LOG)
        for reading in reader.feed(data, host_ns):
            msg = reading.message
            if not isinstance(msg, GnssFix) or msg.kind not in (MessageKind.RMC, MessageKind.NAV_PVT):
                continue  # one fix per epoch: RMC (NMEA) or NAV-PVT (UBX) carry position and speed
            p = self.by_gnss.get((port, msg.source)) or self.by_gnss.get((port, None))
            if p is None:
                continue
            t = self._gnss_time(port, msg, reading.host_time_ns)
            if msg.lat_deg is None or msg.lon_deg is None:
                row = np.full((1, 4), np.nan)
            else:
                x, y = pitch_xy(self.origin, msg.lat_deg, msg.lon_deg)
                course = math.radians(self.origin.x_bearing_deg - (msg.course_deg or 0.0))
                row = np.array([[x, y, msg.speed_mps or 0.0, course]])
            track, times = p.gnss.push(row, np.array([t], dtype=np.int64))
            if len(times):
                self.assembler.push_gnss(p.setup.player_id, track, times)
                p.gnss_to = int(times[-1])
                for tt, r in zip(times, track, strict=True):
                    if np.isfinite(r).all():
                        p.load.update_gnss(int(tt), float(r[0]), float(r[1]), float(np.hypot(r[2], r[3])))
        if timer is not None:
            timer("gnss", (time.perf_counter() - t_gnss) * 1e3)
        self._advance(time.monotonic_ns() if self.replay else host_ns)

    def _gnss_time(self, port: str, fix: GnssFix, host_ns: int) -> int:
        """Host time of a fix: its UTC through the receiver's clock map when it has one."""
        key = (port, fix.source)
        if fix.utc is None:
            return int(host_ns)
        self.clock.observe_utc(key, fix.utc, host_ns)
        return int(self.clock.to_host_ns(key, int(fix.utc.timestamp() * 1e6)))

    # ------------------------------------------------------------------ hops

    def _advance(self, arrival_ns: int) -> None:
        """Score every hop whose data is complete (or whose wait ran out)."""
        live = [p for p in self.players.values() if p.imu_to is not None]
        if not live:
            return
        if self._next_end is None:
            start = min(p.imu_to for p in live)
            self._next_end = start + self._window
            self.assembler.origin_ns = self._next_end
        while True:
            end = self._next_end
            newest = max(p.imu_to for p in live)
            waiting = [
                p for p in live
                if newest - p.imu_to < self._stale and (p.imu_to < end or (p.gnss_to or 0) < end - self._hop // 10)
            ]
            if waiting and newest < end + self._wait:
                return
            if newest < end:
                return
            self._score(end, arrival_ns)
            self._next_end = end + self._hop

    def _score(self, end: int, arrival_ns: int) -> None:
        if self.config.stage_timer is not None:
            # From the arrival of the sample that completed the hop to the start of its scoring.
            self.config.stage_timer("queueing", max(0.0, (time.monotonic_ns() - arrival_ns) / 1e6))
        t0 = time.perf_counter()
        squad = self.assembler.tick(end)
        t1 = time.perf_counter()
        events: list[FeedbackEvent] = []
        stage = {"windows": (t1 - t0) * 1e3}
        inf = None
        if squad.player_ids:
            try:
                inf = self.model.infer(squad.inputs)
            except BackendError as exc:
                # Every backend of the chain failed: say so per player instead of going silent.
                self.stats.backend_failures += 1
                log.error("hop at %d not scored: %s", end, exc)
                for pid in squad.player_ids:
                    events.append(self._event(pid, end, {}, "none", status=EventStatus.NOT_SCORED,
                                              status_reason=f"no backend answered: {exc}"))
                    self.stats.not_scored["backend_failed"] = self.stats.not_scored.get("backend_failed", 0) + 1
        if inf is not None:
            stage.update(inf.stage_ms)
            t2 = time.perf_counter()
            for i, pid in enumerate(squad.player_ids):
                one = {k: v[i] for k, v in inf.outputs.items()}
                preds = predictions_from_outputs(one, self._tasks)
                quality = preds.get("quality", {}).get("value")
                escalated = bool(inf.escalated[i])
                events.append(self._event(
                    pid, end, preds, inf.full_backend if escalated else inf.backend,
                    quality=quality, escalated=escalated, reason=inf.reasons[i] if escalated else None,
                    status_reason=None if escalated or inf.reasons[i] is None else inf.reasons[i],
                ))
                self.stats.backends[events[-1].backend] = self.stats.backends.get(events[-1].backend, 0) + 1
            stage["postprocess"] = (time.perf_counter() - t2) * 1e3
        for pid, status in squad.skipped().items():
            events.append(self._event(pid, end, {}, "none", status=EventStatus.NOT_SCORED, status_reason=status.value))
            self.stats.not_scored[status.value] = self.stats.not_scored.get(status.value, 0) + 1
        # The event leaves when it is handed to the sinks (they never block): stamp it then.
        latency = (time.monotonic_ns() - arrival_ns) / 1e6
        stamped = [_with_latency(ev, stage, latency) for ev in events]
        t3 = time.perf_counter()
        if self.sinks is not None and stamped:
            self.sinks.publish_many(stamped)
        if self.recorder is not None and self.config.record_events:
            for ev in stamped:
                self._record(self.recorder.record_event, "feedback", ev.to_dict(), end)
        stage["sinks"] = (time.perf_counter() - t3) * 1e3
        self.events.extend(stamped)
        self.stats.hops += 1
        self.stats.events += len(stamped)
        self.stats.scored += len(squad.player_ids) if inf is not None else 0
        self.stats.escalated += int(sum(ev.escalated for ev in stamped))
        if inf is not None:
            self.stats.latency_ms.append(latency)
            if self.config.stage_timer is not None:
                self.config.stage_timer("end_to_end", latency)
        for k, v in stage.items():
            self._stage(k, v)

    def _event(self, pid: str, end: int, preds: Mapping[str, Any], backend: str, *, quality: float | None = None,
               escalated: bool = False, reason: str | None = None, status: EventStatus = EventStatus.SCORED,
               status_reason: str | None = None) -> FeedbackEvent:
        load = self.players[pid].load.snapshot()
        return FeedbackEvent(
            player=pid, window_end_ns=end, predictions=preds, backend=backend, quality=quality,
            load=load, risk=self._risk(pid, load), escalated=escalated, escalation_reason=reason,
            status=status, status_reason=status_reason if status is EventStatus.NOT_SCORED else None,
        )

    def _risk(self, pid: str, load: Any) -> Any:
        """ACWR band from the player's history and today's running load (None without history)."""
        hist = self.history.get(pid)
        if hist is None:
            return None
        today = float(getattr(load, self.load_metric, 0.0) or 0.0)
        return assess_risk(hist, self.today, today if math.isfinite(today) and today > 0 else 0.0)

    def _stage(self, name: str, ms: float) -> None:
        self.stats.stage_ms.setdefault(name, []).append(ms)
        if self.config.stage_timer is not None:
            self.config.stage_timer(name, ms)

    # ------------------------------------------------------------------ end

    def finish(self) -> None:
        """Score what is complete; called when the stream ends."""
        live = [p for p in self.players.values() if p.imu_to is not None]
        if live and self._next_end is not None:
            newest = max(p.imu_to for p in live)
            while self._next_end <= newest:
                self._score(self._next_end, time.monotonic_ns())
                self._next_end += self._hop

    def lost_samples(self) -> int:
        """Samples the pods sent that never arrived (from sequence gaps)."""
        return int(sum(r.counters.lost_samples for r in self.readers.values()))

    def counters(self) -> dict[str, Any]:
        """Per-pod and per-port counters."""
        return {
            "pods": {a: r.counters.__dict__ if hasattr(r.counters, "__dict__") else str(r.counters)
                     for a, r in self.readers.items()},
            "gnss": {p: r.counters.__dict__ if hasattr(r.counters, "__dict__") else str(r.counters)
                     for p, r in self.gnss_readers.items()},
            "backend_chain": self.model.chain.counters.to_json(),
        }


class _DeviceClock:
    """Adapter: ``to_host_ns(device_us, boot_id)`` for one pod of a ClockAlignment."""

    def __init__(self, clock: ClockAlignment, device: str) -> None:
        self.clock, self.device = clock, device

    def to_host_ns(self, device_time_us: int, boot_id: int | None = None) -> int:
        return int(self.clock.to_host_ns(self.device, device_time_us, boot_id))


def _calibrated(block: Any, cal: Any) -> Any:
    return replace(block, samples=np.asarray(cal.apply(block.samples), dtype=np.float32))


def _with_latency(ev: FeedbackEvent, stage: Mapping[str, float], latency: float) -> FeedbackEvent:
    return replace(ev, stage_latency_ms=dict(stage), latency_ms=latency)


def session_metadata(setups: Sequence[PlayerSetup], origin: PitchOrigin, extra: dict | None = None) -> dict:
    """What a recording must hold to be replayed: players, pitch, and how it was made."""
    players = []
    for s in setups:
        d = asdict(s)
        d["gnss"] = list(s.gnss)
        d["calibration"] = s.calibration.to_dict() if s.calibration is not None else None
        players.append(d)
    import datetime as dt

    # The session's date, for 'fusion-edge recording info': the recorder's own clock is the
    # host's monotonic one, which says nothing about the day.
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")  # noqa: UP017 (py3.10)
    return {"format": "fusion-edge-session", "version": 1, "players": players,
            "origin": asdict(origin), "started_utc": started, **(extra or {})}


def setups_from_metadata(meta: dict) -> tuple[list[PlayerSetup], PitchOrigin]:
    """Inverse of `session_metadata`."""
    from fusion_edge.calibration import ImuCalibration

    if meta.get("metadata_lost"):
        raise FusionEdgeError(
            "this session's kit description (its players) was lost to the damage the recording "
            "was salvaged from; its raw packets and sentences are in the file, but it cannot be "
            "replayed without knowing whose they are: pick another session with --session-id "
            "('fusion-edge recording info FILE' lists them)"
        )
    if meta.get("format") != "fusion-edge-session":
        raise FusionEdgeError(
            "this recording has no kit description (it was not written by 'fusion-edge run'); "
            "it cannot be replayed"
        )
    setups = []
    for d in meta["players"]:
        cal = ImuCalibration.from_dict(d["calibration"]) if d.get("calibration") else None
        setups.append(PlayerSetup(d["player_id"], d["pod"], (d["gnss"][0], d["gnss"][1]), int(d["team"]),
                                  float(d["attack_dir"]), cal))
    return setups, PitchOrigin(**meta["origin"])


def gnss_feeder(loop: Any, processor: FieldProcessor, port: str) -> Any:
    """A serial transport's reading callback (its reader thread) that hands the frame bytes to
    ``processor`` on ``loop``, where pod packets are processed too."""

    def on_reading(reading: Any) -> None:
        loop.call_soon_threadsafe(processor.on_gnss_bytes, port, reading.raw, reading.host_time_ns)

    return on_reading
