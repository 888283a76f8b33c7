"""SimulatedPod: packets sized to the MTU, device clock, control commands, faults."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_edge.firmware_bridge.control import (
    InfoCommand,
    InfoResponse,
    SetRateCommand,
    SetTimeCommand,
    StartCommand,
    StatusCode,
    StopCommand,
    decode_response,
    encode_command,
)
from fusion_edge.firmware_bridge.protocol import SensorMask, decode_packet
from fusion_edge.firmware_bridge.reader import PacketReader
from fusion_edge.firmware_bridge.sim_pod import (
    Fault,
    FaultPlan,
    PodClock,
    SimulatedPod,
    SineSampleSource,
)

SECOND = 1_000_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 5 * SECOND

    def __call__(self) -> int:
        return self.now


def make_pod(**kwargs: object) -> tuple[SimulatedPod, FakeClock]:
    clock = FakeClock()
    pod = SimulatedPod("c0:fe:00:00:00:01", SineSampleSource(100.0), host_clock=clock, **kwargs)  # type: ignore[arg-type]
    pod.att_mtu = 247
    return pod, clock


def command(pod: SimulatedPod, cmd: object) -> object:
    return decode_response(pod.handle_command(encode_command(cmd)))  # type: ignore[arg-type]


def test_packets_fill_the_mtu_and_carry_the_source_in_si_units() -> None:
    pod, clock = make_pod()
    assert command(pod, StartCommand(token=3)).status is StatusCode.OK  # type: ignore[attr-defined]
    clock.now += 2 * SECOND
    packets = [decode_packet(p) for p in pod.poll()]
    assert all(p.n_samples == 12 for p in packets)  # (247 - 3 - 20) // 18
    assert all(len(pod_bytes) <= 244 for pod_bytes in pod.poll())
    assert [p.seq for p in packets] == list(range(len(packets)))
    assert len(packets) == 201 // 12
    si = np.vstack([p.to_si() for p in packets])
    expected = SineSampleSource(100.0).expected(0, len(si))
    # quantization: accel 8 g / 32768, gyro 1000 dps / 32768, mag 0.15 uT per LSB
    step = np.array([0.0024] * 3 + [0.00054] * 3 + [0.076] * 3)
    assert np.all(np.abs(si - expected) <= step)
    assert packets[1].t0_us - packets[0].t0_us == 120_000


def test_small_mtu_is_refused_and_info_reports_state() -> None:
    pod, _ = make_pod(boot_id=0x1234)
    pod.att_mtu = 23
    assert command(pod, StartCommand()).status is StatusCode.MTU_TOO_SMALL  # type: ignore[attr-defined]
    info = command(pod, InfoCommand(token=9))
    assert isinstance(info, InfoResponse)
    assert (info.boot_id, info.token, info.streaming) == (0x1234, 9, False)
    assert info.sensors == SensorMask.ACCEL | SensorMask.GYRO | SensorMask.MAG
    assert command(pod, StopCommand()).status is StatusCode.NOT_STREAMING  # type: ignore[attr-defined]


def test_rate_change_decimates_and_is_busy_while_streaming() -> None:
    pod, clock = make_pod()
    assert command(pod, SetRateCommand(rate_code=1)).status is StatusCode.OK  # type: ignore[attr-defined]
    assert command(pod, SetRateCommand(rate_code=3)).status is StatusCode.BAD_ARGUMENT  # type: ignore[attr-defined]
    command(pod, StartCommand())
    assert command(pod, SetRateCommand(rate_code=2)).status is StatusCode.BUSY  # type: ignore[attr-defined]
    clock.now += SECOND
    first = decode_packet(pod.poll()[0])
    assert first.sample_rate_hz == 50.0
    expected = SineSampleSource(100.0).expected(0, 24)[::2]
    assert np.allclose(first.to_si()[:, :3], expected[:, :3], atol=0.003)


def test_device_clock_offset_drift_and_set_time() -> None:
    pod, clock = make_pod(clock=PodClock(offset_us=1_000, drift_ppm=100.0))
    start = pod.device_time_us()
    clock.now += 10 * SECOND
    assert pod.device_time_us() - start == 10_001_000  # 100 ppm fast
    command(pod, SetTimeCommand(time_us=42_000_000))
    assert pod.device_time_us() == 42_000_000


def test_reboot_changes_boot_id_resets_seq_and_drops_link() -> None:
    pod, clock = make_pod()
    events: list[Fault] = []
    pod.link_listener = events.append
    command(pod, StartCommand())
    clock.now += SECOND
    before = decode_packet(pod.poll()[-1])
    pod.inject(Fault.REBOOT)
    assert events == [Fault.REBOOT]
    assert pod.boot_id != before.boot_id and not pod.streaming
    command(pod, StartCommand())
    clock.now += SECOND
    after = decode_packet(pod.poll()[0])
    assert (after.boot_id, after.seq) == (pod.boot_id, 0)
    reader = PacketReader("p")
    reader.feed(pod.handle_command(b""), 0)  # garbage is counted, not fatal
    assert reader.counters.corrupt == 1


def test_one_shot_faults_reach_the_reader() -> None:
    pod, clock = make_pod()
    command(pod, StartCommand())
    reader = PacketReader("p", reorder_window=2)
    # one packet (12 samples at 100 Hz) every 120 ms; one fault per packet, after a clean one
    for fault in (None, Fault.DROP, Fault.DUPLICATE, Fault.CORRUPT, Fault.REORDER, None, None):
        if fault is not None:
            pod.inject(fault)
        clock.now += 120_000_000
        for data in pod.poll():
            reader.feed(data, clock.now)
    reader.flush()
    c = reader.counters
    assert (c.duplicates, c.corrupt, c.reordered) == (1, 1, 1)
    assert c.lost_samples == 2 * 12  # the dropped packet and the corrupted one
    assert c.received_packets == pod.packets_sent - 2


def test_random_fault_plan_is_reproducible() -> None:
    def run() -> list[bytes]:
        pod, clock = make_pod(faults=FaultPlan(drop=0.2, duplicate=0.1, seed=4))
        command(pod, StartCommand())
        clock.now += 5 * SECOND
        return pod.poll()

    first, second = run(), run()
    assert first == second
    assert len(first) != 501 // 12


def test_source_must_be_a_sample_source_at_a_pod_rate() -> None:
    with pytest.raises(TypeError, match="read"):
        SimulatedPod("c0:fe:00:00:00:01", object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a pod rate"):
        SimulatedPod("c0:fe:00:00:00:01", SineSampleSource(120.0))
