"""What a body-worn IMU and a GNSS receiver measure of a player's motion.

The IMU sits between the shoulder blades (x forward, y left, z up). It measures specific force
(acceleration minus gravity) and angular rate in its own frame and the Earth's magnetic field,
with per-pod bias and scale errors, white noise, saturation at its range and lost samples. The
GNSS receiver reports position with a slowly wandering error, multipath outliers and dropouts,
and Doppler speed and course.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BodyMotion", "ImuModel", "GnssModel", "IMU_CHANNELS", "GNSS_CHANNELS"]

G = 9.80665
IMU_CHANNELS = ("ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz")
IMU_UNITS = ("m/s^2",) * 3 + ("rad/s",) * 3 + ("uT",) * 3
GNSS_CHANNELS = ("x", "y", "speed", "course")
GNSS_UNITS = ("m", "m", "m/s", "rad")


@dataclass
class BodyMotion:
    """One player's trunk motion over a whole session, sampled at the IMU rate."""

    rate_hz: float
    pos: np.ndarray  # [n, 2] world position (m)
    vel: np.ndarray  # [n, 2] world velocity (m/s)
    yaw: np.ndarray  # [n] heading (rad)
    pitch: np.ndarray  # [n]
    roll: np.ndarray  # [n]
    a_vert: np.ndarray  # [n] vertical acceleration without gravity
    acc_body: np.ndarray  # [n, 3] extra body-frame acceleration (impacts, gait)
    gyro_body: np.ndarray  # [n, 3] extra body-frame angular rate (swings, gait)


