"""Accelerometer bias, scale and axis misalignment from still poses.

The model: ``corrected = M @ (raw - b)`` with ``|corrected| = g`` in every still pose.

Two methods, chosen by what the poses can determine:

- **sphere** (12 or more distinct poses in varied orientations): Levenberg-Marquardt on the
  gravity sphere (:func:`~fusion_edge.calibration.ellipsoid.fit_sphere_mapping`). It needs no
  knowledge of how each pose was held, so it is the accurate one for a hand-held pod.
- **six_position** (each face up once): the classic procedure. Six norms cannot determine nine
  parameters, so it uses the nominal direction of gravity in each pose (``raw = T (g s) + b``,
  linear least squares, 18 equations for 12 unknowns) and keeps the rotation-free (symmetric)
  part of ``inv(T)``. Its misalignment is only as good as the poses are square: a pose tilted
  by 1 degree moves the misalignment by about 0.01 rad. It is refused when the poses disagree
  with their nominal faces by more than ``max_pose_tilt_deg``.

Each fit is checked: enough poses, the parameter uncertainties small enough (the poses span the
sphere), the residual small enough (no pose was moving). Scale and misalignment are reported in
a rotation-independent form (:func:`scale_factors`, :func:`misalignment_angles`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from fusion_edge.calibration.ellipsoid import fit_sphere_mapping, symmetric_polar_factor
from fusion_edge.calibration.recording import STANDARD_GRAVITY
from fusion_edge.errors import CalibrationError

__all__ = [
    "AccelMethod",
    "AccelLimits",
    "AccelFit",
    "FACES",
    "fit_accelerometer",
    "face_of",
    "scale_factors",
    "misalignment_angles",
]

FACES = ("+X", "-X", "+Y", "-Y", "+Z", "-Z")
_FACE_VECTORS = np.array(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64
)


class AccelMethod(str, Enum):
    """How the accelerometer was calibrated."""

    SPHERE = "sphere"
    SIX_POSITION = "six_position"


@dataclass(frozen=True)
class AccelLimits:
    """What a trustworthy accelerometer fit must achieve.

    Attributes:
        min_sphere_poses: Fewest distinct poses for the sphere fit (9 unknowns, plus spares to
            see a residual).
        face_tolerance_deg: How close to an axis a pose must be to count as that face up in the
            six-position method.
        max_pose_tilt_deg: Largest disagreement between a six-position pose and its nominal
            face after the fit.
        max_residual: Largest RMS of ``|M (raw - b)| - g`` over the poses, m/s^2.
        max_pose_residual: Largest ``||M (raw - b)| - g|`` of any one pose, m/s^2 (a pose with
            linear acceleration stands out even when the RMS hides it).
        max_bias_std: Largest 1-sigma bias uncertainty, m/s^2.
        max_matrix_std: Largest 1-sigma uncertainty of an entry of ``M`` (about a relative
            scale error, or a misalignment in rad).
        noise_floor: Smallest per-pose noise assumed for the uncertainties, m/s^2.
    """

    min_sphere_poses: int = 12
    face_tolerance_deg: float = 20.0
    max_pose_tilt_deg: float = 1.0
    max_residual: float = 0.1
    max_pose_residual: float = 0.15
    max_bias_std: float = 0.1
    max_matrix_std: float = 0.004
    noise_floor: float = 0.01


@dataclass(frozen=True, eq=False)
class AccelFit:
    """An accelerometer calibration and how far to trust it.

    Attributes:
        bias: ``[3]`` m/s^2, in raw sensor axes.
        matrix: ``[3, 3]`` ``M`` (symmetric), applied as ``M @ (raw - bias)``.
        method: Which procedure produced it.
        n_poses: Distinct still poses used.
        faces: Faces (nearest axis pointing up) the poses covered, e.g. ``("+X", "-Z")``.
        spread: Smallest eigenvalue of the poses' direction scatter times 3: 1 for poses spread
            evenly over the sphere, 0 when they all lie in a plane.
        residual_rms: RMS of ``|M (raw - b)| - g`` over the poses, m/s^2.
        residual_max: Largest of those, m/s^2.
        bias_std: Largest 1-sigma bias uncertainty, m/s^2 (``nan`` for six-position).
        max_pose_tilt_deg: Six-position only: worst disagreement of a pose with its face.
    """

    bias: np.ndarray
    matrix: np.ndarray
    method: AccelMethod
    n_poses: int
    faces: tuple[str, ...]
    spread: float
    residual_rms: float
    residual_max: float
    bias_std: float
    max_pose_tilt_deg: float

    @property
    def coverage(self) -> float:
        """Fraction of the six faces the poses covered."""
        return len(self.faces) / 6.0

    def quality(self) -> dict[str, object]:
        """JSON-ready quality figures (what the calibration file stores)."""
        return {
            "method": self.method.value,
            "poses": self.n_poses,
            "faces": list(self.faces),
            "coverage": round(self.coverage, 4),
            "spread": round(self.spread, 4),
            "residual_rms_ms2": float(f"{self.residual_rms:.6g}"),
            "residual_max_ms2": float(f"{self.residual_max:.6g}"),
            "bias_std_ms2": None if np.isnan(self.bias_std) else float(f"{self.bias_std:.6g}"),
            "max_pose_tilt_deg": None
            if np.isnan(self.max_pose_tilt_deg)
            else round(self.max_pose_tilt_deg, 3),
            "scale": [round(float(s), 6) for s in scale_factors(self.matrix)],
            "misalignment_rad": [round(float(a), 6) for a in misalignment_angles(self.matrix)],
        }


def face_of(direction: np.ndarray) -> tuple[str, float]:
    """The face (axis pointing up) nearest a raw gravity direction, and the angle to it (deg)."""
    u = np.asarray(direction, dtype=np.float64)
    u = u / np.linalg.norm(u)
    cos = _FACE_VECTORS @ u
    k = int(np.argmax(cos))
    return FACES[k], float(np.degrees(np.arccos(np.clip(cos[k], -1.0, 1.0))))


def scale_factors(matrix: np.ndarray) -> np.ndarray:
    """Per-axis sensitivity ``[3]`` of the sensor a correction ``M`` undoes (1 = perfect).

    Rows of ``inv(M)`` are the sensing axes as seen in the corrected frame; their lengths are
    the scale factors. Independent of any rotation of the corrected frame.
    """
    return np.linalg.norm(np.linalg.inv(matrix), axis=1)


def misalignment_angles(matrix: np.ndarray) -> np.ndarray:
    """Non-orthogonality ``[xy, xz, yz]`` of the sensing axes, rad (0 = perpendicular)."""
    rows = np.linalg.inv(matrix)
    u = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    pairs = ((0, 1), (0, 2), (1, 2))
    return np.array([np.pi / 2 - np.arccos(np.clip(u[i] @ u[j], -1, 1)) for i, j in pairs])


def _spread(means: np.ndarray) -> float:
    u = means / np.linalg.norm(means, axis=1, keepdims=True)
    return float(3.0 * np.linalg.eigvalsh(u.T @ u / u.shape[0]).min())


def _faces(means: np.ndarray) -> tuple[str, ...]:
    seen = {face_of(m)[0] for m in means}
    return tuple(f for f in FACES if f in seen)


def _describe(when: list[float] | None, k: int) -> str:
    return f"pose {k + 1}" + ("" if when is None else f" (still from t={when[k]:.1f} s)")


def fit_accelerometer(
    pose_means: np.ndarray,
    *,
    pose_times: list[float] | None = None,
    limits: AccelLimits | None = None,
    gravity: float = STANDARD_GRAVITY,
) -> AccelFit:
    """Calibrate the accelerometer from the mean raw reading of each distinct still pose.

    Args:
        pose_means: ``[k, 3]`` mean raw accelerometer reading per pose, m/s^2.
        pose_times: Start time of each pose, used to point at a bad pose in error messages.
        limits: Acceptance limits; defaults when ``None``.
        gravity: Local gravity, m/s^2.

    Raises:
        CalibrationError: The poses cannot determine the calibration (too few, not spanning
            the sphere, not square enough for six-position, or not still).
    """
    lim = limits or AccelLimits()
    means = np.asarray(pose_means, dtype=np.float64).reshape(-1, 3)
    k = means.shape[0]
    faces = _faces(means) if k else ()
    record_more = (
        f"record either each of the six faces up in turn (the six-position procedure) or at "
        f"least {lim.min_sphere_poses} different orientations spread over all directions, "
        "holding each still for 2-3 s"
    )
    if k == 0:
        raise CalibrationError(f"no still pose was found; {record_more}")
    if k == 1:
        raise CalibrationError(
            f"the recording holds a single still pose (face {faces[0]} up); one pose cannot "
            f"separate bias from scale: {record_more}"
        )
    face_poses: dict[str, int] = {}
    for i, m in enumerate(means):
        face, angle = face_of(m)
        if angle <= lim.face_tolerance_deg and (
            face not in face_poses or angle < face_of(means[face_poses[face]])[1]
        ):
            face_poses[face] = i
    sphere_error: CalibrationError | None = None
    if k >= lim.min_sphere_poses:
        try:
            return _fit_sphere(means, faces, pose_times, lim, gravity)
        except CalibrationError as exc:
            sphere_error = exc
    if len(face_poses) == 6:
        return _fit_six_position(means, face_poses, pose_times, lim, gravity)
    if sphere_error is not None:
        raise sphere_error
    missing = [f for f in FACES if f not in face_poses]
    raise CalibrationError(
        f"found {k} distinct still pose(s), but the calibration needs at least "
        f"{lim.min_sphere_poses} varied poses, or all six faces up (faces missing or not within "
        f"{lim.face_tolerance_deg:.0f} deg of level: {', '.join(missing)}); {record_more}"
    )


def _fit_sphere(
    means: np.ndarray,
    faces: tuple[str, ...],
    when: list[float] | None,
    lim: AccelLimits,
    gravity: float,
) -> AccelFit:
    fit = fit_sphere_mapping(means, gravity, noise_floor=lim.noise_floor)
    k = means.shape[0]
    if fit.residual_rms > lim.max_residual or fit.residual_max > lim.max_pose_residual:
        raise CalibrationError(
            f"the poses do not lie on the gravity sphere (RMS residual {fit.residual_rms:.3f} "
            f"m/s^2, limit {lim.max_residual}); worst is {_describe(when, fit.worst_index)}, "
            f"off by {fit.residual_max:.3f} m/s^2: the pod was moving or touched during it. "
            "Record the poses again, resting the pod still for each"
        )
    if not np.all(np.isfinite(fit.param_std)) or (
        fit.param_std[:6].max() > lim.max_matrix_std or fit.param_std[6:].max() > lim.max_bias_std
    ):
        missing = [f for f in FACES if f not in faces]
        raise CalibrationError(
            f"the {k} still poses do not span enough directions to determine bias and scale "
            f"(spread {_spread(means):.2f} of 1; faces never up: {', '.join(missing) or 'none'}"
            "); add poses with the other faces up, e.g. upside down and on each side"
        )
    return AccelFit(
        bias=fit.center,
        matrix=fit.matrix,
        method=AccelMethod.SPHERE,
        n_poses=k,
        faces=faces,
        spread=_spread(means),
        residual_rms=fit.residual_rms,
        residual_max=fit.residual_max,
        bias_std=float(fit.param_std[6:].max()),
        max_pose_tilt_deg=float("nan"),
    )


def _fit_six_position(
    means: np.ndarray,
    face_poses: dict[str, int],
    when: list[float] | None,
    lim: AccelLimits,
    gravity: float,
) -> AccelFit:
    idx = [face_poses[f] for f in FACES]
    raw = means[idx]
    design = np.column_stack([gravity * _FACE_VECTORS, np.ones(6)])
    # raw[:, i] = g s . T[i, :] + b_i for each sensor axis i: 6 equations, 4 unknowns each.
    sol, *_ = np.linalg.lstsq(design, raw, rcond=None)
    response = sol[:3].T
    bias = sol[3]
    full = np.linalg.inv(response)
    matrix = symmetric_polar_factor(full)
    corrected = (raw - bias) @ full.T
    cos = np.sum(corrected * _FACE_VECTORS, axis=1) / np.linalg.norm(corrected, axis=1)
    tilt = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    worst = int(np.argmax(tilt))
    if tilt[worst] > lim.max_pose_tilt_deg:
        raise CalibrationError(
            f"six-position pose {FACES[worst]} up ({_describe(when, idx[worst])}) was held "
            f"{tilt[worst]:.1f} deg away from level (limit {lim.max_pose_tilt_deg}); rest the pod "
            "on a flat surface against a square edge for each face, or record at least "
            f"{lim.min_sphere_poses} varied poses instead (that method needs no level poses)"
        )
    resid = np.linalg.norm((means - bias) @ matrix.T, axis=1) - gravity
    rms = float(np.sqrt(np.mean(resid**2)))
    if rms > lim.max_residual or float(np.abs(resid).max()) > lim.max_pose_residual:
        # With six poses an off-level pose and a moving one look alike: name both causes.
        misfit = np.linalg.norm(raw - design @ sol, axis=1)
        worst_fit = int(np.argmax(misfit))
        raise CalibrationError(
            f"the six poses disagree with each other (RMS residual {rms:.3f} m/s^2, limit "
            f"{lim.max_residual}; worst fit: {FACES[worst_fit]} up, "
            f"{_describe(when, idx[worst_fit])}): a pose was not level or the pod moved during "
            "it. Rest the pod on a flat surface against a square edge for each face, or record "
            f"at least {lim.min_sphere_poses} varied poses instead (that method needs no level "
            "poses)"
        )
    return AccelFit(
        bias=bias,
        matrix=matrix,
        method=AccelMethod.SIX_POSITION,
        n_poses=means.shape[0],
        faces=_faces(means),
        spread=_spread(means),
        residual_rms=rms,
        residual_max=float(np.abs(resid).max()),
        bias_std=float("nan"),
        max_pose_tilt_deg=float(tilt.max()),
    )
