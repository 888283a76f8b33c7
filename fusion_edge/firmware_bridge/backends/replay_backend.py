"""A plain bleak backend that replays recorded pod notifications: no radio, no bumble.

:class:`ReplayField` holds :class:`ReplayPod` scripts (notification bytes with their times, and
where the link drops) and exposes bound ``BaseBleakClient`` / ``BaseBleakScanner`` subclasses as
:attr:`ReplayField.backend`, which :class:`~fusion_edge.firmware_bridge.ble.BleTransport` passes to
bleak as ``backend=``. It is meant for fast unit tests of the transport: allow-list, gap and
duplicate accounting, reconnect backoff, shutdown.

Playback of a pod's script starts when the pod receives START and continues, across reconnects,
from where it stopped. The control characteristic answers like a minimal firmware: INFO with the
pod's info, START/STOP/SET_* with OK. Everything the host writes is kept in
:attr:`ReplayPodState.commands` so tests can check what was sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError

from fusion_edge.firmware_bridge.ble import BleBackend, normalize_address
from fusion_edge.firmware_bridge.control import (
    CommandResponse,
    InfoCommand,
    InfoResponse,
    StartCommand,
    StatusCode,
    StopCommand,
    decode_command,
    encode_response,
)
from fusion_edge.firmware_bridge.protocol import (
    CONTROL_CHAR_UUID,
    DATA_CHAR_UUID,
    PACKET_VERSION,
    POD_SERVICE_UUID,
    SensorMask,
)

_SERVICE_HANDLE, _DATA_HANDLE, _CONTROL_HANDLE = 0x10, 0x11, 0x14


@dataclass(frozen=True)
class ReplayEvent:
    """One step of a pod's script.

    Attributes:
        at_s: Seconds after playback starts (START) when it happens.
        data: Notification bytes on the data characteristic, or ``None`` for a link drop.
    """

    at_s: float
    data: bytes | None


@dataclass(frozen=True)
class ReplayPod:
    """A scripted pod.

    Attributes:
        address: BLE address.
        events: The script, in time order.
        name: Advertised local name.
        att_mtu: What ``mtu_size`` reports once connected.
        boot_id: Boot id INFO reports.
    """

    address: str
    events: Sequence[ReplayEvent]
    name: str = "fusion-pod"
    att_mtu: int = 247
    boot_id: int = 1

    @staticmethod
    def from_packets(
        address: str, packets: Iterable[bytes | None], *, interval_s: float = 0.002, **kwargs: Any
    ) -> ReplayPod:
        """A pod that sends ``packets`` evenly spaced (``None`` in the list drops the link)."""
        events = [ReplayEvent(i * interval_s, p) for i, p in enumerate(packets)]
        return ReplayPod(address, events, **kwargs)


@dataclass
class ReplayPodState:
    """What happened to one scripted pod during a test."""

    pod: ReplayPod
    cursor: int = 0
    connected: bool = False
    streaming: bool = False
    connects: int = 0
    connect_times: list[float] = field(default_factory=list)
    fail_next_connects: int = 0
    commands: list[Any] = field(default_factory=list)
    client: ReplayBleakClient | None = None


class ReplayField:
    """The scripted pods a test's transport can see.

    Args:
        pods: The scripts; every pod advertises the pod service.
    """

    def __init__(self, pods: Iterable[ReplayPod]) -> None:
        self.pods: dict[str, ReplayPodState] = {
            normalize_address(p.address): ReplayPodState(p) for p in pods
        }
        field_ = self
        client = type("BoundReplayBleakClient", (ReplayBleakClient,), {"field": field_})
        scanner = type("BoundReplayBleakScanner", (ReplayBleakScanner,), {"field": field_})
        #: What to pass to ``BleTransport(backend=...)``.
        self.backend = BleBackend(client=client, scanner=scanner, name="replay")

    def state(self, address: str) -> ReplayPodState:
        """The record of one pod."""
        return self.pods[normalize_address(address)]

    def fail_next_connects(self, address: str, count: int) -> None:
        """Make the next ``count`` connection attempts to a pod fail (pod out of range)."""
        self.state(address).fail_next_connects = count

    def done(self, address: str) -> bool:
        """True once a pod's whole script has played."""
        st = self.state(address)
        return st.cursor >= len(st.pod.events)


def _services() -> BleakGATTServiceCollection:
    services = BleakGATTServiceCollection()
    service = BleakGATTService(None, _SERVICE_HANDLE, POD_SERVICE_UUID)
    services.add_service(service)
    for handle, uuid, props in (
        (_DATA_HANDLE, DATA_CHAR_UUID, ["notify"]),
        (_CONTROL_HANDLE, CONTROL_CHAR_UUID, ["write", "indicate"]),
    ):
        char = BleakGATTCharacteristic(None, handle, uuid, props, lambda: 20, service)  # type: ignore[arg-type]
        services.add_characteristic(char)
        services.add_descriptor(
            BleakGATTDescriptor(None, handle + 1, "00002902-0000-1000-8000-00805f9b34fb", char)
        )
    return services


