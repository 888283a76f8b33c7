"""Simulated pods and clocks with known parameters, for tests and benchmarks (numpy only).

The IMU simulation is physically consistent: the pod follows an orientation trajectory (holds
and smooth minimum-jerk rotations between them), the accelerometer measures gravity as specific
force in the body frame, the gyroscope measures the body angular velocity of that same
trajectory, and the magnetometer the Earth's field in the body frame. The sensor errors are then
applied exactly as calibration models them:

- ``accel_raw = T_a @ f_body + b_a + noise`` (so the true correction is ``inv(T_a)``),
- ``gyro_raw = w_body + b_g + noise``,
- ``mag_raw = D_m @ m_body + h + noise`` (soft iron ``D_m`` symmetric, hard iron ``h``).

The clock simulation gives a device clock with a fixed offset and drift (ppm) against the host
clock and BLE arrival delays that are always positive: a minimum plus a gamma-distributed
excess, clipped, with in-order delivery (a late packet holds up the ones behind it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fusion_edge.calibration.recording import STANDARD_GRAVITY, ImuRecording
from fusion_edge.calibration.rotation import random_rotation, rotation_matrix, rotation_vector

__all__ = [
    "SimulatedImu",
    "random_imu",
    "six_position_orientations",
    "record_poses",
    "record_six_position",
    "record_random_poses",
    "SimulatedClock",
    "random_clock",
    "simulate_arrivals",
]


@dataclass(frozen=True, eq=False)
class SimulatedImu:
    """A pod's IMU with known errors (the truth a calibration should recover).

    Attributes:
        accel_response: ``T_a [3, 3]``: scale on the diagonal, axis misalignment off it.
        accel_bias: ``[3]`` m/s^2.
        gyro_bias: ``[3]`` rad/s.
        mag_hard_iron: ``[3]`` microtesla.
        mag_soft_iron: ``D_m [3, 3]`` symmetric distortion.
        field_ut: Local field vector in the world frame (x east, y north, z up), microtesla.
        accel_noise: Per-axis white noise, m/s^2.
        gyro_noise: Per-axis white noise, rad/s.
        mag_noise: Per-axis white noise, microtesla.
        rate_hz: Sample rate.
    """

    accel_response: np.ndarray = field(default_factory=lambda: np.eye(3))
    accel_bias: np.ndarray = field(default_factory=lambda: np.zeros(3))
    gyro_bias: np.ndarray = field(default_factory=lambda: np.zeros(3))
    mag_hard_iron: np.ndarray = field(default_factory=lambda: np.zeros(3))
    mag_soft_iron: np.ndarray = field(default_factory=lambda: np.eye(3))
    field_ut: np.ndarray = field(default_factory=lambda: _field(48.0, 66.0))
    accel_noise: float = 0.03
    gyro_noise: float = 0.003
    mag_noise: float = 0.3
    rate_hz: float = 100.0

    @property
    def true_accel_matrix(self) -> np.ndarray:
        """The correction ``M`` with ``M @ (raw - bias) = f_body`` (up to a rotation)."""
        return np.linalg.inv(self.accel_response)

    @property
    def field_strength_ut(self) -> float:
        """Magnitude of the local field."""
        return float(np.linalg.norm(self.field_ut))


def _field(strength_ut: float, inclination_deg: float) -> np.ndarray:
    inc = np.radians(inclination_deg)
    return strength_ut * np.array([0.0, np.cos(inc), -np.sin(inc)])


def random_imu(
    rng: np.random.Generator,
    *,
    scale_error: float = 0.03,
    misalignment_rad: float = 0.02,
    accel_bias: float = 0.5,
    gyro_bias: float = 0.05,
    hard_iron_ut: float = 30.0,
    soft_iron: float = 0.1,
    **kwargs: float,
) -> SimulatedImu:
    """A pod with random errors up to the given sizes (uniform), typical of MEMS parts.

    Extra keyword arguments (noise levels, ``rate_hz``) go to :class:`SimulatedImu`.
    """
    # Each sensing axis is its nominal axis tilted by small random angles: non-orthogonal axes.
    rows = np.eye(3) + rng.uniform(-misalignment_rad, misalignment_rad, (3, 3)) * (1 - np.eye(3))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    scale = 1.0 + rng.uniform(-scale_error, scale_error, 3)
    soft = np.eye(3) + rng.uniform(-soft_iron, soft_iron, (3, 3))
    return SimulatedImu(
        accel_response=rows * scale[:, None],
        accel_bias=rng.uniform(-accel_bias, accel_bias, 3),
        gyro_bias=rng.uniform(-gyro_bias, gyro_bias, 3),
        mag_hard_iron=rng.uniform(-hard_iron_ut, hard_iron_ut, 3),
        mag_soft_iron=(soft + soft.T) / 2.0,
        **kwargs,  # type: ignore[arg-type]
    )


def six_position_orientations() -> list[tuple[str, np.ndarray]]:
    """Body-to-world rotations that put each face up: ``+Z, -Z, +X, -X, +Y, -Y``."""
    h = np.pi / 2
    return [
        ("+Z", np.eye(3)),
        ("-Z", rotation_matrix(np.array([np.pi, 0.0, 0.0]))),
        ("+X", rotation_matrix(np.array([0.0, -h, 0.0]))),
        ("-X", rotation_matrix(np.array([0.0, h, 0.0]))),
        ("+Y", rotation_matrix(np.array([h, 0.0, 0.0]))),
        ("-Y", rotation_matrix(np.array([-h, 0.0, 0.0]))),
    ]


def _trajectory(
    poses: list[np.ndarray], hold_s: float, move_s: float, rate_hz: float
) -> tuple[np.ndarray, np.ndarray]:
    """Orientations ``[n, 3, 3]`` and body rates ``[n, 3]``: hold, rotate, hold, ..."""
    rs: list[np.ndarray] = []
    ws: list[np.ndarray] = []
    n_hold = int(round(hold_s * rate_hz))
    n_move = int(round(move_s * rate_hz))
    for i, r0 in enumerate(poses):
        if n_hold:
            rs.append(np.broadcast_to(r0, (n_hold, 3, 3)))
            ws.append(np.zeros((n_hold, 3)))
        if i + 1 == len(poses) or n_move == 0:
            continue
        # R(s) = R0 exp(s * rv) turns at a fixed body axis: body rate = rv * ds/dt.
        rv = rotation_vector(r0.T @ poses[i + 1])
        tau = np.arange(n_move) / n_move
        s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5  # minimum jerk
        ds = (30 * tau**2 - 60 * tau**3 + 30 * tau**4) / move_s
        rs.append(r0 @ rotation_matrix(s[:, None] * rv))
        ws.append(ds[:, None] * rv)
    return np.concatenate(rs), np.concatenate(ws)


def record_poses(
    imu: SimulatedImu,
    poses: list[np.ndarray],
    rng: np.random.Generator,
    *,
    hold_s: float = 3.0,
    move_s: float = 1.5,
    tumble_s: float = 0.0,
    with_mag: bool = True,
) -> ImuRecording:
    """Record the pod holding each orientation in turn, optionally ending with a tumble.

    Args:
        imu: The simulated sensor.
        poses: Body-to-world rotations to hold.
        rng: Noise source.
        hold_s: Seconds held still in each pose.
        move_s: Seconds of smooth rotation between poses.
        tumble_s: Seconds of continuous rotation through random orientations at the end (what
            a magnetometer calibration needs).
        with_mag: Include magnetometer columns.
    """
    rot, w = _trajectory(poses, hold_s, move_s, imu.rate_hz)
    if tumble_s > 0:
        chain = [poses[-1]] + [random_rotation(rng) for _ in range(int(tumble_s / 0.8) + 1)]
        r2, w2 = _trajectory(chain, 0.0, 0.8, imu.rate_hz)
        rot, w = np.concatenate([rot, r2]), np.concatenate([w, w2])
    n = rot.shape[0]
    rt = np.transpose(rot, (0, 2, 1))
    f_body = rt @ np.array([0.0, 0.0, STANDARD_GRAVITY])
    accel = f_body @ imu.accel_response.T + imu.accel_bias + rng.normal(0, imu.accel_noise, (n, 3))
    gyro = w + imu.gyro_bias + rng.normal(0, imu.gyro_noise, (n, 3))
    mag = None
    if with_mag:
        m_body = rt @ imu.field_ut
        mag = (
            m_body @ imu.mag_soft_iron.T + imu.mag_hard_iron + rng.normal(0, imu.mag_noise, (n, 3))
        )
    t = np.arange(n) / imu.rate_hz
    return ImuRecording(t, accel, gyro, mag, source="simulated")


def record_six_position(
    imu: SimulatedImu,
    rng: np.random.Generator,
    *,
    tilt_deg: float = 0.3,
    hold_s: float = 3.0,
    tumble_s: float = 0.0,
    with_mag: bool = True,
) -> ImuRecording:
    """The six-position procedure: each face up in turn, each pose off by ``tilt_deg`` (1-sigma).

    The default tilt is that of a pod laid on a table against a square edge; a hand-held pod is
    typically off by several degrees.
    """
    poses = []
    for _, r in six_position_orientations():
        yaw = rotation_matrix(np.array([0.0, 0.0, rng.uniform(-np.pi, np.pi)]))
        tilt = rotation_matrix(rng.normal(0, np.radians(tilt_deg), 3) * np.array([1, 1, 0]))
        poses.append(tilt @ yaw @ r)
    return record_poses(imu, poses, rng, hold_s=hold_s, tumble_s=tumble_s, with_mag=with_mag)


def record_random_poses(
    imu: SimulatedImu,
    rng: np.random.Generator,
    *,
    n_poses: int = 20,
    hold_s: float = 2.5,
    tumble_s: float = 0.0,
    with_mag: bool = True,
) -> ImuRecording:
    """Hold ``n_poses`` uniformly random orientations in turn (the any-poses procedure)."""
    poses = [random_rotation(rng) for _ in range(n_poses)]
    return record_poses(imu, poses, rng, hold_s=hold_s, tumble_s=tumble_s, with_mag=with_mag)


@dataclass(frozen=True)
class SimulatedClock:
    """A device clock against the host clock.

    The host time at which the device clock reads ``d`` microseconds is
    ``offset_ns + d * 1000 * (1 + drift_ppm * 1e-6)``.

    Attributes:
        offset_ns: Host time at device time zero (the boot), ns.
        drift_ppm: How much faster the host clock runs than the device clock, ppm.
    """

    offset_ns: int
    drift_ppm: float

    def host_ns(self, device_time_us: np.ndarray) -> np.ndarray:
        """True host time (float ns) at which the device clock reads ``device_time_us``."""
        d = np.asarray(device_time_us, dtype=np.float64)
        return self.offset_ns + d * 1000.0 * (1.0 + self.drift_ppm * 1e-6)


def random_clock(rng: np.random.Generator, *, max_drift_ppm: float = 50.0) -> SimulatedClock:
    """A clock with drift uniform in ``±max_drift_ppm`` and a random boot time."""
    return SimulatedClock(
        offset_ns=int(rng.integers(10**9, 10**13)),
        drift_ppm=float(rng.uniform(-max_drift_ppm, max_drift_ppm)),
    )


def simulate_arrivals(
    clock: SimulatedClock,
    rng: np.random.Generator,
    *,
    duration_s: float,
    packet_rate_hz: float = 20.0,
    start_us: int = 0,
    delay_min_ms: float = 5.0,
    delay_max_ms: float = 40.0,
    delay_shape: float = 2.0,
    delay_scale_ms: float = 4.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Packets stamped on the device clock and received on the host clock.

    Returns:
        ``(device_time_us int64, host_arrival_ns int64, true_host_ns float64)``: the device
        timestamp of each packet, when the host received it, and when (host clock) it was taken.
    """
    n = int(duration_s * packet_rate_hz)
    device_us = start_us + np.round(np.arange(n) * 1e6 / packet_rate_hz).astype(np.int64)
    true_ns = clock.host_ns(device_us)
    delay_ms = delay_min_ms + np.minimum(
        rng.gamma(delay_shape, delay_scale_ms, n), delay_max_ms - delay_min_ms
    )
    arrival = true_ns + delay_ms * 1e6
    # BLE delivers in order: a packet cannot overtake the one before it.
    arrival = np.maximum.accumulate(arrival)
    return device_us, np.round(arrival).astype(np.int64), true_ns
