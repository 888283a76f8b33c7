"""BleTransport through the replay backend: allow-list, accounting, reconnect backoff, shutdown."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from fusion_edge.errors import TransportError
from fusion_edge.firmware_bridge.backends.replay_backend import ReplayField, ReplayPod
from fusion_edge.firmware_bridge.ble import BackoffPolicy, BleTransport, LinkState
from fusion_edge.firmware_bridge.control import SetTimeCommand, StartCommand, StopCommand
from fusion_edge.firmware_bridge.pod_commands import PodSettings
from fusion_edge.firmware_bridge.protocol import PodPacket, SensorMask, encode_packet
from fusion_edge.firmware_bridge.reader import SampleBlock

POD_A = "AA:BB:CC:00:00:01"
POD_B = "AA:BB:CC:00:00:02"
STRANGER = "DE:AD:BE:EF:00:99"
N = 12  # samples per packet


def packet(seq: int, boot_id: int = 7) -> bytes:
    raw = np.full((N, 9), seq % 1000, dtype=np.int16)
    return encode_packet(
        PodPacket(
            version=1,
            boot_id=boot_id,
            seq=seq & 0xFFFF,
            t0_us=seq * N * 10_000,
            rate_code=2,
            accel_range=2,
            gyro_range=2,
            sensors=SensorMask(7),
            samples=raw,
        )
    )


FAST = BackoffPolicy(initial_s=0.02, factor=2.0, max_s=0.1, jitter=0.0)


def transport(field: ReplayField, allow: list[str], **kwargs: object) -> BleTransport:
    kwargs.setdefault("backoff", FAST)
    return BleTransport(
        allow,
        backend=field.backend,
        scan_timeout=0.5,
        connect_timeout=2.0,
        command_timeout=1.0,
        **kwargs,  # type: ignore[arg-type]
    )


async def wait_until(predicate, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def test_pod_not_on_allow_list_is_never_connected() -> None:
    async def main() -> None:
        field = ReplayField(
            [
                ReplayPod.from_packets(POD_A, [packet(s) for s in range(5)]),
                ReplayPod.from_packets(STRANGER, [packet(s) for s in range(5)]),
            ]
        )
        async with transport(field, [POD_A.lower()]) as t:
            await wait_until(lambda: field.done(POD_A))
            assert t.state(POD_A) is LinkState.STREAMING
            assert STRANGER in t.ignored
            with pytest.raises(TransportError, match="not on the kit's allow-list"):
                await t.connect(STRANGER)
        assert field.state(STRANGER).connects == 0
        assert field.state(STRANGER).connect_times == []
        assert field.state(POD_A).connects == 1

    asyncio.run(main())


def test_missing_pod_error_says_what_to_do() -> None:
    async def main() -> None:
        field = ReplayField([ReplayPod.from_packets(POD_A, [packet(0)])])
        with pytest.raises(
            TransportError, match=r"AA:BB:CC:00:00:02 not found.*charged.*allow-list"
        ):
            async with transport(field, [POD_A, POD_B]):
                pass
        # the pod that was found is left disconnected, not half-open
        assert not field.state(POD_A).connected

    asyncio.run(main())


def test_empty_or_duplicate_allow_list_is_refused() -> None:
    with pytest.raises(TransportError, match="allow-list of pods is empty"):
        BleTransport([])
    with pytest.raises(TransportError, match="names a pod twice"):
        BleTransport([POD_A, POD_A.lower()])


def test_gaps_duplicates_and_corruption_reach_the_counters() -> None:
    corrupt = bytearray(packet(4))
    corrupt[30] ^= 0xFF
    script = [packet(0), packet(1), packet(1), packet(2), bytes(corrupt)]
    script += [packet(s) for s in range(5, 20)]  # seq 3 and 4 never arrive intact

    async def main() -> None:
        field = ReplayField([ReplayPod.from_packets(POD_A, script)])
        blocks: list[SampleBlock] = []
        async with transport(field, [POD_A], sink=blocks.append) as t:
            await wait_until(lambda: field.done(POD_A))
            await asyncio.sleep(0.02)
            c = t.counters(POD_A)
        assert c.duplicates == 1
        assert c.corrupt == 1
        assert c.lost_samples == 2 * N
        assert c.received_packets == 18
        seqs = [b.seq for b in blocks]
        assert seqs == sorted(seqs) and 3 not in seqs and 4 not in seqs
        after_gap = next(b for b in blocks if b.seq == 5)
        assert after_gap.gap_before == 2 * N
        assert after_gap.first_sample_index == 5 * N
        assert all(b.host_time_ns > 0 for b in blocks)

    asyncio.run(main())


def test_raw_sink_sees_every_notification_and_decode_can_be_left_to_it() -> None:
    corrupt = bytearray(packet(2))
    corrupt[30] ^= 0xFF
    script = [packet(0), packet(1), bytes(corrupt), packet(3)]

    async def main() -> None:
        field = ReplayField([ReplayPod.from_packets(POD_A, script)])
        raw: list[tuple[str, bytes, int]] = []
        blocks: list[SampleBlock] = []
        async with transport(
            field, [POD_A], sink=blocks.append, raw_sink=lambda a, d, t: raw.append((a, d, t)),
            decode=False,
        ):
            await wait_until(lambda: field.done(POD_A))
            await asyncio.sleep(0.02)
        assert [d for _, d, _ in raw] == script  # good or bad, every packet, as received
        assert {a for a, _, _ in raw} == {POD_A} and all(t > 0 for _, _, t in raw)
        assert blocks == []  # nothing decoded twice

    asyncio.run(main())
    with pytest.raises(ValueError, match="decode=False needs a raw_sink"):
        BleTransport([POD_A], decode=False)


def test_reconnect_with_backoff_after_a_drop() -> None:
    script = [packet(s) for s in range(4)] + [None] + [packet(s) for s in range(6, 10)]

    async def main() -> None:
        field = ReplayField([ReplayPod.from_packets(POD_A, script)])
        queue: asyncio.Queue = asyncio.Queue()
        t = transport(field, [POD_A], sink=queue)
        async with t:
            field.fail_next_connects(POD_A, 2)  # the pod is out of range twice, then back
            await wait_until(lambda: field.done(POD_A) and t.state(POD_A) is LinkState.STREAMING)
            await asyncio.sleep(0.02)
            link = t.link(POD_A)
            c = t.counters(POD_A)
        times = field.state(POD_A).connect_times
        assert field.state(POD_A).connects == 2
        assert len(times) == 4  # first connect, two failed attempts, the good one
        # waits grow 0.02 -> 0.04 -> 0.08 s between the drop and the successful attempt
        assert link.reconnect_delays == pytest.approx([0.02, 0.04, 0.08])
        assert times[2] - times[1] >= 0.035 and times[3] - times[2] >= 0.075
        assert c.reconnects == 1
        assert c.lost_samples == 2 * N  # seq 4 and 5 were sent while the link was down
        seqs = []
        while not queue.empty():
            seqs.append(queue.get_nowait().seq)
        assert seqs == [0, 1, 2, 3, 6, 7, 8, 9]
        # a reconnect re-runs setup: START again, but SET_TIME only once per boot
        commands = field.state(POD_A).commands
        assert sum(isinstance(x, StartCommand) for x in commands) == 2
        assert sum(isinstance(x, SetTimeCommand) for x in commands) == 1

    asyncio.run(main())


def test_backoff_schedule_caps_and_gives_up() -> None:
    policy = BackoffPolicy(initial_s=0.5, factor=2.0, max_s=30.0, jitter=0.0)
    assert [policy.delay(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]

    async def main() -> None:
        field = ReplayField([ReplayPod.from_packets(POD_A, [packet(0), None])])
        backoff = BackoffPolicy(initial_s=0.01, max_s=0.02, jitter=0.0, max_attempts=3)
        async with transport(field, [POD_A], backoff=backoff) as t:
            field.fail_next_connects(POD_A, 100)
            await wait_until(lambda: t.state(POD_A) is LinkState.FAILED)
            assert "out of range" in str(t.link(POD_A).last_error)
        assert len(field.state(POD_A).connect_times) == 1 + 3

    asyncio.run(main())


def test_clean_shutdown_stops_notify_sends_stop_and_disconnects() -> None:
    async def main() -> None:
        field = ReplayField(
            [ReplayPod.from_packets(POD_A, [packet(s) for s in range(500)], interval_s=0.01)]
        )
        t = transport(field, [POD_A], settings=PodSettings(rate_code=2, set_time=False))
        async with t:
            await wait_until(lambda: field.state(POD_A).cursor > 3)
        st = field.state(POD_A)
        assert isinstance(st.commands[-1], StopCommand)
        assert not st.connected and not st.streaming
        assert t.state(POD_A) is LinkState.CLOSED
        cursor = st.cursor
        await asyncio.sleep(0.05)
        assert st.cursor == cursor  # nothing plays after shutdown
        assert not any(isinstance(x, SetTimeCommand) for x in st.commands)
        await t.close()  # a second close is harmless

    asyncio.run(main())
