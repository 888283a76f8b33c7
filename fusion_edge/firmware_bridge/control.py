"""Control characteristic v1: commands the host writes and the responses the pod indicates.

Every frame is ``version u8, opcode u8, token u8, [status u8,] arguments..., CRC-16`` (the
status byte only in responses), little-endian, sized to fit the default ATT MTU 23 so a pod can
be configured before the MTU exchange. A response echoes the command's opcode with bit 7 set
and its token, so the host can match answers to questions. Argument layouts are the tables in
:data:`COMMAND_LAYOUTS` and :data:`INFO_LAYOUT`; ``PROTOCOL.md`` is the normative text.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from fusion_edge.errors import ProtocolError
from fusion_edge.firmware_bridge.protocol import (
    ACCEL_RANGES_G,
    GYRO_RANGES_DPS,
    RATE_CODES,
    BadCrcError,
    MalformedPacketError,
    SensorMask,
    TruncatedPacketError,
    UnknownVersionError,
)
from fusion_edge.firmware_bridge.wire_layout import (
    CRC_SIZE,
    Layout,
    append_crc,
    carried_crc,
    crc16_ccitt_false,
    crc_matches,
)

__all__ = [
    "BadArgumentError",
    "COMMAND_LAYOUTS",
    "CONTROL_VERSION",
    "Command",
    "CommandResponse",
    "INFO_LAYOUT",
    "InfoCommand",
    "InfoResponse",
    "Opcode",
    "RESPONSE_FLAG",
    "Response",
    "SetRangeCommand",
    "SetRateCommand",
    "SetSensorsCommand",
    "SetTimeCommand",
    "StartCommand",
    "StatusCode",
    "StopCommand",
    "UnknownCommandError",
    "decode_command",
    "decode_response",
    "encode_command",
    "encode_response",
    "status_for_error",
]

CONTROL_VERSION = 1
RESPONSE_FLAG = 0x80
_ALL_SENSORS = int(SensorMask.ACCEL | SensorMask.GYRO | SensorMask.MAG)


class Opcode(enum.IntEnum):
    """Control command opcodes (responses carry ``opcode | 0x80``)."""

    START = 0x01
    STOP = 0x02
    SET_RATE = 0x03
    SET_RANGE = 0x04
    SET_TIME = 0x05
    INFO = 0x06
    SET_SENSORS = 0x07


class StatusCode(enum.IntEnum):
    """Result of a command, the 4th byte of every response."""

    OK = 0
    UNKNOWN_COMMAND = 1
    BAD_ARGUMENT = 2
    BUSY = 3
    UNSUPPORTED_VERSION = 4
    BAD_CRC = 5
    BAD_LENGTH = 6
    MTU_TOO_SMALL = 7
    NOT_STREAMING = 8
    INTERNAL_ERROR = 0xFF


class UnknownCommandError(ProtocolError):
    """An intact command frame with an opcode this side does not know."""

    def __init__(self, opcode: int, token: int) -> None:
        self.opcode = opcode
        self.token = token
        super().__init__(
            f"control command: opcode 0x{opcode:02X} is unknown (known: "
            f"{', '.join(f'0x{o:02X}' for o in Opcode)}); answer UNKNOWN_COMMAND, or update "
            f"the side that does not know it"
        )


class BadArgumentError(ProtocolError):
    """An intact command whose argument is out of range (e.g. an unknown rate code)."""

    def __init__(self, opcode: int, token: int, problem: str) -> None:
        self.opcode = opcode
        self.token = token
        self.problem = problem
        super().__init__(
            f"control command 0x{opcode:02X}: {problem}; answer BAD_ARGUMENT, and send a "
            f"value from the code tables in PROTOCOL.md"
        )


def _check_u(name: str, value: int, bits: int) -> None:
    if not 0 <= int(value) < (1 << bits):
        raise ValueError(f"{name}={value} does not fit u{bits}; keep it in 0..{(1 << bits) - 1}")


def _check_code(name: str, value: int, table: dict[int, float]) -> None:
    if value not in table:
        raise ValueError(f"{name} {value} is unknown; use one of {sorted(table)}")


@dataclass(frozen=True)
class StartCommand:
    """Start streaming packets on the data characteristic."""

    OPCODE: ClassVar[Opcode] = Opcode.START
    token: int = 0


@dataclass(frozen=True)
class StopCommand:
    """Stop streaming."""

    OPCODE: ClassVar[Opcode] = Opcode.STOP
    token: int = 0


@dataclass(frozen=True)
class SetRateCommand:
    """Set the output data rate (a key of ``RATE_CODES``)."""

    OPCODE: ClassVar[Opcode] = Opcode.SET_RATE
    rate_code: int
    token: int = 0

    def __post_init__(self) -> None:
        _check_code("rate code", self.rate_code, RATE_CODES)


@dataclass(frozen=True)
class SetRangeCommand:
    """Set the accelerometer and gyroscope full-scale ranges (range codes)."""

    OPCODE: ClassVar[Opcode] = Opcode.SET_RANGE
    accel_range: int
    gyro_range: int
    token: int = 0

    def __post_init__(self) -> None:
        _check_code("accel range code", self.accel_range, ACCEL_RANGES_G)
        _check_code("gyro range code", self.gyro_range, GYRO_RANGES_DPS)


@dataclass(frozen=True)
class SetTimeCommand:
    """Set the pod's microsecond clock (the clock of ``t0_us``) to ``time_us``."""

    OPCODE: ClassVar[Opcode] = Opcode.SET_TIME
    time_us: int
    token: int = 0

    def __post_init__(self) -> None:
        _check_u("time_us", self.time_us, 64)


