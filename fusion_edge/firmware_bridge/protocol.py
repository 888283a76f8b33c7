"""Pod packet v1: the bytes a pod notifies on its data characteristic, and their codec.

The normative description is ``PROTOCOL.md`` next to this file; ``include/fusion_pod.h`` is the
same layout for firmware authors, and ``tests/data/firmware_bridge/pod_vectors.json`` pins both to
identical bytes. In short (little-endian)::

    off size field        off size field
     0   u8  version       7   u8  rate_code
     1   u8  sensors       8   u8  accel_range
     2  u16  boot_id       9   u8  gyro_range
     4  u16  seq          10  u64  t0_us
     6   u8  n_samples    18  i16  samples[n_samples][channels]   then u16 CRC-16/CCITT-FALSE

Channels are 3 per enabled sensor, in the order accel, gyro, mag, axes x, y, z.
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fusion_edge.errors import ProtocolError
from fusion_edge.firmware_bridge.wire_layout import (
    CRC_SIZE,
    Layout,
    append_crc,
    carried_crc,
    crc16_ccitt_false,
    crc_matches,
)

__all__ = [
    "ACCEL_RANGES_G",
    "ATT_HEADER_SIZE",
    "BadCrcError",
    "CONTROL_CHAR_UUID",
    "DATA_CHAR_UUID",
    "GYRO_RANGES_DPS",
    "HEADER_LAYOUT",
    "HEADER_SIZE",
    "MAG_RANGE_UT",
    "MAG_SCALE_UT",
    "MAX_ATT_MTU",
    "MAX_SAMPLES",
    "MIN_ATT_MTU",
    "MalformedPacketError",
    "PACKET_OVERHEAD",
    "PACKET_VERSION",
    "POD_SERVICE_UUID",
    "PodPacket",
    "RATE_CODES",
    "SensorMask",
    "STANDARD_GRAVITY",
    "TruncatedPacketError",
    "UnknownVersionError",
    "channel_count",
    "channel_names",
    "channel_scales",
    "crc16_ccitt_false",
    "decode_packet",
    "encode_packet",
    "max_samples_per_packet",
    "min_att_mtu",
    "packet_size",
    "quantize_si",
]

# GATT: one primary service, a notify-only data characteristic, a write+indicate control one.
POD_SERVICE_UUID = "6e4f0001-b5a3-f393-e0a9-e50e24dcca9e"
DATA_CHAR_UUID = "6e4f0002-b5a3-f393-e0a9-e50e24dcca9e"
CONTROL_CHAR_UUID = "6e4f0003-b5a3-f393-e0a9-e50e24dcca9e"

PACKET_VERSION = 1

#: Rate code -> output data rate in Hz.
RATE_CODES: dict[int, float] = {0: 25.0, 1: 50.0, 2: 100.0, 3: 200.0}
#: Accelerometer range code -> full scale in g (int16 full scale = +/- range).
ACCEL_RANGES_G: dict[int, float] = {0: 2.0, 1: 4.0, 2: 8.0, 3: 16.0}
#: Gyroscope range code -> full scale in degrees per second.
GYRO_RANGES_DPS: dict[int, float] = {0: 250.0, 1: 500.0, 2: 1000.0, 3: 2000.0}
#: Magnetometer: fixed range and resolution (AK09916-class part).
MAG_RANGE_UT = 4900.0
MAG_SCALE_UT = 0.15
STANDARD_GRAVITY = 9.80665

HEADER_LAYOUT = Layout(
    "pod packet v1 header",
    (
        ("version", "B"),
        ("sensors", "B"),
        ("boot_id", "H"),
        ("seq", "H"),
        ("n_samples", "B"),
        ("rate_code", "B"),
        ("accel_range", "B"),
        ("gyro_range", "B"),
        ("t0_us", "Q"),
    ),
)
HEADER_SIZE = HEADER_LAYOUT.size  # 18
PACKET_OVERHEAD = HEADER_SIZE + CRC_SIZE  # 20
MAX_SAMPLES = 255  # n_samples is a u8
ATT_HEADER_SIZE = 3  # opcode + handle of a Handle Value Notification
MIN_ATT_MTU = 23
MAX_ATT_MTU = 517

_SAMPLE_DTYPE = np.dtype("<i2")
_AXES = ("x", "y", "z")


class SensorMask(enum.IntFlag):
    """Which sensors a packet carries; each enabled sensor adds 3 int16 channels."""

    ACCEL = 1
    GYRO = 2
    MAG = 4


_ALL_SENSORS = int(SensorMask.ACCEL | SensorMask.GYRO | SensorMask.MAG)
_SENSOR_ORDER = ((SensorMask.ACCEL, "accel"), (SensorMask.GYRO, "gyro"), (SensorMask.MAG, "mag"))
# Decoding builds these per packet; enum construction and bit counting are slow in Python.
_MASKS = tuple(SensorMask(m) for m in range(_ALL_SENSORS + 1))
_CHANNELS = tuple(3 * bin(m).count("1") for m in range(_ALL_SENSORS + 1))


class BadCrcError(ProtocolError):
    """The CRC a frame carries does not match its bytes: it was corrupted on the way."""

    def __init__(self, what: str, computed: int, carried: int, length: int) -> None:
        self.computed = computed
        self.carried = carried
        self.length = length
        super().__init__(
            f"{what}: CRC mismatch (computed 0x{computed:04X}, carried 0x{carried:04X}, "
            f"{length} bytes); the frame was corrupted in transit, drop it and let the reader "
            f"count it, or check the sender's CRC-16/CCITT-FALSE against the golden vectors"
        )


class TruncatedPacketError(ProtocolError):
    """A frame is shorter than its header says it is."""

    def __init__(self, what: str, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{what}: truncated, {actual} bytes but at least {expected} expected; "
            f"drop it, and if this repeats check that the ATT MTU is negotiated before "
            f"streaming and that frames fit in ATT_MTU - 3 bytes (max_samples_per_packet())"
        )


class UnknownVersionError(ProtocolError):
    """A frame with an intact CRC carries a format version this host does not know."""

    def __init__(self, what: str, version: int, supported: int) -> None:
        self.version = version
        self.supported = supported
        super().__init__(
            f"{what}: format version {version} is not supported (this host speaks "
            f"version {supported}); update fusion-edge, or flash pod firmware that speaks "
            f"version {supported}"
        )


class MalformedPacketError(ProtocolError):
    """A frame with an intact CRC whose fields are invalid (unknown code, bad length)."""

    def __init__(self, what: str, problem: str) -> None:
        self.problem = problem
        super().__init__(
            f"{what}: {problem}; the sender's firmware is not following PROTOCOL.md, "
            f"fix it and check it against the golden vectors"
        )


def channel_count(sensors: int) -> int:
    """Number of int16 channels per sample for a sensor mask (3 per enabled sensor)."""
    return _CHANNELS[int(sensors) & _ALL_SENSORS]


@functools.lru_cache(maxsize=64)
def channel_names(sensors: int) -> tuple[str, ...]:
    """Channel names in wire order, e.g. ``("accel_x", ..., "mag_z")``."""
    return tuple(
        f"{name}_{axis}" for flag, name in _SENSOR_ORDER if sensors & flag for axis in _AXES
    )


def channel_scales(sensors: int, accel_range: int, gyro_range: int) -> np.ndarray:
    """SI units per LSB for each channel: m/s^2 (accel), rad/s (gyro), microtesla (mag).

    Returns:
        A read-only float64 array, one entry per channel (shared between calls: copy it
        before changing it).

    Raises:
        ValueError: A range code is not in its table.
    """
    return _channel_scales(int(sensors) & _ALL_SENSORS, accel_range, gyro_range)


@functools.lru_cache(maxsize=256)
def _channel_scales(sensors: int, accel_range: int, gyro_range: int) -> np.ndarray:
    if accel_range not in ACCEL_RANGES_G:
        raise ValueError(
            f"accel range code {accel_range} is unknown; use one of {sorted(ACCEL_RANGES_G)}"
        )
    if gyro_range not in GYRO_RANGES_DPS:
        raise ValueError(
            f"gyro range code {gyro_range} is unknown; use one of {sorted(GYRO_RANGES_DPS)}"
        )
    per_sensor = {
        SensorMask.ACCEL: ACCEL_RANGES_G[accel_range] * STANDARD_GRAVITY / 32768.0,
        SensorMask.GYRO: math.radians(GYRO_RANGES_DPS[gyro_range]) / 32768.0,
        SensorMask.MAG: MAG_SCALE_UT,
    }
    scales = [per_sensor[flag] for flag, _ in _SENSOR_ORDER if sensors & flag for _ in _AXES]
    out = np.asarray(scales, dtype=np.float64)
    out.setflags(write=False)  # cached and shared: nobody may change it
    return out


def packet_size(sensors: int, n_samples: int) -> int:
    """Encoded size in bytes of a v1 packet (header + samples + CRC)."""
    return PACKET_OVERHEAD + 2 * channel_count(sensors) * n_samples


def max_samples_per_packet(att_mtu: int, sensors: int) -> int:
    """How many samples one notification holds at a negotiated ATT MTU.

    A notification carries ``att_mtu - 3`` bytes; a packet spends 20 of them on header and CRC.
    At the default MTU 23 no 9-axis sample fits (returns 0: negotiate a larger MTU first, see
    :func:`min_att_mtu`); at 247 twelve 9-axis samples fit.

    Args:
        att_mtu: Negotiated ATT MTU, 23..517.
        sensors: Sensor mask of the stream.

    Returns:
        Samples per packet, 0..255.

    Raises:
        ValueError: The MTU is outside 23..517 or the mask enables no known sensor.
    """
    if not MIN_ATT_MTU <= att_mtu <= MAX_ATT_MTU:
        raise ValueError(
            f"ATT MTU {att_mtu} is outside the Bluetooth range {MIN_ATT_MTU}..{MAX_ATT_MTU}; "
            f"pass the MTU the link negotiated"
        )
    channels = channel_count(sensors)
    if channels == 0:
        raise ValueError(f"sensor mask {int(sensors)} enables no sensor; enable ACCEL, GYRO or MAG")
    room = att_mtu - ATT_HEADER_SIZE - PACKET_OVERHEAD
    return max(0, min(MAX_SAMPLES, room // (2 * channels)))


def min_att_mtu(sensors: int, n_samples: int = 1) -> int:
    """Smallest ATT MTU whose notifications hold ``n_samples`` samples (41 for one 9-axis)."""
    return ATT_HEADER_SIZE + packet_size(sensors, n_samples)


def quantize_si(
    samples_si: np.ndarray, sensors: int, accel_range: int, gyro_range: int
) -> np.ndarray:
    """Convert SI samples to the int16 wire values, saturating at the int16 limits.

    Args:
        samples_si: ``[n, channels]`` in m/s^2, rad/s and microtesla (channel order as
            :func:`channel_names`).
        sensors: Sensor mask the columns follow.
        accel_range: Accelerometer range code.
        gyro_range: Gyroscope range code.

    Returns:
        ``[n, channels]`` int16, rounded to nearest and clipped to [-32768, 32767] the way a
        sensor saturates.

    Raises:
        ValueError: Wrong shape, unknown range code, or a NaN (which has no wire value).
    """
    x = np.asarray(samples_si, dtype=np.float64)
    channels = channel_count(sensors)
    if x.ndim != 2 or x.shape[1] != channels:
        raise ValueError(
            f"samples_si has shape {x.shape}, expected [n, {channels}] for sensors "
            f"{SensorMask(int(sensors) & _ALL_SENSORS)!r}; give one column per channel"
        )
    if np.isnan(x).any():
        raise ValueError("samples_si contains NaN, which has no int16 value; fill gaps first")
    raw = np.rint(x / channel_scales(sensors, accel_range, gyro_range))
    return np.clip(raw, -32768, 32767).astype(np.int16)


@dataclass(frozen=True, eq=False)
class PodPacket:
    """One decoded (or to-be-encoded) pod packet. Immutable: ``samples`` is read-only.

    Attributes:
        version: Packet format version (1).
        boot_id: Pod boot (session) id, u16; changes at every pod boot.
        seq: Packet sequence number, u16, 0 at boot, wraps 65535 -> 0.
        t0_us: Device timestamp of the first sample, microseconds since pod boot (u64).
        rate_code: Key of :data:`RATE_CODES`.
        accel_range: Key of :data:`ACCEL_RANGES_G`.
        gyro_range: Key of :data:`GYRO_RANGES_DPS`.
        sensors: Enabled sensors.
        samples: ``[n, channels]`` int16 raw values, 1 <= n <= 255.
    """

    version: int
    boot_id: int
    seq: int
    t0_us: int
    rate_code: int
    accel_range: int
    gyro_range: int
    sensors: SensorMask
    samples: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        for name, bits in (("version", 8), ("boot_id", 16), ("seq", 16), ("t0_us", 64)):
            value = getattr(self, name)
            if not 0 <= int(value) < (1 << bits):
                raise ValueError(
                    f"PodPacket.{name}={value} does not fit u{bits}; "
                    f"keep it in 0..{(1 << bits) - 1}"
                )
        if self.rate_code not in RATE_CODES:
            raise ValueError(
                f"rate code {self.rate_code} is unknown; use one of {sorted(RATE_CODES)}"
            )
        channel_scales(0, self.accel_range, self.gyro_range)  # validates both range codes
        if int(self.sensors) & ~_ALL_SENSORS or not int(self.sensors):
            raise ValueError(
                f"sensor mask {int(self.sensors)} is invalid; combine SensorMask.ACCEL, GYRO, MAG"
            )
        object.__setattr__(self, "sensors", SensorMask(int(self.sensors)))
        samples = np.asarray(self.samples)
        channels = channel_count(self.sensors)
        shape_ok = samples.ndim == 2 and samples.shape[1] == channels
        if not shape_ok or not 1 <= len(samples) <= MAX_SAMPLES:
            raise ValueError(
                f"samples has shape {samples.shape}, expected [1..{MAX_SAMPLES}, {channels}] "
                f"for sensors {self.sensors!r}"
            )
        if samples.dtype != np.int16:
            if not np.issubdtype(samples.dtype, np.integer) or (
                samples.size and (samples.min() < -32768 or samples.max() > 32767)
            ):
                raise ValueError(
                    f"samples must be int16 raw values (got {samples.dtype}); "
                    f"convert SI values with quantize_si()"
                )
        frozen = np.array(samples, dtype=np.int16, copy=True, order="C")
        frozen.setflags(write=False)
        object.__setattr__(self, "samples", frozen)

    @property
    def n_samples(self) -> int:
        """Number of samples in the packet."""
        return int(self.samples.shape[0])

    @property
    def sample_rate_hz(self) -> float:
        """Output data rate in Hz."""
        return RATE_CODES[self.rate_code]

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Channel names in column order."""
        return channel_names(self.sensors)

    def sample_times_us(self) -> np.ndarray:
        """Device timestamp of each sample, ``t0_us + round(i * 1e6 / rate)``, as int64 [n]."""
        offsets = np.rint(np.arange(self.n_samples) * (1e6 / self.sample_rate_hz))
        return np.int64(self.t0_us) + offsets.astype(np.int64)

    def to_si(self) -> np.ndarray:
        """Samples in SI units as float32 ``[n, channels]`` (m/s^2, rad/s, microtesla)."""
        scales = channel_scales(self.sensors, self.accel_range, self.gyro_range)
        return (self.samples * scales).astype(np.float32)

    def header_fields(self) -> dict[str, Any]:
        """The header as a dict keyed like :data:`HEADER_LAYOUT` (what the golden vectors list)."""
        return {
            "version": self.version,
            "sensors": int(self.sensors),
            "boot_id": self.boot_id,
            "seq": self.seq,
            "n_samples": self.n_samples,
            "rate_code": self.rate_code,
            "accel_range": self.accel_range,
            "gyro_range": self.gyro_range,
            "t0_us": self.t0_us,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PodPacket):
            return NotImplemented
        return self.header_fields() == other.header_fields() and np.array_equal(
            self.samples, other.samples
        )

    __hash__ = None  # type: ignore[assignment]  # equal packets may hold different arrays

    @classmethod
    def _from_checked(cls, header: tuple[int, ...], samples: np.ndarray) -> PodPacket:
        """Build a packet from fields :func:`decode_packet` has already validated.

        Skips ``__post_init__`` (a third of the decode time): every check it makes was made on
        the wire bytes, and ``samples`` is already a read-only int16 view of them.
        """
        packet = object.__new__(cls)
        version, sensors, boot_id, seq, _n, rate_code, accel_range, gyro_range, t0_us = header
        setattr_ = object.__setattr__
        setattr_(packet, "version", version)
        setattr_(packet, "boot_id", boot_id)
        setattr_(packet, "seq", seq)
        setattr_(packet, "t0_us", t0_us)
        setattr_(packet, "rate_code", rate_code)
        setattr_(packet, "accel_range", accel_range)
        setattr_(packet, "gyro_range", gyro_range)
        setattr_(packet, "sensors", _MASKS[sensors])
        setattr_(packet, "samples", samples)
        return packet


