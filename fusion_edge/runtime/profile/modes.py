"""The four ways to load the box, after MLPerf LoadGen's scenarios.

- **single-stream**: one player; the next hop's bytes are fed only when the last hop's event
  has left. A query's latency runs from its first byte to its event (all stages, no queueing).
- **multi-stream**: the whole squad, live: simulated pods over BLE (bumble through bleak) and
  receivers over ptys (pyserial), the real transports (`run_simulated_kit`). A query is a hop.
- **server**: player windows arrive at a target rate (Poisson, or bursty), the way a box
  serving several pitches sees them; one worker batches what is queued. Latency includes the
  wait in the queue; windows that wait longer than ``max_queue_s`` are shed and counted.
- **offline**: a whole session (recorded, or generated) as fast as possible: throughput, as for
  post-session analysis.

Every mode returns a `ProfileResult` of stage histograms, an end-to-end histogram, counts and
resource usage; `report.py` turns it into report.json and report.md.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from fusion_edge.errors import ConfigError
from fusion_edge.runtime.field_kit import FieldProcessor, ProcessorConfig
from fusion_edge.runtime.profile.histogram import LatencyHistogram
from fusion_edge.runtime.profile.stages import ResourceMeter, ResourceUsage, StageRecorder
from fusion_edge.runtime.profile.streams import (
    PACKET,
    RawStream,
    generate_stream,
    recorded_hop_s,
    stream_from_recording,
)

__all__ = [
    "ProfileMode",
    "ProfileConfig",
    "ProfileResult",
    "run_profile",
    "MIN_QUERIES",
    "trust_warnings",
]


class ProfileMode(str, Enum):
    """LoadGen-style scenarios (see the module docstring)."""

    SINGLE_STREAM = "single-stream"
    MULTI_STREAM = "multi-stream"
    SERVER = "server"
    OFFLINE = "offline"


#: Queries each mode aims for by default, after LoadGen's rule of thumb: a p99 needs about
#: 1,000 samples to be worth quoting (p99.9: 10,000). Live modes are bounded by wall time.
MIN_QUERIES = {"p99": 1000, "p999": 10000}

_DEFAULT_SECONDS = {
    ProfileMode.SINGLE_STREAM: None,  # by queries: 1,024 hops of one player
    ProfileMode.MULTI_STREAM: 60.0,
    ProfileMode.SERVER: 60.0,
    ProfileMode.OFFLINE: 120.0,  # of generated session, when no recording is given
}


@dataclass(frozen=True)
class ProfileConfig:
    """What to profile and how.

    Attributes:
        scenario: catalogue (or ``scenario_file``) scenario name.
        mode: the LoadGen-style mode.
        duration_s: run length (live modes) or session length (generated offline); None: the
            mode's default.
        queries: single-stream hops to time (default 1,024); refused in the other modes.
        players: players to simulate (default: the scenario's squad); refused in single-stream,
            which always profiles one player.
        seed: simulation seed.
        scenario_file: a TOML file of user scenarios, same schema as the catalogue.
        session: a recording to replay instead of simulating (offline, single-stream, server).
        rate: server mode: target windows per second (default: squad / hop, the kit's own rate).
        burst: server mode: mean arrivals per burst (1: plain Poisson). ``rate`` and ``burst``
            are refused in the other modes.
        max_queue_s: server mode: shed windows that waited longer than this.
        deadline_ms: a query later than this counts as late (default: the hop).
        sinks_dir: write feedback events as JSON lines here (the sinks stage); None: no sinks.
            The file is written as ``events.jsonl.partial`` and becomes ``events.jsonl`` only
            when the run succeeds: a failed run leaves the previous run's events as they were.
        hop_s: hop override (default: the bundle's).
    """

    scenario: str = "5v5"
    mode: ProfileMode = ProfileMode.MULTI_STREAM
    duration_s: float | None = None
    queries: int | None = None
    players: int | None = None
    seed: int = 1
    scenario_file: str | None = None
    session: str | None = None
    rate: float | None = None
    burst: float = 1.0
    max_queue_s: float = 2.0
    deadline_ms: float | None = None
    sinks_dir: str | None = None
    hop_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", ProfileMode(self.mode))
        if self.duration_s is not None and self.duration_s <= 0:
            raise ConfigError(f"--duration {self.duration_s}: give a positive number of seconds")
        if self.queries is not None and self.queries < 1:
            raise ConfigError(f"--queries {self.queries}: give at least 1")
        if self.rate is not None and self.rate <= 0:
            raise ConfigError(f"--rate {self.rate}: give a positive number of windows per second")
        if self.burst < 1:
            raise ConfigError(f"--burst {self.burst}: give the mean windows per burst, 1 or more")
        if self.players is not None and self.players < 1:
            raise ConfigError(f"--players {self.players}: give at least one player")
        check_deadline_and_hop(self.deadline_ms, self.hop_s)
        # Options a mode has no use for are refused, not silently ignored.
        if self.queries is not None and self.mode is not ProfileMode.SINGLE_STREAM:
            raise ConfigError(
                f"--queries is for --mode single-stream; {self.mode.value} runs for a time: "
                "give --duration instead"
            )
        if self.mode is not ProfileMode.SERVER and (self.rate is not None or self.burst != 1.0):
            raise ConfigError(
                f"--rate and --burst are for --mode server; drop them for {self.mode.value}"
            )
        if self.players is not None and self.mode is ProfileMode.SINGLE_STREAM:
            raise ConfigError(
                "single-stream always profiles one player; drop --players, or use "
                "--mode multi-stream, server or offline for more"
            )
        if self.mode is ProfileMode.MULTI_STREAM and self.session is not None:
            raise ConfigError(
                "multi-stream runs the live simulated kit; to profile a recording use "
                "--mode offline, single-stream or server with --session"
            )


@dataclass
class ProfileResult:
    """What a profile run measured (report.py writes it out)."""

    config: ProfileConfig
    scenario: str
    players: int
    backend: str
    stages: dict[str, LatencyHistogram]
    end_to_end: LatencyHistogram
    queries: int
    windows: int
    usage: ResourceUsage
    drops: dict[str, int] = field(default_factory=dict)
    deadline_ms: float = 1000.0
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def throughput(self) -> dict[str, float]:
        """Windows (one player, one hop) and queries per second of wall time."""
        wall = max(self.usage.wall_s, 1e-9)
        return {
            "windows_per_s": round(self.windows / wall, 3),
            "queries_per_s": round(self.queries / wall, 3),
        }


def check_deadline_and_hop(deadline_ms: float | None, hop_s: float | None) -> None:
    """Refuse a deadline or hop override that is not positive (None: the bundle's hop)."""
    if deadline_ms is not None and not deadline_ms > 0:
        raise ConfigError(
            f"--deadline-ms {deadline_ms}: give a positive number of milliseconds "
            "(or leave it out: the deadline is then the hop)"
        )
    if hop_s is not None and not hop_s > 0:
        raise ConfigError(
            f"--hop {hop_s}: give a positive number of seconds (or leave it out: the bundle's hop)"
        )


def trust_warnings(queries: int) -> list[str]:
    """Why a run's tail percentiles should not be trusted, if they should not."""
    out = []
    if queries < MIN_QUERIES["p99"]:
        out.append(
            f"only {queries} queries: p99 needs about {MIN_QUERIES['p99']} to be trusted "
            "(run longer: --duration, or --queries in single-stream)"
        )
    elif queries < MIN_QUERIES["p999"]:
        out.append(f"{queries} queries: p99.9 needs about {MIN_QUERIES['p999']} to be trusted")
    return out


EVENTS_FILE = "events.jsonl"


def _sinks(config: ProfileConfig) -> tuple[Any, Path | None]:
    """The run's sink hub and the partial events file it writes (None, None: no sinks)."""
    if config.sinks_dir is None:
        return None, None
    from fusion_edge.runtime.sinks import JsonLinesSink, SinkHub

    partial = Path(config.sinks_dir) / (EVENTS_FILE + ".partial")
    try:
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)  # one run, one events file
        return SinkHub([JsonLinesSink(partial)]), partial
    except OSError as exc:
        raise ConfigError(
            f"cannot write the events into {partial.parent} ({exc.strerror or exc}); give an "
            "--out folder that can be written, or --no-sinks"
        ) from None


#: What to do when a mode measured nothing, by mode.
_NOTHING_MEASURED = {
    ProfileMode.SINGLE_STREAM: (
        "the input gave too few hops (the first {warmup} are warm-up, not measured); leave "
        "--duration out, give a longer --session, or profile a short recording with "
        "--mode offline"
    ),
    ProfileMode.MULTI_STREAM: "give a --duration of several hops beyond the first window",
    ProfileMode.SERVER: "give a longer --duration or a higher --rate",
    ProfileMode.OFFLINE: (
        "the session is shorter than the bundle's window plus a hop; give a longer "
        "--duration or --session"
    ),
}


def _window(model: Any, config: ProfileConfig) -> Any:
    """The processor's windowing for this bundle (window and hop from its manifest)."""
    from fusion_edge.runtime.field_kit import window_config_from_manifest

    return window_config_from_manifest(model.manifest, config.hop_s, getattr(model, "root", "the bundle"))


def _hop_s(model: Any, config: ProfileConfig) -> float:
    return float(_window(model, config).hop_s)


def _processor_config(config: ProfileConfig, timer: Any) -> ProcessorConfig:
    return ProcessorConfig(hop_s=config.hop_s, stage_timer=timer)


def run_profile(
    config: ProfileConfig, model: Any, *, on_progress: Callable[[str], None] | None = None
) -> ProfileResult:
    """Run one profile of ``model`` (a BundleModel) in ``config.mode``."""
    say = on_progress or (lambda _m: None)
    if config.session is not None and config.hop_s is None:
        hop = recorded_hop_s(config.session)
        if hop is not None:  # the recorded kit overrode the bundle's hop: time what it ran
            config = replace(config, hop_s=hop)
            say(f"hop {hop:g} s, as the recorded kit ran (--hop overrides it)")
    runner = {
        ProfileMode.SINGLE_STREAM: _single_stream,
        ProfileMode.MULTI_STREAM: _multi_stream,
        ProfileMode.SERVER: _server,
        ProfileMode.OFFLINE: _offline,
    }[config.mode]
    created = _missing_folders(config.sinks_dir)
    hub, partial = _sinks(config)
    ok = False
    try:
        result = runner(config, model, hub, say)
        if not result.end_to_end.count:
            raise ConfigError(
                f"{config.mode.value}: nothing was measured (0 queries): "
                + _NOTHING_MEASURED[config.mode].format(warmup=WARMUP_QUERIES)
            )
        ok = True
    finally:
        if hub is not None:
            hub.close()
        if partial is not None:
            if ok:
                partial.replace(partial.with_name(EVENTS_FILE))
            else:
                # A failed run leaves the folder as it found it: the last good events stay.
                partial.unlink(missing_ok=True)
                for folder in created:
                    _remove_if_empty(folder)
    result.warnings = trust_warnings(result.queries) + result.warnings
    return result


def _missing_folders(folder: str | None) -> list[Path]:
    """The folders of ``folder``'s path that do not exist yet, deepest first."""
    out: list[Path] = []
    p = Path(folder) if folder is not None else None
    while p is not None and not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (or already gone): leave it


def _backend_name(model: Any) -> str:
    return f"{model.chain.name}/{model.chain.active.precision}"


def _stream(
    config: ProfileConfig, players: int | None, seconds: float, say: Callable[[str], None]
) -> RawStream:
    if config.session is not None:
        stream = stream_from_recording(config.session)
        say(f"replaying {config.session}: {stream.players} players, {stream.duration_s:.0f} s")
        if players is not None and players > stream.players:
            raise ConfigError(
                f"--players {players}: the recording {config.session} has only "
                f"{stream.players}; give at most {stream.players}, or leave --players out"
            )
        return stream if players is None else stream.only_players(players)
    say(
        f"encoding {players or 'all'} player(s) of '{config.scenario}' for {seconds:.0f} s "
        "(pods + GNSS)"
    )
    return generate_stream(
        config.scenario,
        players=players,
        seconds=seconds,
        seed=config.seed,
        scenario_file=config.scenario_file,
    )


def _feed(processor: FieldProcessor, record: tuple[int, int, str, bytes], host_ns: int) -> None:
    if record[1] == PACKET:
        processor.on_pod_packet(record[2], record[3], host_ns)
    else:
        processor.on_gnss_bytes(record[2], record[3], host_ns)


# ---------------------------------------------------------------------------- single-stream


def _single_stream(
    config: ProfileConfig, model: Any, hub: Any, say: Callable[[str], None]
) -> ProfileResult:
    hop = _hop_s(model, config)
    window = _window(model, config).window_s
    queries = config.queries or 1024
    seconds = config.duration_s or ((queries + WARMUP_QUERIES) * hop + window + 3.0)
    stream = _stream(config, 1, seconds, say)
    rec = StageRecorder(end_to_end_from_processor=False)
    processor = stream.processor(
        model, config=_processor_config(config, rec), sinks=hub, replay=True
    )
    say(f"single-stream: one player, {queries} queries back to back")
    meter = ResourceMeter()
    scored_in_warmup = 0

    def warmed_up() -> None:
        # The warm-up queries are not measured: neither their stages nor their time.
        nonlocal meter, scored_in_warmup
        rec.reset()
        scored_in_warmup = processor.stats.scored
        meter = ResourceMeter()

    with warnings.catch_warnings():
        # One player has no team-mates: the team-context features are NaN by design.
        warnings.simplefilter("ignore", RuntimeWarning)
        _feed_back_to_back(stream, processor, rec, queries, on_warm=warmed_up)
    usage = meter.stop()
    result = _result(config, stream, model, rec, processor, usage, rec.end_to_end.count, hop)
    result.windows -= scored_in_warmup
    result.extra["warmup_queries"] = WARMUP_QUERIES
    return result


WARMUP_QUERIES = 32  # like LoadGen: the first answers pay for cold caches and lazy set-up


def _feed_back_to_back(
    stream: RawStream,
    processor: FieldProcessor,
    rec: StageRecorder,
    queries: int,
    *,
    on_warm: Callable[[], None] | None = None,
) -> int:
    """Feed records until ``queries`` hops were answered (after ``WARMUP_QUERIES`` unmeasured
    ones, at the end of which ``on_warm`` is called), timing each from its first byte."""
    started: int | None = None
    hops = 0
    warm = 0
    for r in stream.records:
        if started is None:
            started = time.perf_counter_ns()
        _feed(processor, r, r[0])
        if processor.stats.hops != hops:
            hops = processor.stats.hops
            if processor.stats.scored and warm < WARMUP_QUERIES:
                warm += 1
                if warm == WARMUP_QUERIES and on_warm is not None:
                    on_warm()
            elif processor.stats.scored:
                rec.end_to_end.record_ns(time.perf_counter_ns() - started)
            started = None
            if rec.end_to_end.count >= queries:
                break
    return hops


# ---------------------------------------------------------------------------- offline


def _offline(
    config: ProfileConfig, model: Any, hub: Any, say: Callable[[str], None]
) -> ProfileResult:
    hop = _hop_s(model, config)
    stream = _stream(
        config, config.players, config.duration_s or _DEFAULT_SECONDS[ProfileMode.OFFLINE], say
    )
    rec = StageRecorder()
    processor = stream.processor(
        model, config=_processor_config(config, rec), sinks=hub, replay=True
    )
    say(f"offline: {len(stream.records)} records of {stream.players} players as fast as possible")
    meter = ResourceMeter()
    for r in stream.records:
        _feed(processor, r, r[0])
    processor.finish()
    usage = meter.stop()
    result = _result(config, stream, model, rec, processor, usage, processor.stats.hops, hop)
    result.extra["session_s"] = round(stream.duration_s, 3)
    result.extra["speedup_vs_real_time"] = round(stream.duration_s / max(usage.wall_s, 1e-9), 2)
    return result


def _result(
    config: ProfileConfig,
    stream: RawStream,
    model: Any,
    rec: StageRecorder,
    processor: FieldProcessor,
    usage: ResourceUsage,
    queries: int,
    hop: float,
) -> ProfileResult:
    st = processor.stats
    return ProfileResult(
        config=config,
        scenario=stream.scenario if config.session else config.scenario,
        players=stream.players,
        backend=_backend_name(model),
        stages=rec.ordered(),
        end_to_end=rec.end_to_end,
        queries=int(queries),
        windows=int(st.scored),
        usage=usage,
        drops={
            "lost_samples": processor.lost_samples(),
            "not_scored": int(sum(st.not_scored.values())),
        },
        deadline_ms=config.deadline_ms or hop * 1e3,
        extra={
            "escalated": int(st.escalated),
            "backends": dict(st.backends),
            "timer_calls": rec.calls,
        },
    )


# ---------------------------------------------------------------------------- multi-stream


def _multi_stream(
    config: ProfileConfig, model: Any, hub: Any, say: Callable[[str], None]
) -> ProfileResult:
    from fusion_edge.runtime.simulated_kit import SimulatedKitConfig, run_simulated_kit

    hop = _hop_s(model, config)
    seconds = config.duration_s or _DEFAULT_SECONDS[ProfileMode.MULTI_STREAM]
    rec = StageRecorder()
    kit = SimulatedKitConfig(
        scenario=config.scenario,
        seconds=seconds,
        seed=config.seed,
        players=config.players,
        scenario_file=config.scenario_file,
    )
    meter = ResourceMeter()
    processor, summary = asyncio.run(
        run_simulated_kit(
            kit, model, sinks=hub, processor_config=_processor_config(config, rec), on_progress=say
        )
    )
    usage = meter.stop()
    st = processor.stats
    late = int(sum(1 for v in st.latency_ms if v > (config.deadline_ms or hop * 1e3)))
    return ProfileResult(
        config=config,
        scenario=config.scenario,
        players=len(processor.players),
        backend=_backend_name(model),
        stages=rec.ordered(),
        end_to_end=rec.end_to_end,
        queries=int(st.hops),
        windows=int(st.scored),
        usage=usage,
        drops={
            "lost_samples": processor.lost_samples(),
            "not_scored": int(sum(st.not_scored.values())),
            "late": late,
        },
        deadline_ms=config.deadline_ms or hop * 1e3,
        extra={
            "escalated": int(st.escalated),
            "backends": dict(st.backends),
            "timer_calls": rec.calls,
            "streamed_s": seconds,
        },
    )


# ---------------------------------------------------------------------------- server


def capture_windows(stream: RawStream, model: Any) -> list[dict[str, np.ndarray]]:
    """Every scored player window of a stream, one ``{input: [1, ...]}`` each (for server mode)."""
    captured: list[dict[str, np.ndarray]] = []

    class _Capture:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        def infer(self, inputs: Any) -> Any:
            n = next(iter(inputs.values())).shape[0]
            captured.extend(
                {k: np.array(v[i : i + 1]) for k, v in inputs.items()} for i in range(n)
            )
            return self._inner.infer(inputs)

    processor = stream.processor(_Capture(model), replay=True)
    for r in stream.records:
        _feed(processor, r, r[0])
    processor.finish()
    return captured


def arrival_times(rate: float, seconds: float, burst: float, seed: int) -> np.ndarray:
    """Arrival offsets (s): bursts at Poisson times (rate / burst a second), each of
    1 + Poisson(burst - 1) windows, so the mean rate is ``rate``."""
    rng = np.random.default_rng(seed)
    n_bursts = int(rate / burst * seconds * 1.2) + 10
    starts = np.cumsum(rng.exponential(burst / rate, n_bursts))
    sizes = 1 + rng.poisson(burst - 1.0, n_bursts) if burst > 1 else np.ones(n_bursts, int)
    t = np.repeat(starts, sizes)
    return t[t < seconds]


def _server(
    config: ProfileConfig, model: Any, hub: Any, say: Callable[[str], None]
) -> ProfileResult:
    from fusion_edge.runtime.events import FeedbackEvent, predictions_from_outputs

    hop = _hop_s(model, config)
    seconds = config.duration_s or _DEFAULT_SECONDS[ProfileMode.SERVER]
    stream = _stream(config, config.players, 30.0, say)
    windows = capture_windows(stream, model)
    if not windows:
        raise ConfigError(
            "the stream gave no scored windows to serve; give a longer --session or scenario"
        )
    rate = config.rate or stream.players / hop
    arrivals = arrival_times(rate, seconds, config.burst, config.seed)
    say(
        f"server: {len(arrivals)} windows at {rate:.1f}/s (bursts of {config.burst:g}) "
        f"for {seconds:.0f} s"
    )
    max_batch = max(stream.players, 1)
    rec = StageRecorder(end_to_end_from_processor=False)
    shed = late = 0
    deadline_ms = config.deadline_ms or hop * 1e3
    meter = ResourceMeter()
    t0 = time.monotonic_ns()
    due = (t0 + (arrivals * 1e9).astype(np.int64)).tolist()
    i = served = 0
    while i < len(due):
        now = time.monotonic_ns()
        if due[i] > now:
            time.sleep((due[i] - now) / 1e9)
            continue
        # Everything that has arrived by now is queued; shed what waited too long, batch the rest.
        j = i
        while j < len(due) and due[j] <= now and j - i < max_batch:
            j += 1
        batch = []
        for k in range(i, j):
            if now - due[k] > config.max_queue_s * 1e9:
                shed += 1
            else:
                batch.append(k)
        i = j
        if not batch:
            continue
        start = time.monotonic_ns()
        for k in batch:
            rec.record("queueing", (start - due[k]) / 1e6)
        inputs = {
            name: np.concatenate([windows[k % len(windows)][name] for k in batch])
            for name in windows[0]
        }
        inf = model.infer(inputs)
        for name in ("normalize", "inference", "escalation"):
            rec.record(name, inf.stage_ms[name])
        tp = time.perf_counter()
        events = []
        for b, k in enumerate(batch):
            preds = predictions_from_outputs({n: v[b] for n, v in inf.outputs.items()}, model.tasks)
            escalated = bool(inf.escalated[b])
            events.append(
                FeedbackEvent(
                    player=f"q{k}",
                    window_end_ns=due[k],
                    predictions=preds,
                    backend=(inf.full_backend or inf.backend) if escalated else inf.backend,
                    escalated=escalated,
                    escalation_reason=inf.reasons[b] if escalated else None,
                )
            )
        ts = time.perf_counter()
        rec.record("postprocess", (ts - tp) * 1e3)
        if hub is not None:
            hub.publish_many(events)
        rec.record("sinks", (time.perf_counter() - ts) * 1e3)
        done = time.monotonic_ns()
        for k in batch:
            ms = (done - due[k]) / 1e6
            rec.end_to_end.record_ms(ms)
            late += ms > deadline_ms
        served += len(batch)
    usage = meter.stop()
    return ProfileResult(
        config=config,
        scenario=stream.scenario if config.session else config.scenario,
        players=stream.players,
        backend=_backend_name(model),
        stages=rec.ordered(),
        end_to_end=rec.end_to_end,
        queries=served,
        windows=served,
        usage=usage,
        drops={"shed": shed, "late": int(late)},
        deadline_ms=deadline_ms,
        extra={
            "target_rate": rate,
            "burst": config.burst,
            "offered": len(due),
            "max_batch": max_batch,
        },
    )