@dataclass(frozen=True)
class InfoCommand:
    """Ask for an :class:`InfoResponse`."""

    OPCODE: ClassVar[Opcode] = Opcode.INFO
    token: int = 0


@dataclass(frozen=True)
class SetSensorsCommand:
    """Choose which sensors the packets carry."""

    OPCODE: ClassVar[Opcode] = Opcode.SET_SENSORS
    sensors: SensorMask
    token: int = 0

    def __post_init__(self) -> None:
        if not int(self.sensors) or int(self.sensors) & ~_ALL_SENSORS:
            raise ValueError(
                f"sensor mask {int(self.sensors)} is invalid; combine SensorMask.ACCEL, GYRO, MAG"
            )
        object.__setattr__(self, "sensors", SensorMask(int(self.sensors)))


Command = (
    StartCommand
    | StopCommand
    | SetRateCommand
    | SetRangeCommand
    | SetTimeCommand
    | InfoCommand
    | SetSensorsCommand
)

_COMMAND_TYPES: dict[Opcode, type[Any]] = {
    cls.OPCODE: cls
    for cls in (
        StartCommand,
        StopCommand,
        SetRateCommand,
        SetRangeCommand,
        SetTimeCommand,
        InfoCommand,
        SetSensorsCommand,
    )
}

COMMAND_HEADER = Layout(
    "control command header", (("version", "B"), ("opcode", "B"), ("token", "B"))
)
RESPONSE_HEADER = Layout(
    "control response header",
    (("version", "B"), ("opcode", "B"), ("token", "B"), ("status", "B")),
)

#: Opcode -> argument layout (what follows the 3-byte command header).
COMMAND_LAYOUTS: dict[Opcode, Layout] = {
    Opcode.START: Layout("START arguments", ()),
    Opcode.STOP: Layout("STOP arguments", ()),
    Opcode.SET_RATE: Layout("SET_RATE arguments", (("rate_code", "B"),)),
    Opcode.SET_RANGE: Layout("SET_RANGE arguments", (("accel_range", "B"), ("gyro_range", "B"))),
    Opcode.SET_TIME: Layout("SET_TIME arguments", (("time_us", "Q"),)),
    Opcode.INFO: Layout("INFO arguments", ()),
    Opcode.SET_SENSORS: Layout("SET_SENSORS arguments", (("sensors", "B"),)),
}

#: Payload of an OK answer to INFO, after the 4-byte response header: 14 bytes, so the whole
#: frame is 4 + 14 + 2 = 20 bytes, exactly one notification at the default MTU 23.
INFO_LAYOUT = Layout(
    "INFO response payload",
    (
        ("fw_major", "B"),
        ("fw_minor", "B"),
        ("fw_patch", "B"),
        ("packet_version", "B"),
        ("boot_id", "H"),
        ("sensors", "B"),
        ("rate_code", "B"),
        ("accel_range", "B"),
        ("gyro_range", "B"),
        ("battery_v", "H", 0.001),
        ("battery_pct", "B"),
        ("streaming", "B"),
    ),
)


