"""The guided six-position calibration, driven by a stream of samples.

:class:`GuidedImuCalibration` knows nothing about where samples come from: feed it
``(t, samples)`` chunks (from BLE, a replay, or a simulation) and show the prompts it returns.
The steps: each face up in turn (``+Z, -Z, +X, -X, +Y, -Y``), held still for ``hold_s``; then,
for a 9-axis pod, turning the pod through all orientations until the magnetometer has seen
enough directions. A pose that moves while being captured is not kept: the operator is told and
the pose starts over. At the end the calibration is computed with
:func:`~fusion_edge.calibration.imu_fit.calibrate_from_poses`, so it passes exactly the checks a
recording does.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from fusion_edge.calibration.accelerometer import face_of
from fusion_edge.calibration.gyroscope import GYRO_RANGE_RAD_S
from fusion_edge.calibration.imu import ImuCalibration
from fusion_edge.calibration.imu_fit import ImuCalibrationConfig, calibrate_from_poses
from fusion_edge.calibration.magnetometer import direction_coverage
from fusion_edge.calibration.recording import ImuRecording, check_accel_units
from fusion_edge.errors import CalibrationError

__all__ = ["PromptKind", "Prompt", "GUIDED_FACES", "GuidedImuCalibration"]

#: The order the faces are asked for: flat first (easiest), then the sides.
GUIDED_FACES = ("+Z", "-Z", "+X", "-X", "+Y", "-Y")


class PromptKind(str, Enum):
    """What a prompt tells the operator."""

    INSTRUCTION = "instruction"  # what to do next
    HOLD = "hold"  # the right pose was seen: keep still
    MOVED = "moved"  # the pod moved during capture: the pose starts over
    WRONG_FACE = "wrong_face"  # still, but with another face up
    CAPTURED = "captured"  # a pose is done
    ROTATE = "rotate"  # turn the pod through all orientations
    DONE = "done"  # the calibration is computed (or refused: see result())


@dataclass(frozen=True)
class Prompt:
    """One message for the operator.

    Attributes:
        kind: What it is.
        step: 1-based step number.
        total: Number of steps.
        text: The message.
    """

    kind: PromptKind
    step: int
    total: int
    text: str


class GuidedImuCalibration:
    """Guide an operator through the six-position procedure on a live sample stream.

    Args:
        pod_id: The pod being calibrated.
        with_magnetometer: Add the rotation step (9-axis pods). ``None``: not known yet; call
            :meth:`set_magnetometer` before the first samples (the live driver does it from the
            pod's channels).
        hold_s: Seconds each pose must be held still.
        rotate_s: Longest rotation step, seconds (it ends earlier once coverage is reached).
        min_rotate_s: Shortest rotation step, seconds.
        rotate_coverage: Coverage of gravity directions at which the rotation step ends.
        config: Calibration thresholds (stillness, limits).
        max_duration_s: The procedure is abandoned (raises) after this long.
    """

    def __init__(
        self,
        pod_id: str,
        *,
        with_magnetometer: bool | None = False,
        hold_s: float = 2.0,
        rotate_s: float = 60.0,
        min_rotate_s: float = 10.0,
        rotate_coverage: float = 0.7,
        config: ImuCalibrationConfig | None = None,
        max_duration_s: float = 600.0,
    ) -> None:
        if not (np.isfinite(hold_s) and hold_s > 0):
            raise CalibrationError(
                f"--hold {hold_s} must be a positive number of seconds to hold each pose "
                "(2 s is the default)"
            )
        self.pod_id = pod_id
        self.with_magnetometer = with_magnetometer
        self.hold_s = hold_s
        self.rotate_s = rotate_s
        self.min_rotate_s = min_rotate_s
        self.rotate_coverage = rotate_coverage
        self.config = config or ImuCalibrationConfig()
        self.max_duration_s = max_duration_s
        self.total = len(GUIDED_FACES) + (1 if with_magnetometer else 0)
        self._t = np.empty(0)
        self._x = np.empty((0, 9 if with_magnetometer else 6))
        self._processed = 0
        self._face = 0
        self._capture_from: int | None = None
        self._wrong_face_said: str | None = None
        self._rotate_from: int | None = None
        self._poses: list[ImuRecording] = []
        self._rotation: ImuRecording | None = None
        self._result: ImuCalibration | None = None
        self._error: CalibrationError | None = None
        self._units_checked = False
        self.done = False

    def set_magnetometer(self, with_magnetometer: bool) -> None:
        """Add (or drop) the rotation step; only before the first samples are fed.

        Raises:
            CalibrationError: Samples were already fed.
        """
        if self._t.size:
            raise CalibrationError(
                "the magnetometer step can only be chosen before the first samples are fed"
            )
        self.with_magnetometer = with_magnetometer
        self.total = len(GUIDED_FACES) + (1 if with_magnetometer else 0)
        self._x = np.empty((0, 9 if with_magnetometer else 6))

    # ------------------------------------------------------------------ prompts

    def _instruction(self) -> Prompt:
        face = GUIDED_FACES[self._face]
        return Prompt(
            PromptKind.INSTRUCTION,
            self._face + 1,
            self.total,
            f"Place the pod with {face} pointing up, resting on a flat surface, and hold it still",
        )

    def start(self) -> list[Prompt]:
        """The first instruction."""
        return [self._instruction()]

    @property
    def captured_faces(self) -> tuple[str, ...]:
        """Faces captured so far."""
        return GUIDED_FACES[: self._face]

    # ------------------------------------------------------------------ stream

    def feed(self, t: np.ndarray, samples: np.ndarray) -> list[Prompt]:
        """Add a chunk of samples; return the prompts it caused.

        Args:
            t: ``[n]`` seconds (any origin), increasing across chunks.
            samples: ``[n, 6]`` or ``[n, 9]`` (accel m/s^2, gyro rad/s, mag microtesla).

        Raises:
            CalibrationError: Unit mistakes, wrong column count, time going backwards, or the
                procedure taking longer than ``max_duration_s``.
        """
        if self.done:
            return []
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        x = np.asarray(samples, dtype=np.float64)
        width = self._x.shape[1]
        if x.ndim != 2 or x.shape[0] != t.shape[0] or x.shape[1] < width:
            raise CalibrationError(
                f"guided calibration needs samples [n, {width}] matching {t.shape[0]} times, got "
                f"{x.shape}; {'a 9-axis stream' if width == 9 else 'accel and gyro columns'}"
            )
        if not np.all(np.isfinite(x)) or not np.all(np.isfinite(t)):
            raise CalibrationError("the sample stream carries NaN; check the pod's link")
        last = self._t[-1] if self._t.size else -np.inf
        if t.size and (t[0] <= last or np.any(np.diff(t) <= 0)):
            raise CalibrationError(
                "sample times do not strictly increase; feed chunks in order with their own "
                "timestamps"
            )
        self._t = np.concatenate([self._t, t])
        self._x = np.concatenate([self._x, x[:, :width]])
        if self._t[-1] - self._t[0] > self.max_duration_s:
            raise CalibrationError(
                f"the guided calibration ran for more than {self.max_duration_s:.0f} s without "
                f"finishing (faces done: {', '.join(self.captured_faces) or 'none'}); start again"
            )
        prompts: list[Prompt] = []
        if not self._units_checked:
            if self._t[-1] - self._t[0] < 1.0:
                return prompts
            self._check_units()
        rate = (self._x.shape[0] - 1) / max(self._t[-1] - self._t[0], 1e-9)
        step = max(1, int(rate * 0.1))
        while not self.done and self._processed + step <= self._t.size:
            self._processed += step
            prompts += self._advance(self._processed, rate)
        return prompts

    def _check_units(self) -> None:
        rec = ImuRecording(
            self._t, self._x[:, 0:3], self._x[:, 3:6], None, source=f"pod {self.pod_id}"
        )
        check_accel_units(rec)
        peak = float(np.abs(self._x[:, 3:6]).max())
        if peak > GYRO_RANGE_RAD_S:
            raise CalibrationError(
                f"pod {self.pod_id}: the gyroscope reads {peak:.1f}, beyond any rad/s range: "
                "the stream looks like deg/s; fix the stream's units (pi/180 = 0.0174533)"
            )
        self._units_checked = True

    def _window_still(self, end: int, rate: float) -> tuple[bool, np.ndarray]:
        sc = self.config.stillness
        n = max(3, int(sc.window_s * rate))
        w = self._x[max(0, end - n) : end]
        still = (
            w.shape[0] >= n
            and float(np.sqrt(w[:, 0:3].var(axis=0).sum())) < sc.accel_std_max
            and float(np.sqrt(w[:, 3:6].var(axis=0).sum())) < sc.gyro_std_max
        )
        return still, w[:, 0:3].mean(axis=0)

    def _advance(self, end: int, rate: float) -> list[Prompt]:
        if self._face < len(GUIDED_FACES):
            return self._advance_pose(end, rate)
        return self._advance_rotation(end)

    def _advance_pose(self, end: int, rate: float) -> list[Prompt]:
        want = GUIDED_FACES[self._face]
        still, mean = self._window_still(end, rate)
        face, angle = face_of(mean)
        on_face = face == want and angle <= self.config.accel.face_tolerance_deg
        step = self._face + 1
        if self._capture_from is not None:
            if not (still and on_face):
                self._capture_from = None
                return [
                    Prompt(
                        PromptKind.MOVED,
                        step,
                        self.total,
                        f"The pod moved: place it with {want} up again and hold it still",
                    )
                ]
            if self._t[end - 1] - self._t[self._capture_from] < self.hold_s:
                return []
            start = self._capture_from
            self._poses.append(
                ImuRecording(
                    self._t[start:end],
                    self._x[start:end, 0:3],
                    self._x[start:end, 3:6],
                    None,
                    source=f"pod {self.pod_id} pose {want}",
                )
            )
            self._capture_from = None
            self._face += 1
            prompts = [Prompt(PromptKind.CAPTURED, step, self.total, f"{want} up: done")]
            if self._face < len(GUIDED_FACES):
                prompts.append(self._instruction())
            elif self.with_magnetometer:
                self._rotate_from = end
                prompts.append(
                    Prompt(
                        PromptKind.ROTATE,
                        self.total,
                        self.total,
                        "Now turn the pod slowly through every orientation (figure-eights, end "
                        "over end), away from steel and magnets",
                    )
                )
            else:
                prompts.append(self._finish())
            return prompts
        if still and on_face:
            self._capture_from = max(0, end - max(3, int(self.config.stillness.window_s * rate)))
            self._wrong_face_said = None
            return [Prompt(PromptKind.HOLD, step, self.total, f"{want} up: hold still ...")]
        if still and face != want and self._wrong_face_said != face:
            self._wrong_face_said = face
            return [
                Prompt(
                    PromptKind.WRONG_FACE,
                    step,
                    self.total,
                    f"That is {face} up; turn the pod so that {want} points up",
                )
            ]
        return []

    def _advance_rotation(self, end: int) -> list[Prompt]:
        start = self._rotate_from if self._rotate_from is not None else end
        mag = self._x[start:end, 6:9]
        elapsed = self._t[end - 1] - self._t[start]
        # Judge the orientations by the gravity direction: unlike the magnetometer, whose centre
        # is unknown until the fit, the accelerometer's bias is too small to distort it.
        enough = elapsed >= self.min_rotate_s and (
            direction_coverage(self._x[start:end, 0:3]) >= self.rotate_coverage
        )
        if not enough and elapsed < self.rotate_s:
            return []
        self._rotation = ImuRecording(
            self._t[start:end],
            self._x[start:end, 0:3],
            self._x[start:end, 3:6],
            mag,
            source=f"pod {self.pod_id} rotation",
        )
        return [self._finish()]

    def _finish(self) -> Prompt:
        self.done = True
        try:
            self._result = calibrate_from_poses(
                self._poses, self.pod_id, rotation=self._rotation, config=self.config
            )
            text = "Calibration done"
        except CalibrationError as exc:
            self._error = exc
            text = f"Calibration refused: {exc}"
        return Prompt(PromptKind.DONE, self.total, self.total, text)

    def result(self) -> ImuCalibration:
        """The calibration, once :attr:`done`.

        Raises:
            CalibrationError: Not finished yet, or the captured data were refused.
        """
        if self._error is not None:
            raise self._error
        if self._result is None:
            raise CalibrationError(
                "the guided calibration is not finished yet (faces done: "
                f"{', '.join(self.captured_faces) or 'none'}); keep following the prompts"
            )
        return self._result
