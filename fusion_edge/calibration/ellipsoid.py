"""Fit a symmetric matrix and an offset that map points onto a sphere.

Both the accelerometer (still poses lie on an ellipsoid around its bias, radius g) and the
magnetometer (every reading lies on an ellipsoid around the hard iron, radius the local field)
are calibrated by the same problem: find a symmetric ``M`` and a centre ``b`` with
``|M @ (p - b)| = R`` for every point ``p``.

``M`` is kept symmetric because ``|M (p - b)|`` does not change when ``M`` is multiplied by a
rotation on the left: the norm data cannot see a rotation, and the symmetric choice is the one
that rotates the sensor frame least (the polar factor of any other solution).

Two steps: an algebraic least-squares ellipsoid fit (linear, no starting point needed, biased by
noise) and a Levenberg-Marquardt refinement of the geometric residual ``|M (p - b)| - R``
(the quantity the targets are stated in), with the parameter covariance that tells whether the
points determine the answer at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion_edge.errors import CalibrationError

__all__ = [
    "SphereMappingFit",
    "fit_ellipsoid_algebraic",
    "fit_sphere_mapping",
    "symmetric_sqrt",
    "symmetric_polar_factor",
]

# Parameter order of the refinement: M11, M22, M33, M12, M13, M23, b1, b2, b3.
_SYM_INDEX = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


@dataclass(frozen=True, eq=False)
class SphereMappingFit:
    """Result of :func:`fit_sphere_mapping`.

    Attributes:
        matrix: Symmetric ``[3, 3]`` ``M``.
        center: ``[3]`` offset ``b`` in the units of the points.
        residual_rms: RMS of ``|M (p - b)| - R`` at the solution, in the units of ``R``.
        residual_max: Largest absolute residual, units of ``R``.
        worst_index: Index of the point with the largest residual.
        param_std: ``[9]`` 1-sigma standard deviations of (M11, M22, M33, M12, M13, M23) and of
            ``b`` (in the units of the points), from the Gauss-Newton covariance; ``inf`` where
            the points do not determine a parameter.
        iterations: Levenberg-Marquardt iterations used.
    """

    matrix: np.ndarray
    center: np.ndarray
    residual_rms: float
    residual_max: float
    worst_index: int
    param_std: np.ndarray
    iterations: int


def symmetric_sqrt(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive-definite matrix (eigen-decomposition)."""
    w, v = np.linalg.eigh((a + a.T) / 2.0)
    if w.min() <= 0:
        raise CalibrationError(
            "the fitted shape is not an ellipsoid (a matrix that must be positive definite has "
            f"eigenvalue {w.min():.3g}); record more varied orientations"
        )
    return (v * np.sqrt(w)) @ v.T


def symmetric_polar_factor(m: np.ndarray) -> np.ndarray:
    """The symmetric positive factor ``S`` of ``m = Q S`` (``Q`` a rotation).

    ``|m x| = |S x|`` for every ``x``, so ``S`` is the rotation-free part of a calibration matrix.
    """
    u, s, vt = np.linalg.svd(m)
    return (vt.T * s) @ vt