def _rotation_world_from_body(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """R = Rz(yaw) Ry(pitch) Rx(roll), shape [n, 3, 3]. Positive pitch leans the trunk forward."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    r = np.empty(yaw.shape + (3, 3))
    r[:, 0, 0] = cy * cp
    r[:, 0, 1] = cy * sp * sr - sy * cr
    r[:, 0, 2] = cy * sp * cr + sy * sr
    r[:, 1, 0] = sy * cp
    r[:, 1, 1] = sy * sp * sr + cy * cr
    r[:, 1, 2] = sy * sp * cr - cy * sr
    r[:, 2, 0] = -sp
    r[:, 2, 1] = cp * sr
    r[:, 2, 2] = cp * cr
    return r


@dataclass(frozen=True)
class ImuModel:
    """Sensor errors of one pod. ``random`` draws a plausible pod."""

    accel_bias: tuple[float, float, float]
    accel_scale: tuple[float, float, float]
    gyro_bias: tuple[float, float, float]
    mag_hard_iron: tuple[float, float, float]
    accel_noise: float = 0.10  # m/s^2
    gyro_noise: float = 0.012  # rad/s
    mag_noise: float = 0.5  # uT
    accel_range: float = 8 * G  # saturation, m/s^2
    gyro_range: float = np.deg2rad(2000.0)  # rad/s
    field_ut: float = 49.0
    inclination_rad: float = np.deg2rad(64.0)
    lost_per_second: float = 0.02  # bursts of lost samples per second
    lost_burst_s: tuple[float, float] = (0.03, 0.4)

    @classmethod
    def random(cls, rng: np.random.Generator) -> ImuModel:
        """A pod with realistic, small calibration errors."""
        return cls(
            accel_bias=tuple(rng.normal(0, 0.12, 3)),  # type: ignore[arg-type]
            accel_scale=tuple(1.0 + rng.normal(0, 0.005, 3)),  # type: ignore[arg-type]
            gyro_bias=tuple(rng.normal(0, 0.015, 3)),  # type: ignore[arg-type]
            mag_hard_iron=tuple(rng.normal(0, 4.0, 3)),  # type: ignore[arg-type]
        )

    def measure(
        self, m: BodyMotion, rng: np.random.Generator, *, lost_samples: bool = True, north: float = 0.0
    ) -> np.ndarray:
        """IMU samples ``[n, 9]`` (ax..az m/s^2, gx..gz rad/s, mx..mz uT); NaN rows are lost."""
        dt = 1.0 / m.rate_hz
        n = m.yaw.shape[0]
        r = _rotation_world_from_body(m.yaw, m.pitch, m.roll)
        acc_w = np.zeros((n, 3))
        acc_w[:, :2] = np.gradient(m.vel, dt, axis=0)
        acc_w[:, 2] = m.a_vert + G
        f_b = np.einsum("nji,nj->ni", r, acc_w) + m.acc_body
        yaw_d = np.gradient(np.unwrap(m.yaw), dt)
        pitch_d = np.gradient(m.pitch, dt)
        roll_d = np.gradient(m.roll, dt)
        sp, cp = np.sin(m.pitch), np.cos(m.pitch)
        sr, cr = np.sin(m.roll), np.cos(m.roll)
        w_b = np.stack(
            [
                roll_d - yaw_d * sp,
                pitch_d * cr + yaw_d * cp * sr,
                yaw_d * cp * cr - pitch_d * sr,
            ],
            axis=1,
        ) + m.gyro_body
        mag_w = self.field_ut * np.array(
            [
                np.cos(self.inclination_rad) * np.cos(north),
                -np.cos(self.inclination_rad) * np.sin(north),
                -np.sin(self.inclination_rad),
            ]
        )
        mag_b = np.einsum("nji,j->ni", r, mag_w)

        acc = f_b * np.asarray(self.accel_scale) + np.asarray(self.accel_bias)
        acc += rng.normal(0, self.accel_noise, acc.shape)
        gyr = w_b + np.asarray(self.gyro_bias) + rng.normal(0, self.gyro_noise, w_b.shape)
        mag = mag_b + np.asarray(self.mag_hard_iron) + rng.normal(0, self.mag_noise, mag_b.shape)
        out = np.concatenate(
            [
                np.clip(acc, -self.accel_range, self.accel_range),
                np.clip(gyr, -self.gyro_range, self.gyro_range),
                mag,
            ],
            axis=1,
        )
        if lost_samples:
            duration = n * dt
            for _ in range(rng.poisson(self.lost_per_second * duration)):
                start = int(rng.integers(0, n))
                length = int(rng.uniform(*self.lost_burst_s) * m.rate_hz)
                out[start : start + max(length, 1)] = np.nan
        return out.astype(np.float32)


@dataclass(frozen=True)
class GnssModel:
    """A vest GNSS receiver: metre-level wandering error, multipath outliers, dropouts."""

    rate_hz: float = 10.0
    wander_m: float = 0.6  # standard deviation of the slowly wandering error
    wander_tau_s: float = 5.0
    white_m: float = 0.25
    speed_noise: float = 0.12  # m/s (Doppler)
    outliers_per_minute: float = 1.0
    outlier_m: tuple[float, float] = (5.0, 15.0)
    dropouts_per_minute: float = 0.6
    dropout_s: tuple[float, float] = (0.5, 3.0)

    def measure(self, m: BodyMotion, rng: np.random.Generator, *, faults: bool = True) -> np.ndarray:
        """Fixes ``[k, 4]``: x, y (m), speed (m/s), course (rad); NaN rows have no fix."""
        step = int(round(m.rate_hz / self.rate_hz))
        idx = np.arange(0, m.pos.shape[0], step)
        k = idx.size
        a = np.exp(-1.0 / (self.rate_hz * self.wander_tau_s))
        wander = np.zeros((k, 2))
        e = rng.normal(0, self.wander_m, 2)
        drive = rng.normal(0, self.wander_m * np.sqrt(1 - a * a), (k, 2))
        for i in range(k):
            e = a * e + drive[i]
            wander[i] = e
        pos = m.pos[idx] + wander + rng.normal(0, self.white_m, (k, 2))
        vel = m.vel[idx]
        speed = np.hypot(vel[:, 0], vel[:, 1]) + rng.normal(0, self.speed_noise, k)
        course = np.arctan2(vel[:, 1], vel[:, 0]) + rng.normal(0, 0.05, k)
        out = np.column_stack([pos, np.abs(speed), course])
        if faults:
            minutes = k / self.rate_hz / 60.0
            for _ in range(rng.poisson(self.outliers_per_minute * minutes)):
                i = int(rng.integers(0, k))
                ang = rng.uniform(0, 2 * np.pi)
                jump = rng.uniform(*self.outlier_m)
                out[i : i + int(rng.integers(1, 4)), :2] += jump * np.array([np.cos(ang), np.sin(ang)])
            for _ in range(rng.poisson(self.dropouts_per_minute * minutes)):
                i = int(rng.integers(0, k))
                out[i : i + int(rng.uniform(*self.dropout_s) * self.rate_hz)] = np.nan
        return out.astype(np.float32)
