"""What the profiler listens to: one histogram per pipeline stage, and the process's CPU and memory.

`StageRecorder` is handed to the processor as ``ProcessorConfig(stage_timer=...)``; the
processor calls it with ``(stage, ms)`` for every timing it takes. Recording is an append to a
list (the histogram buckets in vectorized batches), so the profiler costs well under a
microsecond per timing; `docs/profile.md` shows how that was measured against the stages.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from enum import Enum

from fusion_edge.runtime.profile.histogram import LatencyHistogram

__all__ = ["Stage", "STAGE_ORDER", "StageRecorder", "ResourceMeter", "ResourceUsage"]


class Stage(str, Enum):
    """Pipeline stages as reports name them (docs/profile.md says what each one covers)."""

    TRANSPORT = "transport"  # BLE notification received -> processor starts on it
    TRANSPORT_GNSS = "transport_gnss"  # serial bytes read -> processor starts on them
    DECODING = "decoding"  # packet codec, CRC, sequence/reorder (PacketReader)
    CLOCK_CALIBRATION = "clock_calibration"  # device-clock map update + IMU calibration
    DSP = "dsp"  # moving average, resampling, gap filling, window buffers (IMU)
    GNSS = "gnss"  # NMEA/UBX parsing, pitch frame, GNSS cleaning and buffers
    QUEUEING = "queueing"  # window complete -> its scoring starts
    WINDOWING = "windowing"  # cutting the squad's windows for the hop
    NORMALIZE = "normalize"  # z-score with the bundle's statistics
    INFERENCE = "inference"  # the backend chain's run on the batch
    ESCALATION = "escalation"  # the full model on unsure windows
    POSTPROCESS = "postprocess"  # predictions, feedback events
    SINKS = "sinks"  # handing events to the sinks and the recording


STAGE_ORDER: tuple[str, ...] = tuple(s.value for s in Stage)

# The processor's own names for what it times, where they differ from the report's.
_ALIASES = {"windows": Stage.WINDOWING.value}
# Timings the processor takes that the report shows as their parts instead.
_IGNORED = frozenset({"decode_dsp"})


class StageRecorder:
    """Histograms by stage name, fed by the processor's ``stage_timer`` hook.

    Args:
        end_to_end_from_processor: count the processor's per-hop latency (``end_to_end``) as
            the run's end-to-end latency; modes that time their own queries turn this off.
        significant_digits: histogram precision.
    """

    def __init__(
        self, *, end_to_end_from_processor: bool = True, significant_digits: int = 3
    ) -> None:
        self.digits = significant_digits
        self.stages: dict[str, LatencyHistogram] = {}
        self.end_to_end = LatencyHistogram(significant_digits)
        self._e2e_from_processor = end_to_end_from_processor
        self.calls = 0

    def __call__(self, name: str, ms: float) -> None:
        """Count one timing of stage ``name`` (the processor's ``stage_timer`` signature)."""
        self.calls += 1
        if name == "end_to_end":
            if self._e2e_from_processor:
                self.end_to_end.record_ms(ms)
            return
        if name in _IGNORED:
            return
        name = _ALIASES.get(name, name)
        h = self.stages.get(name)
        if h is None:
            h = self.stages[name] = LatencyHistogram(self.digits)
        h.record_ms(ms)

    def reset(self) -> None:
        """Forget every timing so far (the end of a warm-up)."""
        self.stages = {}
        self.end_to_end = LatencyHistogram(self.digits)
        self.calls = 0

    def record(self, name: str, ms: float) -> None:
        """Count a timing the driver itself took (same as calling the recorder)."""
        self(name, ms)

    def ordered(self) -> dict[str, LatencyHistogram]:
        """Stages in pipeline order, then any others alphabetically; empty ones left out."""
        known = [s for s in STAGE_ORDER if s in self.stages]
        rest = sorted(s for s in self.stages if s not in STAGE_ORDER)
        return {s: self.stages[s] for s in known + rest if self.stages[s].count}


@dataclass(frozen=True)
class ResourceUsage:
    """CPU and memory of the process over a run."""

    wall_s: float
    cpu_s: float
    cpu_percent: float  # of one core; 200 is both cores of a 2-core box busy
    rss_mb: float  # resident memory at the end
    peak_rss_mb: float


class ResourceMeter:
    """Wall time, CPU time (all threads of this process) and memory between start and stop."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._c0 = time.process_time()

    def stop(self) -> ResourceUsage:
        """Usage since construction."""
        wall = time.monotonic() - self._t0
        cpu = time.process_time() - self._c0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
        return ResourceUsage(
            wall, cpu, 100.0 * cpu / max(wall, 1e-9), current_rss_mb() or peak, peak
        )


def current_rss_mb() -> float | None:
    """Resident set size now, MB (Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{os.getpid()}/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None
