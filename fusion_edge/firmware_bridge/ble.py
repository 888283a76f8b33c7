"""BLE transport for the pods, over bleak.

:class:`BleTransport` scans for pods that advertise the pod service *and* are on the kit's
allow-list, connects to them one at a time, reads the negotiated ATT MTU, configures them over
the control characteristic, subscribes to the data characteristic and feeds every notification
into a :class:`~fusion_edge.firmware_bridge.reader.PacketReader` stamped with the host receive
time (``time.monotonic_ns()``). Decoded :class:`~fusion_edge.firmware_bridge.reader.SampleBlock`
objects go to a callback or an :class:`asyncio.Queue`. A link that drops is reconnected with
exponential backoff, driven by bleak's ``disconnected_callback``.

The transport talks only to :class:`bleak.BleakClient` and :class:`bleak.BleakScanner`, and passes
a :class:`BleBackend` through as their ``backend=`` argument, so the same code runs on a real
adapter (``BleBackend()``, the platform default), on simulated pods over bumble
(:mod:`fusion_edge.firmware_bridge.backends.bumble_backend`) and on recorded notifications
(:mod:`fusion_edge.firmware_bridge.backends.replay_backend`). bleak itself is imported only when a
transport is created, so ``import fusion_edge.firmware_bridge`` stays light.

The choices (backoff schedule, allow-list, MTU sizing, what a reconnect does) are written down in
``docs/ble-transport.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from fusion_edge.errors import FusionEdgeError, MissingDependencyError, TransportError
from fusion_edge.firmware_bridge.ble_link import BackoffPolicy, LinkState, PodLink
from fusion_edge.firmware_bridge.pod_commands import PodCommander, PodSettings
from fusion_edge.firmware_bridge.protocol import (
    CONTROL_CHAR_UUID,
    DATA_CHAR_UUID,
    POD_SERVICE_UUID,
    min_att_mtu,
)
from fusion_edge.firmware_bridge.reader import (
    BadPacketPolicy,
    PacketReader,
    PodCounters,
    SampleBlock,
)

if TYPE_CHECKING:
    from bleak import BleakClient
    from bleak.backends.device import BLEDevice

__all__ = [
    "BackoffPolicy",
    "BleBackend",
    "BleTransport",
    "BlockSink",
    "LinkState",
    "PodLink",
    "PodSettings",
    "normalize_address",
    "is_pod_address",
    "pod_address_hint",
]

logger = logging.getLogger(__name__)

#: What a consumer of sample blocks may be: a plain callback or a queue the transport fills.
BlockSink = Callable[[SampleBlock], None] | asyncio.Queue


#: A pod's BLE address as Linux and Windows' Bluetooth settings show it (colons), or the per-host
#: UUID macOS reports instead; both upper case (`normalize_address` makes them so).
_MAC = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
_UUID = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")


def is_pod_address(address: str) -> bool:
    """Whether ``address`` (after `normalize_address`) is a MAC address or a macOS UUID."""
    return bool(_MAC.match(address) or _UUID.match(address))


def pod_address_hint(address: str) -> str:
    """What to write instead of a string that is not a pod address (for error messages)."""
    text = str(address).strip().upper()
    if re.match(r"^[0-9A-F]{2}([-.][0-9A-F]{2}){5}$", text) or re.match(r"^[0-9A-F]{12}$", text):
        colons = ":".join(text.replace("-", "").replace(".", "")[i : i + 2] for i in range(0, 12, 2))
        return f"write it with colons, '{colons}'"
    return "write 'AA:BB:CC:DD:EE:FF' (or the UUID macOS shows)"


def normalize_address(address: str) -> str:
    """Canonical form of a pod address (upper case, no surrounding blanks).

    macOS reports per-host UUIDs instead of MAC addresses, so any non-empty string is accepted.

    Raises:
        TransportError: The address is empty.
    """
    text = str(address).strip().upper()
    if not text:
        raise TransportError(
            "an empty pod address was given: list each pod as 'AA:BB:CC:DD:EE:FF' in the kit's "
            "allow-list"
        )
    return text


def _import_bleak() -> Any:
    try:
        import bleak
    except ImportError as exc:  # pragma: no cover - bleak is installed with the edge extra
        raise MissingDependencyError("bleak", "edge", "The BLE transport") from exc
    return bleak


@dataclass(frozen=True)
class BleBackend:
    """Which bleak backend classes the transport hands to ``BleakClient`` / ``BleakScanner``.

    Attributes:
        client: A :class:`bleak.backends.client.BaseBleakClient` subclass, or ``None`` for the
            platform's (BlueZ, CoreBluetooth, WinRT).
        scanner: A :class:`bleak.backends.scanner.BaseBleakScanner` subclass, or ``None`` for the
            platform's.
        name: What the backend is, for logs.
    """

    client: type | None = None
    scanner: type | None = None
    name: str = "platform"


class BleTransport:
    """Streams sample blocks from the kit's pods over BLE.

    Args:
        allow_list: Addresses of the kit's pods. A pod not on the list is never connected, even
            if it advertises the pod service.
        sink: Where sample blocks go: a callback (called in the event loop, keep it short) or an
            :class:`asyncio.Queue`. ``None`` creates :attr:`blocks`, a queue.
        backend: bleak backend classes to use; the platform's by default.
        settings: What to configure on each pod after connecting.
        backoff: Reconnect schedule.
        policy: What the packet readers do with a corrupt or truncated packet.
        reorder_window: Packets the reader holds back to put late ones in order.
        scan_timeout: Seconds to look for pods before giving up.
        connect_timeout: Seconds for one connection (connect, MTU, discovery, setup).
        command_timeout: Seconds to wait for a pod to answer a control command.
        clock: Host receive-time source, integer nanoseconds (``time.monotonic_ns``).
        seed: Seed for the backoff jitter, so runs are reproducible.
        raw_sink: Called with ``(address, packet bytes, host receive ns)`` for every notification
            before it is decoded (session recording keeps the raw bytes, good or bad).
        decode: Decode notifications into sample blocks for ``sink``. A consumer that decodes
            the raw bytes itself (the field kit does, so that replay is exact) turns this off
            instead of paying for every packet twice.

    Use it as ``async with BleTransport([...]) as transport:``: entering connects every pod on
    the allow-list and starts streaming; leaving stops notifications, sends STOP and disconnects.
    """

    def __init__(
        self,
        allow_list: Iterable[str],
        *,
        sink: BlockSink | None = None,
        backend: BleBackend | None = None,
        settings: PodSettings | None = None,
        backoff: BackoffPolicy | None = None,
        policy: BadPacketPolicy = BadPacketPolicy.LOG,
        reorder_window: int = 4,
        scan_timeout: float = 10.0,
        connect_timeout: float = 20.0,
        command_timeout: float = 5.0,
        clock: Callable[[], int] = time.monotonic_ns,
        seed: int = 0,
        raw_sink: Callable[[str, bytes, int], None] | None = None,
        decode: bool = True,
    ) -> None:
        if not decode and raw_sink is None:
            raise ValueError("decode=False needs a raw_sink: otherwise nothing receives the packets")
        addresses = [normalize_address(a) for a in allow_list]
        if not addresses:
            raise TransportError(
                "the kit's allow-list of pods is empty: list the pod addresses the kit should "
                "connect to (printed on each pod, or shown by a scan)"
            )
        if len(set(addresses)) != len(addresses):
            raise TransportError(
                f"the allow-list names a pod twice ({addresses}): list each pod once"
            )
        for name, value in (
            ("scan_timeout", scan_timeout),
            ("connect_timeout", connect_timeout),
            ("command_timeout", command_timeout),
        ):
            if value <= 0:
                raise ValueError(f"{name}={value} must be a positive number of seconds")
        self._allow = tuple(addresses)
        self.blocks: asyncio.Queue[SampleBlock] = asyncio.Queue()
        self._sink: BlockSink = self.blocks if sink is None else sink
        self.backend = backend or BleBackend()
        self.settings = settings or PodSettings()
        self.backoff = backoff or BackoffPolicy()
        self._scan_timeout = scan_timeout
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._clock = clock
        self._raw_sink = raw_sink
        self._decode = decode
        self._rng = random.Random(seed)
        self._connect_lock = asyncio.Lock()
        self._closed = False
        #: Pods that advertised the pod service but are not on the allow-list (never connected).
        self.ignored: set[str] = set()
        self._links = {
            a: PodLink(a, PacketReader(a, policy=policy, reorder_window=reorder_window))
            for a in self._allow
        }

    # ------------------------------------------------------------------ public state

    @property
    def allow_list(self) -> tuple[str, ...]:
        """The pods this transport may connect to, normalized."""
        return self._allow

    def link(self, address: str) -> PodLink:
        """The link state of one allow-listed pod.

        Raises:
            TransportError: The pod is not on the allow-list.
        """
        key = normalize_address(address)
        if key not in self._links:
            raise TransportError(
                f"pod {key} is not on the kit's allow-list {list(self._allow)}: add it to the "
                "kit configuration if it belongs to this kit, or use the right kit"
            )
        return self._links[key]

    def counters(self, address: str) -> PodCounters:
        """Packet/sample counters of one pod (received, lost, corrupt, reconnects, ...)."""
        return self.link(address).reader.counters

    def state(self, address: str) -> LinkState:
        """Where one pod's link stands."""
        return self.link(address).state

    # ------------------------------------------------------------------ context manager

    async def __aenter__(self) -> BleTransport:
        try:
            await self.connect_all()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ scanning

    async def scan(self, *, timeout: float | None = None) -> dict[str, BLEDevice]:
        """Look for allow-listed pods advertising the pod service.

        Stops early once every allow-listed pod has been seen. Pods that advertise the service
        but are not on the allow-list are recorded in :attr:`ignored` and never returned.

        Args:
            timeout: Seconds to scan (default: the transport's ``scan_timeout``).

        Returns:
            Address -> BLEDevice for the allow-listed pods seen.
        """
        bleak = _import_bleak()
        wanted = set(self._allow)
        found: dict[str, BLEDevice] = {}
        all_seen = asyncio.Event()

        def on_advertisement(device: BLEDevice, _adv: Any) -> None:
            address = normalize_address(device.address)
            if address not in wanted:
                if address not in self.ignored:
                    logger.info("ignoring pod %s: it is not on the kit's allow-list", address)
                    self.ignored.add(address)
                return
            found.setdefault(address, device)
            if len(found) == len(wanted):
                all_seen.set()

        scanner = bleak.BleakScanner(
            on_advertisement,
            service_uuids=[POD_SERVICE_UUID],
            backend=self.backend.scanner,
        )
        try:
            async with scanner:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(all_seen.wait(), timeout or self._scan_timeout)
        except bleak.exc.BleakError as exc:
            raise TransportError(
                f"BLE scan failed ({exc}): is Bluetooth switched on and the adapter plugged in?"
            ) from exc
        return found

    # ------------------------------------------------------------------ connecting

    async def connect_all(self, *, timeout: float | None = None, require_all: bool = True) -> None:
        """Scan once, then connect (one at a time) to every allow-listed pod found.

        Args:
            timeout: Seconds to scan (default: ``scan_timeout``).
            require_all: Raise when a pod is missing. With ``False`` a missing pod is retried in
                the background with the reconnect backoff instead.

        Raises:
            TransportError: A pod was not found (with ``require_all``) or could not be set up.
        """
        found = await self.scan(timeout=timeout)
        missing = [a for a in self._allow if a not in found]
        if missing and require_all:
            raise TransportError(
                f"pod(s) {', '.join(missing)} not found within "
                f"{timeout or self._scan_timeout:.0f} s: is each one charged, switched on and in "
                "range? is it on the kit's allow-list? (found: "
                f"{', '.join(found) or 'none'}; other pods seen: "
                f"{', '.join(sorted(self.ignored)) or 'none'})"
            )
        for address in self._allow:
            if address in found:
                await self.connect(found[address])
            else:
                self._schedule_reconnect(self._links[address])

    async def connect(self, device: BLEDevice | str, *, timeout: float | None = None) -> PodLink:
        """Connect to one allow-listed pod and start it streaming.

        Connections are serialized (one at a time), as most adapters fail when asked for two.

        Args:
            device: A BLEDevice from :meth:`scan`, or an address (then the pod is looked for
                first).
            timeout: Seconds for the whole setup (default: ``connect_timeout``).

        Raises:
            TransportError: The pod is not on the allow-list, is not found, or setup failed.
        """
        address = normalize_address(device if isinstance(device, str) else device.address)
        link = self.link(address)
        if self._closed:
            raise TransportError(
                f"cannot connect pod {address}: the transport is closed; create a new one"
            )
        link.closing = False
        await self._open(link, device, timeout=timeout or self._connect_timeout)
        return link

    async def _find(self, address: str, timeout: float) -> BLEDevice:
        bleak = _import_bleak()
        try:
            device = await bleak.BleakScanner.find_device_by_filter(
                lambda d, _ad: normalize_address(d.address) == address,
                timeout=timeout,
                service_uuids=[POD_SERVICE_UUID],
                backend=self.backend.scanner,
            )
        except bleak.exc.BleakError as exc:
            raise TransportError(
                f"BLE scan for pod {address} failed ({exc}): is Bluetooth switched on?"
            ) from exc
        if device is None:
            raise TransportError(
                f"pod {address} not found within {timeout:.0f} s: is it charged, switched on "
                "and in range? is it on the kit's allow-list?"
            )
        return device

    async def _open(self, link: PodLink, device: BLEDevice | str, *, timeout: float) -> None:
        bleak = _import_bleak()
        async with self._connect_lock:
            if link.closing or self._closed:
                return
            link.state = LinkState.CONNECTING
            client: BleakClient | None = None

            async def connect_and_setup() -> None:
                nonlocal client, device
                if isinstance(device, str):
                    device = await self._find(link.address, timeout)
                client = bleak.BleakClient(
                    device,
                    disconnected_callback=self._on_disconnected,
                    timeout=timeout,
                    backend=self.backend.client,
                )
                link.client = client
                await client.connect()
                await self._setup(link, client)

            try:
                await asyncio.wait_for(connect_and_setup(), timeout)
            except (asyncio.TimeoutError, TimeoutError) as exc:
                await self._abandon(link, client)
                raise TransportError(
                    f"pod {link.address} did not finish connecting within {timeout:.0f} s: move "
                    "it closer to the kit, or raise connect_timeout"
                ) from exc
            except bleak.exc.BleakError as exc:
                await self._abandon(link, client)
                raise TransportError(
                    f"connecting pod {link.address} failed ({exc}): check that it is charged "
                    "and not connected to another kit or phone, then retry"
                ) from exc
            except FusionEdgeError:
                await self._abandon(link, client)
                raise
            link.connects += 1
            if link.connects > 1:
                link.reader.note_reconnect()
            link.state = LinkState.STREAMING
            logger.info(
                "pod %s streaming (ATT MTU %s, connect #%d)", link.address, link.mtu, link.connects
            )

    async def _setup(self, link: PodLink, client: BleakClient) -> None:
        """After connect: MTU, control channel, configuration, data notifications, START."""
        link.mtu = int(client.mtu_size)
        commander = PodCommander(
            link.address,
            lambda data: client.write_gatt_char(CONTROL_CHAR_UUID, data, response=True),
            timeout=self._command_timeout,
        )
        link.commander = commander
        await client.start_notify(CONTROL_CHAR_UUID, lambda _c, data: commander.on_response(data))
        link.info = await commander.info()
        sensors = self.settings.sensors or link.info.sensors
        if link.mtu < min_att_mtu(sensors):
            # The pod sizes its packets from the MTU it negotiated; some hosts (BlueZ) report
            # 23 here whatever was negotiated, so this is a warning, and START fails with
            # MTU_TOO_SMALL if the link really is too small.
            logger.warning(
                "pod %s: host reports ATT MTU %d, too small for one sample (needs %d)",
                link.address,
                link.mtu,
                min_att_mtu(sensors),
            )
        # Set the pod clock once per pod boot, not on every reconnect: a jump in the device
        # timestamps inside one boot would break the clock mapping downstream.
        set_time = self.settings.set_time and link.time_set_for_boot != link.info.boot_id
        await commander.configure(
            self.settings, host_time_us=self._clock() // 1000 if set_time else None
        )
        if set_time:
            link.time_set_for_boot = link.info.boot_id
        await client.start_notify(DATA_CHAR_UUID, lambda _c, data: self._on_data(link, data))
        await commander.start()

    async def _abandon(self, link: PodLink, client: BleakClient | None) -> None:
        link.state = LinkState.IDLE
        link.commander = None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.disconnect()
        link.client = None

    # ------------------------------------------------------------------ data path

    def _on_data(self, link: PodLink, data: bytearray) -> None:
        host_time_ns = self._clock()
        packet = bytes(data)
        if self._raw_sink is not None:
            self._raw_sink(link.address, packet, host_time_ns)
            if not self._decode:
                return
        try:
            blocks = link.reader.feed(packet, host_time_ns)
        except FusionEdgeError as exc:
            # Only the RAISE policy gets here. A callback cannot raise to the caller, so the
            # link stops and the error is kept for the operator.
            logger.error("pod %s: %s; stopping this link", link.address, exc)
            link.last_error = exc
            link.state = LinkState.FAILED
            link.closing = True
            if link.client is not None:
                asyncio.get_running_loop().create_task(link.client.disconnect())
            return
        for block in blocks:
            if isinstance(self._sink, asyncio.Queue):
                self._sink.put_nowait(block)
            else:
                self._sink(block)

    # ------------------------------------------------------------------ reconnection

    def _on_disconnected(self, client: BleakClient) -> None:
        link = next((lk for lk in self._links.values() if lk.client is client), None)
        if link is None or link.closing or self._closed or link.state is not LinkState.STREAMING:
            return  # a drop during setup is reported by the connect that was running
        logger.warning("pod %s disconnected; reconnecting with backoff", link.address)
        link.client = None
        link.commander = None
        self._schedule_reconnect(link)

    def _schedule_reconnect(self, link: PodLink) -> None:
        if link.reconnect_task is not None and not link.reconnect_task.done():
            return
        link.state = LinkState.RECONNECTING
        link.reconnect_task = asyncio.get_running_loop().create_task(
            self._reconnect_loop(link), name=f"ble-reconnect-{link.address}"
        )

    async def _reconnect_loop(self, link: PodLink) -> None:
        attempt = 0
        while not (link.closing or self._closed):
            delay = self.backoff.delay(attempt, self._rng)
            link.reconnect_delays.append(delay)
            await asyncio.sleep(delay)
            attempt += 1
            try:
                await self._open(link, link.address, timeout=self._connect_timeout)
            except TransportError as exc:
                link.last_error = exc
                logger.warning(
                    "pod %s: reconnect attempt %d failed: %s", link.address, attempt, exc
                )
                limit = self.backoff.max_attempts
                if limit is not None and attempt >= limit:
                    link.state = LinkState.FAILED
                    logger.error(
                        "pod %s: giving up after %d reconnect attempts; check the pod and "
                        "reconnect it by hand",
                        link.address,
                        attempt,
                    )
                    return
                link.state = LinkState.RECONNECTING
                continue
            return

    # ------------------------------------------------------------------ commands

    async def command(self, address: str, command: Any, *, timeout: float | None = None) -> Any:
        """Send one control command to a connected pod and return its response.

        Raises:
            TransportError: The pod is not connected, does not answer in time, or answers
                with a status other than OK.
        """
        link = self.link(address)
        if link.commander is None or link.state is not LinkState.STREAMING:
            raise TransportError(
                f"pod {link.address} is not connected (state: {link.state.value}): wait for it "
                "to reconnect, or connect it first"
            )
        return await link.commander.send(command, timeout=timeout)

    # ------------------------------------------------------------------ shutdown

    async def close(self) -> None:
        """Stop every pod and disconnect: stop notifications, send STOP, disconnect.

        Safe to call twice. Errors from pods that are already gone are logged, not raised.
        """
        self._closed = True
        for link in self._links.values():
            link.closing = True
            if link.reconnect_task is not None:
                link.reconnect_task.cancel()
        for link in self._links.values():
            if link.reconnect_task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await link.reconnect_task
            await self._shutdown(link)

    async def _shutdown(self, link: PodLink) -> None:
        client, commander = link.client, link.commander
        if client is not None and client.is_connected:
            for step, action in (
                ("stop data notifications", lambda: client.stop_notify(DATA_CHAR_UUID)),
                ("send STOP", lambda: commander.stop() if commander else asyncio.sleep(0)),
                ("stop control notifications", lambda: client.stop_notify(CONTROL_CHAR_UUID)),
                ("disconnect", client.disconnect),
            ):
                try:
                    await asyncio.wait_for(action(), self._command_timeout)
                except Exception as exc:  # the pod may already be gone; shutdown goes on
                    logger.warning("pod %s: could not %s: %s", link.address, step, exc)
        link.client = None
        link.commander = None
        link.state = LinkState.CLOSED
