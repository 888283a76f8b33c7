"""Run the guided calibration on a live pod over BLE.

The transport (:mod:`fusion_edge.firmware_bridge.ble`) is imported only here, when a live
calibration starts, so the rest of the calibration package stays importable on a machine without
bleak. Sample blocks are turned into the ``(t, samples)`` chunks that
:class:`~fusion_edge.calibration.guided.GuidedImuCalibration` takes; the pod's own clock is the
time base (the procedure only needs durations, not host time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np

from fusion_edge.calibration.guided import GuidedImuCalibration, Prompt
from fusion_edge.errors import CalibrationError, FusionEdgeError, TransportError

__all__ = ["block_columns", "run_guided_over_ble"]

_ACCEL_GYRO = ("accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z")
_MAG = ("mag_x", "mag_y", "mag_z")


def block_columns(channel_names: tuple[str, ...], with_magnetometer: bool) -> list[int]:
    """Indices that reorder a block's channels to ``ax ay az gx gy gz [mx my mz]``.

    Raises:
        CalibrationError: The pod does not stream the channels the calibration needs.
    """
    wanted = _ACCEL_GYRO + (_MAG if with_magnetometer else ())
    missing = [c for c in wanted if c not in channel_names]
    if missing:
        raise CalibrationError(
            f"the pod streams {', '.join(channel_names)} but the calibration needs "
            f"{', '.join(missing)} as well; enable those sensors on the pod"
        )
    return [channel_names.index(c) for c in wanted]


def _default_transport(address: str) -> Any:
    try:
        from fusion_edge.firmware_bridge.ble import BleTransport
    except ImportError as exc:
        raise TransportError(
            "live calibration needs the BLE transport (fusion_edge.firmware_bridge.ble), which "
            f"is not available in this installation ({exc}); install 'fusion-edge[edge]', or "
            "record the procedure to a CSV (t,ax,ay,az,gx,gy,gz[,mx,my,mz]) and run "
            "'fusion-edge calibrate imu --recording FILE.csv'"
        ) from None
    return BleTransport([address])


def run_guided_over_ble(
    guided: GuidedImuCalibration,
    address: str,
    on_prompt: Callable[[Prompt], None],
    *,
    timeout_s: float = 600.0,
    transport_factory: Callable[[str], Any] | None = None,
) -> None:
    """Stream one pod into ``guided`` until it is done, showing prompts as they come.

    Args:
        guided: The procedure to drive.
        address: The pod's BLE address.
        on_prompt: Called with every prompt (print it).
        timeout_s: Give up after this long, seconds.
        transport_factory: Builds the transport for ``address`` (an async context manager with
            a ``blocks`` queue of sample blocks); the BLE transport when ``None``.

    Raises:
        TransportError: The BLE transport is not available or fails.
        CalibrationError: The pod rebooted, lacks sensors, the stream stalls, or the procedure
            is refused.
    """
    factory = transport_factory or _default_transport
    transport = factory(address)

    async def _run() -> None:
        async with transport as link:
            # Unless the magnetometer step was chosen (--mag/--no-mag), the pod's channels
            # decide it, so the first instruction waits for the first block.
            started = guided.with_magnetometer is not None
            if started:
                for prompt in guided.start():
                    on_prompt(prompt)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            columns: list[int] | None = None
            boot: int | None = None
            while not guided.done:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise CalibrationError(
                        f"the guided calibration of {address} did not finish within "
                        f"{timeout_s:.0f} s; start again and follow the prompts"
                    )
                try:
                    block = await asyncio.wait_for(link.blocks.get(), timeout=min(remaining, 5.0))
                except asyncio.TimeoutError:
                    raise CalibrationError(
                        f"no samples from {address} for 5 s; check that the pod is on and in "
                        "range, then start again"
                    ) from None
                if boot is None:
                    boot = block.boot_id
                elif block.boot_id != boot:
                    raise CalibrationError(
                        f"pod {address} rebooted during the calibration; check its battery and "
                        "start again"
                    )
                if columns is None:
                    names = tuple(block.channel_names)
                    if guided.with_magnetometer is None:
                        guided.set_magnetometer(all(c in names for c in _MAG))
                    columns = block_columns(names, bool(guided.with_magnetometer))
                if not started:
                    started = True
                    for prompt in guided.start():
                        on_prompt(prompt)
                t = np.asarray(block.sample_times_us(), dtype=np.float64) / 1e6
                samples = np.asarray(block.samples, dtype=np.float64)[:, columns]
                for prompt in guided.feed(t, samples):
                    on_prompt(prompt)

    try:
        asyncio.run(_run())
    except FusionEdgeError:
        raise
    except Exception as exc:  # bleak / D-Bus / OS errors from the radio stack
        raise TransportError(
            f"could not stream from pod {address} over BLE ({type(exc).__name__}: {exc}); check "
            "that the Bluetooth adapter is present and on (bluetoothd running) and the pod is in "
            "range, or record the procedure to a CSV and use --recording FILE.csv"
        ) from exc


async def listen_clocks(
    *,
    addresses: list[str] | None = None,
    simulate: int | None = None,
    seconds: float = 30.0,
    drift_ppm: float = 50.0,
    seed: int = 0,
    on_progress: Callable[[str], None] | None = None,
    alignment: Any | None = None,
) -> Any:
    """Listen to pods over BLE and fit each device clock to the host clock.

    Args:
        addresses: the kit's pods (the platform's BLE adapter); or
        simulate: that many simulated pods (bumble, behind bleak) whose clocks drift by up to
            ``drift_ppm`` and start at random offsets.
        seconds: how long to listen (the fit needs tens of seconds to see drift).
        alignment: the :class:`~fusion_edge.calibration.clock.ClockAlignment` to fill (a new
            one when ``None``). A caller that owns it keeps every packet heard so far when the
            listen is cut short (Ctrl-C cancels this coroutine; the fit is still good).

    Returns:
        The alignment after listening.
    """
    from fusion_edge.calibration.clock import ClockAlignment
    from fusion_edge.firmware_bridge.ble import BleTransport

    if (addresses is None) == (simulate is None):
        raise CalibrationError("listen to either the kit's pods or simulated ones, not both or neither")
    if simulate is not None and simulate < 1:
        raise CalibrationError(
            f"--simulate {simulate} is not a number of pods: give 1 or more (e.g. --simulate 4)"
        )
    if not seconds > 0 or seconds == float("inf"):
        raise CalibrationError(
            f"--seconds must be a positive number of seconds to listen, got {seconds} "
            "(a minute gives good drift figures)"
        )
    say = on_progress or (lambda _m: None)
    alignment = ClockAlignment() if alignment is None else alignment

    def on_block(block: Any) -> None:
        alignment.observe(block.pod_id, block.t0_us, block.host_time_ns, block.boot_id)

    if simulate is not None:
        from fusion_edge.firmware_bridge.backends.bumble_backend import SimulatedPodField
        from fusion_edge.firmware_bridge.sim_pod import PodClock, SimulatedPod, SineSampleSource

        rng = np.random.default_rng(seed)
        pods = [
            SimulatedPod(
                f"F0:C1:0C:00:00:{i:02X}", SineSampleSource(100.0),
                clock=PodClock(offset_us=int(rng.integers(0, 10**9)),
                               drift_ppm=float(rng.uniform(-drift_ppm, drift_ppm))),
                seed=seed + i,
            )
            for i in range(int(simulate))
        ]
        field = SimulatedPodField(pods)
        async with field:
            transport = BleTransport([p.address for p in pods], backend=field.backend, sink=on_block)
            async with transport:
                say(f"listening to {simulate} simulated pods for {seconds:.0f} s")
                await asyncio.sleep(seconds)
        return alignment
    try:
        transport = BleTransport(list(addresses or []), sink=on_block)
        async with transport:
            say(f"listening to {len(addresses or [])} pods for {seconds:.0f} s")
            await asyncio.sleep(seconds)
    except (OSError, FileNotFoundError) as exc:
        raise TransportError(
            f"Bluetooth is not available ({exc}): plug in a BLE adapter and check "
            "'bluetoothctl show', or try 'fusion-edge calibrate clock --simulate 4'"
        ) from None
    return alignment
