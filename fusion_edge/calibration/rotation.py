"""Rotation helpers shared by the gyroscope checks and the simulator (numpy only)."""

from __future__ import annotations

import numpy as np

__all__ = ["rotation_matrix", "rotation_vector", "random_rotation", "integrate_body_rates"]


def rotation_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rodrigues: rotation matrices ``[..., 3, 3]`` from rotation vectors ``[..., 3]``."""
    rv = np.asarray(rotvec, dtype=np.float64)
    theta = np.linalg.norm(rv, axis=-1)[..., None, None]
    k = np.zeros(rv.shape[:-1] + (3, 3))
    x, y, z = rv[..., 0], rv[..., 1], rv[..., 2]
    k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -z, y, -x
    k[..., 1, 0], k[..., 2, 0], k[..., 2, 1] = z, -y, x
    safe = np.where(theta > 1e-12, theta, 1.0)
    a = np.where(theta > 1e-12, np.sin(theta) / safe, 1.0)
    b = np.where(theta > 1e-12, (1.0 - np.cos(theta)) / (safe * safe), 0.5)
    return np.eye(3) + a * k + b * (k @ k)


def rotation_vector(r: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rotation_matrix` for one matrix (angle in ``[0, pi]``)."""
    cos = np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)
    theta = float(np.arccos(cos))
    if theta < 1e-9:
        return np.zeros(3)
    if theta > np.pi - 1e-6:
        # Near 180 degrees the antisymmetric part vanishes: take the axis from R + I.
        m = (r + np.eye(3)) / 2.0
        axis = m[int(np.argmax(np.diag(m)))]
        return theta * axis / np.linalg.norm(axis)
    w = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    return theta * w / (2.0 * np.sin(theta))


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed rotation matrix (from a random unit quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def integrate_body_rates(rates: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Rotation accumulated by body angular rates ``[n, 3]`` (rad/s) over steps ``dt [n]``.

    ``R = exp(w_0 dt_0) @ exp(w_1 dt_1) @ ...``: a body-to-world orientation ``R0`` becomes
    ``R0 @ R``, so a world vector seen in the body frame goes from ``v`` to ``R.T @ v``.
    """
    steps = rotation_matrix(np.asarray(rates, dtype=np.float64) * np.asarray(dt)[:, None])
    total = np.eye(3)
    for step in steps:
        total = total @ step
    return total
