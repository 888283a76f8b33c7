"""BleTransport end to end over bumble: real ATT/GATT between in-process simulated pods and host."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from fusion_edge.errors import TransportError
from fusion_edge.firmware_bridge.backends.bumble_backend import SimulatedPodField
from fusion_edge.firmware_bridge.ble import BackoffPolicy, BleBackend, BleTransport, LinkState
from fusion_edge.firmware_bridge.control import InfoCommand, SetRateCommand
from fusion_edge.firmware_bridge.pod_commands import PodSettings
from fusion_edge.firmware_bridge.reader import SampleBlock
from fusion_edge.firmware_bridge.sim_pod import Fault, SimulatedPod, SineSampleSource

# One LSB of each channel at the default ranges (accel 8 g, gyro 1000 dps, mag 0.15 uT).
LSB = np.array([8 * 9.80665 / 32768] * 3 + [np.radians(1000) / 32768] * 3 + [0.15] * 3)
# The first retry waits 0.3 s: longer than two 120 ms packets, so an outage always loses some.
RETRY = BackoffPolicy(initial_s=0.3, factor=2.0, max_s=1.0, jitter=0.0)


def by_pod(blocks: list[SampleBlock]) -> dict[str, list[SampleBlock]]:
    out: dict[str, list[SampleBlock]] = {}
    for b in blocks:
        out.setdefault(b.pod_id, []).append(b)
    return out


def assert_matches_source(blocks: list[SampleBlock], source_rate: float = 100.0) -> None:
    """Every sample equals the sine source at its index, to within half an LSB (+ float32)."""
    reference = SineSampleSource(source_rate)
    for b in blocks:
        expected = reference.expected(b.first_sample_index, b.n_samples)
        assert np.all(np.abs(b.samples - expected) <= LSB * 0.5 + 1e-4), b


def test_three_pods_stream_a_sine_complete_and_in_order() -> None:
    async def main() -> None:
        pods = [
            SimulatedPod(f"C0:FE:00:00:00:0{i}", SineSampleSource(100.0), seed=i) for i in (1, 2, 3)
        ]
        stranger = SimulatedPod("C0:FE:00:00:00:99", SineSampleSource(100.0), seed=9)
        async with SimulatedPodField([*pods, stranger]) as field:
            blocks: list[SampleBlock] = []
            allow = [p.address for p in pods]
            async with BleTransport(allow, sink=blocks.append, backend=field.backend) as t:
                assert [t.link(a).mtu for a in allow] == [247, 247, 247]
                assert all(t.link(a).info.boot_id == field.pod(a).boot_id for a in allow)
                await asyncio.sleep(2.5)
                counters = {a: t.counters(a) for a in allow}
                with pytest.raises(TransportError, match="allow-list"):
                    await t.connect(stranger.address)
            assert field.connections(stranger.address) == 0
            assert not any(field.is_connected(a) for a in allow)  # disconnected on exit
            assert not any(field.pod(a).streaming for a in allow)  # STOP reached the pods

        streams = by_pod(blocks)
        assert sorted(streams) == allow
        for address, stream in streams.items():
            c = counters[address]
            assert (c.lost_samples, c.corrupt, c.duplicates, c.reordered) == (0, 0, 0, 0)
            assert all(b.n_samples == 12 for b in stream)  # 247-byte MTU: 12 samples each
            assert [b.seq for b in stream] == list(range(len(stream)))
            assert [b.first_sample_index for b in stream] == [12 * i for i in range(len(stream))]
            assert len(stream) >= 15  # ~2.5 s at 100 Hz
            assert_matches_source(stream)
            # device time advances 120 ms per block, host receive times are in order
            assert np.all(np.diff([b.t0_us for b in stream]) == 120_000)
            assert np.all(np.diff([b.host_time_ns for b in stream]) > 0)

    asyncio.run(main())


def test_disconnected_pod_is_reconnected_and_reboot_is_detected() -> None:
    async def main() -> None:
        async with SimulatedPodField.with_sine_pods(2) as field:
            a, b = list(field.pods)
            blocks: list[SampleBlock] = []
            t = BleTransport([a, b], sink=blocks.append, backend=field.backend, backoff=RETRY)
            async with t:
                await asyncio.sleep(0.6)
                field.pod(a).inject(Fault.DISCONNECT)
                old_boot = field.pod(b).boot_id
                field.pod(b).inject(Fault.REBOOT)
                await asyncio.sleep(1.5)
                assert t.state(a) is LinkState.STREAMING and t.state(b) is LinkState.STREAMING
                ca, cb = t.counters(a), t.counters(b)
                link_a = t.link(a)
            assert field.connections(a) == 2 and field.connections(b) == 2

        streams = by_pod(blocks)
        # pod a kept sampling while its link was down: the outage is a counted gap
        assert ca.reconnects == 1 and ca.reboots == 0
        assert link_a.reconnect_delays == [0.3]
        assert ca.lost_samples >= 24 and ca.lost_samples % 12 == 0
        gaps = [blk for blk in streams[a] if blk.gap_before]
        assert len(gaps) == 1 and gaps[0].gap_before == ca.lost_samples
        assert_matches_source(streams[a])
        # pod b rebooted: new boot id, sequence from 0, sample index from 0
        assert cb.reboots == 1 and cb.reconnects == 1
        boots = [blk.boot_id for blk in streams[b]]
        assert boots[0] == old_boot and boots[-1] == field.pod(b).boot_id != old_boot
        first_new = next(blk for blk in streams[b] if blk.boot_id != old_boot)
        assert (first_new.seq, first_new.first_sample_index) == (0, 0)

    asyncio.run(main())


def test_packets_follow_the_negotiated_mtu_and_the_configured_rate() -> None:
    async def main() -> None:
        async with SimulatedPodField.with_sine_pods(1, pod_mtu=100) as field:
            (a,) = list(field.pods)
            queue: asyncio.Queue[SampleBlock] = asyncio.Queue()
            settings = PodSettings(rate_code=1)  # 50 Hz: the pod decimates its 100 Hz source
            async with BleTransport([a], sink=queue, backend=field.backend, settings=settings) as t:
                block = await asyncio.wait_for(queue.get(), 2.0)
                assert t.link(a).mtu == 100
                with pytest.raises(TransportError, match="refused SET_RATE: BUSY"):
                    await t.command(a, SetRateCommand(rate_code=2))
                info = await t.command(a, InfoCommand())
                assert info.streaming and info.rate_code == 1
        assert block.n_samples == (100 - 3 - 20) // 18 == 4
        assert block.sample_rate_hz == 50.0
        expected = SineSampleSource(100.0).expected(0, 8)[::2]
        assert np.all(np.abs(block.samples - expected) <= LSB * 0.5 + 1e-4)

    asyncio.run(main())


@pytest.mark.radio
@pytest.mark.skip(reason="needs a Bluetooth adapter and a powered pod in range (set FUSION_POD)")
def test_real_pod_over_the_platform_backend() -> None:
    import os

    async def main() -> None:
        queue: asyncio.Queue[SampleBlock] = asyncio.Queue()
        async with BleTransport([os.environ["FUSION_POD"]], sink=queue, backend=BleBackend()):
            block = await asyncio.wait_for(queue.get(), 10.0)
        assert block.n_samples >= 1

    asyncio.run(main())
