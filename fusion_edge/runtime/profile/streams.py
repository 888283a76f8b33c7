"""Raw input streams for profiling: what N players' pods and receivers would put on the wire.

A `RawStream` is the box's input with the radio taken out: every pod notification (encoded by
the pod firmware model, `SimulatedPod`) and every GNSS epoch (NMEA RMC with TAG blocks, encoded
by `SimulatedReceiver`), each with the time after the stream's start at which it would arrive.
It is made from a scenario (`generate_stream`) or read back from a recording
(`stream_from_recording`), and fed to a `FieldProcessor` as fast as possible (offline,
single-stream) or paced in real time (capacity search). Generating bytes ahead keeps the cost of
simulating pods out of what is measured, which is what lets one small box drive 100+ players:
in-process bumble pods would spend the box's CPU on the simulation itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from fusion_edge.errors import ConfigError, FusionEdgeError
from fusion_edge.firmware_bridge.scenario_fixes import PitchOrigin
from fusion_edge.runtime.field_kit import FieldProcessor, PlayerSetup

__all__ = ["RawStream", "generate_stream", "stream_from_recording", "PACKET", "GNSS"]

PACKET = 0  #: record kind: a pod notification
GNSS = 1  #: record kind: bytes read from a GNSS port

PLAYERS_PER_PORT = 6  # as the simulated kit: 6 receivers' RMC at 10 Hz fit one 115200 baud line
CONNECTION_INTERVAL_S = 0.02  # pods' notifications leave at BLE connection events, this often
ATT_MTU = 247  # what the kit negotiates with every pod (~12 9-axis samples a notification)


@dataclass
class RawStream:
    """Time-ordered raw records and the kit that produced them.

    Attributes:
        records: ``(t_ns, kind, source, data)`` with ``t_ns`` from the stream's start, ``kind``
            `PACKET` or `GNSS`, ``source`` the pod address or GNSS port.
        setups: the players, as the processor needs them.
        origin: the pitch.
        duration_s: time of the last record.
        scenario: name of the scenario (or the recording) it came from.
    """

    records: list[tuple[int, int, str, bytes]]
    setups: list[PlayerSetup]
    origin: PitchOrigin = field(default_factory=PitchOrigin)
    duration_s: float = 0.0
    scenario: str = ""

    @property
    def players(self) -> int:
        """Players in the stream."""
        return len(self.setups)

    def only_players(self, n: int) -> RawStream:
        """The same stream cut to its first ``n`` players (their pods and GNSS tags only)."""
        keep = self.setups[:n]
        pods = {s.pod for s in keep}
        ports = {s.gnss[0] for s in keep}
        recs = [
            r
            for r in self.records
            if (r[1] == PACKET and r[2] in pods) or (r[1] == GNSS and r[2] in ports)
        ]
        return RawStream(recs, list(keep), self.origin, self.duration_s, self.scenario)

    def processor(self, model: Any, **kwargs: Any) -> FieldProcessor:
        """A fresh processor for this stream's players."""
        return FieldProcessor(self.setups, model, origin=self.origin, **kwargs)


def _session_for(scenario: Any, seed: int, seconds: float) -> Any:
    from fusion_edge.scenarios import simulate_session

    # Whole 3 s action cycles, a little longer than asked so the end is never short.
    duration = 3.0 * math.ceil((seconds + 3.0) / 3.0)
    return simulate_session(
        scenario, seed=seed, duration_s=duration, lost_samples=False, gnss_faults=True
    )


