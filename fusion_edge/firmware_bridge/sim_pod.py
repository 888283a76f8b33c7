"""Simulated pod firmware: the logic of a pod, independent of any transport.

A :class:`SimulatedPod` is *handed* a sample source (anything with ``rate_hz`` and ``read(n)``
returning ``[n, 9]`` SI samples; :class:`SineSampleSource` is a test signal) and behaves like the
firmware: it keeps a boot id, a 16-bit packet sequence counter and a device clock (offset and
drift configurable), answers control commands with status codes, quantizes samples to the
configured ranges and packs as many as fit the negotiated ATT MTU into each packet with
:func:`~fusion_edge.firmware_bridge.protocol.encode_packet`.

It does not know how its bytes travel: a link (the bumble GATT peripheral in
:mod:`fusion_edge.firmware_bridge.backends.bumble_backend`, or a test) calls
:meth:`SimulatedPod.poll` with the host time to collect the packets that are due,
:meth:`SimulatedPod.handle_command` with the bytes written to the control characteristic, and
sets :attr:`SimulatedPod.att_mtu`.

Faults are injected on the packet stream (drop, corrupt, reorder, duplicate; random with a
:class:`FaultPlan` or one-shot with :meth:`SimulatedPod.inject`) and on the link (disconnect,
reboot: the pod asks its link to drop through :attr:`SimulatedPod.link_listener`).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

import numpy as np

from fusion_edge.errors import ProtocolError
from fusion_edge.firmware_bridge.control import (
    Command,
    CommandResponse,
    InfoCommand,
    InfoResponse,
    SetRangeCommand,
    SetRateCommand,
    SetSensorsCommand,
    SetTimeCommand,
    StartCommand,
    StatusCode,
    StopCommand,
    decode_command,
    encode_response,
    status_for_error,
)
from fusion_edge.firmware_bridge.protocol import (
    PACKET_VERSION,
    RATE_CODES,
    PodPacket,
    SensorMask,
    encode_packet,
    max_samples_per_packet,
    quantize_si,
)

#: Channels a sample source delivers: ax, ay, az (m/s^2), gx, gy, gz (rad/s), mx, my, mz (uT).
SOURCE_CHANNELS = 9
_SENSOR_COLUMNS = {
    SensorMask.ACCEL: slice(0, 3),
    SensorMask.GYRO: slice(3, 6),
    SensorMask.MAG: slice(6, 9),
}


@runtime_checkable
class SampleSource(Protocol):
    """What a simulated pod reads its samples from."""

    rate_hz: float

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` samples, float ``[n, 9]`` in SI units."""
        ...