class ReplayBleakClient(BaseBleakClient):
    """bleak client backend over a :class:`ReplayField` (bound per field as a subclass)."""

    field: ReplayField

    def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback=kwargs.pop("disconnected_callback", None),
            timeout=kwargs.pop("timeout", 10.0),
            **kwargs,
        )
        self.address = normalize_address(self.address)
        self._callbacks: dict[int, NotifyCallback] = {}
        self._player: asyncio.Task[None] | None = None

    @property
    def _state(self) -> ReplayPodState:
        try:
            return self.field.pods[self.address]
        except KeyError:
            raise BleakDeviceNotFoundError(
                self.address, f"no replayed pod {self.address}"
            ) from None

    @property
    def name(self) -> str:
        return self._state.pod.name

    @property
    def mtu_size(self) -> int:
        return self._state.pod.att_mtu

    @property
    def is_connected(self) -> bool:
        return self._state.connected and self._state.client is self

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        st = self._state
        st.connect_times.append(time.monotonic())
        await asyncio.sleep(0)
        if st.fail_next_connects > 0:
            st.fail_next_connects -= 1
            raise BleakError(f"replayed pod {self.address} is out of range")
        st.connected, st.client = True, self
        st.connects += 1
        self.services = _services()

    async def disconnect(self) -> None:
        self._drop(notify=False)

    def _drop(self, *, notify: bool) -> None:
        st = self._state
        if st.client is not self or not st.connected:
            return
        st.connected = False
        st.streaming = False
        self._callbacks.clear()
        if self._player is not None and self._player is not asyncio.current_task():
            self._player.cancel()
        if notify and self._disconnected_callback is not None:
            self._disconnected_callback()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise BleakError("replayed pods do not pair; they need no pairing")

    async def unpair(self) -> None:
        raise BleakError("replayed pods do not pair; they need no pairing")

    def _check(self) -> ReplayPodState:
        if not self.is_connected:
            raise BleakError(f"replayed pod {self.address} is not connected")
        return self._state

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        raise BleakError("pod characteristics are not readable; subscribe instead")

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        return bytearray(b"\x00\x00")

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        self._check()

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        st = self._check()
        if characteristic.handle != _CONTROL_HANDLE:
            raise BleakError(f"characteristic {characteristic.uuid} is not writable")
        command = decode_command(bytes(data))
        st.commands.append(command)
        answer: CommandResponse | InfoResponse
        if isinstance(command, InfoCommand):
            answer = InfoResponse(
                fw_major=1,
                fw_minor=0,
                fw_patch=0,
                packet_version=PACKET_VERSION,
                boot_id=st.pod.boot_id,
                sensors=SensorMask(7),
                rate_code=2,
                accel_range=2,
                gyro_range=2,
                battery_v=3.9,
                battery_pct=80,
                streaming=st.streaming,
                token=command.token,
            )
        else:
            answer = CommandResponse(command.OPCODE, StatusCode.OK, command.token)
            if isinstance(command, StartCommand) and not st.streaming:
                st.streaming = True
                self._player = asyncio.get_running_loop().create_task(self._play())
            elif isinstance(command, StopCommand):
                st.streaming = False
                if self._player is not None:
                    self._player.cancel()
        frame = encode_response(answer)
        # The answer travels as an indication after the write response, as on a real pod.
        asyncio.get_running_loop().call_soon(self._deliver, _CONTROL_HANDLE, frame)

    def _deliver(self, handle: int, data: bytes) -> None:
        callback = self._callbacks.get(handle)
        if callback is not None and self.is_connected:
            callback(bytearray(data))

    async def _play(self) -> None:
        st = self._state
        events = st.pod.events
        last_at = events[st.cursor - 1].at_s if st.cursor else 0.0
        while st.cursor < len(events) and self.is_connected and st.streaming:
            event = events[st.cursor]
            await asyncio.sleep(max(0.0, event.at_s - last_at))
            last_at = event.at_s
            st.cursor += 1
            if event.data is None:
                self._drop(notify=True)
                return
            self._deliver(_DATA_HANDLE, event.data)

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        self._check()
        self._callbacks[characteristic.handle] = callback

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._check()
        self._callbacks.pop(characteristic.handle, None)


class ReplayBleakScanner(BaseBleakScanner):
    """bleak scanner backend over a :class:`ReplayField`: every pod advertises at once."""

    field: ReplayField

    def __init__(
        self,
        detection_callback: Callable[..., Any] | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._handle: asyncio.Handle | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        self._handle = asyncio.get_running_loop().call_soon(self._advertise)

    def _advertise(self) -> None:
        # Every pod advertises every 20 ms, like a pod's advertising interval.
        self._handle = asyncio.get_running_loop().call_later(0.02, self._advertise)
        for address, st in self.field.pods.items():
            adv = AdvertisementData(
                local_name=st.pod.name,
                manufacturer_data={},
                service_data={},
                service_uuids=[POD_SERVICE_UUID],
                tx_power=None,
                rssi=-60,
                platform_data=(),
            )
            if not self.is_allowed_uuid(adv.service_uuids):
                continue
            device = self.create_or_update_device(address, address, st.pod.name, None, adv)
            self.call_detection_callbacks(device, adv)

    async def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