def fit_ellipsoid_algebraic(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Algebraic least-squares fit of a general ellipsoid ``(p - c)^T A (p - c) = 1``.

    Returns:
        ``(center [3], A [3, 3] symmetric positive definite)``.

    Raises:
        CalibrationError: Fewer than 9 points, or the points fit no ellipsoid (a hyperboloid or
            a degenerate shape: typically all points in one plane).
    """
    p = np.asarray(points, dtype=np.float64)
    if p.shape[0] < 9:
        raise CalibrationError(
            f"an ellipsoid fit needs at least 9 points, got {p.shape[0]}; record more orientations"
        )
    mu = p.mean(axis=0)
    s = float(np.sqrt(((p - mu) ** 2).sum(axis=1).mean())) or 1.0
    q = (p - mu) / s
    x, y, z = q.T
    d = np.column_stack([x * x, y * y, z * z, 2 * x * y, 2 * x * z, 2 * y * z, 2 * x, 2 * y, 2 * z])
    v, *_ = np.linalg.lstsq(d, np.ones(q.shape[0]), rcond=None)
    a = np.array([[v[0], v[3], v[4]], [v[3], v[1], v[5]], [v[4], v[5], v[2]]])
    g = v[6:9]
    try:
        c_q = -np.linalg.solve(a, g)
    except np.linalg.LinAlgError:
        raise CalibrationError(
            "the points fit no ellipsoid (singular quadric); rotate the pod through all "
            "orientations, not only about one axis"
        ) from None
    r = 1.0 + float(c_q @ a @ c_q)
    a_n = a / r
    if r <= 0 or np.linalg.eigvalsh(a_n).min() <= 0:
        raise CalibrationError(
            "the points fit no ellipsoid (the best quadric is not closed); rotate the pod "
            "through all orientations, not only about one axis"
        )
    return mu + s * c_q, a_n / (s * s)


def _unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = np.empty((3, 3))
    for k, (i, j) in enumerate(_SYM_INDEX):
        m[i, j] = m[j, i] = theta[k]
    return m, theta[6:9]


def _residual(theta: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(r, v, u)``: residuals, ``p - b`` and ``M (p - b)`` per point."""
    m, b = _unpack(theta)
    v = p - b
    u = v @ m  # m symmetric: rows are M @ v_k
    return np.linalg.norm(u, axis=1) - 1.0, v, u


def _jacobian(theta: np.ndarray, v: np.ndarray, u: np.ndarray) -> np.ndarray:
    m, _ = _unpack(theta)
    nrm = np.maximum(np.linalg.norm(u, axis=1), 1e-300)
    jac = np.empty((v.shape[0], 9))
    for k, (i, j) in enumerate(_SYM_INDEX):
        jac[:, k] = (u[:, i] * v[:, j] if i == j else u[:, i] * v[:, j] + u[:, j] * v[:, i]) / nrm
    jac[:, 6:9] = -(u @ m) / nrm[:, None]
    return jac


def fit_sphere_mapping(
    points: np.ndarray,
    radius: float,
    *,
    init_matrix: np.ndarray | None = None,
    init_center: np.ndarray | None = None,
    noise_floor: float = 0.0,
    max_iterations: int = 200,
) -> SphereMappingFit:
    """Levenberg-Marquardt fit of symmetric ``M`` and ``b`` with ``|M (p - b)| = radius``.

    Args:
        points: ``[n, 3]``, at least 10 (9 parameters plus one to measure a residual).
        radius: The sphere radius ``R`` (g, or the local field strength).
        init_matrix: Starting ``M`` (symmetrised); ``radius / mean|p - init_center|`` times the
            identity when ``None``.
        init_center: Starting ``b``; zero when ``None``.
        noise_floor: Smallest per-point noise (units of ``R``) assumed when turning the
            residual into parameter uncertainties, so a perfect fit of few points does not
            claim perfect parameters.
        max_iterations: Iteration cap.

    Raises:
        CalibrationError: Too few points.
    """
    p = np.asarray(points, dtype=np.float64)
    n = p.shape[0]
    if n < 10:
        raise CalibrationError(
            f"a full ellipsoid fit needs at least 10 points, got {n}; record more orientations"
        )
    # Work in units of the radius so the normal equations are well scaled.
    ps = p / radius
    b0 = np.zeros(3) if init_center is None else np.asarray(init_center, float) / radius
    if init_matrix is None:
        m0 = np.eye(3) / float(np.linalg.norm(ps - b0, axis=1).mean())
    else:
        m0 = (np.asarray(init_matrix, float) + np.asarray(init_matrix, float).T) / 2.0
    theta = np.array([m0[i, j] for i, j in _SYM_INDEX] + list(b0))
    r, v, u = _residual(theta, ps)
    jac = _jacobian(theta, v, u)
    cost = float(r @ r)
    lam = 1e-3
    iterations = 0
    for _ in range(max_iterations):
        iterations += 1
        jtj = jac.T @ jac
        grad = jac.T @ r
        improved = False
        for _ in range(30):
            a = jtj + lam * np.diag(np.maximum(np.diag(jtj), 1e-12))
            try:
                step = -np.linalg.solve(a, grad)
            except np.linalg.LinAlgError:
                lam *= 10.0
                continue
            r_new, _, _ = _residual(theta + step, ps)
            cost_new = float(r_new @ r_new)
            if cost_new < cost:
                improved = True
                break
            lam *= 4.0
        if not improved:
            break
        theta = theta + step
        rel = (cost - cost_new) / max(cost, 1e-300)
        r, v, u = _residual(theta, ps)
        jac = _jacobian(theta, v, u)
        cost = float(r @ r)
        lam = max(lam / 3.0, 1e-12)
        if rel < 1e-12 or float(np.abs(step).max()) < 1e-13:
            break
    m, b = _unpack(theta)
    dof = max(n - 9, 1)
    sigma = max(float(np.sqrt(cost / dof)), noise_floor / radius)
    jtj = jac.T @ jac
    # Scale-invariant rank test: if the points leave some direction of the parameters
    # unconstrained, no parameter uncertainty can be trusted.
    d = np.sqrt(np.maximum(np.diag(jtj), 1e-300))
    w, vec = np.linalg.eigh(jtj / np.outer(d, d))
    if w.min() < 1e-10 * w.max():
        param_std = np.full(9, np.inf)
    else:
        param_std = sigma * np.sqrt(np.diag((vec / w) @ vec.T)) / d
        param_std[6:9] *= radius
    return SphereMappingFit(
        matrix=m,
        center=b * radius,
        residual_rms=float(np.sqrt(cost / n)) * radius,
        residual_max=float(np.abs(r).max()) * radius,
        worst_index=int(np.argmax(np.abs(r))),
        param_std=param_std,
        iterations=iterations,
    )