_WHAT = "pod packet"


def encode_packet(p: PodPacket) -> bytes:
    """Encode a packet to its wire bytes (header, samples, CRC).

    Raises:
        UnknownVersionError: ``p.version`` is not :data:`PACKET_VERSION`.
    """
    if p.version != PACKET_VERSION:
        raise UnknownVersionError(_WHAT, p.version, PACKET_VERSION)
    header = HEADER_LAYOUT.encode(p.header_fields())
    return append_crc(header + p.samples.astype(_SAMPLE_DTYPE, copy=False).tobytes())


def _bad_frame(data: bytes, context: str) -> BadCrcError:
    return BadCrcError(context, crc16_ccitt_false(data[:-CRC_SIZE]), carried_crc(data), len(data))


def decode_packet(data: bytes | bytearray | memoryview, *, context: str = _WHAT) -> PodPacket:
    """Decode one notification into a :class:`PodPacket`.

    Args:
        data: The notification's bytes.
        context: How error messages name the frame (the reader passes ``"pod <id> packet"``).

    The checks run in the order PROTOCOL.md fixes, so every implementation names the same
    failure: version, length, CRC, then field values. A frame whose header cannot be trusted
    (unknown version byte, impossible length) is reported as a CRC error when its CRC is also
    wrong, since corruption is then the likelier cause.

    Raises:
        TruncatedPacketError: Shorter than the header says.
        BadCrcError: The CRC does not match.
        UnknownVersionError: Intact frame of another format version.
        MalformedPacketError: Intact frame with invalid fields (unknown codes, zero samples,
            unknown sensor bits, trailing bytes).
    """
    data = bytes(data)
    size = len(data)
    if size < 1:
        raise TruncatedPacketError(context, PACKET_OVERHEAD, 0)
    version = data[0]
    if version != PACKET_VERSION:
        if size > CRC_SIZE and not crc_matches(data):
            raise _bad_frame(data, context)
        raise UnknownVersionError(context, version, PACKET_VERSION)
    if size < PACKET_OVERHEAD:
        raise TruncatedPacketError(context, PACKET_OVERHEAD, size)
    # Field positions come from HEADER_LAYOUT (the declarative table); unpack() is its
    # tuple fast path, so no dict is built per packet.
    header = HEADER_LAYOUT.unpack(data)
    _v, sensors, _boot, _seq, n_samples, rate_code, accel_range, gyro_range, _t0 = header
    if sensors & ~_ALL_SENSORS:
        if not crc_matches(data):
            raise _bad_frame(data, context)
        raise MalformedPacketError(context, f"sensor mask 0x{sensors:02X} sets unknown bits")
    values = n_samples * _CHANNELS[sensors]
    expected = PACKET_OVERHEAD + 2 * values
    if size < expected:
        raise TruncatedPacketError(context, expected, size)
    if size > expected:
        if not crc_matches(data):
            raise _bad_frame(data, context)
        raise MalformedPacketError(
            context, f"{size} bytes but the header declares {expected} (trailing bytes)"
        )
    if not crc_matches(data):
        raise _bad_frame(data, context)
    if n_samples == 0 or sensors == 0:
        raise MalformedPacketError(
            context, f"packet carries no samples (n_samples={n_samples}, sensors={sensors})"
        )
    if rate_code not in RATE_CODES:
        raise MalformedPacketError(context, f"rate code {rate_code} is unknown")
    if accel_range not in ACCEL_RANGES_G:
        raise MalformedPacketError(context, f"accel range code {accel_range} is unknown")
    if gyro_range not in GYRO_RANGES_DPS:
        raise MalformedPacketError(context, f"gyro range code {gyro_range} is unknown")
    # A view of the immutable bytes: read-only, no copy.
    samples = np.frombuffer(data, dtype=_SAMPLE_DTYPE, offset=HEADER_SIZE, count=values)
    return PodPacket._from_checked(header, samples.reshape(n_samples, -1))
