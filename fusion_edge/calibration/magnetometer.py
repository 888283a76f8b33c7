"""Magnetometer hard- and soft-iron correction by ellipsoid fit.

Every reading of a magnetometer turned through all orientations lies on an ellipsoid: centred on
the hard iron ``h`` (magnetised parts of the pod), shaped by the soft iron (parts that bend the
field). The correction is ``corrected = S @ (raw - h)`` with ``|corrected| = B``, the local field
strength. ``S`` is the symmetric inverse square root of the ellipsoid's shape matrix, scaled to
``B``; when ``B`` is not given, the ellipsoid's geometric-mean radius is used, so ``S`` has
determinant 1 and the sensor's overall gain is kept.

The fit is refused when the magnetometer saturated (readings pinned at the same extreme value),
when the orientations do not cover the sphere well enough to pin down an ellipsoid, when the
field strength is not the Earth's (a unit mistake, or a magnet close by), or when the readings
do not lie on an ellipsoid (the field changed during the recording).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fusion_edge.calibration.ellipsoid import (
    fit_ellipsoid_algebraic,
    fit_sphere_mapping,
    symmetric_sqrt,
)
from fusion_edge.errors import CalibrationError

__all__ = ["MagLimits", "MagFit", "fit_magnetometer", "direction_coverage", "check_saturation"]

_RECORD = (
    "record the pod turning slowly through all orientations (a figure-eight in every "
    "direction, tumbling it end over end) for 30 s, away from steel and magnets"
)


@dataclass(frozen=True)
class MagLimits:
    """What a trustworthy magnetometer fit must achieve.

    Attributes:
        min_coverage: Fewest fraction of the 50 direction bins the readings must visit.
        max_residual: Largest RMS of ``|S (raw - h)| - B`` relative to ``B``.
        max_center_std: Largest 1-sigma hard-iron uncertainty relative to ``B``.
        max_matrix_std: Largest 1-sigma uncertainty of an entry of ``S`` (dimensionless).
        field_range_ut: Plausible Earth field strengths, microtesla (the Earth's is 25-66
            everywhere; a little margin).
        max_field_mismatch: Largest relative difference between the field the readings show
            and the one given (``--field-ut``): steel nearby inflates or bends it.
        max_soft_iron_condition: Largest condition number of the soft-iron matrix; a pod's own
            iron stays close to a sphere, a field bent by steel does not.
        max_points: Readings used for the fit (evenly thinned beyond this; keeps it fast).
        saturation_fraction: A share of readings pinned at one extreme value that counts as
            saturation.
    """

    min_coverage: float = 0.5
    max_residual: float = 0.05
    max_center_std: float = 0.005
    max_matrix_std: float = 0.01
    field_range_ut: tuple[float, float] = (22.0, 70.0)
    max_field_mismatch: float = 0.2
    max_soft_iron_condition: float = 2.0
    max_points: int = 4000
    saturation_fraction: float = 0.005


@dataclass(frozen=True, eq=False)
class MagFit:
    """A magnetometer calibration and how far to trust it.

    Attributes:
        hard_iron: ``[3]`` microtesla.
        soft_iron: ``[3, 3]`` symmetric ``S``, applied as ``S @ (raw - hard_iron)``.
        field_strength_ut: ``B``, the magnitude corrected readings have.
        field_given: Whether ``B`` was given (else estimated from the readings).
        coverage: Fraction of direction bins visited.
        residual_rms: RMS of ``|S (raw - h)| - B``, microtesla.
        hard_iron_std: Largest 1-sigma hard-iron uncertainty, microtesla.
        points: Readings used.
    """

    hard_iron: np.ndarray
    soft_iron: np.ndarray
    field_strength_ut: float
    field_given: bool
    coverage: float
    residual_rms: float
    hard_iron_std: float
    points: int

    def quality(self) -> dict[str, object]:
        """JSON-ready quality figures."""
        return {
            "field_strength_ut": round(self.field_strength_ut, 4),
            "field_strength_source": "given" if self.field_given else "estimated",
            "coverage": round(self.coverage, 4),
            "residual_rms_ut": float(f"{self.residual_rms:.6g}"),
            "residual_rms_relative": float(f"{self.residual_rms / self.field_strength_ut:.6g}"),
            "hard_iron_std_ut": float(f"{self.hard_iron_std:.6g}"),
            "points": self.points,
        }


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(1 - z * z)
    phi = np.pi * (1 + 5**0.5) * i
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


_BINS = _fibonacci_sphere(50)


def direction_coverage(vectors: np.ndarray) -> float:
    """Fraction of 50 evenly spread direction bins that ``vectors [n, 3]`` visit."""
    u = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-300)
    hit = np.unique(np.argmax(u @ _BINS.T, axis=1))
    return hit.size / _BINS.shape[0]


def check_saturation(mag: np.ndarray, fraction: float = 0.005, source: str = "recording") -> None:
    """Refuse readings pinned at one extreme value on any axis (a saturated magnetometer).

    A clipped axis repeats its extreme value exactly; noise makes that all but impossible for a
    sensor inside its range.
    """
    n = mag.shape[0]
    need = max(3, int(np.ceil(fraction * n)))
    for axis, name in enumerate("xyz"):
        col = mag[:, axis]
        for extreme in (col.max(), col.min()):
            count = int(np.count_nonzero(np.abs(col - extreme) <= 1e-9 * max(1.0, abs(extreme))))
            if count >= need:
                raise CalibrationError(
                    f"{source}: the magnetometer's {name} axis sits at {extreme:g} uT in {count} "
                    f"readings ({100 * count / n:.1f}%): it saturated, so those readings are "
                    "clipped. Move away from magnets, speakers and steel (or select a wider "
                    "magnetometer range) and record again"
                )


def _field_unit_hint(strength: float) -> str:
    if 0.15 <= strength <= 1.0:
        return " It looks like gauss: multiply mx, my, mz by 100 to get microtesla."
    if 15_000 <= strength <= 100_000:
        return " It looks like nanotesla: divide mx, my, mz by 1000 to get microtesla."
    if 150 <= strength <= 1000:
        return " It looks like milligauss: divide mx, my, mz by 10 to get microtesla."
    return ""


def check_field_strength(field_strength_ut: float, limits: MagLimits | None = None) -> float:
    """Refuse a given local field strength that is not a plausible Earth field in microtesla.

    A geomagnetic calculator (WMM, IGRF) prints the total intensity in **nanotesla**; copying
    that figure (e.g. 48000) would scale every corrected reading by 1000.
    """
    low, high = (limits or MagLimits()).field_range_ut
    value = float(field_strength_ut)
    if not math.isfinite(value) or value <= 0:
        raise CalibrationError(
            f"field strength {field_strength_ut} uT is not a positive number; give the local field "
            "in microtesla (about 25-65 uT, from a geomagnetic model such as the WMM)"
        )
    if not low <= value <= high:
        hint = ""
        if 1_000 * low <= value <= 1_000 * high:
            hint = f" {value:g} looks like nanotesla (what the WMM prints): give {value / 1000:g}."
        elif 0.01 * low <= value <= 0.01 * high:
            hint = f" {value:g} looks like gauss: give {value * 100:g}."
        raise CalibrationError(
            f"field strength {value:g} uT is outside the Earth's {low:.0f}-{high:.0f} uT.{hint} "
            "Give the local total field in microtesla, or leave --field-ut out to estimate it "
            "from the readings"
        )
    return value


_STEEL = (
    "steel or a magnet near where the pod was turned bends the field (goal posts, a steel "
    "table, a car, a phone or a magnet clasp on the strap): move a few metres away and record "
    "again, or calibrate without the magnetometer (--no-mag) and keep the accelerometer and "
    "gyroscope calibration"
)


def fit_magnetometer(
    mag: np.ndarray,
    *,
    field_strength_ut: float | None = None,
    limits: MagLimits | None = None,
    source: str = "recording",
) -> MagFit:
    """Hard- and soft-iron calibration from magnetometer readings in many orientations.

    Args:
        mag: ``[n, 3]`` raw readings, microtesla (still and moving samples alike).
        field_strength_ut: Local field strength (from a geomagnetic model); estimated from the
            readings when ``None``.
        limits: Acceptance limits; defaults when ``None``.
        source: Name used in error messages.

    Raises:
        CalibrationError: Saturated, too little orientation coverage, implausible field
            strength, or readings that are not an ellipsoid.
    """
    lim = limits or MagLimits()
    m = np.asarray(mag, dtype=np.float64)
    check_saturation(m, lim.saturation_fraction, source)
    if m.shape[0] > lim.max_points:
        m = m[np.linspace(0, m.shape[0] - 1, lim.max_points).round().astype(int)]
    if m.shape[0] < 50:
        raise CalibrationError(f"{source}: only {m.shape[0]} magnetometer readings; {_RECORD}")
    coverage = direction_coverage(m - m.mean(axis=0))
    if coverage < lim.min_coverage:
        raise CalibrationError(
            f"{source}: the magnetometer readings cover {100 * coverage:.0f}% of directions "
            f"(need {100 * lim.min_coverage:.0f}%): too few orientations to fit hard and soft "
            f"iron; {_RECORD}, or calibrate without the magnetometer"
        )
    center, shape = fit_ellipsoid_algebraic(m)
    estimated = float(np.linalg.det(shape) ** (-1.0 / 6.0))
    low, high = lim.field_range_ut
    if field_strength_ut is None and not low <= estimated <= high:
        raise CalibrationError(
            f"{source}: the magnetometer field strength comes out at {estimated:.3g}, but the "
            f"Earth's field is {low:.0f}-{high:.0f} uT.{_field_unit_hint(estimated)} If the "
            f"units are right, {_STEEL}"
        )
    strength = estimated if field_strength_ut is None else check_field_strength(field_strength_ut, lim)
    if field_strength_ut is not None and abs(estimated - strength) > lim.max_field_mismatch * strength:
        raise CalibrationError(
            f"{source}: the magnetometer readings show a field of {estimated:.1f} uT where the "
            f"local field is {strength:.1f} uT ({100 * abs(estimated - strength) / strength:.0f}% "
            f"off, limit {100 * lim.max_field_mismatch:.0f}%): {_STEEL}"
        )
    fit = fit_sphere_mapping(
        m,
        strength,
        init_matrix=strength * symmetric_sqrt(shape),
        init_center=center,
        noise_floor=0.0,
    )
    if fit.residual_rms > lim.max_residual * strength:
        raise CalibrationError(
            f"{source}: the magnetometer readings do not lie on an ellipsoid (RMS residual "
            f"{fit.residual_rms:.2f} uT, {100 * fit.residual_rms / strength:.1f}% of the field, "
            f"limit {100 * lim.max_residual:.0f}%): the field changed during the recording "
            "(steel or a magnet nearby, or something magnetic moved with the pod); "
            f"{_RECORD}"
        )
    if (
        not np.all(np.isfinite(fit.param_std))
        or fit.param_std[6:].max() > lim.max_center_std * strength
        or fit.param_std[:6].max() > lim.max_matrix_std
    ):
        raise CalibrationError(
            f"{source}: the magnetometer readings do not determine the hard and soft iron "
            f"(hard-iron uncertainty {fit.param_std[6:].max():.3g} uT); {_RECORD}"
        )
    corrected_coverage = direction_coverage((m - fit.center) @ fit.matrix.T)
    if corrected_coverage < lim.min_coverage:
        raise CalibrationError(
            f"{source}: the magnetometer readings cover {100 * corrected_coverage:.0f}% of "
            f"directions (need {100 * lim.min_coverage:.0f}%): too few orientations to fit hard "
            f"and soft iron; {_RECORD}, or calibrate without the magnetometer"
        )
    try:
        np.linalg.cholesky(fit.matrix)
    except np.linalg.LinAlgError:
        raise CalibrationError(
            f"{source}: the magnetometer fit is not an ellipsoid; {_RECORD}"
        ) from None
    sv = np.linalg.svd(fit.matrix, compute_uv=False)
    if sv[0] / sv[-1] > lim.max_soft_iron_condition:
        raise CalibrationError(
            f"{source}: the magnetometer readings are squashed far out of round (soft-iron "
            f"condition {sv[0] / sv[-1]:.2f}, limit {lim.max_soft_iron_condition:g}; a pod's own "
            f"iron stays close to round): {_STEEL}"
        )
    return MagFit(
        hard_iron=fit.center,
        soft_iron=fit.matrix,
        field_strength_ut=strength,
        field_given=field_strength_ut is not None,
        coverage=corrected_coverage,
        residual_rms=fit.residual_rms,
        hard_iron_std=float(fit.param_std[6:].max()),
        points=int(m.shape[0]),
    )
