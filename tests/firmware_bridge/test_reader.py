"""PacketReader: ordering, gaps across the 16-bit wrap, duplicates, reboots, bad packets."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from fusion_edge.firmware_bridge.protocol import (
    BadCrcError,
    PodPacket,
    SensorMask,
    TruncatedPacketError,
    UnknownVersionError,
    encode_packet,
)
from fusion_edge.firmware_bridge.reader import (
    RESYNC_HORIZON,
    BadPacketPolicy,
    PacketReader,
    PodCounters,
    SampleBlock,
)
from fusion_edge.firmware_bridge.wire_layout import append_crc

N = 4  # samples per packet
RATE_CODE = 2  # 100 Hz: 10 ms per sample, 40 ms per packet
S = SensorMask.ACCEL | SensorMask.GYRO


def pkt(index: int, *, boot: int = 1, n: int = N, t0_us: int | None = None) -> bytes:
    """Packet number `index` of a boot (seq = index mod 2^16), samples encode their index."""
    first = index * N
    samples = np.zeros((n, 6), dtype=np.int16)
    samples[:, 0] = (np.arange(first, first + n) % 30000).astype(np.int16)
    return encode_packet(
        PodPacket(
            version=1,
            boot_id=boot,
            seq=index % 65536,
            t0_us=first * 10_000 if t0_us is None else t0_us,
            rate_code=RATE_CODE,
            accel_range=0,
            gyro_range=0,
            sensors=S,
            samples=samples,
        )
    )


def feed(reader: PacketReader, *indices: int, boot: int = 1) -> list[SampleBlock]:
    out: list[SampleBlock] = []
    for i in indices:
        out += reader.feed(pkt(i, boot=boot), host_time_ns=1_000_000 * i)
    return out


def seqs(blocks: list[SampleBlock]) -> list[int]:
    return [b.seq for b in blocks]


def test_in_order_stream() -> None:
    r = PacketReader("P1")
    blocks = feed(r, 0, 1, 2)
    assert seqs(blocks) == [0, 1, 2]
    assert [b.first_sample_index for b in blocks] == [0, 4, 8]
    assert [b.gap_before for b in blocks] == [0, 0, 0]
    b = blocks[1]
    assert (b.pod_id, b.boot_id, b.t0_us, b.host_time_ns) == ("P1", 1, 40_000, 1_000_000)
    assert b.samples.dtype == np.float32 and b.samples.shape == (4, 6)
    assert b.channel_names[:3] == ("accel_x", "accel_y", "accel_z")
    assert b.sample_rate_hz == 100.0
    assert b.sample_times_us().tolist() == [40_000, 50_000, 60_000, 70_000]
    np.testing.assert_allclose(b.samples[:, 0], np.arange(4, 8) * 2 * 9.80665 / 32768, rtol=1e-6)
    assert not b.samples.flags.writeable
    c = r.counters
    assert (c.received_packets, c.received_samples, c.lost_samples) == (3, 12, 0)


def test_first_packet_mid_stream_has_no_gap() -> None:
    r = PacketReader("P1")
    blocks = feed(r, 500, 501)
    assert [b.gap_before for b in blocks] == [0, 0]
    assert blocks[0].first_sample_index == 0


def test_sequence_wrap_is_contiguous() -> None:
    r = PacketReader("P1")
    blocks = feed(r, 65534, 65535, 65536, 65537)
    assert seqs(blocks) == [65534, 65535, 0, 1]
    assert [b.gap_before for b in blocks] == [0, 0, 0, 0]
    assert r.counters.lost_samples == 0


def test_gap_across_wrap_counts_lost_samples() -> None:
    r = PacketReader("P1", reorder_window=0)
    blocks = feed(r, 65534, 65537)  # 65535 and 0 lost
    assert seqs(blocks) == [65534, 1]
    assert blocks[1].gap_before == 2 * N
    assert blocks[1].first_sample_index == N + 2 * N
    c = r.counters
    assert (c.lost_packets, c.lost_samples, c.received_packets) == (2, 8, 2)


def test_lost_samples_come_from_timestamps_when_packet_sizes_vary() -> None:
    r = PacketReader("P1", reorder_window=0)
    r.feed(pkt(0), 0)  # samples 0..3
    # packets 1 and 2 lost; they held 4 + 7 samples, so packet 3 starts at sample 15
    (b,) = r.feed(pkt(3, t0_us=15 * 10_000), 1)
    assert b.gap_before == 11 and b.first_sample_index == 15


def test_lost_samples_fall_back_to_packet_count_when_clock_jumps() -> None:
    r = PacketReader("P1", reorder_window=0)
    r.feed(pkt(0), 0)
    (b,) = r.feed(pkt(2, t0_us=5), 1)  # SET_TIME moved the clock back during the hole
    assert b.gap_before == N  # one missing packet x this packet's sample count


def test_duplicates_are_dropped_and_counted() -> None:
    r = PacketReader("P1")
    assert seqs(feed(r, 0, 1, 1, 2, 0)) == [0, 1, 2]
    assert r.counters.duplicates == 2
    assert r.counters.received_packets == 3


def test_reordering_within_window_is_repaired() -> None:
    r = PacketReader("P1", reorder_window=4)
    assert seqs(feed(r, 0)) == [0]
    assert feed(r, 2) == []  # held: packet 1 may still come
    assert feed(r, 3) == []
    assert r.pending == 2
    assert seqs(feed(r, 1)) == [1, 2, 3]
    assert seqs(feed(r, 4)) == [4]
    c = r.counters
    assert (c.reordered, c.lost_samples, c.duplicates, c.received_packets) == (1, 0, 0, 5)


def test_duplicate_of_a_held_packet() -> None:
    r = PacketReader("P1")
    feed(r, 0, 2)
    assert feed(r, 2) == []
    assert r.counters.duplicates == 1


def test_hole_is_given_up_after_window_and_late_packet_dropped() -> None:
    r = PacketReader("P1", reorder_window=3)
    feed(r, 0)
    assert feed(r, 2, 3, 4) == []  # hole at 1 held open for 3 sequence numbers
    blocks = feed(r, 5)  # 4 past the hole: give up on 1
    assert seqs(blocks) == [2, 3, 4, 5]
    assert blocks[0].gap_before == N and blocks[1].gap_before == 0
    assert feed(r, 1) == []  # arrives after it was declared lost
    c = r.counters
    assert (c.late, c.lost_packets, c.lost_samples, c.duplicates) == (1, 1, N, 0)


def test_window_zero_releases_immediately() -> None:
    r = PacketReader("P1", reorder_window=0)
    assert seqs(feed(r, 0, 2)) == [0, 2]
    assert feed(r, 1) == []
    assert r.counters.late == 1


def test_flush_releases_held_packets() -> None:
    r = PacketReader("P1")
    feed(r, 0, 2, 3)
    blocks = r.flush()
    assert seqs(blocks) == [2, 3] and blocks[0].gap_before == N
    assert r.pending == 0 and r.flush() == []


def test_host_time_is_receive_time_not_release_time() -> None:
    r = PacketReader("P1")
    r.feed(pkt(0), 100)
    r.feed(pkt(2), 300)
    blocks = r.feed(pkt(1), 500)
    assert [(b.seq, b.host_time_ns) for b in blocks] == [(1, 500), (2, 300)]


def test_reboot_resets_tracking() -> None:
    r = PacketReader("P1")
    feed(r, 7, 8, 9, boot=1)
    feed(r, 11, boot=1)  # held behind the hole at 10
    blocks = feed(r, 0, 1, boot=2)
    assert [(b.boot_id, b.seq) for b in blocks] == [(1, 11), (2, 0), (2, 1)]
    assert [b.first_sample_index for b in blocks[1:]] == [0, N]
    assert r.boot_id == 2 and r.counters.reboots == 1
    assert feed(r, 12, boot=1) == []  # a straggler from the old boot
    assert r.counters.late == 1


def test_packets_missed_at_start_of_new_boot_count_as_lost() -> None:
    r = PacketReader("P1", reorder_window=0)
    feed(r, 40, boot=1)
    (b,) = feed(r, 2, boot=2)  # seq 0 and 1 of the new boot never arrived
    assert b.gap_before == 2 * N and b.first_sample_index == 2 * N
    assert r.counters.lost_packets == 2


def test_reconnect_is_counted_and_outage_is_a_gap() -> None:
    r = PacketReader("P1")
    feed(r, 0, 1)
    r.note_reconnect()
    (b,) = feed(r, 30)
    assert b.gap_before == 28 * N
    c = r.counters
    assert (c.reconnects, c.lost_packets, c.reboots) == (1, 28, 0)


def test_same_boot_sequence_restart_resyncs(caplog: pytest.LogCaptureFixture) -> None:
    r = PacketReader("P1")
    feed(r, 5000, 5001)
    with caplog.at_level(logging.WARNING, logger="fusion_edge.firmware_bridge.reader"):
        blocks = feed(r, 5001 - RESYNC_HORIZON - 2)
    assert len(blocks) == 1 and r.counters.resyncs == 1
    assert "sequence jumped back from 5002 to 3975 with the same boot id 1" in caplog.text


def _bad_frames() -> dict[str, bytes]:
    good = pkt(0)
    flipped = bytearray(good)
    flipped[25] ^= 0x10
    return {
        "crc": bytes(flipped),
        "truncated": good[:-5],
        "version": append_crc(b"\x02" + good[1:-2]),
    }


def test_policy_raise_names_the_pod() -> None:
    r = PacketReader("P9", policy=BadPacketPolicy.RAISE)
    frames = _bad_frames()
    with pytest.raises(BadCrcError, match=r"^pod P9 packet: CRC mismatch"):
        r.feed(frames["crc"], 0)
    with pytest.raises(TruncatedPacketError, match=r"^pod P9 packet: truncated, 63 bytes but "):
        r.feed(frames["truncated"], 0)
    with pytest.raises(UnknownVersionError) as unk:
        r.feed(frames["version"], 0)
    assert str(unk.value) == (
        "pod P9 packet: format version 2 is not supported (this host speaks version 1); "
        "update fusion-edge, or flash pod firmware that speaks version 1"
    )
    c = r.counters
    assert (c.corrupt, c.unknown_version, c.received_packets) == (2, 1, 0)


def test_policy_log_warns_and_continues(caplog: pytest.LogCaptureFixture) -> None:
    r = PacketReader("P2", policy=BadPacketPolicy.LOG)
    with caplog.at_level(logging.WARNING, logger="fusion_edge.firmware_bridge.reader"):
        assert r.feed(_bad_frames()["crc"], 0) == []
        assert r.feed(_bad_frames()["crc"], 0) == []  # same kind again: not logged again
        assert seqs(feed(r, 0)) == [0]
    warnings = [rec.getMessage() for rec in caplog.records]
    assert len(warnings) == 1
    assert warnings[0].startswith("dropped bad packet #1 of this kind: pod P2 packet: CRC mismatch")
    assert r.counters.corrupt == 2


def test_policy_ignore_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    r = PacketReader("P3", policy="ignore")  # type: ignore[arg-type]  # str enum accepts values
    with caplog.at_level(logging.DEBUG):
        for frame in _bad_frames().values():
            assert r.feed(frame, 0) == []
    assert caplog.records == []
    assert (r.counters.corrupt, r.counters.unknown_version) == (2, 1)


def test_counters_are_a_snapshot() -> None:
    r = PacketReader("P1")
    snap = r.counters
    feed(r, 0)
    assert snap == PodCounters() and r.counters.received_packets == 1


def test_reorder_window_is_validated() -> None:
    with pytest.raises(ValueError, match=r"reorder_window=-1 is outside 0..1024"):
        PacketReader("P1", reorder_window=-1)


def test_random_lossy_shuffled_stream_accounts_for_every_sample() -> None:
    rng = np.random.default_rng(99)
    total = 3000
    sent = [i for i in range(65000, 65000 + total) if rng.random() > 0.05]  # 5 % loss, wraps
    order = np.array(sent, dtype=float) + rng.uniform(0, 2.5, size=len(sent))  # local shuffles
    arrivals = [sent[k] for k in np.argsort(order, kind="stable")]
    r = PacketReader("P1", reorder_window=4)
    blocks = feed(r, *arrivals) + r.flush()
    firsts = [b.first_sample_index for b in blocks]
    assert firsts == sorted(firsts)  # released in order
    assert [(b.first_sample_index - firsts[0]) // N for b in blocks] == [s - sent[0] for s in sent]
    c = r.counters
    assert c.received_packets == len(sent) and c.duplicates == 0 and c.late == 0
    assert c.lost_packets == (sent[-1] - sent[0] + 1) - len(sent)
    assert c.lost_samples == c.lost_packets * N
    assert c.reordered > 0
