"""An IMU calibration recording: validated arrays, read from CSV, checked for unit mistakes.

Everything the fits downstream rely on is checked here once, and refused with a
:class:`~fusion_edge.errors.CalibrationError` that names the problem and what to record instead:
missing or non-numeric columns, NaN, time that does not strictly increase, too few samples, and
the two classic unit mistakes that are visible from the data alone (accelerometer in g or milli-g
instead of m/s^2; the gyroscope's deg/s check lives in :mod:`fusion_edge.calibration.gyro_units`
because it needs the still periods).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusion_edge.csv_text import is_missing, number, sniff_delimiter
from fusion_edge.errors import CalibrationError

__all__ = [
    "IMU_COLUMNS",
    "MAG_COLUMNS",
    "STANDARD_GRAVITY",
    "ImuRecording",
    "read_imu_csv",
    "write_imu_csv",
    "check_accel_units",
]

#: Standard gravity in m/s^2; the magnitude every still accelerometer reading should have.
STANDARD_GRAVITY = 9.80665

IMU_COLUMNS = ("t", "ax", "ay", "az", "gx", "gy", "gz")
MAG_COLUMNS = ("mx", "my", "mz")

#: Fewer samples than this cannot hold even one still pose at typical pod rates.
MIN_SAMPLES = 20


@dataclass(frozen=True, eq=False)
class ImuRecording:
    """Validated IMU samples for calibration.

    Attributes:
        t: ``[n]`` seconds, strictly increasing.
        accel: ``[n, 3]`` specific force in m/s^2 (``|a| ~ 9.81`` when still).
        gyro: ``[n, 3]`` angular rate in rad/s.
        mag: ``[n, 3]`` magnetic field in microtesla, or ``None`` for a 6-axis pod.
        source: Where the samples came from (a file name), used in error messages.
    """

    t: np.ndarray
    accel: np.ndarray
    gyro: np.ndarray
    mag: np.ndarray | None = None
    source: str = "recording"

    def __post_init__(self) -> None:
        t = np.asarray(self.t, dtype=np.float64)
        accel = np.asarray(self.accel, dtype=np.float64)
        gyro = np.asarray(self.gyro, dtype=np.float64)
        mag = None if self.mag is None else np.asarray(self.mag, dtype=np.float64)
        n = t.shape[0] if t.ndim == 1 else -1
        if t.ndim != 1:
            raise CalibrationError(
                f"{self.source}: time must be a 1-D array of seconds, got shape {t.shape}; "
                "pass one timestamp per sample"
            )
        for name, arr in (("accel", accel), ("gyro", gyro), ("mag", mag)):
            if arr is not None and arr.shape != (n, 3):
                raise CalibrationError(
                    f"{self.source}: {name} must have shape ({n}, 3) to match {n} timestamps, "
                    f"got {arr.shape}; pass x, y, z columns for every sample"
                )
        if n < MIN_SAMPLES:
            raise CalibrationError(
                f"{self.source}: only {n} samples; a calibration needs still poses of a few "
                "seconds each (hundreds of samples): record the full procedure"
            )
        columns = {"t": t[:, None], "a": accel, "g": gyro}
        if mag is not None:
            columns["m"] = mag
        for prefix, arr in columns.items():
            bad = ~np.isfinite(arr)
            if bad.any():
                rows, cols = np.nonzero(bad)
                name = "t" if prefix == "t" else prefix + "xyz"[cols[0]]
                raise CalibrationError(
                    f"{self.source}: {int(bad.sum())} NaN/missing value(s), first in column "
                    f"'{name}' at sample {int(rows[0])}; calibration needs complete samples: "
                    "re-export the recording without gaps or drop the broken rows"
                )
        dt = np.diff(t)
        back = np.nonzero(dt <= 0)[0]
        if back.size:
            i = int(back[0])
            raise CalibrationError(
                f"{self.source}: time does not strictly increase at sample {i + 1} "
                f"(t={t[i + 1]:.6f} s after t={t[i]:.6f} s; {back.size} such step(s)); "
                "sort the samples by time and remove duplicates, or re-export the recording"
            )
        for name, arr in (("t", t), ("accel", accel), ("gyro", gyro), ("mag", mag)):
            if arr is not None:
                arr.setflags(write=False)
                object.__setattr__(self, name, arr)

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.t.shape[0])

    @property
    def rate_hz(self) -> float:
        """Median sample rate."""
        return float(1.0 / np.median(np.diff(self.t)))

    @property
    def has_mag(self) -> bool:
        """Whether the recording carries magnetometer columns."""
        return self.mag is not None

    def slice(self, start: int, stop: int) -> ImuRecording:
        """The samples ``start:stop`` as a recording of their own."""
        return ImuRecording(
            self.t[start:stop],
            self.accel[start:stop],
            self.gyro[start:stop],
            None if self.mag is None else self.mag[start:stop],
            source=self.source,
        )


def check_accel_units(rec: ImuRecording) -> float:
    """Refuse an accelerometer that is not in m/s^2; return the median magnitude.

    The median of ``|a|`` over a calibration recording is gravity (the pod is still most of the
    time, and motion averages out), so its size tells the unit.
    """
    median = float(np.median(np.linalg.norm(rec.accel, axis=1)))
    if 0.5 < median < 2.5:
        raise CalibrationError(
            f"{rec.source}: the accelerometer reads |a| = {median:.3f} when still, which is "
            f"gravity in g, not m/s^2 ({STANDARD_GRAVITY}); multiply ax, ay, az by "
            f"{STANDARD_GRAVITY} (or export in m/s^2) and run the calibration again"
        )
    if 500.0 < median < 2500.0:
        raise CalibrationError(
            f"{rec.source}: the accelerometer reads |a| = {median:.0f} when still, which is "
            f"gravity in milli-g, not m/s^2; multiply ax, ay, az by {STANDARD_GRAVITY / 1000} "
            "(or export in m/s^2) and run the calibration again"
        )
    gyro_median = float(np.median(np.linalg.norm(rec.gyro, axis=1)))
    if not 6.0 < median < 14.0 and 6.0 < gyro_median < 14.0:
        raise CalibrationError(
            f"{rec.source}: the accelerometer's typical magnitude is {median:.3g}, but the "
            f"gyroscope's is {gyro_median:.3g}, about gravity: the accelerometer and gyroscope "
            "columns look swapped; check the header (t,ax,ay,az,gx,gy,gz) against what each "
            "column holds"
        )
    if not 6.0 < median < 14.0:
        raise CalibrationError(
            f"{rec.source}: the accelerometer's typical magnitude is {median:.3g}, far from "
            f"gravity ({STANDARD_GRAVITY} m/s^2); check that ax, ay, az are in m/s^2 and that "
            "the recording is of the pod resting in several poses"
        )
    return median


def read_imu_csv(path: str | Path) -> ImuRecording:
    """Read a calibration recording from CSV.

    The header must name ``t,ax,ay,az,gx,gy,gz`` (seconds, m/s^2, rad/s) and may add
    ``mx,my,mz`` (microtesla), in any order; other columns are ignored.

    Raises:
        CalibrationError: The file is missing, has no header, misses columns, or holds
            values that are not numbers (and every check of :class:`ImuRecording`).
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise CalibrationError(
            f"recording {path} {what}; give the path of a CSV with columns "
            f"{','.join(IMU_COLUMNS + MAG_COLUMNS)}"
        )
    try:
        return _read_imu_csv(path)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CalibrationError(
            f"{path} is not a text CSV ({exc}); export the recording as a UTF-8 CSV with columns "
            f"{','.join(IMU_COLUMNS + MAG_COLUMNS)}"
        ) from None


