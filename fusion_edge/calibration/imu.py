"""The IMU calibration of one pod: apply it to samples, and keep it in a versioned JSON file.

File format (``format`` and ``version`` are checked on load; anything else wrong is refused)::

    {
      "format": "fusion-edge-imu-calibration",
      "version": 1,
      "pod_id": "pod-07",
      "accel_bias": [bx, by, bz],                 # m/s^2, raw sensor axes
      "accel_matrix": [[...], [...], [...]],      # applied as M @ (raw - bias)
      "gyro_bias": [gx, gy, gz],                  # rad/s
      "mag_hard_iron": [hx, hy, hz],              # optional, microtesla
      "mag_soft_iron": [[...], [...], [...]],     # optional, applied as S @ (raw - hard_iron)
      "quality": {...},                           # how the calibration was made and how good
      "created": "2026-11-22T03:04:05Z"
    }

Samples are ``[n, 6]`` (``ax ay az gx gy gz``) or ``[n, 9]`` (plus ``mx my mz``), SI units
(m/s^2, rad/s, microtesla). A ``[n, 9]`` stream through a calibration without magnetometer terms
keeps its magnetometer columns unchanged (:attr:`ImuCalibration.has_magnetometer` says so).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from fusion_edge.errors import CalibrationError
from fusion_edge.file_access import make_ordinary, probe_writable

__all__ = [
    "CALIBRATION_FORMAT",
    "CALIBRATION_VERSION",
    "ImuCalibration",
    "save_calibration",
    "load_calibration",
    "calibration_path",
]

CALIBRATION_FORMAT = "fusion-edge-imu-calibration"
CALIBRATION_VERSION = 1

#: A correction matrix this far from a rotation is not a plausible sensor correction.
_MAX_CONDITION = 2.0


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: UP017 (py3.10)


def _numbers(value: Any) -> bool:
    """Whether ``value`` is numbers (nested lists, or an array), not strings or booleans: numpy
    would read ``"-0.38"`` from a hand-edited file as a number."""
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "iuf"
    if isinstance(value, (list, tuple)):
        return all(_numbers(v) for v in value)
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _vector(value: Any, name: str, where: str, limit: float | None = None,
            unit: str = "") -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64) if _numbers(value) else np.empty(0)
    except (TypeError, ValueError):
        arr = np.empty(0)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise CalibrationError(
            f"{where}: '{name}' must be a list of 3 finite numbers, got {value!r}; "
            "calibrate the pod again to write a valid file"
        )
    if limit is not None and np.abs(arr).max() > limit:
        axis = "xyz"[int(np.abs(arr).argmax())]
        raise CalibrationError(
            f"{where}: '{name}' {axis} is {arr[int(np.abs(arr).argmax())]:g} {unit}, more than any "
            f"sensor of this kind is off ({limit:g} {unit}): a typo in an edited file, or a "
            "calibration gone wrong; calibrate the pod again"
        )
    return arr


# Largest offsets a calibration file may hold: a MEMS accelerometer's zero-g offset is within
# about 150 mg (1.5 m/s^2), a gyroscope's zero-rate offset within about 10 deg/s (0.17 rad/s).
_MAX_ACCEL_BIAS = 2.0  # m/s^2
_MAX_GYRO_BIAS = 0.35  # rad/s
_KEYS = ("format", "version", "pod_id", "accel_bias", "accel_matrix", "gyro_bias",
         "mag_hard_iron", "mag_soft_iron", "quality", "created")


def _matrix(value: Any, name: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64) if _numbers(value) else np.empty(0)
    except (TypeError, ValueError):
        arr = np.empty(0)
    if arr.shape != (3, 3) or not np.all(np.isfinite(arr)):
        raise CalibrationError(
            f"{where}: '{name}' must be a 3x3 list of finite numbers, got {value!r}; "
            "calibrate the pod again to write a valid file"
        )
    s = np.linalg.svd(arr, compute_uv=False)
    if np.linalg.det(arr) <= 0 or s[0] / s[-1] > _MAX_CONDITION:
        raise CalibrationError(
            f"{where}: '{name}' is not a plausible correction (determinant "
            f"{np.linalg.det(arr):.3g}, condition {s[0] / max(s[-1], 1e-300):.3g}; a sensor "
            f"correction is close to the identity); calibrate the pod again"
        )
    return arr


@dataclass(frozen=True, eq=False)
class ImuCalibration:
    """Bias, scale/misalignment and iron corrections for one pod.

    Attributes:
        pod_id: The pod this calibration belongs to.
        accel_bias: ``[3]`` m/s^2.
        accel_matrix: ``[3, 3]``, applied as ``M @ (raw - accel_bias)``.
        gyro_bias: ``[3]`` rad/s.
        mag_hard_iron: ``[3]`` microtesla, or ``None`` without magnetometer calibration.
        mag_soft_iron: ``[3, 3]``, applied as ``S @ (raw - mag_hard_iron)``, or ``None``.
        quality: JSON-ready figures describing how it was made and how good it is.
        created: ISO 8601 UTC time of creation.
    """

    pod_id: str
    accel_bias: np.ndarray
    accel_matrix: np.ndarray
    gyro_bias: np.ndarray
    mag_hard_iron: np.ndarray | None = None
    mag_soft_iron: np.ndarray | None = None
    quality: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=_utc_now)

    def __post_init__(self) -> None:
        where = f"calibration of pod {self.pod_id!r}"
        if not isinstance(self.pod_id, str) or not self.pod_id.strip():
            raise CalibrationError(
                f"pod id {self.pod_id!r} must be a non-empty string; give the pod's id "
                "(printed on the pod, or its BLE address)"
            )
        values = {
            "accel_bias": _vector(self.accel_bias, "accel_bias", where),
            "accel_matrix": _matrix(self.accel_matrix, "accel_matrix", where),
            "gyro_bias": _vector(self.gyro_bias, "gyro_bias", where),
        }
        if (self.mag_hard_iron is None) != (self.mag_soft_iron is None):
            raise CalibrationError(
                f"{where}: 'mag_hard_iron' and 'mag_soft_iron' come together; give both or "
                "neither (calibrate the magnetometer again)"
            )
        if self.mag_hard_iron is not None:
            values["mag_hard_iron"] = _vector(self.mag_hard_iron, "mag_hard_iron", where)
            soft = _matrix(self.mag_soft_iron, "mag_soft_iron", where)
            if not np.allclose(soft, soft.T, atol=1e-9 * np.abs(soft).max()):
                raise CalibrationError(
                    f"{where}: 'mag_soft_iron' must be symmetric; calibrate the magnetometer again"
                )
            values["mag_soft_iron"] = soft
        for name, arr in values.items():
            arr = arr.copy()
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        if not isinstance(self.quality, dict):
            raise CalibrationError(f"{where}: 'quality' must be an object")

    @property
    def has_magnetometer(self) -> bool:
        """Whether this calibration corrects the magnetometer."""
        return self.mag_hard_iron is not None

    def apply(self, samples: np.ndarray) -> np.ndarray:
        """Corrected copy of ``samples [n, 6]`` or ``[n, 9]`` (a single ``[6]``/``[9]`` too).

        Raises:
            CalibrationError: Wrong number of columns.
        """
        x = np.asarray(samples, dtype=np.float64)
        single = x.ndim == 1
        x2 = x[None, :] if single else x
        if x2.ndim != 2 or x2.shape[1] not in (6, 9):
            raise CalibrationError(
                f"IMU samples must be [n, 6] (accel, gyro) or [n, 9] (plus magnetometer), got "
                f"shape {x.shape}; pass columns ax ay az gx gy gz [mx my mz]"
            )
        out = np.empty_like(x2)
        out[:, 0:3] = (x2[:, 0:3] - self.accel_bias) @ self.accel_matrix.T
        out[:, 3:6] = x2[:, 3:6] - self.gyro_bias
        if x2.shape[1] == 9:
            if self.mag_hard_iron is not None and self.mag_soft_iron is not None:
                out[:, 6:9] = (x2[:, 6:9] - self.mag_hard_iron) @ self.mag_soft_iron.T
            else:
                out[:, 6:9] = x2[:, 6:9]
        return out[0] if single else out

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (see the module docstring)."""
        doc: dict[str, Any] = {
            "format": CALIBRATION_FORMAT,
            "version": CALIBRATION_VERSION,
            "pod_id": self.pod_id,
            "accel_bias": self.accel_bias.tolist(),
            "accel_matrix": self.accel_matrix.tolist(),
            "gyro_bias": self.gyro_bias.tolist(),
        }
        if self.mag_hard_iron is not None and self.mag_soft_iron is not None:
            doc["mag_hard_iron"] = self.mag_hard_iron.tolist()
            doc["mag_soft_iron"] = self.mag_soft_iron.tolist()
        doc["quality"] = self.quality
        doc["created"] = self.created
        return doc

    @classmethod
    def from_dict(cls, doc: Any, *, where: str = "calibration file") -> ImuCalibration:
        """Validate and build from a JSON document.

        Raises:
            CalibrationError: Not a calibration document, an unknown version, or invalid
                values.
        """
        if not isinstance(doc, dict) or doc.get("format") != CALIBRATION_FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise CalibrationError(
                f"{where} is not a fusion-edge IMU calibration (format {found!r}, expected "
                f"{CALIBRATION_FORMAT!r}); point at a file written by 'fusion-edge calibrate imu'"
            )
        version = doc.get("version")
        if version != CALIBRATION_VERSION:
            newer = isinstance(version, int) and version > CALIBRATION_VERSION
            raise CalibrationError(
                f"{where} has calibration format version {version!r}; this fusion-edge reads "
                f"version {CALIBRATION_VERSION}. "
                + ("Upgrade fusion-edge." if newer else "Calibrate the pod again.")
            )
        unknown = [k for k in doc if k not in _KEYS]
        for key in unknown:
            close = difflib.get_close_matches(key, _KEYS, n=1, cutoff=0.75)
            if close:  # other extra keys are a later version's or a user's notes: left alone
                raise CalibrationError(
                    f"{where}: unknown key '{key}'; did you mean '{close[0]}'? Fix the key (the "
                    "file was edited by hand?) or calibrate the pod again"
                )
        missing = [k for k in ("pod_id", "accel_bias", "accel_matrix", "gyro_bias") if k not in doc]
        if missing:
            raise CalibrationError(f"{where} lacks {', '.join(missing)}; calibrate the pod again")
        created = doc.get("created", "")
        if not isinstance(created, str):
            raise CalibrationError(f"{where}: 'created' must be an ISO 8601 string")
        return cls(
            pod_id=doc["pod_id"],
            accel_bias=_vector(doc["accel_bias"], "accel_bias", where, _MAX_ACCEL_BIAS, "m/s^2"),
            accel_matrix=_matrix(doc["accel_matrix"], "accel_matrix", where),
            gyro_bias=_vector(doc["gyro_bias"], "gyro_bias", where, _MAX_GYRO_BIAS, "rad/s"),
            mag_hard_iron=doc.get("mag_hard_iron"),
            mag_soft_iron=doc.get("mag_soft_iron"),
            quality=doc.get("quality", {}),
            created=created,
        )


