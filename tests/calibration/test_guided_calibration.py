"""The guided six-position procedure on a simulated stream, and its BLE driver."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from fusion_edge.calibration.guided import GuidedImuCalibration, PromptKind
from fusion_edge.calibration.live import block_columns, run_guided_over_ble
from fusion_edge.calibration.simulate import record_six_position
from fusion_edge.errors import CalibrationError, TransportError


def _stream(rec, with_mag: bool) -> np.ndarray:
    cols = [rec.accel, rec.gyro] + ([rec.mag] if with_mag else [])
    return np.hstack(cols)


def _run(guided: GuidedImuCalibration, rec, x: np.ndarray, chunk: int = 5) -> list:
    prompts = list(guided.start())
    for i in range(0, rec.n, chunk):
        prompts += guided.feed(rec.t[i : i + chunk], x[i : i + chunk])
        if guided.done:
            break
    return prompts


def test_guided_six_position_with_magnetometer(pod, six_position_recording) -> None:
    guided = GuidedImuCalibration("pod-1", with_magnetometer=True)
    prompts = _run(guided, six_position_recording, _stream(six_position_recording, True))
    kinds = [p.kind for p in prompts]
    assert kinds[0] is PromptKind.INSTRUCTION and "+Z pointing up" in prompts[0].text
    assert kinds.count(PromptKind.CAPTURED) == 6
    assert PromptKind.ROTATE in kinds and kinds[-1] is PromptKind.DONE
    assert prompts[-1].text == "Calibration done"
    cal = guided.result()
    assert cal.has_magnetometer and cal.quality["accel"]["method"] == "six_position"
    np.testing.assert_allclose(cal.accel_bias, pod.accel_bias, atol=0.05)
    err = np.abs(cal.mag_hard_iron - pod.mag_hard_iron).max() / pod.field_strength_ut
    assert err < 0.02


def test_guided_says_wrong_face_and_moved(pod) -> None:
    rng = np.random.default_rng(41)
    rec = record_six_position(pod, rng, with_mag=False)
    x = _stream(rec, False)
    # Shake the pod for 0.3 s early in the first (+Z) capture; 2 s of the pose remain.
    i0 = int(0.7 * 100)
    x[i0 : i0 + 30, 0:3] += rng.normal(0, 1.0, (30, 3))
    guided = GuidedImuCalibration("pod-1", hold_s=1.5)
    prompts = _run(guided, rec, x)
    kinds = [p.kind for p in prompts]
    assert PromptKind.MOVED in kinds
    assert any(p.text.startswith("The pod moved: place it with +Z up again") for p in prompts)
    assert any(
        p.kind is PromptKind.WRONG_FACE and p.text.startswith("That is +Z up") for p in prompts
    )
    assert guided.done and guided.result().quality["accel"]["poses"] == 6


def test_guided_refuses_g_units_early(six_position_recording) -> None:
    x = _stream(six_position_recording, False)
    x[:, 0:3] /= 9.80665
    guided = GuidedImuCalibration("pod-1")
    with pytest.raises(CalibrationError, match="gravity in g"):
        _run(guided, six_position_recording, x)


def test_result_before_done_is_refused() -> None:
    guided = GuidedImuCalibration("pod-1")
    with pytest.raises(CalibrationError, match=r"not finished yet \(faces done: none\)"):
        guided.result()


def test_stream_times_must_increase(six_position_recording) -> None:
    guided = GuidedImuCalibration("pod-1")
    x = _stream(six_position_recording, False)
    guided.feed(six_position_recording.t[:10], x[:10])
    with pytest.raises(CalibrationError, match="sample times do not strictly increase"):
        guided.feed(six_position_recording.t[5:15], x[5:15])


# ---------------------------------------------------------------- the BLE driver, faked


@dataclass
class FakeBlock:
    boot_id: int
    t0_us: int
    sample_rate_hz: float
    channel_names: tuple[str, ...]
    samples: np.ndarray

    def sample_times_us(self) -> np.ndarray:
        return self.t0_us + np.rint(
            np.arange(len(self.samples)) * 1e6 / self.sample_rate_hz
        ).astype(np.int64)


NAMES = ("gyro_x", "gyro_y", "gyro_z", "accel_x", "accel_y", "accel_z")


class FakeTransport:
    """What run_guided_over_ble needs from BleTransport: async with, and a blocks queue."""

    def __init__(self, rec, boot_change_at: int | None = None) -> None:
        self.rec = rec
        self.boot_change_at = boot_change_at

    async def __aenter__(self) -> FakeTransport:
        self.blocks: asyncio.Queue = asyncio.Queue()
        x = np.hstack([self.rec.gyro, self.rec.accel])  # wire order differs on purpose
        for k, i in enumerate(range(0, self.rec.n, 10)):
            boot = 2 if self.boot_change_at is not None and k >= self.boot_change_at else 1
            self.blocks.put_nowait(
                FakeBlock(boot, int(round(self.rec.t[i] * 1e6)), 100.0, NAMES, x[i : i + 10])
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def test_live_driver_reorders_channels_and_finishes(six_position_recording) -> None:
    guided = GuidedImuCalibration("pod-1")
    seen = []
    run_guided_over_ble(
        guided,
        "AA:BB",
        seen.append,
        transport_factory=lambda addr: FakeTransport(six_position_recording),
    )
    assert guided.done and seen[-1].kind is PromptKind.DONE
    assert guided.result().quality["accel"]["method"] == "six_position"


def test_live_driver_refuses_a_reboot(six_position_recording) -> None:
    guided = GuidedImuCalibration("pod-1")
    with pytest.raises(CalibrationError, match="rebooted during the calibration"):
        run_guided_over_ble(
            guided,
            "AA:BB",
            lambda p: None,
            transport_factory=lambda a: FakeTransport(six_position_recording, 50),
        )


def test_block_columns_names_missing_sensors() -> None:
    assert block_columns(NAMES, False) == [3, 4, 5, 0, 1, 2]
    with pytest.raises(CalibrationError, match="needs mag_x, mag_y, mag_z as well"):
        block_columns(NAMES, True)


def test_live_mode_without_the_ble_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fusion_edge.firmware_bridge.ble", None)
    with pytest.raises(
        TransportError, match=r"live calibration needs the BLE transport .* --recording FILE.csv"
    ):
        run_guided_over_ble(GuidedImuCalibration("p"), "AA:BB", lambda p: None)


class BrokenTransport:
    async def __aenter__(self) -> BrokenTransport:
        raise FileNotFoundError(2, "No such file or directory")  # no D-Bus socket

    async def __aexit__(self, *exc: object) -> None:
        return None


def test_radio_stack_errors_become_transport_errors() -> None:
    with pytest.raises(
        TransportError, match=r"could not stream from pod AA:BB over BLE \(FileNotFoundError"
    ):
        run_guided_over_ble(
            GuidedImuCalibration("p"),
            "AA:BB",
            lambda p: None,
            transport_factory=lambda a: BrokenTransport(),
        )


class NineAxisTransport(FakeTransport):
    """A 9-axis pod: accel, gyro and magnetometer channels."""

    async def __aenter__(self) -> NineAxisTransport:
        self.blocks = asyncio.Queue()
        names = ("accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z",
                 "mag_x", "mag_y", "mag_z")
        x = np.hstack([self.rec.accel, self.rec.gyro, self.rec.mag])
        for i in range(0, self.rec.n, 10):
            self.blocks.put_nowait(
                FakeBlock(1, int(round(self.rec.t[i] * 1e6)), 100.0, names, x[i : i + 10])
            )
        return self


def test_live_driver_calibrates_the_magnetometer_a_pod_streams(six_position_recording) -> None:
    """`calibrate imu --pod` without --mag/--no-mag skipped a 9-axis pod's magnetometer, though
    --mag's help says 'default: when it has data'."""
    guided = GuidedImuCalibration("pod-1", with_magnetometer=None)
    seen = []
    run_guided_over_ble(
        guided, "AA:BB", seen.append, transport_factory=lambda a: NineAxisTransport(six_position_recording)
    )
    assert seen[0].kind is PromptKind.INSTRUCTION and seen[0].total == 7
    assert PromptKind.ROTATE in [p.kind for p in seen]
    assert guided.result().has_magnetometer


def test_live_driver_without_a_magnetometer_stays_six_steps(six_position_recording) -> None:
    guided = GuidedImuCalibration("pod-1", with_magnetometer=None)
    seen = []
    run_guided_over_ble(
        guided, "AA:BB", seen.append, transport_factory=lambda a: FakeTransport(six_position_recording)
    )
    assert seen[0].total == 6 and not guided.result().has_magnetometer


def test_hold_must_be_positive() -> None:
    with pytest.raises(CalibrationError, match="--hold 0 must be a positive number of seconds"):
        GuidedImuCalibration("pod-1", hold_s=0)
