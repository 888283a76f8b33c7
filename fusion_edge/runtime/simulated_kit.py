"""A whole field kit on one machine: simulated pods over BLE and receivers over serial, the real
transports, and the box's processor. What `fusion-edge run --simulate` and the demo run.

Pods are in-process bumble GATT peripherals reached through bleak's ``backend=`` hook;
receivers write NMEA with TAG blocks into pseudo-terminals that pyserial opens like any port.
Both replay a simulated session in real time from one common start, so a player's IMU and GNSS
describe the same moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusion_edge.errors import ConfigError
from fusion_edge.runtime.bundle_model import BundleModel
from fusion_edge.runtime.field_kit import (
    FieldProcessor,
    PlayerSetup,
    ProcessorConfig,
    gnss_feeder,
    session_metadata,
)

log = logging.getLogger(__name__)

__all__ = [
    "SimulatedKitConfig",
    "SimulatedKit",
    "RunSummary",
    "run_simulated_kit",
    "summarize",
    "percentiles",
    "fault_counts",
]

PLAYERS_PER_PORT = 6  # RMC with a TAG block is ~95 bytes: 6 receivers at 10 Hz use half of 115200 baud


@dataclass(frozen=True)
class SimulatedKitConfig:
    """What to simulate and how long."""

    scenario: str = "5v5"
    seconds: float = 20.0
    seed: int = 1
    players: int | None = None  # default: every player of the scenario
    scenario_file: str | None = None
    drift_ppm: float = 30.0  # pod clocks drift up to this much
    gnss_faults: bool = True


@dataclass
class SimulatedKit:
    """Handles on a running simulated kit, for a fault script (tests, demos).

    Attributes:
        pods: The simulated pods (``inject(Fault.DISCONNECT)``, ``reboot()``...).
        receivers: The simulated GNSS receivers (``unplug()`` / ``replug()``); their ports are
            stable symlinks, like udev's /dev/serial/by-id names, so a replug is found again.
        processor: The box's processor (its stats and events so far).
        ble: The BleTransport (per-pod counters and link states).
        gnss: The SerialGnssTransports, one per port.
    """

    pods: list[Any]
    receivers: list[Any]
    processor: FieldProcessor
    ble: Any = None
    gnss: list[Any] = field(default_factory=list)


@dataclass
class RunSummary:
    """Everything a run reports (the stats file is its ``to_json``)."""

    players: int
    events: int
    scored: int
    latency_ms: dict[str, float]
    lost_samples: int
    escalated: int
    cpu_percent: float
    rss_mb: float
    seconds: float
    not_scored: dict[str, int] = field(default_factory=dict)
    backends: dict[str, int] = field(default_factory=dict)
    stages_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    counters: dict[str, Any] = field(default_factory=dict)
    faults: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False  # stopped by Ctrl-C / SIGTERM before its time was up

    def to_json(self) -> dict[str, Any]:
        """The stats file."""
        return dict(self.__dict__)


async def stream_for(seconds: float | None) -> bool:
    """Wait out a session (for ever when ``seconds`` is None); True when Ctrl-C or SIGTERM
    ended it early.

    Ctrl-C cancels ``asyncio.run``'s task; caught here, the caller closes its transports and
    finishes the processor as after a full session, so the events are flushed and the stats
    written instead of lost. SIGTERM (``systemctl stop``) is made to do the same. A second
    Ctrl-C still stops at once.
    """
    try:
        with sigterm_cancels():
            await asyncio.sleep(seconds if seconds is not None else float("inf"))
        return False
    except asyncio.CancelledError:
        _handled()
        return True


def _quiet_cancelled_answers(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if isinstance(context.get("exception"), asyncio.InvalidStateError):
        log.debug("answer to a cancelled request dropped: %s", context.get("message"))
        return
    loop.default_exception_handler(context)


@contextlib.contextmanager
def sigterm_cancels() -> Iterator[None]:
    """Inside, SIGTERM cancels the current task as Ctrl-C does (where the loop allows)."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    term = False
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
            term = True
    try:
        yield
    finally:
        if term:
            loop.remove_signal_handler(signal.SIGTERM)