def _safe_name(pod_id: str) -> str:
    # BLE addresses carry ':'; keep file names portable.
    return re.sub(r"[^A-Za-z0-9._-]", "_", pod_id.strip())


def calibration_path(directory: str | Path, pod_id: str) -> Path:
    """Where the calibration of ``pod_id`` lives in a kit's calibration folder."""
    return Path(directory) / f"{_safe_name(pod_id)}.imu-calibration.json"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    return value


def _unwritable(target: Path, exc: OSError, pod_id: str) -> CalibrationError:
    return CalibrationError(
        f"cannot write the calibration to {target} ({exc.strerror or exc}: {exc.filename}); "
        "give --out a file in a writable folder (or a folder to write "
        f"{calibration_path('.', pod_id).name} into)"
    )


def calibration_target(path: str | Path, pod_id: str) -> Path:
    """The file :func:`save_calibration` writes for ``path``, its folder created and writable.

    Call it before a long calibration so that a bad ``--out`` is refused before the work, not
    after it.

    ``path`` may be a file, an existing folder, or a folder to create, written with a trailing
    separator (``cal/``): ``<pod_id>.imu-calibration.json`` goes inside a folder.

    Raises:
        CalibrationError: The folder cannot be created or written, or the path is a folder.
    """
    as_folder = isinstance(path, str) and path.endswith(("/", os.sep))
    target = Path(path)
    if as_folder and target.exists() and not target.is_dir():
        raise CalibrationError(
            f"--out {path} names a folder, but {target} is a file; give the file without the "
            "trailing '/', or another folder"
        )
    if target.is_dir() or as_folder:
        target = calibration_path(target, pod_id)
    if target.is_dir():
        raise CalibrationError(
            f"{target} is a folder; give --out the calibration file to write, or another folder"
        )
    try:
        probe_writable(target.parent)
    except OSError as exc:
        raise _unwritable(target, exc, pod_id) from None
    return target


