"""Capacity search: the most players a box sustains with the hop's p99 latency under a deadline.

Each probe feeds N players' pre-encoded pod notifications and GNSS bytes (`streams.py`) to a
fresh `FieldProcessor` paced in real time: a record is handed over at its arrival time, with
that time as its receive time, so when the box falls behind, the lag shows in every later
hop's latency (measured, as on the kit, from the arrival of the sample that completed the hop
to its events leaving). A probe sustains N players when, after a warm-up, the hop latency's
p99 is under the deadline, the pacer never fell a deadline behind, and every hop was scored.

The search gallops (N doubles from ``start`` while probes pass) and then bisects between the
last pass and the first failure, down to ``resolution`` players, as LoadGen's server-mode
search for the highest sustainable QPS does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from fusion_edge.errors import ConfigError
from fusion_edge.runtime.field_kit import ProcessorConfig, window_config_from_manifest
from fusion_edge.runtime.profile.histogram import LatencyHistogram
from fusion_edge.runtime.profile.modes import check_deadline_and_hop
from fusion_edge.runtime.profile.stages import ResourceMeter, StageRecorder
from fusion_edge.runtime.profile.streams import PACKET, RawStream, generate_stream

__all__ = ["CapacityConfig", "CapacityPoint", "CapacityResult", "probe", "search_capacity"]


@dataclass(frozen=True)
class CapacityConfig:
    """How to search.

    Attributes:
        scenario: players are drawn from sessions of this scenario.
        deadline_ms: p99 of the hop latency must stay under this (None: the hop).
        seconds: measured seconds per probe (after ``warmup_s``).
        warmup_s: first seconds not measured: the first window fills, backends warm up.
        start: first player count tried.
        max_players: never try more.
        resolution: stop bisecting when the bracket is this narrow.
        seed: simulation seed.
        scenario_file: user scenarios TOML.
        hop_s: hop override (default: the bundle's); the default deadline follows it.
    """

    scenario: str = "11v11"
    deadline_ms: float | None = None
    seconds: float = 20.0
    warmup_s: float = 8.0
    start: int = 16
    max_players: int = 512
    resolution: int = 8
    seed: int = 1
    scenario_file: str | None = None
    hop_s: float | None = None

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ConfigError(
                f"--seconds {self.seconds}: give the measured seconds per probe (> 0; several "
                "hops, e.g. the default 20)"
            )
        if not self.warmup_s >= 0:
            raise ConfigError(f"--warmup {self.warmup_s}: give 0 or more seconds")
        if self.max_players < 1:
            raise ConfigError(f"--max-players {self.max_players}: give at least 1")
        if not 1 <= self.start <= self.max_players:
            raise ConfigError(
                f"--start {self.start}: give a player count from 1 to --max-players "
                f"({self.max_players})"
            )
        if self.resolution < 1:
            raise ConfigError(f"--resolution {self.resolution}: give at least 1 player")
        check_deadline_and_hop(self.deadline_ms, self.hop_s)


@dataclass
class CapacityPoint:
    """One probe."""

    players: int
    sustained: bool
    reason: str
    hops: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    max_lag_ms: float
    cpu_percent: float
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class CapacityResult:
    """The search's answer and every probe it made."""

    max_players: int
    deadline_ms: float
    backend: str
    scenario: str
    points: list[CapacityPoint]
    capped: bool = False  # the box sustained max_players: the real capacity is higher

    def to_json(self) -> dict[str, Any]:
        """The ``capacity`` section of report.json."""
        return {
            "max_players": self.max_players,
            "deadline_ms": self.deadline_ms,
            "backend": self.backend,
            "scenario": self.scenario,
            "capped": self.capped,
            "points": [asdict(p) for p in sorted(self.points, key=lambda p: p.players)],
        }


def probe(
    stream: RawStream,
    model: Any,
    *,
    deadline_ms: float,
    warmup_s: float,
    hop_s: float | None = None,
) -> CapacityPoint:
    """Feed ``stream`` paced in real time; judge whether the box kept up."""
    rec = StageRecorder(end_to_end_from_processor=False)
    hops = LatencyHistogram()
    warm_ns = int(warmup_s * 1e9)
    lag = LatencyHistogram()

    def timer(name: str, ms: float) -> None:
        if name == "end_to_end":
            if time.monotonic_ns() - base >= warm_ns:
                hops.record_ms(ms)
            return
        rec(name, ms)

    processor = stream.processor(model, config=ProcessorConfig(hop_s=hop_s, stage_timer=timer))
    meter = ResourceMeter()
    base = time.monotonic_ns() + 50_000_000  # a little lead so the first records are not late
    max_lag_ns = 0
    abort_ns = int(deadline_ms * 1e6)
    reason = ""
    for t, kind, source, data in stream.records:
        due = base + t
        now = time.monotonic_ns()
        if due > now + 200_000:
            time.sleep((due - now) / 1e9)
        elif now - due > max_lag_ns:
            max_lag_ns = now - due
            if max_lag_ns > 3 * abort_ns and now - base > warm_ns:
                reason = f"fell {max_lag_ns / 1e6:.0f} ms behind real time"
                break  # hopeless: no need to wait for the end of the probe
        if kind == PACKET:
            processor.on_pod_packet(source, data, due)
        else:
            processor.on_gnss_bytes(source, data, due)
    usage = meter.stop()
    lag.record_ns(max_lag_ns)
    expected = max(1, int((stream.duration_s - warmup_s) / processor.window_config.hop_s) - 2)
    p50, p90, p99 = hops.percentiles_ms([50, 90, 99])
    if not reason:
        if hops.count < expected * 0.8:
            reason = f"scored {hops.count} of ~{expected} hops"
        elif p99 > deadline_ms:
            reason = f"p99 {p99:.0f} ms over the {deadline_ms:.0f} ms deadline"
        elif max_lag_ns / 1e6 > deadline_ms:
            reason = f"fell {max_lag_ns / 1e6:.0f} ms behind real time"
    return CapacityPoint(
        players=stream.players,
        sustained=not reason,
        reason=reason,
        hops=hops.count,
        p50_ms=round(p50, 3),
        p90_ms=round(p90, 3),
        p99_ms=round(p99, 3),
        max_ms=round(hops.max_ms, 3),
        max_lag_ms=round(max_lag_ns / 1e6, 3),
        cpu_percent=round(usage.cpu_percent, 1),
        stages={k: h.summary() for k, h in rec.ordered().items()},
    )


def search_capacity(
    config: CapacityConfig,
    model: Any,
    *,
    on_progress: Callable[[str], None] | None = None,
) -> CapacityResult:
    """Gallop then bisect over player counts (see the module docstring)."""
    say = on_progress or (lambda _m: None)
    window = window_config_from_manifest(model.manifest, config.hop_s, getattr(model, "root", "the bundle"))
    deadline = config.deadline_ms or window.hop_s * 1e3
    seconds = config.warmup_s + config.seconds
    if config.seconds < 2 * window.hop_s or seconds < window.window_s + 2 * window.hop_s:
        # Too short for any hop to be measured: every probe would fail and the answer be 0.
        need = max(2 * window.hop_s, window.window_s + 2 * window.hop_s - config.warmup_s)
        raise ConfigError(
            f"--seconds {config.seconds:g} with --warmup {config.warmup_s:g} is too short to "
            f"measure hops of {window.hop_s:g} s after the {window.window_s:g} s window fills; "
            f"give --seconds {math.ceil(need)} or more"
        )
    cache: dict[int, RawStream] = {}
    points: dict[int, CapacityPoint] = {}

    def stream_for(n: int) -> RawStream:
        # One stream of the largest count asked so far serves every smaller probe (cut).
        big = max(cache) if cache else 0
        if n > big:
            size = min(config.max_players, max(n, 2 * big))
            say(f"encoding {size} players' pod packets and GNSS for {seconds:.0f} s")
            cache.clear()
            cache[size] = generate_stream(
                config.scenario,
                players=size,
                seconds=seconds,
                seed=config.seed,
                scenario_file=config.scenario_file,
            )
            big = size
        return cache[big].only_players(n)

    def run(n: int) -> bool:
        if n not in points:
            point = probe(
                stream_for(n),
                model,
                deadline_ms=deadline,
                warmup_s=config.warmup_s,
                hop_s=config.hop_s,
            )
            points[n] = point
            say(
                f"{n:4d} players: p50 {point.p50_ms:7.1f} ms  p99 {point.p99_ms:7.1f} ms  "
                f"{'ok' if point.sustained else 'FAIL: ' + point.reason}"
            )
        return points[n].sustained

    lo, hi = 0, None
    n = config.start
    while True:
        if run(n):
            lo = n
            if n >= config.max_players:
                break
            n = min(2 * n, config.max_players)
        else:
            hi = n
            break
    if hi is not None and lo == 0:
        # Even the first count failed: gallop down.
        n = config.start // 2
        while n >= 1 and not run(n):
            hi, n = n, n // 2
        lo = max(n, 0)
    while hi is not None and hi - lo > config.resolution:
        mid = (lo + hi) // 2
        if run(mid):
            lo = mid
        else:
            hi = mid
    backend = f"{model.chain.name}/{model.chain.active.precision}"
    return CapacityResult(
        lo,
        deadline,
        backend,
        config.scenario,
        list(points.values()),
        capped=hi is None and lo >= config.max_players,
    )