def generate_stream(
    scenario: str,
    *,
    players: int | None = None,
    seconds: float = 60.0,
    seed: int = 1,
    scenario_file: str | Path | None = None,
    drift_ppm: float = 30.0,
) -> RawStream:
    """Encode ``players`` players of ``scenario`` for ``seconds`` into a raw stream.

    More players than the scenario has are made from further sessions of it (seeds ``seed+1``,
    ...), so 100 players of a 5v5 are ten 5v5 games played side by side.

    Raises:
        ConfigError: a non-positive duration or player count, or an unknown scenario.
    """
    from fusion_edge.firmware_bridge.scenario_fixes import ScenarioFixSource
    from fusion_edge.firmware_bridge.sim_gnss import SimulatedReceiver, SimulatedReceiverConfig
    from fusion_edge.firmware_bridge.sim_pod import PodClock, SimulatedPod
    from fusion_edge.scenarios import get_scenario
    from fusion_edge.scenarios.simulator import ArraySampleSource

    if seconds <= 0:
        raise ConfigError(f"stream length {seconds} s: give a positive duration")
    spec = get_scenario(scenario, scenario_file)
    n = spec.total_players if players is None else int(players)
    if n < 1:
        raise ConfigError(f"--players {n}: give at least one player")
    if n < spec.total_players:
        # Fewer players than the scenario has: simulate only them (one long single-player
        # stream for single-stream mode costs seconds, not minutes).
        from dataclasses import replace

        spec = replace(spec, teams=1, players=n)
    rng = np.random.default_rng(seed)
    origin = PitchOrigin()
    end_ns = int(seconds * 1e9)
    interval_ns = int(CONNECTION_INTERVAL_S * 1e9)
    records: list[tuple[int, int, str, bytes]] = []
    setups: list[PlayerSetup] = []
    fix_sources: dict[str, Any] = {}
    sessions = [
        _session_for(spec, seed + k, seconds) for k in range(math.ceil(n / spec.total_players))
    ]
    for i in range(n):
        session, j = sessions[i // spec.total_players], i % spec.total_players
        addr = "F0:ED:" + ":".join(f"{(i >> s) & 0xFF:02X}" for s in (24, 16, 8, 0))
        pod = SimulatedPod(
            addr,
            ArraySampleSource(session.imu[j], session.imu_rate_hz),
            clock=PodClock(
                offset_us=int(rng.integers(0, 10**9)),
                drift_ppm=float(rng.uniform(-1, 1) * drift_ppm),
            ),
            seed=seed * 1000 + i,
            host_clock=lambda: 0,
        )
        pod.att_mtu = ATT_MTU
        pod.start(host_ns=0)
        # Pods are not synchronized: each one's connection events fall at its own phase.
        for t in range(int(rng.integers(0, interval_ns)), end_ns, interval_ns):
            for data in pod.poll(host_ns=t):
                records.append((t, PACKET, addr, data))
        port = f"/profile/rx{i // PLAYERS_PER_PORT}"
        tag = f"P{i:03d}"
        fix_sources.setdefault(port, {})[tag] = ScenarioFixSource(session, j, origin)
        setups.append(
            PlayerSetup(
                player_id=f"{session.player_ids[j]}",
                pod=addr,
                gnss=(port, tag),
                team=int(session.team[j]),
                attack_dir=float(session.attack_dir[j]),
            )
        )
    start_utc = datetime(2024, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
    for k, (port, sources) in enumerate(fix_sources.items()):
        rx = SimulatedReceiver(
            sources,
            SimulatedReceiverConfig(tag_sources=True, sentences=("RMC",), start_utc=start_utc),
        )
        period_ns = int(1e9 / rx.config.rate_hz)
        phase = int(
            rng.integers(0, period_ns)
        )  # receivers' epochs reach the box at their own phase
        for e in range(int((end_ns - phase) // period_ns) + 1):
            data = rx.render_epoch(e)
            if data:
                records.append((phase + e * period_ns, GNSS, port, data))
        del k
    records.sort(key=lambda r: (r[0], r[1]))
    return RawStream(records, setups, origin, records[-1][0] / 1e9 if records else 0.0, spec.name)


def recorded_hop_s(path: str | Path, session_id: int | None = None) -> float | None:
    """The hop the recorded kit ran with when its kit file overrode the bundle's (else None).

    Replay applies it too, so a profile of a recording times the hops the kit really made.
    """
    from fusion_edge.runtime.recording import SessionReader

    with SessionReader(path) as reader:
        sessions = reader.sessions()
    if session_id is not None:
        sessions = [s for s in sessions if s.id == session_id]
    hop = sessions[-1].metadata.get("hop_s") if sessions else None
    return None if hop is None else float(hop)


def stream_from_recording(path: str | Path, session_id: int | None = None) -> RawStream:
    """A recorded session's packets and GNSS bytes, with times from its first record.

    Raises:
        FusionEdgeError: the file has no session, or not the one asked for.
    """
    from fusion_edge.runtime.field_kit import setups_from_metadata
    from fusion_edge.runtime.recording import RecordKind, SessionReader

    with SessionReader(path) as reader:
        sessions = reader.sessions()
        if not sessions:
            raise FusionEdgeError(
                f"{path} holds no session; record one with 'fusion-edge run --record'"
            )
        info = (
            sessions[-1]
            if session_id is None
            else next((s for s in sessions if s.id == session_id), None)
        )
        if info is None:
            raise FusionEdgeError(
                f"{path} has no session {session_id}; it has {[s.id for s in sessions]}"
            )
        setups, origin = setups_from_metadata(info.metadata)
        records: list[tuple[int, int, str, bytes]] = []
        t0: int | None = None
        for rec in reader.records(session_id=info.id, kinds=(RecordKind.PACKET, RecordKind.GNSS)):
            t0 = rec.host_time_ns if t0 is None else t0
            kind = PACKET if rec.kind == RecordKind.PACKET else GNSS
            records.append((rec.host_time_ns - t0, kind, rec.source, rec.data))
    if not records:
        raise FusionEdgeError(f"{path}: session {info.id} has no packets or GNSS bytes to replay")
    return RawStream(records, setups, origin, records[-1][0] / 1e9, f"recording {Path(path).name}")
