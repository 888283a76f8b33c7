"""Decode throughput of the firmware bridge on one core: pod packets and GNSS frames.

    .venv/bin/python benchmarks/bridge_decode.py [--seconds 2]

1. Pod packets: 12-sample 9-axis packets (what MTU 247 carries) through ``decode_packet`` and
   through ``PacketReader.feed`` (decode + ordering + SI conversion + SampleBlock), in samples/s.
   Target: >= 500,000 samples/s.
2. GNSS: a simulated receiver's NMEA stream (RMC, VTG, GGA, GSA per epoch) and its UBX NAV-PVT
   stream, fed to ``GnssStreamReader`` in 256-byte chunks, in frames/s. Target: >= 20,000/s.

Everything runs in this one process on one thread. Prints a table and writes
benchmarks/results/bridge_decode.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from fusion_edge.firmware_bridge.gnss_reader import GnssStreamReader
from fusion_edge.firmware_bridge.protocol import PodPacket, SensorMask, decode_packet, encode_packet
from fusion_edge.firmware_bridge.reader import PacketReader
from fusion_edge.firmware_bridge.sim_gnss import (
    CircleTrackSource,
    OutputMix,
    SimulatedReceiver,
    SimulatedReceiverConfig,
)

SAMPLES_PER_PACKET = 12
SENSORS = SensorMask.ACCEL | SensorMask.GYRO | SensorMask.MAG


def pod_packets(count: int, seed: int = 0) -> list[bytes]:
    """``count`` consecutive 12-sample 9-axis packets of random int16 values."""
    rng = np.random.default_rng(seed)
    out = []
    for seq in range(count):
        samples = rng.integers(-32768, 32768, size=(SAMPLES_PER_PACKET, 9), dtype=np.int16)
        packet = PodPacket(1, 0x1234, seq & 0xFFFF, 120_000 * seq, 2, 2, 2, SENSORS, samples)
        out.append(encode_packet(packet))
    return out


def best_rate(run: Callable[[], int], seconds: float) -> tuple[float, int]:
    """Run ``run`` (returning items processed) repeatedly for ``seconds``; best items/s, runs."""
    best, runs, deadline = 0.0, 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline or runs < 3:
        t = time.perf_counter()
        items = run()
        best = max(best, items / (time.perf_counter() - t))
        runs += 1
    return best, runs


def gnss_stream(output: OutputMix, epochs: int) -> bytes:
    cfg = SimulatedReceiverConfig(
        output=output, start_utc=datetime(2024, 6, 15, tzinfo=timezone.utc)
    )
    rx = SimulatedReceiver(CircleTrackSource(), cfg)
    return b"".join(rx.render_epoch(k) for k in range(epochs))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--out", default="benchmarks/results/bridge_decode.json")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as promised

    packets = pod_packets(2000)

    def run_decode() -> int:
        n = 0
        for data in packets:
            n += decode_packet(data).n_samples
        return n

    def run_reader() -> int:
        reader = PacketReader("bench")
        n = 0
        for k, data in enumerate(packets):
            for block in reader.feed(data, k):
                n += block.n_samples
        return n

    rows = []
    for name, fn in (("decode_packet", run_decode), ("PacketReader.feed", run_reader)):
        rate, runs = best_rate(fn, args.seconds)
        rows.append(
            {
                "stage": name,
                "unit": "samples/s",
                "rate": rate,
                "target": 500_000,
                "per_item_us": 1e6 * SAMPLES_PER_PACKET / rate,
                "item": "12-sample packet",
                "runs": runs,
            }
        )

    for output, label in (
        (OutputMix.NMEA, "NMEA (RMC+VTG+GGA+GSA)"),
        (OutputMix.UBX, "UBX NAV-PVT"),
    ):
        stream = gnss_stream(output, 3000)
        chunks = [stream[i : i + 256] for i in range(0, len(stream), 256)]

        def run_gnss(chunks: list[bytes] = chunks) -> int:
            reader = GnssStreamReader()
            n = 0
            for chunk in chunks:
                n += len(reader.feed(chunk, 0))
            return n

        rate, runs = best_rate(run_gnss, args.seconds)
        rows.append(
            {
                "stage": f"GnssStreamReader: {label}",
                "unit": "frames/s",
                "rate": rate,
                "target": 20_000,
                "per_item_us": 1e6 / rate,
                "item": "frame",
                "runs": runs,
                "bytes_per_s": rate * len(stream) / run_gnss(),
            }
        )

    table = Table(title="firmware_bridge decode throughput (one core)")
    for col in ("stage", "rate", "target", "per item", "ok"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["stage"],
            f"{r['rate']:,.0f} {r['unit']}",
            f"{r['target']:,}",
            f"{r['per_item_us']:.1f} µs / {r['item']}",
            "yes" if r["rate"] >= r["target"] else "NO",
        )
    Console(width=110).print(table)
    result = {
        "benchmark": "bridge_decode",
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "method": "best of repeated runs of >= --seconds each, pinned to one core; pod: 2000 "
        "random 12-sample 9-axis packets; GNSS: 3000 simulated epochs fed in 256-byte chunks",
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
