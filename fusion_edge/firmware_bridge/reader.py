"""PacketReader: turns one pod's notifications into ordered, gap-annotated blocks of SI samples.

BLE notifications are unacknowledged: over a busy link they get lost, and across reconnects or
(rarely) host stacks they arrive twice or out of order. The reader keeps per-pod state so that
whatever consumes its blocks (clock mapping, calibration, ring buffers) sees each boot's samples
once, in order, with every hole announced.

Choices (see docs/pod_protocol.md):

* Reordering is repaired, not just reported: a packet that arrives after a hole in the sequence
  is held until the hole's packet comes, for at most ``reorder_window`` sequence numbers past
  the hole; then the hole is declared lost and the held packets are released in order. A packet
  that arrives after its hole was declared lost is dropped and counted as ``late`` (its samples
  stay counted as lost, since consumers have already been told so).
* Sequence numbers are unwrapped against the next expected one (16-bit, signed distance), so a
  gap across 65535 -> 0 is a gap, not a reset. A jump back by more than ``RESYNC_HORIZON``
  packets with the same boot id is taken as a firmware that restarted its counter: tracking
  resynchronises and ``resyncs`` counts it.
* Lost samples are estimated from the device timestamps (``t0_us`` of the packet after the hole
  against where the previous one ended), falling back to ``missing packets x this packet's
  sample count`` when the timestamps disagree with the sequence numbers (e.g. after SET_TIME).
* A new boot id is a reboot: blocks held from the old boot are released, the sample index
  restarts at 0, and since a pod's first packet after boot has seq 0, packets missing before the
  first one received from the new boot count as lost. The very first packet a reader sees sets
  the reference and is never preceded by a gap (the reader may have joined mid-stream).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from fusion_edge.errors import ProtocolError
from fusion_edge.firmware_bridge.protocol import PodPacket, UnknownVersionError, decode_packet

__all__ = ["RESYNC_HORIZON", "BadPacketPolicy", "PacketReader", "PodCounters", "SampleBlock"]

logger = logging.getLogger(__name__)

#: A same-boot jump back by more than this many packets restarts sequence tracking.
RESYNC_HORIZON = 1024
_LOST_MEMORY = 1024  # how many declared-lost sequence numbers are remembered (to spot `late`)
_LOG_EVERY = 100  # LOG policy: warn on the 1st bad packet of a kind, then every 100th


class BadPacketPolicy(str, enum.Enum):
    """What :meth:`PacketReader.feed` does with a packet that does not decode."""

    RAISE = "raise"  # raise the ProtocolError (after counting it)
    LOG = "log"  # count it and log a warning (rate-limited), then carry on
    IGNORE = "ignore"  # count it silently


@dataclass(frozen=True, eq=False)
class SampleBlock:
    """One packet's samples, in SI units, with where they sit in the pod's stream.

    Attributes:
        pod_id: The reader's pod id.
        boot_id: Pod boot id of the packet.
        seq: Packet sequence number (raw u16).
        t0_us: Device timestamp of the first sample, microseconds (pod clock).
        host_time_ns: Host monotonic time the packet was received (not released), ns.
        sample_rate_hz: Sample rate of the block.
        channel_names: Column names, e.g. ``("accel_x", ..., "mag_z")``.
        samples: ``[n, channels]`` float32, m/s^2, rad/s, microtesla; read-only.
        first_sample_index: Index of the first sample within this boot, counting lost samples.
        gap_before: Samples lost just before this block (0 when contiguous).
    """

    pod_id: str
    boot_id: int
    seq: int
    t0_us: int
    host_time_ns: int
    sample_rate_hz: float
    channel_names: tuple[str, ...]
    samples: np.ndarray = field(repr=False)
    first_sample_index: int
    gap_before: int

    @property
    def n_samples(self) -> int:
        """Number of samples in the block."""
        return int(self.samples.shape[0])

    def sample_times_us(self) -> np.ndarray:
        """Device timestamp of each sample, ``t0_us + round(i * 1e6 / rate)``, int64 [n]."""
        offsets = np.rint(np.arange(self.n_samples) * (1e6 / self.sample_rate_hz))
        return np.int64(self.t0_us) + offsets.astype(np.int64)


@dataclass
class PodCounters:
    """Running counts for one pod (a snapshot when read from :attr:`PacketReader.counters`).

    Attributes:
        received_packets: Packets delivered as blocks (duplicates and late ones excluded).
        received_samples: Samples in those packets.
        lost_samples: Samples estimated lost in holes (see the module docstring).
        lost_packets: Packets missing from the sequence.
        corrupt: Packets dropped for a bad CRC, truncation or invalid fields.
        unknown_version: Intact packets of a format version this host does not speak.
        duplicates: Packets received again and dropped.
        reordered: Packets that arrived after a later one and were put back in order.
        late: Packets that arrived after their hole was declared lost; dropped.
        reboots: Boot id changes seen.
        reconnects: Reconnections noted by the transport.
        resyncs: Same-boot sequence restarts (firmware counter reset without a new boot id).
    """

    received_packets: int = 0
    received_samples: int = 0
    lost_samples: int = 0
    lost_packets: int = 0
    corrupt: int = 0
    unknown_version: int = 0
    duplicates: int = 0
    reordered: int = 0
    late: int = 0
    reboots: int = 0
    reconnects: int = 0
    resyncs: int = 0


class PacketReader:
    """Decode, order and account for one pod's packets.

    Args:
        pod_id: Name used in blocks, logs and error messages.
        policy: What to do with packets that do not decode.
        reorder_window: How many sequence numbers past a hole a packet may be held waiting for
            the hole to fill (0: never wait, release immediately and count the hole as lost).

    Not thread-safe: feed it from one task (the transport's notification callback).
    """

    def __init__(
        self,
        pod_id: str,
        *,
        policy: BadPacketPolicy = BadPacketPolicy.LOG,
        reorder_window: int = 4,
    ) -> None:
        if reorder_window < 0 or reorder_window > RESYNC_HORIZON:
            raise ValueError(
                f"reorder_window={reorder_window} is outside 0..{RESYNC_HORIZON}; "
                f"use a few packets (4 is the default)"
            )
        self.pod_id = pod_id
        self.policy = BadPacketPolicy(policy)
        self.reorder_window = reorder_window
        self._counters = PodCounters()
        self._context = f"pod {pod_id} packet"
        self._boot_id: int | None = None
        self._old_boots: deque[int] = deque(maxlen=8)
        self._next_seq = 0  # unwrapped seq expected next
        self._max_seen = -1  # highest unwrapped seq received in this boot
        self._next_index = 0  # sample index (within boot) right after the last released block
        self._prev: tuple[int, int, float] | None = None  # t0_us, n, rate of last released
        self._pending: dict[int, tuple[PodPacket, int]] = {}
        self._lost: deque[int] = deque(maxlen=_LOST_MEMORY)
        self._lost_set: set[int] = set()
        self._bad_seen: dict[str, int] = {}

    @property
    def counters(self) -> PodCounters:
        """A snapshot of this pod's counters."""
        return dataclasses.replace(self._counters)

    @property
    def boot_id(self) -> int | None:
        """Boot id currently tracked (None before the first good packet)."""
        return self._boot_id

    @property
    def pending(self) -> int:
        """Packets held behind a hole, waiting to be released in order."""
        return len(self._pending)

    def note_reconnect(self) -> None:
        """Record that the transport reconnected. Tracking continues: holes become gaps."""
        self._counters.reconnects += 1

    def feed(self, data: bytes, host_time_ns: int) -> list[SampleBlock]:
        """Take one notification; return the blocks it lets out, in sequence order.

        Args:
            data: The notification's bytes.
            host_time_ns: Host monotonic receive time in ns (``time.monotonic_ns()``).

        Returns:
            Zero or more blocks (zero while a hole is held open, several when it closes).

        Raises:
            ProtocolError: Only with ``policy=RAISE``, for a packet that does not decode.
        """
        try:
            packet = decode_packet(data, context=self._context)
        except ProtocolError as exc:
            self._on_bad_packet(exc)
            return []
        return self._accept(packet, host_time_ns)

    def flush(self) -> list[SampleBlock]:
        """Give up on every open hole and release what is held (call at end of stream)."""
        return self._release(give_up=True)

    # --- internals -------------------------------------------------------------------------

    def _on_bad_packet(self, exc: ProtocolError) -> None:
        kind = type(exc).__name__
        if isinstance(exc, UnknownVersionError):
            self._counters.unknown_version += 1
        else:
            self._counters.corrupt += 1
        if self.policy is BadPacketPolicy.RAISE:
            raise exc
        count = self._bad_seen[kind] = self._bad_seen.get(kind, 0) + 1
        if self.policy is BadPacketPolicy.LOG and (count == 1 or count % _LOG_EVERY == 0):
            logger.warning("dropped bad packet #%d of this kind: %s", count, exc)

    def _unwrap(self, seq: int) -> int:
        delta = ((seq - self._next_seq + 0x8000) & 0xFFFF) - 0x8000
        return self._next_seq + delta

    def _start_boot(self, boot_id: int, first_seq: int) -> None:
        self._boot_id = boot_id
        self._next_seq = first_seq
        self._max_seen = first_seq - 1
        self._next_index = 0
        self._prev = None
        self._lost.clear()
        self._lost_set.clear()

    def _accept(self, packet: PodPacket, host_time_ns: int) -> list[SampleBlock]:
        out: list[SampleBlock] = []
        if self._boot_id is None:
            self._start_boot(packet.boot_id, packet.seq)
        elif packet.boot_id != self._boot_id:
            if packet.boot_id in self._old_boots:
                self._counters.late += 1  # a straggler from a boot already left behind
                return out
            out += self._release(give_up=True)
            self._old_boots.append(self._boot_id)
            self._counters.reboots += 1
            self._start_boot(packet.boot_id, 0)  # every boot starts at seq 0
        s = self._unwrap(packet.seq)
        if s < self._next_seq:
            if self._next_seq - s <= RESYNC_HORIZON:
                if s in self._lost_set:
                    self._counters.late += 1
                else:
                    self._counters.duplicates += 1
                return out
            logger.warning(
                "pod %s: sequence jumped back from %d to %d with the same boot id %d; "
                "restarting sequence tracking (pod firmware should change boot_id on restart)",
                self.pod_id,
                self._next_seq & 0xFFFF,
                packet.seq,
                packet.boot_id,
            )
            out += self._release(give_up=True)
            self._counters.resyncs += 1
            self._next_seq = s = packet.seq
            self._max_seen = s - 1
            self._prev = None
        if s in self._pending:
            self._counters.duplicates += 1
            return out
        if s < self._max_seen:
            self._counters.reordered += 1
        self._max_seen = max(self._max_seen, s)
        self._pending[s] = (packet, host_time_ns)
        out += self._release(give_up=False)
        return out

    def _release(self, *, give_up: bool) -> list[SampleBlock]:
        out: list[SampleBlock] = []
        while self._pending:
            if self._next_seq in self._pending:
                s = self._next_seq
            elif give_up or max(self._pending) - self._next_seq > self.reorder_window:
                s = min(self._pending)
            else:
                break
            packet, host_time_ns = self._pending.pop(s)
            out.append(self._emit(packet, host_time_ns, missing=s - self._next_seq))
            for lost_seq in range(max(self._next_seq, s - _LOST_MEMORY), s):
                if len(self._lost) == self._lost.maxlen:
                    self._lost_set.discard(self._lost[0])
                self._lost.append(lost_seq)
                self._lost_set.add(lost_seq)
            self._next_seq = s + 1
        return out

    def _gap_samples(self, packet: PodPacket, missing: int) -> int:
        if missing == 0:
            return 0
        if self._prev is not None:
            prev_t0, prev_n, prev_rate = self._prev
            expected_t0 = prev_t0 + prev_n * 1e6 / prev_rate
            from_clock = round((packet.t0_us - expected_t0) * packet.sample_rate_hz / 1e6)
            if from_clock >= missing:  # at least one sample per missing packet: plausible
                return int(from_clock)
        return missing * packet.n_samples

    def _emit(self, packet: PodPacket, host_time_ns: int, missing: int) -> SampleBlock:
        gap = self._gap_samples(packet, missing)
        samples = packet.to_si()
        samples.setflags(write=False)
        block = SampleBlock(
            pod_id=self.pod_id,
            boot_id=packet.boot_id,
            seq=packet.seq,
            t0_us=packet.t0_us,
            host_time_ns=int(host_time_ns),
            sample_rate_hz=packet.sample_rate_hz,
            channel_names=packet.channel_names,
            samples=samples,
            first_sample_index=self._next_index + gap,
            gap_before=gap,
        )
        c = self._counters
        c.received_packets += 1
        c.received_samples += packet.n_samples
        c.lost_packets += missing
        c.lost_samples += gap
        self._next_index = block.first_sample_index + packet.n_samples
        self._prev = (packet.t0_us, packet.n_samples, packet.sample_rate_hz)
        return block