def save_calibration(calibration: ImuCalibration, path: str | Path) -> Path:
    """Write a calibration atomically (temporary file, then rename); return the path.

    A folder path gets the pod's standard file name (:func:`calibration_path`).
    """
    target = calibration_target(path, calibration.pod_id)
    text = json.dumps(_json_safe(calibration.to_dict()), indent=2, allow_nan=False) + "\n"
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
    except OSError as exc:
        raise _unwritable(target, exc, calibration.pod_id) from None
    try:
        # mkstemp makes 0600 files; the kit (often another user than the one who calibrated,
        # e.g. after `sudo`) must be able to read it, as with any file written with open().
        make_ordinary(fd)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise CalibrationError(
            f"cannot write the calibration to {target} ({exc.strerror or exc}); free disk space "
            "or give --out another path"
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_calibration(path: str | Path, *, pod_id: str | None = None) -> ImuCalibration:
    """Read and validate a calibration file.

    Args:
        path: A calibration file, or a folder holding ``<pod_id>.imu-calibration.json``.
        pod_id: The pod the caller expects; a file for another pod is refused.

    Raises:
        CalibrationError: Missing, not JSON, invalid, or for another pod.
    """
    target = Path(path)
    if target.is_dir():
        if pod_id is None:
            raise CalibrationError(f"{target} is a folder; give the pod id to look up in it")
        folder, target = target, calibration_path(target, pod_id)
        if not target.is_file():
            raise CalibrationError(
                f"no calibration of pod {pod_id} in {folder} (looked for {target.name}); "
                f"calibrate it with 'fusion-edge calibrate imu ... --pod-id {pod_id} --out "
                f"{folder}/', or give the calibration file itself"
            )
    if not target.is_file():
        raise CalibrationError(
            f"no calibration file at {target}; calibrate the pod with "
            "'fusion-edge calibrate imu' first"
        )
    try:
        doc = json.loads(target.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(
            f"{target} is not valid JSON ({exc}); calibrate the pod again"
        ) from None
    cal = ImuCalibration.from_dict(doc, where=str(target))
    if pod_id is not None and cal.pod_id != pod_id:
        raise CalibrationError(
            f"{target} is the calibration of pod {cal.pod_id!r}, not {pod_id!r}; use that pod's "
            "own calibration file"
        )
    return cal
