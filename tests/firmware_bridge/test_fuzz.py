"""Property-based fuzzing (hypothesis) of the pod codec, PacketReader and GnssStreamReader.

Each property runs a bounded number of examples so the file stays fast; hypothesis is seeded
from its database, so a failure found once is replayed first next time.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusion_edge.errors import ProtocolError
from fusion_edge.firmware_bridge.gnss_encode import (
    FixSample,
    format_gga,
    format_gsa,
    format_nav_pvt,
    format_rmc,
    format_vtg,
    tag_block,
)
from fusion_edge.firmware_bridge.gnss_parse import GnssParseError
from fusion_edge.firmware_bridge.gnss_reader import BadFramePolicy, GnssStreamReader
from fusion_edge.firmware_bridge.protocol import (
    BadCrcError,
    PodPacket,
    SensorMask,
    TruncatedPacketError,
    decode_packet,
    encode_packet,
)
from fusion_edge.firmware_bridge.reader import BadPacketPolicy, PacketReader

# derandomize: the same examples on every run, so the suite is deterministic.
FUZZ = settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
SMALL = settings(
    max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

# ------------------------------------------------------------------------------- pod packets


@st.composite
def pod_packets(draw: st.DrawFn, boot_id: int | None = None, seq: int | None = None) -> PodPacket:
    sensors = draw(st.integers(1, 7))
    channels = 3 * bin(sensors).count("1")
    n = draw(st.integers(1, 12))
    raw = draw(st.binary(min_size=2 * n * channels, max_size=2 * n * channels))
    samples = np.frombuffer(raw, dtype="<i2").reshape(n, channels)
    return PodPacket(
        version=1,
        boot_id=draw(st.integers(0, 0xFFFF)) if boot_id is None else boot_id,
        seq=draw(st.integers(0, 0xFFFF)) if seq is None else seq,
        t0_us=draw(st.integers(0, 2**64 - 1)),
        rate_code=draw(st.integers(0, 3)),
        accel_range=draw(st.integers(0, 3)),
        gyro_range=draw(st.integers(0, 3)),
        sensors=SensorMask(sensors),
        samples=samples,
    )


@FUZZ
@given(st.binary(max_size=600))
def test_decode_packet_on_random_bytes_raises_only_protocol_errors(data: bytes) -> None:
    try:
        packet = decode_packet(data)
    except ProtocolError:
        return
    assert encode_packet(packet) == data  # anything accepted is a real packet


@FUZZ
@given(pod_packets())
def test_encode_decode_round_trip(packet: PodPacket) -> None:
    wire = encode_packet(packet)
    decoded = decode_packet(bytearray(wire))
    assert decoded == packet
    assert not decoded.samples.flags.writeable


@FUZZ
@given(pod_packets(), st.data())
def test_every_single_bit_flip_is_rejected(packet: PodPacket, data: st.DataObject) -> None:
    wire = bytearray(encode_packet(packet))
    bit = data.draw(st.integers(0, 8 * len(wire) - 1))
    wire[bit // 8] ^= 1 << (bit % 8)
    # CRC-16 catches every single-bit error; a flipped length makes the frame look truncated.
    with pytest.raises((BadCrcError, TruncatedPacketError)):
        decode_packet(bytes(wire))


@FUZZ
@given(pod_packets(), st.data())
def test_every_truncation_is_reported_as_truncated(packet: PodPacket, data: st.DataObject) -> None:
    wire = encode_packet(packet)
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(TruncatedPacketError):
        decode_packet(wire[:cut])


def _damaged(data: st.DataObject, wire: bytes) -> bytes:
    """A frame that cannot decode: random bytes, a truncation or a bit flip of ``wire``."""
    how = data.draw(st.sampled_from(["random", "truncate", "flip"]))
    if how == "truncate":
        return wire[: data.draw(st.integers(0, len(wire) - 1))]
    if how == "flip":
        out = bytearray(wire)
        bit = data.draw(st.integers(0, 8 * len(out) - 1))
        out[bit // 8] ^= 1 << (bit % 8)
        return bytes(out)
    junk = data.draw(st.binary(max_size=300))
    try:
        decode_packet(junk)
    except ProtocolError:
        return junk
    return b""  # hypothesis built a valid packet by chance: use an empty frame instead


def _feed(reader: PacketReader, frame: bytes, stamp: int) -> tuple[list, bool]:
    try:
        return reader.feed(frame, stamp), False
    except ProtocolError:
        assert reader.policy is BadPacketPolicy.RAISE, "only RAISE may let an error out"
        return [], True


@FUZZ
@given(
    st.sampled_from(list(BadPacketPolicy)),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 30), st.booleans()), max_size=40),
    st.data(),
)
def test_reader_accounts_for_every_frame_under_any_damage(
    policy: BadPacketPolicy, script: list[tuple[int, int, bool]], data: st.DataObject
) -> None:
    """Any mix of boots, sequence numbers (drops, duplicates, reordering, wrap) and damaged
    frames: nothing but ProtocolError (and only under RAISE) escapes, and every frame fed ends up
    in exactly one counter."""
    reader = PacketReader("fuzz", policy=policy, reorder_window=data.draw(st.integers(0, 4)))
    blocks, fed, raised, damaged = [], 0, 0, 0
    for k, (boot, seq_offset, damage) in enumerate(script):
        seq = (0xFFF0 + seq_offset) & 0xFFFF  # around the 65535 -> 0 wrap
        packet = data.draw(pod_packets(boot_id=boot, seq=seq))
        frame = encode_packet(packet)
        if damage:
            frame = _damaged(data, frame)
            damaged += 1
        out, did_raise = _feed(reader, frame, k)
        blocks += out
        raised += did_raise
        fed += 1
    blocks += reader.flush()
    c = reader.counters
    assert reader.pending == 0
    assert fed == (c.received_packets + c.duplicates + c.late + c.corrupt + c.unknown_version)
    assert c.corrupt + c.unknown_version == damaged
    if policy is BadPacketPolicy.RAISE:
        assert raised == damaged
    assert len(blocks) == c.received_packets
    assert sum(b.n_samples for b in blocks) == c.received_samples
    assert sum(b.gap_before for b in blocks) == c.lost_samples
    for prev, block in zip(blocks, blocks[1:], strict=False):
        if block.boot_id == prev.boot_id:  # within a boot, samples never overlap or go back
            assert block.first_sample_index >= prev.first_sample_index + prev.n_samples


@SMALL
@given(st.sampled_from(list(BadPacketPolicy)), st.integers(1, 20), st.data())
def test_valid_packets_after_garbage_are_all_delivered_in_order(
    policy: BadPacketPolicy, count: int, data: st.DataObject
) -> None:
    reader = PacketReader("fuzz", policy=policy)
    sent, blocks = [], []
    stream: list[bytes] = []
    for seq in range(count):
        for _ in range(data.draw(st.integers(0, 2))):
            stream.append(_damaged(data, encode_packet(data.draw(pod_packets(boot_id=7)))))
        packet = data.draw(pod_packets(boot_id=7, seq=seq))
        sent.append(packet)
        stream.append(encode_packet(packet))
    for k, frame in enumerate(stream):
        blocks += _feed(reader, frame, k)[0]
    assert [b.seq for b in blocks] == list(range(count))  # none held, none lost
    assert all(b.gap_before == 0 for b in blocks)
    for block, packet in zip(blocks, sent, strict=True):
        np.testing.assert_array_equal(block.samples, packet.to_si())
    c = reader.counters
    assert c.received_packets == count and c.lost_packets == 0
    assert c.corrupt + c.unknown_version == len(stream) - count


# ---------------------------------------------------------------------------------- GNSS

_UTC = datetime(2024, 6, 15, 10, 0, 0, tzinfo=timezone.utc)
_GOLDEN = Path(__file__).parents[1] / "data" / "firmware_bridge" / "gnss_nav_pvt_golden.hex"


def _golden_ubx() -> bytes:
    lines = _GOLDEN.read_text().splitlines()
    return bytes.fromhex("".join(line for line in lines if not line.startswith("#")))


_FIX = FixSample(51.556, -0.2796, 45.0, 5.0, 123.4, 1, 14, 0.7)
#: Frames that decode to a reading.
VALID = [
    format_rmc(_FIX, _UTC),
    format_vtg(_FIX, talker="GP"),
    format_gga(_FIX, _UTC, talker="GL"),
    format_gsa(_FIX),
    format_gga(_FIX, _UTC, tag=tag_block("VEST07", 1718445072)),
    format_nav_pvt(_FIX, _UTC),
    _golden_ubx(),
]
#: Well-formed frames that are counted but give no reading: (frame, counter name).
NEUTRAL = [
    (b"$GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00*74\r\n", "unknown"),
    (b"$PUBX,04,073731.00,091202,113851.00,1196,15D,1930035,-2660.664,43*71\r\n", "proprietary"),
    (b"\xb5\x62\x05\x01\x02\x00\x06\x01\x0f\x38", "ubx_unknown"),
]
#: Flushes a false UBX sync waiting for up to 4 KB of made-up payload at the end of a stream.
TRAILER = b"\x00" * 4200


def _inert(garbage: bytes) -> bool:
    """True when ``garbage`` alone decodes to nothing and is counted as no well-formed frame."""
    reader = GnssStreamReader(policy=BadFramePolicy.IGNORE)
    readings = reader.feed(garbage + TRAILER, 0)
    c = reader.counters
    return not readings and c.unknown == c.proprietary == c.ubx_unknown == 0


@st.composite
def gnss_garbage(draw: st.DrawFn) -> bytes:
    """Noise a serial line produces: random bytes, cut frames, frames with one bit flipped."""
    how = draw(st.sampled_from(["random", "prefix", "flip", "starts"]))
    frame = draw(st.sampled_from(VALID + [f for f, _ in NEUTRAL]))
    text = frame[:1] in (b"$", b"\\")
    if how == "random":
        # No backslash: noise holding two of them right before a sentence reads as a TAG block
        # that fails its check, and the reader drops the sentence rather than pass it on
        # without its source (by design: a position must never go to the wrong player).
        out = draw(st.binary(min_size=1, max_size=64)).replace(b"\\", b"/")
    elif how == "prefix":
        # A frame cut by a dropout. Text frames are cut before their checksum (a cut after it
        # would be a complete sentence again as soon as any CR or LF followed); a TAG-blocked
        # frame is cut inside its TAG block or after its sentence's '$' (cut just after the
        # block, it would tag the next sentence).
        end = frame.rindex(b"*") if text else len(frame) - 1
        cut = draw(st.integers(1, end))
        if frame[:1] == b"\\":
            close = frame.index(b"\\", 1)
            if close <= cut <= close + 1:
                cut = close
        out = frame[:cut]
    elif how == "flip":
        out = bytearray(frame)
        # A flipped line ending (LF -> VT) leaves a sentence ended by a lone CR, which is valid.
        bit = draw(st.integers(0, 8 * (len(out) - (2 if text else 0)) - 1))
        out[bit // 8] ^= 1 << (bit % 8)
        out = bytes(out)
    else:
        out = draw(st.sampled_from([b"$", b"\xb5", b"\xb5\x62", b"\xb5\x62\x01", b"$GP"]))
    return out if _inert(out) else b"\x00"  # e.g. a checksum letter flipped to lower case


@st.composite
def gnss_streams(draw: st.DrawFn) -> tuple[bytes, list[bytes], dict[str, int]]:
    """A stream of valid and neutral frames with garbage between them."""
    stream, valid, neutral = b"", [], {"unknown": 0, "proprietary": 0, "ubx_unknown": 0}
    for _ in range(draw(st.integers(1, 12))):
        stream += b"".join(draw(st.lists(gnss_garbage(), max_size=3)))
        if draw(st.integers(0, 4)) == 0:
            frame, counter = draw(st.sampled_from(NEUTRAL))
            neutral[counter] += 1
        else:
            frame = draw(st.sampled_from(VALID))
            valid.append(frame)
        stream += frame
    return stream + TRAILER, valid, neutral


def _chunks(data: st.DataObject, stream: bytes) -> list[bytes]:
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=30))))
    edges = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def _read_all(stream_chunks: list[bytes], policy: BadFramePolicy) -> tuple[list, GnssStreamReader]:
    reader = GnssStreamReader(policy=policy)
    readings = []
    for chunk in stream_chunks:
        pending = chunk
        while True:  # under RAISE: catch, then feed on; held readings come with the next call
            try:
                readings += reader.feed(pending, 0)
                break
            except GnssParseError:
                assert policy is BadFramePolicy.RAISE, "only RAISE may let an error out"
                pending = b""
    readings += reader.feed(b"", 0)
    return readings, reader


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from(list(BadFramePolicy)))
def test_gnss_reader_on_random_bytes_never_escapes(data: bytes, policy: BadFramePolicy) -> None:
    readings, reader = _read_all([data], policy)
    c = reader.counters
    assert len(readings) == c.sentences_ok + c.ubx_ok
    assert reader.buffered <= len(data)


@FUZZ
@given(gnss_streams(), st.sampled_from(list(BadFramePolicy)))
def test_every_valid_frame_after_garbage_is_read(
    case: tuple[bytes, list[bytes], dict[str, int]], policy: BadFramePolicy
) -> None:
    stream, valid, neutral = case
    readings, reader = _read_all([stream], policy)
    assert [r.raw for r in readings] == valid
    c = reader.counters
    assert c.sentences_ok + c.ubx_ok == len(valid)
    assert {k: getattr(c, k) for k in neutral} == neutral
    assert reader.buffered == 0


@SMALL
@given(gnss_streams(), st.data())
def test_gnss_chunking_does_not_change_anything(
    case: tuple[bytes, list[bytes], dict[str, int]], data: st.DataObject
) -> None:
    stream = case[0]
    whole, whole_reader = _read_all([stream], BadFramePolicy.IGNORE)
    chunked, chunked_reader = _read_all(_chunks(data, stream), BadFramePolicy.IGNORE)
    assert [(r.raw, r.message) for r in chunked] == [(r.raw, r.message) for r in whole]
    assert chunked_reader.counters == whole_reader.counters


@SMALL
@given(gnss_streams())
def test_gnss_raise_policy_loses_nothing_compared_with_ignore(
    case: tuple[bytes, list[bytes], dict[str, int]],
) -> None:
    stream = case[0]
    ignored, ignore_reader = _read_all([stream], BadFramePolicy.IGNORE)
    raised, raise_reader = _read_all([stream], BadFramePolicy.RAISE)
    assert [r.message for r in raised] == [r.message for r in ignored]
    assert raise_reader.counters == ignore_reader.counters
