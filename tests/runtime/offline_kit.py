""":class:`OfflineKit` drives a :class:`~fusion_edge.runtime.field_kit.FieldProcessor` with
simulated pods (``SimulatedPod.poll``) and simulated GNSS receivers (``render_epoch``) on a fake
host clock, without radios, ptys or sleeping: the same bytes a live kit would receive, in
seconds of CPU, deterministic. Fault tests use it to stop a pod, unplug a receiver, jump a
clock, and so on, at exact times.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any


class OfflineKit:
    """Simulated pods and receivers feeding a FieldProcessor on a fake host clock.

    Args:
        model: A BundleModel.
        players: How many players of a 5v5 session (one pod each; GNSS on ports of
            ``per_port`` players, TAG-multiplexed).
        per_port: Players per GNSS port.
        seed: Session seed.
        processor_kwargs: Passed to FieldProcessor (recorder, sinks, config, history...).
    """

    T0 = 1_000_000_000_000  # host ns at the kit's start

    def __init__(self, model: Any, *, players: int = 4, per_port: int = 2, seed: int = 1,
                 **processor_kwargs: Any) -> None:
        import numpy as np

        from fusion_edge.firmware_bridge.scenario_fixes import PitchOrigin, ScenarioFixSource
        from fusion_edge.firmware_bridge.sim_gnss import SimulatedReceiver, SimulatedReceiverConfig
        from fusion_edge.firmware_bridge.sim_pod import PodClock, SimulatedPod
        from fusion_edge.runtime.field_kit import FieldProcessor, PlayerSetup
        from fusion_edge.scenarios import get_scenario, simulate_session

        session = simulate_session(get_scenario("5v5"), seed=seed, duration_s=60.0, lost_samples=False,
                                   gnss_faults=False)
        self.now = self.T0
        rng = np.random.default_rng(seed)
        self.origin = processor_kwargs.pop("origin", None) or PitchOrigin()
        self.addresses = [f"F0:ED:00:00:00:{i:02X}" for i in range(players)]
        self.pods = []
        for i, addr in enumerate(self.addresses):
            pod = SimulatedPod(addr, session.imu_source(i), seed=seed * 100 + i, host_clock=lambda: self.now,
                               clock=PodClock(offset_us=int(rng.integers(0, 10**9)),
                                              drift_ppm=float(rng.uniform(-30, 30))))
            pod.att_mtu = 247
            pod.start(self.now)
            self.pods.append(pod)
        start_utc = datetime(2024, 6, 1, 10, 0, 0, tzinfo=timezone.utc)
        self.ports: list[str] = []
        self.receivers = []
        setups = []
        for g in range(0, players, per_port):
            names = {
                f"P{i:02d}": ScenarioFixSource(session, i, self.origin)
                for i in range(g, min(players, g + per_port))
            }
            self.receivers.append(SimulatedReceiver(
                names, SimulatedReceiverConfig(tag_sources=True, sentences=("RMC",), start_utc=start_utc)))
            self.ports.append(f"/dev/ttySIM{g // per_port}")
        for i in range(players):
            setups.append(PlayerSetup(
                player_id=session.player_ids[i], pod=addr_of(self.addresses[i]),
                gnss=(self.ports[i // per_port], f"P{i:02d}"), team=int(session.team[i]),
                attack_dir=float(session.attack_dir[i]),
            ))
        self.setups = setups
        self.player_ids = [s.player_id for s in setups]
        self.unplugged: set[int] = set()  # receiver indices
        self.silent: set[int] = set()  # pod indices whose notifications do not arrive
        self._epoch = 0
        self.processor = FieldProcessor(setups, model, origin=self.origin, **processor_kwargs)

    def run(self, seconds: float, *, step_ms: int = 10, at: dict[float, Callable[[], None]] | None = None) -> None:
        """Advance the fake clock by ``seconds``, delivering what pods and receivers send.

        ``at`` maps seconds since the kit's start to actions (faults) done at that time.
        """
        actions = sorted((at or {}).items())
        end = self.now + int(seconds * 1e9)
        while self.now < end:
            self.now += step_ms * 1_000_000
            while actions and self.now - self.T0 >= actions[0][0] * 1e9:
                actions.pop(0)[1]()
            for i, pod in enumerate(self.pods):
                packets = pod.poll(self.now)
                if i in self.silent:
                    continue
                for p in packets:
                    self.processor.on_pod_packet(addr_of(pod.address), p, self.now)
            while self.T0 + (self._epoch + 1) * 100_000_000 <= self.now:
                self._epoch += 1
                for r, rx in enumerate(self.receivers):
                    data = rx.render_epoch(self._epoch)
                    if r not in self.unplugged and data:
                        # A few ms of serial latency after the epoch.
                        t_ns = self.T0 + self._epoch * 100_000_000 + 3_000_000
                        self.processor.on_gnss_bytes(self.ports[r], data, t_ns)

    def finish(self) -> None:
        """End of stream."""
        self.processor.finish()

    def events_of(self, player: int, after_s: float = 0.0) -> list[Any]:
        """Events of one player whose window ended after ``after_s`` since the start."""
        pid = self.player_ids[player]
        cut = self.T0 + int(after_s * 1e9)
        return [e for e in self.processor.events if e.player == pid and e.window_end_ns > cut]


def addr_of(address: str) -> str:
    """The normalized BLE address the processor keys pods by."""
    from fusion_edge.firmware_bridge.ble import normalize_address

    return normalize_address(address)
