"""A full match's sensors on one box: 22 pods at 100 Hz over BLE and 22 GNSS receivers at 10 Hz.

    .venv/bin/python benchmarks/bridge_field.py [--seconds 20]

* IMU: 22 ``SimulatedPod`` firmware instances fed from an 11v11 scenario session
  (``session.imu_source(i)``), each served by its own bumble GATT peripheral in a
  ``SimulatedPodField``; the host is ``BleTransport`` over the bumble bleak backend (real
  HCI/L2CAP/ATT/GATT, MTU 247: 12 nine-axis samples per notification).
* GNSS: 22 ``SimulatedReceiver`` (one per player, NMEA RMC+VTG+GGA+GSA at 10 Hz, 115200 baud),
  each on its own pseudo-terminal, read by 22 ``SerialGnssTransport`` (pyserial + thread). One
  receiver per pty rather than TAG-multiplexing: 22 players x 265 B x 10 Hz would need 5x what
  one 115200 line carries.

Counting: every packet the pods hand to their radio is counted at the pod (wrapping ``poll``);
every sample the host delivers is counted in the block callback. At the end the pods stop
first, the links drain, then the host closes, so nothing is in flight when counting.

CPU, measured, not estimated: the bumble peripherals, the bumble central and the host all run in
one asyncio loop, so process CPU is mostly simulation. The host's own work is measured where it
runs: (1) ``thread_time`` around every call of ``BleTransport._on_data`` (the bleak notification
callback: ``PacketReader.feed`` + SI conversion + the sink), and (2) the per-thread CPU time of
the 22 ``gnss-serial`` reader threads (pyserial read, ``GnssStreamReader``, delivery) from
psutil. Their sum over the wall time is "transport and decoding". What it leaves out: the host
BLE stack below bleak (BlueZ in the kernel and bluetoothd on a real box; the bumble central
here), which is reported separately as an upper bound: the loop thread's CPU minus (1) is the
simulated pods, their controllers and the central together.

Prints a table and writes benchmarks/results/bridge_field.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from fusion_edge.firmware_bridge.backends.bumble_backend import SimulatedPodField
from fusion_edge.firmware_bridge.ble import BleTransport
from fusion_edge.firmware_bridge.gnss_messages import GnssFix, MessageKind
from fusion_edge.firmware_bridge.gnss_reader import GnssReading
from fusion_edge.firmware_bridge.reader import SampleBlock
from fusion_edge.firmware_bridge.scenario_fixes import ScenarioFixSource
from fusion_edge.firmware_bridge.serial_gnss import SerialGnssConfig, SerialGnssTransport
from fusion_edge.firmware_bridge.sim_gnss import SimulatedReceiver, SimulatedReceiverConfig
from fusion_edge.firmware_bridge.sim_pod import SimulatedPod
from fusion_edge.scenarios import get_scenario, simulate_session

PLAYERS = 22


def thread_cpu_s() -> dict[int, float]:
    """CPU seconds (user + system) of every thread of this process, by native thread id."""
    return {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}


class GnssSide:
    """22 simulated receivers and the transports that read them."""

    def __init__(self, session: Any) -> None:
        cfg = SimulatedReceiverConfig(start_utc=datetime(2024, 6, 15, 15, 0, tzinfo=timezone.utc))
        self.receivers = [
            SimulatedReceiver(ScenarioFixSource(session, i), cfg, name=f"P{i:02d}")
            for i in range(PLAYERS)
        ]
        self.rmc = Counter()
        self.fixes = Counter()
        self.transports: list[SerialGnssTransport] = []
        self.epochs_at_open: list[int] = []
        self._lock = threading.Lock()

    def _on_reading(self, index: int, reading: GnssReading) -> None:
        message = reading.message
        if isinstance(message, GnssFix):
            with self._lock:  # callbacks run on 22 threads
                self.fixes[index] += 1
                if message.kind is MessageKind.RMC:
                    self.rmc[index] += 1

    def start(self) -> None:
        for index, rx in enumerate(self.receivers):
            rx.start()
            transport = SerialGnssTransport(
                rx.port,
                SerialGnssConfig(),
                on_reading=lambda r, index=index: self._on_reading(index, r),
            )
            transport.start()
            self.epochs_at_open.append(rx.epochs_written)
            self.transports.append(transport)

    def stop_receivers(self) -> list[int]:
        written = []
        for rx in self.receivers:
            rx._stop.set()  # stop writing; keep the pty open so the reader drains it
            if rx._thread is not None:
                rx._thread.join(2.0)
            written.append(rx.epochs_written)
        return written

    def close(self) -> None:
        for t in self.transports:
            t.close()
        for rx in self.receivers:
            rx.close()

    def reader_thread_ids(self) -> list[int]:
        return [t._thread.native_id for t in self.transports if t._thread is not None]


async def run_pods(session: Any, seconds: float, on_ready: Any) -> dict[str, Any]:
    pods = [
        SimulatedPod(f"C0:FE:00:00:01:{i:02X}", session.imu_source(i), seed=i)
        for i in range(PLAYERS)
    ]
    sent = Counter()
    for pod in pods:
        original = pod.poll

        def counting_poll(
            host_ns: int | None = None, pod: SimulatedPod = pod, original: Any = original
        ) -> list[bytes]:
            packets = original(host_ns)
            sent[pod.address] += sum((len(p) - 20) // 18 for p in packets)  # 9-axis samples
            return packets

        pod.poll = counting_poll  # type: ignore[method-assign]
    received = Counter()

    def sink(block: SampleBlock) -> None:
        received[block.pod_id] += block.n_samples

    on_data_cpu_ns = 0
    on_data_calls = 0
    t_connect = time.perf_counter()
    async with SimulatedPodField(pods) as field:
        transport = BleTransport(
            [p.address for p in pods],
            backend=field.backend,
            sink=sink,
            scan_timeout=30.0,
            connect_timeout=30.0,
        )
        original_on_data = transport._on_data

        def timed_on_data(link: Any, data: bytearray) -> None:
            nonlocal on_data_cpu_ns, on_data_calls
            t = time.thread_time_ns()
            original_on_data(link, data)
            on_data_cpu_ns += time.thread_time_ns() - t
            on_data_calls += 1

        transport._on_data = timed_on_data  # type: ignore[method-assign]
        async with transport:
            connect_s = time.perf_counter() - t_connect
            # Count only the measured window: restart the pod-side count now.
            for pod in pods:
                sent[pod.address] = 0
            base = {a: transport.counters(a) for a in transport.allow_list}
            received.clear()
            on_data_cpu_ns, on_data_calls = 0, 0
            loop_tid = threading.get_native_id()
            cpu0, rusage0, wall0 = (
                thread_cpu_s(),
                resource.getrusage(resource.RUSAGE_SELF),
                time.perf_counter(),
            )
            on_ready()
            await asyncio.sleep(seconds)
            for pod in pods:
                pod.stop()  # stop sending; let the links drain before counting
            await asyncio.sleep(0.5)
            wall = time.perf_counter() - wall0
            cpu1, rusage1 = thread_cpu_s(), resource.getrusage(resource.RUSAGE_SELF)
            counters = {a: transport.counters(a) for a in transport.allow_list}
    lost = sum(counters[a].lost_samples - base[a].lost_samples for a in counters)
    corrupt = sum(counters[a].corrupt - base[a].corrupt for a in counters)
    reconnects = sum(counters[a].reconnects - base[a].reconnects for a in counters)
    return {
        "connect_all_s": connect_s,
        "wall_s": wall,
        "cpu0": cpu0,
        "cpu1": cpu1,
        "process_cpu_s": (rusage1.ru_utime + rusage1.ru_stime)
        - (rusage0.ru_utime + rusage0.ru_stime),
        "loop_thread_cpu_s": cpu1.get(loop_tid, 0.0) - cpu0.get(loop_tid, 0.0),
        "on_data_cpu_s": on_data_cpu_ns / 1e9,
        "notifications": on_data_calls,
        "samples_sent": sum(sent.values()),
        "samples_received": sum(received.values()),
        "samples_lost_counted": lost,
        "corrupt": corrupt,
        "reconnects": reconnects,
        "per_pod_min_received": min(received.values()) if received else 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", default="benchmarks/results/bridge_field.json")
    args = parser.parse_args()
    session = simulate_session(
        get_scenario("11v11"), seed=1, duration_s=max(60.0, args.seconds + 30), lost_samples=False
    )
    gnss = GnssSide(session)
    gnss_state: dict[str, Any] = {}

    def start_gnss() -> None:
        gnss.start()
        gnss_state["cpu0"] = thread_cpu_s()

    pods = asyncio.run(run_pods(session, args.seconds, start_gnss))
    written = gnss.stop_receivers()
    time.sleep(0.5)  # let the readers drain the ptys
    cpu1 = thread_cpu_s()
    reader_ids = gnss.reader_thread_ids()
    gnss_cpu = sum(cpu1.get(t, 0.0) - gnss_state["cpu0"].get(t, 0.0) for t in reader_ids)
    sim_ids = [rx._thread.native_id for rx in gnss.receivers if rx._thread is not None]
    sim_cpu = sum(cpu1.get(t, 0.0) - gnss_state["cpu0"].get(t, 0.0) for t in sim_ids)
    # Epochs written before a port opened may or may not reach the reader (the pty keeps what
    # was written before open), so no loss means: since_open <= received <= written in total.
    epochs = sum(w - o for w, o in zip(written, gnss.epochs_at_open, strict=True))
    epochs_total = sum(written)
    rmc = sum(gnss.rmc.values())
    counters = [t.reader.counters for t in gnss.transports]
    gnss.close()

    wall = pods["wall_s"] + 0.5  # the GNSS ran through the pods' window and the drain
    host_cpu = pods["on_data_cpu_s"] + gnss_cpu
    result = {
        "benchmark": "bridge_field",
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "setup": {
            "players": PLAYERS,
            "imu_rate_hz": 100,
            "samples_per_notification": 12,
            "att_mtu": 247,
            "gnss_rate_hz": 10,
            "gnss_output": "NMEA RMC+VTG+GGA+GSA",
            "gnss_links": "one pty per receiver (22), 115200 baud, no TAG multiplexing",
            "seconds": args.seconds,
            "scenario": "11v11 seed 1",
        },
        "imu": {k: v for k, v in pods.items() if k not in ("cpu0", "cpu1")},
        "gnss": {
            "epochs_written_since_open": epochs,
            "epochs_written_total": epochs_total,
            "rmc_received": rmc,
            "no_epoch_lost": epochs <= rmc <= epochs_total,
            "fixes_received": sum(gnss.fixes.values()),
            "checksum_errors": sum(c.bad_checksum for c in counters),
            "garbage_bytes": sum(c.garbage_bytes for c in counters),
            "reader_threads_cpu_s": gnss_cpu,
            "simulated_receivers_cpu_s": sim_cpu,
        },
        "cpu": {
            "host_transport_and_decoding_cpu_s": host_cpu,
            "host_transport_and_decoding_core_fraction": host_cpu / wall,
            "ble_on_data_core_fraction": pods["on_data_cpu_s"] / pods["wall_s"],
            "gnss_readers_core_fraction": gnss_cpu / wall,
            "loop_thread_minus_on_data_core_fraction": (
                pods["loop_thread_cpu_s"] - pods["on_data_cpu_s"]
            )
            / pods["wall_s"],
            "process_core_fraction": pods["process_cpu_s"] / pods["wall_s"],
            "target_core_fraction": 0.25,
        },
        "method": (
            "host cost = thread_time around every BleTransport._on_data call (PacketReader.feed, "
            "SI conversion, sink) + psutil per-thread CPU of the 22 gnss-serial reader threads, "
            "over the wall time of the window; the bumble central (stand-in for BlueZ), bumble "
            "peripherals, pod firmware and simulated receivers are excluded and reported apart "
            "(loop thread minus on_data = pods + controllers + central)"
        ),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))

    table = Table(title=f"22 pods @100 Hz (bumble BLE) + 22 GNSS @10 Hz (ptys), {args.seconds:g} s")
    table.add_column("what")
    table.add_column("value", justify="right")
    imu = result["imu"]
    rows = [
        ("IMU samples sent by pods", f"{imu['samples_sent']:,}"),
        ("IMU samples received by host", f"{imu['samples_received']:,}"),
        (
            "IMU samples counted lost / corrupt packets",
            f"{imu['samples_lost_counted']} / {imu['corrupt']}",
        ),
        ("notifications", f"{imu['notifications']:,}"),
        ("connect 22 pods (s)", f"{imu['connect_all_s']:.1f}"),
        (
            "GNSS epochs written (since open..total) / RMC received",
            f"{epochs}..{epochs_total} / {rmc}",
        ),
        ("GNSS checksum errors", str(result["gnss"]["checksum_errors"])),
        (
            "host BLE decode (on_data) % core",
            f"{100 * result['cpu']['ble_on_data_core_fraction']:.2f}",
        ),
        ("host GNSS readers % core", f"{100 * result['cpu']['gnss_readers_core_fraction']:.2f}"),
        (
            "host transport+decoding % core (target < 25)",
            f"{100 * result['cpu']['host_transport_and_decoding_core_fraction']:.2f}",
        ),
        (
            "simulation: loop thread minus on_data % core",
            f"{100 * result['cpu']['loop_thread_minus_on_data_core_fraction']:.1f}",
        ),
        ("whole process % core", f"{100 * result['cpu']['process_core_fraction']:.1f}"),
    ]
    for row in rows:
        table.add_row(*row)
    Console(width=110).print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