def _read_imu_csv(path: Path) -> ImuRecording:
    with path.open(newline="", encoding="utf-8-sig") as f:  # a BOM (Excel) is not part of the header
        sep = sniff_delimiter(f)  # ';' files (Excel, decimal-comma locales) read as ',' ones
        reader = csv.reader(f, delimiter=sep)
        header = next(reader, None)
        if header is None:
            raise CalibrationError(f"{path}: the file is empty; record the calibration again")
        names = [h.strip().lower() for h in header]
        missing = [c for c in IMU_COLUMNS if c not in names]
        if missing:
            raise CalibrationError(
                f"{path}: the header lacks column(s) {', '.join(missing)} (found "
                f"{','.join(names)}); the header must be {','.join(IMU_COLUMNS)} with optional "
                f"{','.join(MAG_COLUMNS)}"
            )
        mag_present = [c for c in MAG_COLUMNS if c in names]
        if mag_present and len(mag_present) != 3:
            raise CalibrationError(
                f"{path}: only some magnetometer columns are present ({','.join(mag_present)}); "
                "give all of mx,my,mz or none of them"
            )
        wanted = list(IMU_COLUMNS) + (list(MAG_COLUMNS) if mag_present else [])
        index = [names.index(c) for c in wanted]
        rows: list[list[float]] = []
        lines: list[int] = []
        short: set[int] = set()  # lines with fewer cells than the columns read need
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) <= max(index):
                short.add(line_no)
            values = []
            for col, i in zip(wanted, index, strict=True):
                cell = row[i].strip() if i < len(row) else ""
                if is_missing(cell):
                    values.append(float("nan"))
                    continue
                try:
                    values.append(number(cell, decimal_comma=sep != ","))
                except ValueError:
                    raise CalibrationError(
                        f"{path}: line {line_no}, column '{col}' holds {cell!r}, not a number; "
                        "fix or drop that row"
                    ) from None
            rows.append(values)
            lines.append(line_no)
    data = np.asarray(rows, dtype=np.float64).reshape(-1, len(wanted))
    bad = np.flatnonzero(~np.isfinite(data).all(axis=1))
    if bad.size:  # named by file line here (ImuRecording can only count samples)
        first = int(bad[0])
        col = wanted[int(np.flatnonzero(~np.isfinite(data[first]))[0])]
        line = lines[first]
        if line in short and first == len(lines) - 1:
            raise CalibrationError(
                f"{path}: the last line ({line}) is cut short (it has no '{col}'): the file was "
                "truncated, by a copy or a recorder that stopped; copy the file again, or drop "
                "that line"
            )
        raise CalibrationError(
            f"{path}: line {line}, column '{col}' is empty or NaN ({bad.size} sample(s) like it); "
            "calibration needs complete samples: re-export the recording without gaps or drop "
            "the broken rows"
        )
    return ImuRecording(
        t=data[:, 0],
        accel=data[:, 1:4],
        gyro=data[:, 4:7],
        mag=data[:, 7:10] if mag_present else None,
        source=path.name,
    )


def write_imu_csv(path: str | Path, rec: ImuRecording) -> None:
    """Write a recording in the CSV layout :func:`read_imu_csv` reads."""
    cols = [rec.t[:, None], rec.accel, rec.gyro]
    header = list(IMU_COLUMNS)
    if rec.mag is not None:
        cols.append(rec.mag)
        header += list(MAG_COLUMNS)
    data = np.hstack(cols)
    np.savetxt(path, data, delimiter=",", header=",".join(header), comments="", fmt="%.9g")