@dataclass(frozen=True)
class CommandResponse:
    """The pod's answer to a command (every opcode; INFO answers OK with :class:`InfoResponse`).

    Attributes:
        opcode: The command answered.
        status: What happened.
        token: The command's token, echoed.
    """

    opcode: int
    status: StatusCode
    token: int = 0

    def __post_init__(self) -> None:
        _check_u("opcode", self.opcode, 7)
        _check_u("token", self.token, 8)
        object.__setattr__(self, "status", StatusCode(self.status))
        if int(self.opcode) in Opcode._value2member_map_:
            object.__setattr__(self, "opcode", Opcode(self.opcode))

    @property
    def ok(self) -> bool:
        """True when the command succeeded."""
        return self.status is StatusCode.OK


@dataclass(frozen=True)
class InfoResponse:
    """A successful answer to INFO: what the pod is and how it is configured.

    Attributes:
        fw_major: Firmware version, major part (``firmware_version`` joins the three).
        fw_minor: Firmware version, minor part.
        fw_patch: Firmware version, patch part.
        packet_version: Data packet format version the pod sends.
        boot_id: The boot id its packets carry.
        sensors: Enabled sensors.
        rate_code: Current rate code.
        accel_range: Current accelerometer range code.
        gyro_range: Current gyroscope range code.
        battery_v: Battery voltage in volts (1 mV resolution).
        battery_pct: Battery charge 0..100, or 255 when the pod cannot tell.
        streaming: Whether the pod is streaming now.
        token: The INFO command's token, echoed.
    """

    fw_major: int
    fw_minor: int
    fw_patch: int
    packet_version: int
    boot_id: int
    sensors: SensorMask
    rate_code: int
    accel_range: int
    gyro_range: int
    battery_v: float
    battery_pct: int
    streaming: bool
    token: int = 0

    opcode: ClassVar[Opcode] = Opcode.INFO
    status: ClassVar[StatusCode] = StatusCode.OK
    ok: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "sensors", SensorMask(int(self.sensors)))
        object.__setattr__(self, "streaming", bool(self.streaming))
        # a float read back from millivolts must compare equal to what was encoded
        object.__setattr__(self, "battery_v", round(float(self.battery_v), 3))

    @property
    def firmware_version(self) -> str:
        """Firmware version as ``"major.minor.patch"``."""
        return f"{self.fw_major}.{self.fw_minor}.{self.fw_patch}"

    @property
    def sample_rate_hz(self) -> float | None:
        """Output data rate in Hz, ``None`` for a code this host does not know."""
        return RATE_CODES.get(self.rate_code)


Response = CommandResponse | InfoResponse