class SineSampleSource:
    """A deterministic 9-axis test signal, per channel ``offset + amplitude * sin(2 pi f t + ph)``.

    Sample ``k`` is at ``t = k / rate_hz``; :meth:`expected` returns any stretch of it without
    advancing, so a test can compare what arrived with what was sent.

    Args:
        rate_hz: Sample rate of the source.
        frequency_hz: Sine frequency (one per channel, or one for all).
        amplitude: Per-channel amplitude in SI units (default: 3 m/s^2, 2 rad/s, 20 uT).
        offset: Per-channel offset (default: gravity on z, a geomagnetic field).
        phase_step: Phase difference between successive channels, radians.
    """

    def __init__(
        self,
        rate_hz: float = 100.0,
        *,
        frequency_hz: float | np.ndarray = 1.0,
        amplitude: np.ndarray | None = None,
        offset: np.ndarray | None = None,
        phase_step: float = 0.7,
    ) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate_hz={rate_hz} must be positive")
        self.rate_hz = float(rate_hz)
        self.frequency_hz = np.broadcast_to(np.asarray(frequency_hz, float), (SOURCE_CHANNELS,))
        self.amplitude = (
            np.asarray(amplitude, float)
            if amplitude is not None
            else np.array([3.0, 3.0, 3.0, 2.0, 2.0, 2.0, 20.0, 20.0, 20.0])
        )
        self.offset = (
            np.asarray(offset, float)
            if offset is not None
            else np.array([0.0, 0.0, 9.80665, 0.0, 0.0, 0.0, 20.0, -5.0, -40.0])
        )
        self.phase = np.arange(SOURCE_CHANNELS) * phase_step
        self.index = 0

    def expected(self, start: int, n: int) -> np.ndarray:
        """Samples ``start .. start + n - 1`` as float64 ``[n, 9]``, without advancing."""
        t = (start + np.arange(n))[:, None] / self.rate_hz
        return self.offset + self.amplitude * np.sin(
            2 * math.pi * self.frequency_hz * t + self.phase
        )

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` samples, float64 ``[n, 9]``."""
        out = self.expected(self.index, n)
        self.index += n
        return out


class Fault(str, Enum):
    """Faults a simulated pod can be told to produce."""

    DROP = "drop"
    CORRUPT = "corrupt"
    REORDER = "reorder"
    DUPLICATE = "duplicate"
    DISCONNECT = "disconnect"
    REBOOT = "reboot"


@dataclass(frozen=True)
class FaultPlan:
    """Random packet faults, each a per-packet probability, reproducible from ``seed``."""

    drop: float = 0.0
    corrupt: float = 0.0
    reorder: float = 0.0
    duplicate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("drop", "corrupt", "reorder", "duplicate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(
                    f"FaultPlan.{name}={getattr(self, name)} must be a probability in [0, 1]"
                )


@dataclass(frozen=True)
class PodClock:
    """The pod's device clock: microseconds since boot, running fast by ``drift_ppm``.

    Attributes:
        offset_us: Device time at boot (what the clock reads at the boot instant).
        drift_ppm: How fast the pod's crystal runs, parts per million (positive: fast).
    """

    offset_us: int = 0
    drift_ppm: float = 0.0


class SimulatedPod:
    """The firmware of one pod, minus the radio.

    Args:
        address: The pod's BLE address (its identity on the kit's allow-list).
        source: Where samples come from (``rate_hz`` must be one of the rate codes' rates, or a
            whole multiple of the rate the host asks for).
        clock: Device clock offset and drift.
        boot_id: Boot id of the first boot (random from ``seed`` when ``None``).
        initial_seq: Sequence number of the first packet after a boot (firmware starts at 0;
            tests start near 65535 to exercise the wrap).
        sensors: Sensors the pod streams.
        accel_range: Initial accelerometer range code.
        gyro_range: Initial gyroscope range code.
        faults: Random packet faults.
        firmware_version: Reported by INFO.
        battery_percent: Reported by INFO.
        seed: Seed for boot ids and faults.
        host_clock: Host time source in integer nanoseconds (the simulation's "true" time).
    """

    def __init__(
        self,
        address: str,
        source: SampleSource,
        *,
        clock: PodClock = PodClock(),
        boot_id: int | None = None,
        initial_seq: int = 0,
        sensors: SensorMask = SensorMask.ACCEL | SensorMask.GYRO | SensorMask.MAG,
        accel_range: int = 2,
        gyro_range: int = 2,
        faults: FaultPlan = FaultPlan(),
        firmware_version: tuple[int, int, int] = (1, 0, 0),
        battery_percent: int = 87,
        seed: int = 0,
        host_clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if not isinstance(source, SampleSource):
            raise TypeError(
                f"source {source!r} is not a sample source: give an object with rate_hz and "
                "read(n) -> float [n, 9] in SI units"
            )
        rate_code = _rate_code_for(source.rate_hz)
        if rate_code is None:
            raise ValueError(
                f"source rate {source.rate_hz} Hz is not a pod rate; use one of "
                f"{sorted(RATE_CODES.values())} Hz"
            )
        self.address = address.upper()
        self.source = source
        self.clock = clock
        self.sensors = SensorMask(sensors)
        self.firmware_version = firmware_version
        self.battery_percent = battery_percent
        self.initial_seq = initial_seq & 0xFFFF
        self.faults = faults
        self._rng = random.Random(seed)
        self._fault_rng = random.Random(faults.seed)
        self._host_clock = host_clock
        self._defaults = (rate_code, accel_range, gyro_range)
        self.boot_id = self._rng.randrange(1, 0x10000) if boot_id is None else boot_id & 0xFFFF
        #: ATT MTU of the current link; the link sets it after the MTU exchange.
        self.att_mtu = 23
        #: Called with a :class:`Fault` (DISCONNECT or REBOOT) when the pod drops its link.
        self.link_listener: Callable[[Fault], None] | None = None
        self._pending: dict[Fault, int] = {}
        self._held: bytes | None = None
        #: How many times this pod booted, counted from 1.
        self.boots = 1
        self.packets_sent = 0
        self._boot(self._host_clock())

    # ------------------------------------------------------------------ state

    def _boot(self, host_ns: int) -> None:
        self.rate_code, self.accel_range, self.gyro_range = self._defaults
        self.seq = self.initial_seq
        self.streaming = False
        self.max_samples: int | None = None
        self._boot_host_ns = host_ns
        self._clock_offset_us = float(self.clock.offset_us)
        self._stream_start_us = 0.0
        self._emitted = 0
        self._buffer = np.zeros((0, SOURCE_CHANNELS))
        self._held = None

    def device_time_us(self, host_ns: int | None = None) -> int:
        """The pod's clock (microseconds since boot, plus offset) at host time ``host_ns``."""
        host_ns = self._host_clock() if host_ns is None else host_ns
        elapsed_us = (host_ns - self._boot_host_ns) / 1000.0
        return int(self._clock_offset_us + elapsed_us * (1.0 + self.clock.drift_ppm * 1e-6))

    def set_device_time(self, device_us: int, host_ns: int | None = None) -> None:
        """Make the device clock read ``device_us`` now (what SET_TIME does)."""
        host_ns = self._host_clock() if host_ns is None else host_ns
        self._clock_offset_us += device_us - self.device_time_us(host_ns)

    @property
    def rate_hz(self) -> float:
        """Current output data rate."""
        return RATE_CODES[self.rate_code]

    def samples_per_packet(self) -> int:
        """Samples per packet at the current MTU and sensors (and the host's cap, if any)."""
        n = max_samples_per_packet(self.att_mtu, self.sensors)
        return min(n, self.max_samples) if self.max_samples else n

    # ------------------------------------------------------------------ streaming

    def start(self, host_ns: int | None = None) -> None:
        """Start streaming from now (what START does)."""
        host_ns = self._host_clock() if host_ns is None else host_ns
        if not self.streaming:
            self.streaming = True
            self._stream_start_us = float(self.device_time_us(host_ns))
            self._emitted = 0
            self._buffer = np.zeros((0, SOURCE_CHANNELS))

    def stop(self) -> None:
        """Stop streaming (what STOP does); a packet held back for reordering is lost."""
        self.streaming = False
        self._held = None

    def poll(self, host_ns: int | None = None) -> list[bytes]:
        """Packets that are due by host time ``host_ns``, after faults.

        The pod samples on its own clock: sample ``k`` of a stream is taken when the device
        clock reaches ``start + k / rate``, so a fast crystal yields samples early in host time.
        """
        if not self.streaming:
            return []
        host_ns = self._host_clock() if host_ns is None else host_ns
        per_packet = self.samples_per_packet()
        if per_packet < 1:
            return []
        elapsed_us = self.device_time_us(host_ns) - self._stream_start_us
        due = int(elapsed_us * self.rate_hz / 1e6) + 1
        out: list[bytes] = []
        while due - self._emitted >= per_packet:
            out.extend(self._apply_faults(self._next_packet(per_packet)))
        return out

    def _read_source(self, n: int) -> np.ndarray:
        step = round(self.source.rate_hz / self.rate_hz)
        return np.asarray(self.source.read(n * step), float)[::step]

    def _next_packet(self, n: int) -> bytes:
        si = self._read_source(n)
        columns = [si[:, cols] for flag, cols in _SENSOR_COLUMNS.items() if self.sensors & flag]
        raw = quantize_si(np.hstack(columns), self.sensors, self.accel_range, self.gyro_range)
        t0 = self._stream_start_us + self._emitted * 1e6 / self.rate_hz
        packet = PodPacket(
            version=PACKET_VERSION,
            boot_id=self.boot_id,
            seq=self.seq,
            t0_us=int(round(t0)),
            rate_code=self.rate_code,
            accel_range=self.accel_range,
            gyro_range=self.gyro_range,
            sensors=self.sensors,
            samples=raw,
        )
        self._emitted += n
        self.seq = (self.seq + 1) & 0xFFFF
        return encode_packet(packet)

    # ------------------------------------------------------------------ control

    def handle_command(self, data: bytes, host_ns: int | None = None) -> bytes:
        """Execute one control frame and return the response frame to send back.

        Damaged or unknown frames get the status :func:`status_for_error` names; commands that
        change the stream format while streaming get BUSY (stop first), as on the firmware.
        """
        host_ns = self._host_clock() if host_ns is None else host_ns
        try:
            command = decode_command(data)
        except ProtocolError as exc:
            raw = bytes(data)
            opcode = getattr(exc, "opcode", raw[1] if len(raw) > 1 else 0) & 0x7F
            token = getattr(exc, "token", raw[2] if len(raw) > 2 else 0)
            return encode_response(
                CommandResponse(opcode=opcode, status=status_for_error(exc), token=token)
            )
        if isinstance(command, InfoCommand):
            return encode_response(self.info(command.token))
        status = self._execute(command, host_ns)
        return encode_response(
            CommandResponse(opcode=command.OPCODE, status=status, token=command.token)
        )

    def info(self, token: int = 0) -> InfoResponse:
        """What INFO answers."""
        major, minor, patch = self.firmware_version
        return InfoResponse(
            fw_major=major,
            fw_minor=minor,
            fw_patch=patch,
            packet_version=PACKET_VERSION,
            boot_id=self.boot_id,
            sensors=self.sensors,
            rate_code=self.rate_code,
            accel_range=self.accel_range,
            gyro_range=self.gyro_range,
            battery_v=3.6 + 0.006 * self.battery_percent,
            battery_pct=self.battery_percent,
            streaming=self.streaming,
            token=token,
        )

    def _execute(self, command: Command, host_ns: int) -> StatusCode:
        if isinstance(command, StartCommand):
            if self.samples_per_packet() < 1:
                return StatusCode.MTU_TOO_SMALL
            self.start(host_ns)
            return StatusCode.OK
        if isinstance(command, StopCommand):
            if not self.streaming:
                return StatusCode.NOT_STREAMING
            self.stop()
            return StatusCode.OK
        if isinstance(command, SetTimeCommand):
            before = self.device_time_us(host_ns)
            self.set_device_time(command.time_us, host_ns)
            self._stream_start_us += command.time_us - before  # keep t0 on the new clock
            return StatusCode.OK
        if self.streaming:
            return StatusCode.BUSY  # the stream format cannot change mid-stream
        if isinstance(command, SetRateCommand):
            step = self.source.rate_hz / RATE_CODES[command.rate_code]
            if step < 1 or abs(step - round(step)) > 1e-9:
                return StatusCode.BAD_ARGUMENT  # the source cannot be decimated to that rate
            self.rate_code = command.rate_code
        elif isinstance(command, SetRangeCommand):
            self.accel_range, self.gyro_range = command.accel_range, command.gyro_range
        elif isinstance(command, SetSensorsCommand):
            self.sensors = SensorMask(command.sensors)
        else:
            return StatusCode.UNKNOWN_COMMAND
        return StatusCode.OK

    # ------------------------------------------------------------------ faults

    def inject(self, fault: Fault, count: int = 1) -> None:
        """Make the next ``count`` packets suffer ``fault``; DISCONNECT and REBOOT act now."""
        fault = Fault(fault)
        if fault is Fault.DISCONNECT:
            self._drop_link(Fault.DISCONNECT)
        elif fault is Fault.REBOOT:
            self.reboot()
        else:
            self._pending[fault] = self._pending.get(fault, 0) + count

    def reboot(self, host_ns: int | None = None) -> None:
        """Reboot: new boot id, sequence and clock restart, streaming stops, the link drops."""
        old = self.boot_id
        while self.boot_id == old:
            self.boot_id = self._rng.randrange(1, 0x10000)
        self.boots += 1
        self._boot(self._host_clock() if host_ns is None else host_ns)
        self._drop_link(Fault.REBOOT)

    def link_lost(self) -> None:
        """The link dropped (either side).

        The pod keeps sampling and numbering packets (they go nowhere) until STOP or a reboot,
        so that an outage reaches the host as a sequence gap it can count, and the sample index
        stays tied to time. A packet held back for reordering is lost with the link.
        """
        self._held = None

    def _drop_link(self, why: Fault) -> None:
        self.link_lost()
        if self.link_listener is not None:
            self.link_listener(why)

    def _take(self, fault: Fault, probability: float) -> bool:
        if self._pending.get(fault, 0) > 0:
            self._pending[fault] -= 1
            return True
        return probability > 0 and self._fault_rng.random() < probability

    def _apply_faults(self, packet: bytes) -> list[bytes]:
        plan = self.faults
        self.packets_sent += 1
        if self._take(Fault.DROP, plan.drop):
            return []
        if self._take(Fault.CORRUPT, plan.corrupt):
            mutable = bytearray(packet)
            mutable[len(mutable) // 2] ^= 0x5A  # inside the samples: only the CRC can tell
            packet = bytes(mutable)
        out = [packet, packet] if self._take(Fault.DUPLICATE, plan.duplicate) else [packet]
        if self._held is not None:
            out.append(self._held)  # the held packet goes out after this one: reordered
            self._held = None
        elif self._take(Fault.REORDER, plan.reorder):
            self._held = out.pop(0)
        return out


def _rate_code_for(rate_hz: float) -> int | None:
    for code, rate in RATE_CODES.items():
        if abs(rate - rate_hz) < 1e-9:
            return code
    return None
