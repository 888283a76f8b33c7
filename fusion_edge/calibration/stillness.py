"""Find the periods in which a pod stood still, and group them into distinct poses.

A sample is still when the moving standard deviation (a centred window of ``window_s``) of both
the accelerometer and the gyroscope stays under absolute limits. The limits are absolute, not
relative to the recording's own quietest stretch: a pod that never stood still must be refused,
not have its thresholds loosened until something passes. Runs of still samples at least
``min_duration_s`` long are still segments. A slow turn has little variance, so each quiet run is
trimmed to the stretch whose smoothed gravity direction stays within ``max_drift_deg / 3`` of
the run's centre; a run without such a stretch of ``min_duration_s`` (a pod sliding or slowly
tilting all along) is rejected as "moved".
Segments with the same orientation (within ``same_pose_deg``) are one pose: standing still twice
in the same orientation does not add information to the gravity fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion_edge.calibration.recording import ImuRecording

__all__ = [
    "StillnessConfig",
    "StillSegment",
    "StillPose",
    "moving_std",
    "find_still_segments",
    "group_poses",
    "segment_drift_deg",
    "quietest_window",
]


@dataclass(frozen=True)
class StillnessConfig:
    """Thresholds for still-period detection.

    Attributes:
        window_s: Width of the moving window, seconds.
        accel_std_max: Largest total accelerometer std (root of summed per-axis variances) that
            counts as still, m/s^2. MEMS noise is ~0.03-0.05; a hand holding still ~0.1.
        gyro_std_max: Same for the gyroscope, rad/s (noise ~0.002-0.005; a steady hand ~0.02).
        min_duration_s: Shortest still run that counts as a pose.
        max_drift_deg: Largest change of gravity direction inside one still run before the pod
            counts as having moved (runs are trimmed to within a third of it of their centre).
        same_pose_deg: Still runs whose gravity directions are closer than this are one pose.
    """

    window_s: float = 0.5
    accel_std_max: float = 0.25
    gyro_std_max: float = 0.05
    min_duration_s: float = 1.0
    max_drift_deg: float = 1.5
    same_pose_deg: float = 5.0

    def __post_init__(self) -> None:
        for name in ("window_s", "accel_std_max", "gyro_std_max", "min_duration_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"StillnessConfig.{name} must be positive")
        if self.min_duration_s < self.window_s:
            raise ValueError("StillnessConfig.min_duration_s must be at least window_s")


@dataclass(frozen=True)
class StillSegment:
    """One still run: samples ``start:stop`` of a recording.

    Attributes:
        start: First sample index.
        stop: One past the last sample index.
        t_start: Time of the first sample, s.
        t_stop: Time of the last sample, s.
        accel_mean: Mean raw accelerometer reading, m/s^2.
        gyro_mean: Mean raw gyroscope reading, rad/s.
        accel_std: Total accelerometer std over the run, m/s^2.
        drift_deg: Change of gravity direction between the run's first and last third.
    """

    start: int
    stop: int
    t_start: float
    t_stop: float
    accel_mean: np.ndarray
    gyro_mean: np.ndarray
    accel_std: float
    drift_deg: float

    @property
    def duration_s(self) -> float:
        """Length of the run in seconds."""
        return self.t_stop - self.t_start

    @property
    def n(self) -> int:
        """Number of samples."""
        return self.stop - self.start


@dataclass(frozen=True)
class StillPose:
    """Still segments that share one orientation.

    Attributes:
        segments: The runs, in time order.
        accel_mean: Sample-weighted mean raw accelerometer reading, m/s^2.
        n: Total samples.
    """

    segments: tuple[StillSegment, ...]
    accel_mean: np.ndarray
    n: int

    @property
    def t_start(self) -> float:
        """Start of the first run, s."""
        return self.segments[0].t_start


def moving_std(x: np.ndarray, width: int) -> np.ndarray:
    """Total moving std of ``x [n, k]`` over a centred window of ``width`` samples.

    Returns ``[n]``: the root of the summed per-column variances. Windows are truncated at the
    ends of the array.
    """
    n = x.shape[0]
    width = max(1, min(width, n))
    half = width // 2
    # Subtract the overall mean first: keeps E[x^2] - E[x]^2 from cancelling catastrophically.
    xc = x - x.mean(axis=0)
    c1 = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(xc, axis=0)])
    c2 = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(xc * xc, axis=0)])
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) - half + width, 0, n)
    count = (hi - lo)[:, None].astype(np.float64)
    mean = (c1[hi] - c1[lo]) / count
    var = (c2[hi] - c2[lo]) / count - mean * mean
    return np.sqrt(np.clip(var, 0.0, None).sum(axis=1))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.diff(padded)
    starts = np.nonzero(edges == 1)[0]
    stops = np.nonzero(edges == -1)[0]
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def _angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    c = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def segment_drift_deg(accel: np.ndarray) -> float:
    """Change of the mean gravity direction between the first and last third of ``accel``."""
    k = max(1, accel.shape[0] // 3)
    return _angle_deg(accel[:k].mean(axis=0), accel[-k:].mean(axis=0))


def _steady_part(
    accel: np.ndarray, start: int, stop: int, width: int, max_dev_deg: float
) -> tuple[int, int]:
    """The longest stretch around the centre of a run that keeps its orientation.

    A slow turn has little variance, so quiet runs can begin or end in the tail of a movement;
    trimming to the stretch whose (smoothed) gravity direction stays within ``max_dev_deg`` of
    the run's centre keeps only the real pose.
    """
    a = accel[start:stop]
    n = a.shape[0]
    c = np.vstack([np.zeros((1, 3)), np.cumsum(a - a.mean(axis=0), axis=0)])
    half = width // 2
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) - half + width, 0, n)
    smooth = (c[hi] - c[lo]) / (hi - lo)[:, None] + a.mean(axis=0)
    core = n // 2
    ref = smooth[core] / np.linalg.norm(smooth[core])
    cos = smooth @ ref / np.linalg.norm(smooth, axis=1)
    ok = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))) <= max_dev_deg
    left = core
    while left > 0 and ok[left - 1]:
        left -= 1
    right = core
    while right < n - 1 and ok[right + 1]:
        right += 1
    return start + left, start + right + 1


def find_still_segments(
    rec: ImuRecording, config: StillnessConfig | None = None, *, use_gyro: bool = True
) -> tuple[list[StillSegment], list[StillSegment]]:
    """Still runs of a recording.

    Args:
        rec: The recording.
        config: Thresholds; defaults when ``None``.
        use_gyro: Also require a quiet gyroscope. ``False`` is for the unit checks, which must
            find still periods before they know the gyroscope's unit.

    Returns:
        ``(still, moved)``: the accepted runs and the quiet runs rejected because their gravity
        direction never held steady for ``min_duration_s``.
    """
    cfg = config or StillnessConfig()
    width = max(3, int(round(cfg.window_s * rec.rate_hz)))
    mask = moving_std(rec.accel, width) < cfg.accel_std_max
    if use_gyro:
        mask &= moving_std(rec.gyro, width) < cfg.gyro_std_max
    still: list[StillSegment] = []
    moved: list[StillSegment] = []
    for run_start, run_stop in _runs(mask):
        if rec.t[run_stop - 1] - rec.t[run_start] < cfg.min_duration_s:
            continue
        start, stop = _steady_part(rec.accel, run_start, run_stop, width, cfg.max_drift_deg / 3)
        if rec.t[stop - 1] - rec.t[start] < cfg.min_duration_s:
            start, stop = run_start, run_stop  # no steady stretch long enough: it moved
        a = rec.accel[start:stop]
        seg = StillSegment(
            start=start,
            stop=stop,
            t_start=float(rec.t[start]),
            t_stop=float(rec.t[stop - 1]),
            accel_mean=a.mean(axis=0),
            gyro_mean=rec.gyro[start:stop].mean(axis=0),
            accel_std=float(np.sqrt(a.var(axis=0).sum())),
            drift_deg=segment_drift_deg(a),
        )
        (moved if seg.drift_deg > cfg.max_drift_deg else still).append(seg)
    return still, moved


def quietest_window(
    rec: ImuRecording, config: StillnessConfig | None = None
) -> tuple[float, float]:
    """``(accel_std, gyro_std)`` of the quietest window, for "never still" messages."""
    cfg = config or StillnessConfig()
    width = max(3, int(round(cfg.window_s * rec.rate_hz)))
    sa = moving_std(rec.accel, width)
    sg = moving_std(rec.gyro, width)
    i = int(np.argmin(sa / cfg.accel_std_max + sg / cfg.gyro_std_max))
    return float(sa[i]), float(sg[i])


def group_poses(
    segments: list[StillSegment], config: StillnessConfig | None = None
) -> list[StillPose]:
    """Merge still runs with the same gravity direction into poses (first-seen order)."""
    cfg = config or StillnessConfig()
    groups: list[list[StillSegment]] = []
    for seg in segments:
        for group in groups:
            if _angle_deg(group[0].accel_mean, seg.accel_mean) < cfg.same_pose_deg:
                group.append(seg)
                break
        else:
            groups.append([seg])
    poses = []
    for group in groups:
        weights = np.array([s.n for s in group], dtype=np.float64)
        mean = (np.array([s.accel_mean for s in group]) * weights[:, None]).sum(0) / weights.sum()
        poses.append(StillPose(tuple(group), mean, int(weights.sum())))
    return poses