def _values(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def encode_command(cmd: Command) -> bytes:
    """Encode a command frame for the control characteristic.

    Raises:
        ValueError: Not a command object, or a field does not fit its wire type.
    """
    opcode = getattr(type(cmd), "OPCODE", None)
    if opcode not in _COMMAND_TYPES:
        raise ValueError(f"{cmd!r} is not a control command; use one of the *Command classes")
    header = COMMAND_HEADER.encode(
        {"version": CONTROL_VERSION, "opcode": opcode, "token": cmd.token}
    )
    return append_crc(header + COMMAND_LAYOUTS[opcode].encode(_values(cmd)))


def _check_frame(what: str, data: bytes, header: Layout) -> None:
    """Version, minimum length and CRC checks shared by commands and responses."""
    if len(data) < 1:
        raise TruncatedPacketError(what, header.size + CRC_SIZE, 0)
    if data[0] != CONTROL_VERSION:
        if len(data) > CRC_SIZE and not crc_matches(data):
            raise BadCrcError(
                what, crc16_ccitt_false(data[:-CRC_SIZE]), carried_crc(data), len(data)
            )
        raise UnknownVersionError(what, data[0], CONTROL_VERSION)
    if len(data) < header.size + CRC_SIZE:
        raise TruncatedPacketError(what, header.size + CRC_SIZE, len(data))


def _check_length(what: str, data: bytes, expected: int) -> None:
    if len(data) < expected:
        raise TruncatedPacketError(what, expected, len(data))
    if not crc_matches(data):
        raise BadCrcError(what, crc16_ccitt_false(data[:-CRC_SIZE]), carried_crc(data), len(data))
    if len(data) > expected:
        raise MalformedPacketError(what, f"{len(data)} bytes but {expected} expected")


def decode_command(data: bytes | bytearray | memoryview) -> Command:
    """Decode a command frame (what the pod firmware, or a simulated pod, does).

    Raises:
        TruncatedPacketError, BadCrcError, UnknownVersionError, MalformedPacketError: As for
            packets.
        UnknownCommandError: Intact frame, unknown opcode.
        BadArgumentError: Intact frame, argument outside its code table.
    """
    data = bytes(data)
    what = "control command"
    _check_frame(what, data, COMMAND_HEADER)
    h = COMMAND_HEADER.decode(data)
    if h["opcode"] not in _COMMAND_TYPES:
        if not crc_matches(data):
            raise BadCrcError(
                what, crc16_ccitt_false(data[:-CRC_SIZE]), carried_crc(data), len(data)
            )
        raise UnknownCommandError(h["opcode"], h["token"])
    layout = COMMAND_LAYOUTS[Opcode(h["opcode"])]
    _check_length(what, data, COMMAND_HEADER.size + layout.size + CRC_SIZE)
    args = layout.decode(data, COMMAND_HEADER.size)
    try:
        return _COMMAND_TYPES[Opcode(h["opcode"])](token=h["token"], **args)  # type: ignore[no-any-return]
    except ValueError as exc:
        raise BadArgumentError(h["opcode"], h["token"], str(exc).split(";")[0]) from exc


def encode_response(resp: Response) -> bytes:
    """Encode a response frame (what the pod indicates on the control characteristic).

    Raises:
        ValueError: An OK answer to INFO given as a bare :class:`CommandResponse` (it must
            carry the payload: use :class:`InfoResponse`).
    """
    if (
        not isinstance(resp, InfoResponse)
        and resp.opcode == Opcode.INFO
        and resp.status == StatusCode.OK
    ):
        raise ValueError("an OK answer to INFO carries the pod's details; send an InfoResponse")
    header = RESPONSE_HEADER.encode(
        {
            "version": CONTROL_VERSION,
            "opcode": int(resp.opcode) | RESPONSE_FLAG,
            "token": resp.token,
            "status": int(resp.status),
        }
    )
    payload = INFO_LAYOUT.encode(_values(resp)) if isinstance(resp, InfoResponse) else b""
    return append_crc(header + payload)


def decode_response(data: bytes | bytearray | memoryview) -> Response:
    """Decode a response frame: :class:`InfoResponse` for an OK INFO, else :class:`CommandResponse`.

    Raises:
        TruncatedPacketError, BadCrcError, UnknownVersionError, MalformedPacketError: As for
            packets (a missing response flag or an unknown status code is malformed).
    """
    data = bytes(data)
    what = "control response"
    _check_frame(what, data, RESPONSE_HEADER)
    h = RESPONSE_HEADER.decode(data)
    opcode = h["opcode"] & ~RESPONSE_FLAG
    is_info = opcode == Opcode.INFO and h["status"] == StatusCode.OK
    payload = INFO_LAYOUT.size if is_info else 0
    _check_length(what, data, RESPONSE_HEADER.size + payload + CRC_SIZE)
    if not h["opcode"] & RESPONSE_FLAG:
        raise MalformedPacketError(what, f"opcode byte 0x{h['opcode']:02X} lacks the response flag")
    if h["status"] not in StatusCode._value2member_map_:
        raise MalformedPacketError(what, f"status code {h['status']} is unknown")
    if is_info:
        return InfoResponse(token=h["token"], **INFO_LAYOUT.decode(data, RESPONSE_HEADER.size))
    return CommandResponse(opcode=opcode, status=StatusCode(h["status"]), token=h["token"])


_STATUS_FOR_ERROR: tuple[tuple[type[ProtocolError], StatusCode], ...] = (
    (UnknownCommandError, StatusCode.UNKNOWN_COMMAND),
    (BadArgumentError, StatusCode.BAD_ARGUMENT),
    (UnknownVersionError, StatusCode.UNSUPPORTED_VERSION),
    (BadCrcError, StatusCode.BAD_CRC),
    (TruncatedPacketError, StatusCode.BAD_LENGTH),
    (MalformedPacketError, StatusCode.BAD_LENGTH),
)


def status_for_error(exc: ProtocolError) -> StatusCode:
    """The status a pod answers when :func:`decode_command` raised ``exc``."""
    for cls, status in _STATUS_FOR_ERROR:
        if isinstance(exc, cls):
            return status
    return StatusCode.INTERNAL_ERROR