def _handled() -> None:
    """A Ctrl-C / SIGTERM was caught: what follows (closing, finishing) must not be cancelled."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


@contextlib.asynccontextmanager
async def stoppable_connect(say: Callable[[str], None]) -> AsyncIterator[list[bool]]:
    """Around connecting and streaming: a Ctrl-C or SIGTERM while the pods are still connecting
    ends the session like one while streaming (the caller closes its transports and reports),
    instead of a bare exit with nothing written. Yields a list that holds True once stopped."""
    stopped: list[bool] = []
    try:
        with sigterm_cancels():
            yield stopped
    except asyncio.CancelledError:
        _handled()
        say("stopped while connecting: nothing was streamed")
        stopped.append(True)


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p90, p99, p99.9 and max of latencies in ms (empty -> zeros)."""
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0, "count": 0}
    a = np.asarray(values)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "p999": float(np.percentile(a, 99.9)),
        "max": float(a.max()),
        "count": int(a.size),
    }


class _RealTimeSource:
    """A session's samples for one pod, indexed by time since the kit's common start."""

    def __init__(self, samples: np.ndarray, rate_hz: float, start_s: float) -> None:
        self.samples = samples
        self.rate_hz = rate_hz
        self.start_s = start_s
        self._pos: int | None = None

    def read(self, n: int) -> np.ndarray:
        if self._pos is None:
            self._pos = max(0, int(round((time.monotonic() - self.start_s) * self.rate_hz)))
        idx = (self._pos + np.arange(n)) % self.samples.shape[0]
        self._pos += n
        return self.samples[idx]


class _RealTimeFixes:
    """A player's GNSS rows for the simulated receiver, on the same common start."""

    def __init__(self, inner: Any, offset_s: float) -> None:
        self.inner, self.offset_s = inner, offset_s

    def next_fix(self, t_s: float) -> Any:
        return self.inner.next_fix(t_s + self.offset_s)


def summarize(processor: FieldProcessor, wall_s: float, cpu_s: float) -> RunSummary:
    """Stats of a finished run."""
    st = processor.stats
    return RunSummary(
        players=len(processor.players),
        events=st.events,
        scored=st.scored,
        latency_ms=percentiles(st.latency_ms),
        lost_samples=processor.lost_samples(),
        escalated=st.escalated,
        cpu_percent=100.0 * cpu_s / max(wall_s, 1e-9),
        rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        seconds=wall_s,
        not_scored=dict(st.not_scored),
        backends=dict(st.backends),
        stages_ms={k: percentiles(v) for k, v in st.stage_ms.items()},
        counters=processor.counters(),
        faults=fault_counts(processor),
    )


def fault_counts(processor: FieldProcessor) -> dict[str, Any]:
    """What went wrong during a run and how often (the stats file's ``faults``)."""
    st = processor.stats
    chain = processor.model.chain.counters
    return {
        "lost_samples": processor.lost_samples(),
        "pod_reboots": int(sum(getattr(r.counters, "reboots", 0) for r in processor.readers.values())),
        "corrupt_packets": int(sum(getattr(r.counters, "corrupt", 0) for r in processor.readers.values())),
        "clock_resets": st.clock_resets,
        "pod_errors": st.pod_errors,
        "backend_switches": len(chain.switches),
        "backend_runtime_errors": chain.runtime_errors,
        "backend_timeouts": chain.timeouts,
        "backend_failures": st.backend_failures,
        "recording_errors": st.recording_errors,
        "recording_dropped": st.recording_dropped,
        "last_recording_error": st.last_recording_error,
    }


