"""Host side of the pod control channel: send a command, wait for its answer, check the status.

The pod's control characteristic takes a command frame (write with response) and answers with a
response frame as a notification/indication that echoes the command's token
(:mod:`fusion_edge.firmware_bridge.control`). :class:`PodCommander` numbers the commands, matches
answers by token, applies a timeout, and turns a status other than OK into a
:class:`~fusion_edge.errors.TransportError` that says what to do. It only needs a coroutine that
writes bytes, so it works over any bleak backend (and in tests without one).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fusion_edge.errors import ProtocolError, TransportError
from fusion_edge.firmware_bridge.control import (
    Command,
    InfoCommand,
    InfoResponse,
    Response,
    SetRangeCommand,
    SetRateCommand,
    SetSensorsCommand,
    SetTimeCommand,
    StartCommand,
    StatusCode,
    StopCommand,
    decode_response,
    encode_command,
)
from fusion_edge.firmware_bridge.protocol import SensorMask

logger = logging.getLogger(__name__)

#: What to do when a pod answers with a status other than OK.
STATUS_ADVICE: dict[StatusCode, str] = {
    StatusCode.UNKNOWN_COMMAND: "update the pod firmware to one that knows this command",
    StatusCode.BAD_ARGUMENT: "use a rate/range code from the tables in PROTOCOL.md",
    StatusCode.BUSY: "wait a moment and retry",
    StatusCode.UNSUPPORTED_VERSION: "update the pod firmware or fusion-edge so both speak the "
    "same control protocol version",
    StatusCode.BAD_CRC: "the command was damaged on the radio link; retry, and move the pod "
    "closer if it keeps happening",
    StatusCode.BAD_LENGTH: "the command was damaged or truncated on the link; retry",
    StatusCode.MTU_TOO_SMALL: "the link's ATT MTU is too small for one sample: use an adapter "
    "and OS that negotiate an MTU of at least 41 bytes, or stream fewer sensors",
    StatusCode.NOT_STREAMING: "send START first",
    StatusCode.INTERNAL_ERROR: "power-cycle the pod; if it persists, send it for service",
}


@dataclass(frozen=True)
class PodSettings:
    """What the transport configures on each pod after connecting (``None``: leave as is).

    Attributes:
        rate_code: Output data rate code (see ``RATE_CODES``).
        accel_range: Accelerometer range code.
        gyro_range: Gyroscope range code (both ranges must be given together).
        sensors: Sensors to stream.
        set_time: Set the pod clock to the host's monotonic time (µs) once per pod boot.
    """

    rate_code: int | None = None
    accel_range: int | None = None
    gyro_range: int | None = None
    sensors: SensorMask | None = None
    set_time: bool = True

    def __post_init__(self) -> None:
        if (self.accel_range is None) != (self.gyro_range is None):
            raise ValueError(
                "PodSettings: give accel_range and gyro_range together (one SET_RANGE command "
                "sets both), or neither"
            )

    def commands(self, host_time_us: int | None) -> list[Command]:
        """The configuration commands, in the order they are sent."""
        out: list[Command] = []
        if self.sensors is not None:
            out.append(SetSensorsCommand(sensors=self.sensors))
        if self.rate_code is not None:
            out.append(SetRateCommand(rate_code=self.rate_code))
        if self.accel_range is not None and self.gyro_range is not None:
            out.append(SetRangeCommand(accel_range=self.accel_range, gyro_range=self.gyro_range))
        if host_time_us is not None:
            out.append(SetTimeCommand(time_us=host_time_us))
        return out


class PodCommander:
    """Sends control commands to one pod and matches the answers.

    Args:
        address: The pod, for messages.
        write: Coroutine function that writes one frame to the control characteristic.
        timeout: Default seconds to wait for an answer.
    """

    def __init__(
        self, address: str, write: Callable[[bytes], Awaitable[None]], *, timeout: float
    ) -> None:
        self.address = address
        self._write = write
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._token = 0
        self._pending: dict[int, asyncio.Future[Response]] = {}

    def on_response(self, data: bytes | bytearray) -> None:
        """Feed one notification from the control characteristic."""
        try:
            response = decode_response(bytes(data))
        except ProtocolError as exc:
            logger.warning("pod %s: unreadable control response dropped: %s", self.address, exc)
            return
        future = self._pending.get(response.token)
        if future is None or future.done():
            logger.info("pod %s: unexpected control response %r", self.address, response)
            return
        future.set_result(response)

    async def send(self, command: Command, *, timeout: float | None = None) -> Response:
        """Send ``command`` and return the pod's answer.

        Raises:
            TransportError: No answer in time, or a status other than OK.
        """
        timeout = self._timeout if timeout is None else timeout
        async with self._lock:  # one command in flight per pod keeps the pod firmware simple
            self._token = self._token % 255 + 1
            command = dataclasses.replace(command, token=self._token)
            future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
            self._pending[self._token] = future
            name = type(command).OPCODE.name
            try:
                await asyncio.wait_for(self._write(encode_command(command)), timeout)
                response = await asyncio.wait_for(future, timeout)
            except (asyncio.TimeoutError, TimeoutError) as exc:
                raise TransportError(
                    f"pod {self.address} did not answer {name} within {timeout:.1f} s: check it "
                    "is still connected and charged, then retry"
                ) from exc
            finally:
                self._pending.pop(command.token, None)
        if not response.ok:
            advice = STATUS_ADVICE.get(response.status, "check the pod firmware")
            raise TransportError(
                f"pod {self.address} refused {name}: {response.status.name}; {advice}"
            )
        return response

    async def info(self) -> InfoResponse:
        """Ask the pod what it is (firmware, boot id, sensors, rate, ranges, battery)."""
        response = await self.send(InfoCommand())
        if not isinstance(response, InfoResponse):
            raise TransportError(
                f"pod {self.address} answered INFO without its info payload: update its firmware"
            )
        return response

    async def configure(self, settings: PodSettings, *, host_time_us: int | None) -> None:
        """Send the configuration commands of ``settings`` (and SET_TIME when a time is given)."""
        for command in settings.commands(host_time_us):
            await self.send(command)

    async def start(self) -> None:
        """Start streaming."""
        await self.send(StartCommand())

    async def stop(self) -> None:
        """Stop streaming; a pod that was not streaming is fine."""
        try:
            await self.send(StopCommand())
        except TransportError as exc:
            if StatusCode.NOT_STREAMING.name not in str(exc):
                raise
