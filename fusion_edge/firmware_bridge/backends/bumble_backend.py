"""Simulated pods over a real BLE stack: a bleak backend that drives an in-process bumble host.

:class:`SimulatedPodField` builds, in the running asyncio loop, one bumble *central* (the kit's
adapter) and one bumble *peripheral* per :class:`~fusion_edge.firmware_bridge.sim_pod.SimulatedPod`,
each with its own bumble ``Controller`` on a shared in-memory ``LocalLink``. Every pod advertises
the pod service and serves a GATT table with the data characteristic (notify) and the control
characteristic (write + indicate). What travels between them is real HCI, L2CAP, ATT and GATT:
advertising reports, connection, MTU exchange, service discovery, CCCD writes, notifications and
indications.

:attr:`SimulatedPodField.backend` holds ``BaseBleakClient`` / ``BaseBleakScanner`` subclasses
bound to the field; :class:`~fusion_edge.firmware_bridge.ble.BleTransport` passes them to bleak's
``backend=``, so the transport runs unchanged on top of them. Everything runs in one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError
from bleak.uuids import normalize_uuid_str
from bumble import att, core, data_types
from bumble.controller import Controller
from bumble.core import AdvertisingData
from bumble.device import Connection, Device, Peer
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.gatt_client import CharacteristicProxy
from bumble.hci import HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR, Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from fusion_edge.firmware_bridge.ble import BleBackend, normalize_address
from fusion_edge.firmware_bridge.protocol import CONTROL_CHAR_UUID, DATA_CHAR_UUID, POD_SERVICE_UUID
from fusion_edge.firmware_bridge.sim_pod import Fault, SimulatedPod, SineSampleSource

logger = logging.getLogger(__name__)

#: Address of the simulated kit adapter (a random static address).
CENTRAL_ADDRESS = "F0:F0:F0:F0:F0:F0"


def _make_device(link: LocalLink, address: str, name: str) -> Device:
    controller = Controller(name, link=link, public_address=address)
    return Device(
        name=name, address=Address(address), host=Host(controller, AsyncPipeSink(controller))
    )


def _uuid_str(uuid: core.UUID) -> str:
    return normalize_uuid_str(uuid.to_hex_str("-"))


class _PodPeripheral:
    """One simulated pod on the air: a bumble device serving the pod GATT table."""

    def __init__(self, link: LocalLink, pod: SimulatedPod, *, pod_mtu: int) -> None:
        self.pod = pod
        self.device = _make_device(link, pod.address, f"pod-{pod.address[-5:]}")
        self.device.gatt_server.max_mtu = pod_mtu  # what the firmware's stack accepts
        self.data_char = Characteristic(
            DATA_CHAR_UUID, Characteristic.Properties.NOTIFY, Characteristic.READABLE, b""
        )
        self.control_char: Characteristic[bytes] = Characteristic(
            CONTROL_CHAR_UUID,
            Characteristic.Properties.WRITE | Characteristic.Properties.INDICATE,
            Characteristic.WRITEABLE,
            CharacteristicValue[bytes](write=self._on_control_write),
        )
        self.device.add_service(Service(POD_SERVICE_UUID, [self.data_char, self.control_char]))
        self.device.on(Device.EVENT_CONNECTION, self._on_connection)
        self.connection: Connection | None = None
        self.connections = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        pod.link_listener = self._on_link_fault

    async def start(self, *, advertising_interval_ms: float) -> None:
        await self.device.power_on()
        advertising = AdvertisingData(
            [
                data_types.Flags(
                    AdvertisingData.Flags.LE_GENERAL_DISCOVERABLE_MODE
                    | AdvertisingData.Flags.BR_EDR_NOT_SUPPORTED
                ),
                data_types.CompleteListOf128BitServiceUUIDs([core.UUID(POD_SERVICE_UUID)]),
                data_types.CompleteLocalName(self.device.name),
            ]
        )
        await self.device.start_advertising(
            advertising_data=bytes(advertising),
            auto_restart=True,  # advertise again after a disconnection, as pod firmware does
            advertising_interval_min=advertising_interval_ms,
            advertising_interval_max=advertising_interval_ms,
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_connection(self, connection: Connection) -> None:
        self.connection = connection
        self.connections += 1
        connection.on(
            Connection.EVENT_DISCONNECTION, lambda _reason: self._on_disconnection(connection)
        )

    def _on_disconnection(self, connection: Connection) -> None:
        if self.connection is connection:
            self.connection = None
            self.pod.link_lost()

    def _on_control_write(self, connection: Connection, value: bytes) -> None:
        # The firmware sizes its packets from the MTU its own stack negotiated.
        self.pod.att_mtu = connection.att_mtu
        answer = self.pod.handle_command(bytes(value))
        self._spawn(self._indicate(connection, answer))

    async def _indicate(self, connection: Connection, answer: bytes) -> None:
        with contextlib.suppress(Exception):  # the link may drop before the answer goes out
            await self.device.indicate_subscriber(connection, self.control_char, answer)

    def _on_link_fault(self, _fault: Fault) -> None:
        connection = self.connection
        if connection is not None:
            self._spawn(connection.disconnect(HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR))

    async def pump(self) -> None:
        """Send whatever packets are due; packets due while no link is up are lost on air."""
        packets = self.pod.poll()
        connection = self.connection
        if connection is None:
            return
        for packet in packets:
            await self.device.notify_subscriber(connection, self.data_char, packet)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.device.power_off()


class SimulatedPodField:
    """A set of simulated pods on an in-memory BLE link, and bleak backends to reach them.

    Args:
        pods: The pods' firmware logic (each with its address and sample source).
        host_mtu: ATT MTU the host asks for in the MTU exchange (BlueZ asks for 517).
        pod_mtu: Largest ATT MTU the pods accept (247 is common for pod firmware).
        advertising_interval_ms: Pods' advertising interval.
        tick_s: How often the pods' firmware loop runs.

    Use as ``async with SimulatedPodField(pods) as field:`` inside the loop that runs the
    transport, and pass ``field.backend`` to ``BleTransport(backend=...)``.
    """

    def __init__(
        self,
        pods: Sequence[SimulatedPod],
        *,
        host_mtu: int = 517,
        pod_mtu: int = 247,
        advertising_interval_ms: float = 20.0,
        tick_s: float = 0.01,
    ) -> None:
        addresses = [normalize_address(p.address) for p in pods]
        if len(set(addresses)) != len(addresses):
            raise ValueError(f"two simulated pods share an address: {addresses}; give each its own")
        self.pods = {a: p for a, p in zip(addresses, pods, strict=True)}
        self.host_mtu = host_mtu
        self.pod_mtu = pod_mtu
        self.advertising_interval_ms = advertising_interval_ms
        self.tick_s = tick_s
        self.central: Device | None = None
        self._peripherals: dict[str, _PodPeripheral] = {}
        self._pump_task: asyncio.Task[None] | None = None
        self._scanners = 0
        client = type("BoundBumbleBleakClient", (BumbleBleakClient,), {"field": self})
        scanner = type("BoundBumbleBleakScanner", (BumbleBleakScanner,), {"field": self})
        #: What to pass to ``BleTransport(backend=...)``.
        self.backend = BleBackend(client=client, scanner=scanner, name="bumble")

    @classmethod
    def with_sine_pods(
        cls, count: int, *, rate_hz: float = 100.0, seed: int = 0, **kwargs: Any
    ) -> SimulatedPodField:
        """A field of ``count`` pods (addresses ``C0:FE:00:00:00:01``...) streaming sine sources."""
        pods = [
            SimulatedPod(f"C0:FE:00:00:00:{i + 1:02X}", SineSampleSource(rate_hz), seed=seed + i)
            for i in range(count)
        ]
        return cls(pods, **kwargs)

    def pod(self, address: str) -> SimulatedPod:
        """The firmware logic of one pod (to inspect it or inject faults)."""
        return self.pods[normalize_address(address)]

    def connections(self, address: str) -> int:
        """How many times a pod has accepted a connection."""
        return self._peripherals[normalize_address(address)].connections

    def is_connected(self, address: str) -> bool:
        """Whether a pod has a link up now."""
        return self._peripherals[normalize_address(address)].connection is not None

    async def __aenter__(self) -> SimulatedPodField:
        link = LocalLink()
        self.central = _make_device(link, CENTRAL_ADDRESS, "fusion-kit")
        await self.central.power_on()
        for address, pod in self.pods.items():
            peripheral = _PodPeripheral(link, pod, pod_mtu=self.pod_mtu)
            self._peripherals[address] = peripheral
            await peripheral.start(advertising_interval_ms=self.advertising_interval_ms)
        self._pump_task = asyncio.get_running_loop().create_task(self._pump())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
        for peripheral in self._peripherals.values():
            await peripheral.close()
        if self.central is not None:
            with contextlib.suppress(Exception):
                await self.central.power_off()

    async def _pump(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            for peripheral in self._peripherals.values():
                try:
                    await peripheral.pump()
                except Exception:  # one pod's trouble must not stop the others
                    logger.exception("simulated pod %s failed to send", peripheral.pod.address)

    def _require_central(self) -> Device:
        if self.central is None:
            raise BleakError(
                "the simulated pod field is not running: use 'async with SimulatedPodField(...)'"
            )
        return self.central

    async def _scan(self, start: bool) -> None:
        central = self._require_central()
        self._scanners += 1 if start else -1
        if start and self._scanners == 1:
            await central.start_scanning(filter_duplicates=False)
        elif not start and self._scanners == 0:
            await central.stop_scanning()


class BumbleBleakClient(BaseBleakClient):
    """bleak client backend over the bumble central of a :class:`SimulatedPodField`."""

    field: SimulatedPodField

    def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback=kwargs.pop("disconnected_callback", None),
            timeout=kwargs.pop("timeout", 10.0),
            **kwargs,
        )
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._proxies: dict[int, Any] = {}
        self._subscribers: dict[int, Callable[[bytes], None]] = {}
        self._disconnecting = False

    @property
    def name(self) -> str:
        return f"pod-{self.address[-5:]}"

    @property
    def mtu_size(self) -> int:
        return self._connection.att_mtu if self._connection is not None else att.ATT_DEFAULT_MTU

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        central = self.field._require_central()
        try:
            connection = await central.connect(Address(self.address), timeout=self._timeout)
        except (core.BaseBumbleError, asyncio.TimeoutError, TimeoutError) as exc:
            raise BleakError(f"could not connect to simulated pod {self.address}: {exc}") from exc
        self._connection = connection
        self._disconnecting = False
        connection.on(
            Connection.EVENT_DISCONNECTION, lambda _reason: self._on_disconnection(connection)
        )
        try:
            self._peer = Peer(connection)
            await self._peer.request_mtu(self.field.host_mtu)
            self.services = await self._discover(self._peer)
        except (core.BaseBumbleError, att.ATT_Error) as exc:
            await self.disconnect()
            raise BleakError(f"GATT setup with simulated pod {self.address} failed: {exc}") from exc

    async def _discover(self, peer: Peer) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        self._proxies = {}
        for service in await peer.discover_services():
            bleak_service = BleakGATTService(service, service.handle, _uuid_str(service.uuid))
            collection.add_service(bleak_service)
            for char in await service.discover_characteristics():
                props = [
                    name
                    for bit, name in (
                        (0x02, "read"),
                        (0x04, "write-without-response"),
                        (0x08, "write"),
                        (0x10, "notify"),
                        (0x20, "indicate"),
                    )
                    if char.properties & bit
                ]
                bleak_char = BleakGATTCharacteristic(
                    char,
                    char.handle,
                    _uuid_str(char.uuid),
                    props,  # type: ignore[arg-type]
                    lambda: self.mtu_size - 3,
                    bleak_service,
                )
                collection.add_characteristic(bleak_char)
                self._proxies[char.handle] = char
                for desc in await char.discover_descriptors():
                    collection.add_descriptor(
                        BleakGATTDescriptor(desc, desc.handle, _uuid_str(desc.type), bleak_char)
                    )
                    self._proxies[desc.handle] = desc
        return collection

    def _on_disconnection(self, connection: Connection) -> None:
        if self._connection is not connection:
            return
        self._connection = None
        self._subscribers.clear()
        if not self._disconnecting and self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None:
            return
        self._disconnecting = True
        with contextlib.suppress(core.BaseBumbleError):
            await connection.disconnect()
        self._connection = None

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise BleakError("simulated pods do not pair; they need no pairing")

    async def unpair(self) -> None:
        raise BleakError("simulated pods do not pair; they need no pairing")

    def _proxy(self, handle: int) -> Any:
        if self._connection is None:
            raise BleakError(f"simulated pod {self.address} is not connected")
        return self._proxies[handle]

    async def _att(self, coro: Any) -> Any:
        try:
            return await coro
        except att.ATT_Error as exc:
            raise BleakGATTProtocolError(exc.error_code) from exc
        except core.BaseBumbleError as exc:
            raise BleakError(f"simulated pod {self.address}: {exc}") from exc

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        return bytearray(await self._att(self._proxy(characteristic.handle).read_value()))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        return bytearray(await self._att(self._proxy(descriptor.handle).read_value()))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        proxy: CharacteristicProxy[bytes] = self._proxy(characteristic.handle)
        await self._att(proxy.write_value(bytes(data), with_response=response))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        await self._att(self._proxy(descriptor.handle).write_value(bytes(data), with_response=True))

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        proxy: CharacteristicProxy[bytes] = self._proxy(characteristic.handle)

        def subscriber(value: bytes) -> None:
            callback(bytearray(value))

        self._subscribers[characteristic.handle] = subscriber
        await self._att(proxy.subscribe(subscriber))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        proxy: CharacteristicProxy[bytes] = self._proxy(characteristic.handle)
        subscriber = self._subscribers.pop(characteristic.handle, None)
        await self._att(proxy.unsubscribe(subscriber))


class BumbleBleakScanner(BaseBleakScanner):
    """bleak scanner backend over the bumble central of a :class:`SimulatedPodField`."""

    field: SimulatedPodField

    def __init__(
        self,
        detection_callback: Callable[..., Any] | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._scanning = False

    async def start(self) -> None:
        central = self.field._require_central()
        self.seen_devices = {}
        central.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        self._scanning = True
        await self.field._scan(True)

    async def stop(self) -> None:
        if not self._scanning:
            return
        self._scanning = False
        central = self.field._require_central()
        central.remove_listener(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        await self.field._scan(False)

    def _on_advertisement(self, advertisement: Any) -> None:
        data = advertisement.data
        uuids = [
            _uuid_str(u)
            for kind in (
                AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
            )
            for u in (data.get(kind) or [])
        ]
        name = data.get(AdvertisingData.COMPLETE_LOCAL_NAME)
        adv = AdvertisementData(
            local_name=name,
            manufacturer_data={},
            service_data={},
            service_uuids=uuids,
            tx_power=None,
            rssi=advertisement.rssi,
            platform_data=(advertisement,),
        )
        if not self.is_allowed_uuid(uuids):
            return
        address = advertisement.address.to_string(False)
        device = self.create_or_update_device(address, address, name, advertisement, adv)
        self.call_detection_callbacks(device, adv)