async def run_simulated_kit(
    config: SimulatedKitConfig,
    model: BundleModel,
    *,
    sinks: Any = None,
    recorder: Any = None,
    processor_config: ProcessorConfig | None = None,
    on_progress: Callable[[str], None] | None = None,
    faults: Callable[[SimulatedKit], Awaitable[None]] | None = None,
) -> tuple[FieldProcessor, RunSummary]:
    """Run a simulated session through the real transports and the box's processor.

    ``faults``, when given, is started once every pod streams, with the kit's handles, and
    cancelled when the session ends: a script that breaks things at chosen times.
    """
    from fusion_edge.firmware_bridge.backends.bumble_backend import SimulatedPodField
    from fusion_edge.firmware_bridge.ble import BleTransport
    from fusion_edge.firmware_bridge.scenario_fixes import PitchOrigin, ScenarioFixSource
    from fusion_edge.firmware_bridge.serial_gnss import SerialGnssConfig, SerialGnssTransport
    from fusion_edge.firmware_bridge.sim_gnss import SimulatedReceiver, SimulatedReceiverConfig
    from fusion_edge.firmware_bridge.sim_pod import PodClock, SimulatedPod
    from fusion_edge.scenarios import get_scenario, simulate_session

    say = on_progress or (lambda _m: None)
    scenario = get_scenario(config.scenario, config.scenario_file)
    n = scenario.total_players if config.players is None else int(config.players)
    if not 1 <= n <= scenario.total_players:
        raise ConfigError(f"--players {n}: scenario '{scenario.name}' has {scenario.total_players} players")
    if config.seconds <= 0:
        raise ConfigError(f"--seconds must be positive, got {config.seconds}")
    session = simulate_session(
        scenario, seed=config.seed, duration_s=max(config.seconds + 15.0, 30.0),
        lost_samples=False, gnss_faults=config.gnss_faults,
    )
    rng = np.random.default_rng(config.seed)
    origin = PitchOrigin()
    start = time.monotonic()
    lead_s = 0.0
    addresses = [f"F0:ED:00:00:{(i >> 8) & 0xFF:02X}:{i & 0xFF:02X}" for i in range(n)]
    pods = [
        SimulatedPod(
            addr,
            _RealTimeSource(session.imu_source(i).samples, session.imu_rate_hz, start),
            clock=PodClock(
                offset_us=int(rng.integers(0, 10**9)), drift_ppm=float(rng.uniform(-1, 1) * config.drift_ppm)
            ),
            seed=config.seed * 100 + i,
        )
        for i, addr in enumerate(addresses)
    ]
    receivers: list[Any] = []
    links = tempfile.mkdtemp(prefix="fusion-edge-gnss-")
    try:  # a setup that fails (a bad bundle, a recording that will not open) leaves no pty behind
        setups = []
        for g in range(0, n, PLAYERS_PER_PORT):
            names = {
                f"P{i:02d}": _RealTimeFixes(ScenarioFixSource(session, i, origin), lead_s)
                for i in range(g, min(n, g + PLAYERS_PER_PORT))
            }
            link = str(Path(links) / f"rx{g}")  # stable across unplug/replug, like /dev/serial/by-id
            rx = SimulatedReceiver(names, SimulatedReceiverConfig(tag_sources=True, sentences=("RMC",), link_path=link),
                                   name=f"rx{g}")
            receivers.append(rx)
        for rx in receivers:
            rx.start()
        ports = [rx.port for rx in receivers]
        for i in range(n):
            setups.append(PlayerSetup(
                player_id=session.player_ids[i], pod=addresses[i], gnss=(ports[i // PLAYERS_PER_PORT], f"P{i:02d}"),
                team=int(session.team[i]), attack_dir=float(session.attack_dir[i]),
            ))
        if recorder is not None and hasattr(recorder, "bind"):
            recorder.bind(session_metadata(setups, origin, {"scenario": scenario.name, "seed": config.seed}))
        processor = FieldProcessor(setups, model, config=processor_config, origin=origin, sinks=sinks,
                                   recorder=recorder)
        loop = asyncio.get_running_loop()
        transports = [
            SerialGnssTransport(p, SerialGnssConfig(), on_reading=gnss_feeder(loop, processor, p)) for p in ports
        ]
    except BaseException:
        for rx in receivers:
            rx.close()
        shutil.rmtree(links, ignore_errors=True)
        raise
    field_ = SimulatedPodField(pods)
    # A connect cut short by Ctrl-C leaves the simulated controller answering a command whose
    # future was cancelled; bumble then reports InvalidStateError from its callback. Harmless,
    # and not the operator's concern.
    loop.set_exception_handler(_quiet_cancelled_answers)
    cpu0 = time.process_time()
    t0 = time.monotonic()
    interrupted = False
    try:
        for t in transports:
            t.start()
        async with stoppable_connect(say) as stopped, field_:
            transport = BleTransport(
                addresses, backend=field_.backend, sink=lambda _block: None,
                raw_sink=processor.on_pod_packet, decode=False, connect_timeout=30.0,
            )
            say(f"connecting {n} pods over BLE (bumble) and {len(ports)} GNSS ports (pty)")
            async with transport:
                say(f"streaming for {config.seconds:.0f} s")
                script = None
                if faults is not None:
                    kit = SimulatedKit(pods, receivers, processor, transport, transports)
                    script = asyncio.ensure_future(faults(kit))
                try:
                    interrupted = await stream_for(config.seconds)
                finally:
                    if script is not None:
                        script.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await script
        interrupted = interrupted or bool(stopped)
    finally:
        for t in transports:
            t.close()
        for rx in receivers:
            rx.close()
        shutil.rmtree(links, ignore_errors=True)
    await asyncio.sleep(0)
    processor.finish()
    wall = time.monotonic() - t0
    summary = summarize(processor, wall, time.process_time() - cpu0)
    summary.interrupted = interrupted
    return processor, summary


