"""Datasets made from simulated scenarios: sessions -> preprocessed windows -> the disk format.

Each window is labelled with what the player just did: by default (``any_phase``) it ends
anywhere between its action's key event and the next action's, as the box's sliding windows
do; ``cycle_end`` windows end where their action cycle ends instead. Either way a window also
holds the action before. Windows are made after the same DSP the box runs: gap interpolation,
a causal moving average and resampling of the IMU to the model rate; multipath rejection, gap
filling and smoothing of GNSS, then team-context position features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusion_edge.runtime.dsp import interpolate_gaps, moving_average, resample_linear
from fusion_edge.runtime.team_context import (
    POSITION_CHANNELS,
    POSITION_UNITS,
    clean_gnss_track,
    team_features,
)
from fusion_edge.scenarios import ACTIONS, TACTICS, Scenario, SimulatedSession, simulate_session
from fusion_edge.scenarios.sensors import IMU_CHANNELS, IMU_UNITS
from fusion_edge.toolkit.dataset import DatasetError, DatasetSpec, DatasetWriter, ModalitySpec, TaskSpec

__all__ = ["WINDOW_LAYOUTS", "WindowingConfig", "session_windows", "simulate_dataset", "scenario_dataset_spec"]

WINDOW_LAYOUTS = ("cycle_end", "any_phase")


@dataclass(frozen=True)
class WindowingConfig:
    """How sessions become model windows (what the bundle's preprocessing will repeat)."""

    window_s: float = 6.0
    imu_rate_hz: float = 40.0
    moving_average: int = 5  # at the IMU source rate (100 Hz: 50 ms, first null at 20 Hz)
    imu_max_gap_s: float = 0.5
    gnss_max_gap_s: float = 3.0
    gnss_smooth: int = 3
    # A window ends where its labelled action cycle ends and reaches back over the previous
    # cycle: on the box a window is scored for what the player just did, with context.
    lead_s: float = 3.0
    jitter_s: float = 0.3
    # "any_phase" (default): a window ends anywhere between its cycle's key event (+
    # event_margin_s) and the next cycle's, as the box's windows do (they slide by the hop and
    # know nothing of cycles); its label is the action whose key event came last: what the
    # player just did. "cycle_end": windows end where their cycle ends (+- jitter_s), the
    # layout of the first three sessions' benchmarks.
    windows: str = "any_phase"
    event_margin_s: float = 0.3

    def __post_init__(self) -> None:
        if self.windows not in WINDOW_LAYOUTS:
            raise ValueError(f"windows must be one of {', '.join(WINDOW_LAYOUTS)}, got {self.windows!r}")

    def preprocessing_json(self, source_imu_hz: float, gnss_hz: float) -> dict:
        """The preprocessing block of dataset.json (and later of the bundle manifest)."""
        return {
            "imu": {
                "source_rate_hz": source_imu_hz,
                "moving_average": self.moving_average,
                "max_gap_s": self.imu_max_gap_s,
                "resample_hz": self.imu_rate_hz,
            },
            "position": {
                "source_rate_hz": gnss_hz,
                "moving_average": self.gnss_smooth,
                "max_gap_s": self.gnss_max_gap_s,
                "features": "team_context",
            },
        }


def scenario_dataset_spec(
    cfg: WindowingConfig, gnss_hz: float, source: dict, source_imu_hz: float = 100.0
) -> DatasetSpec:
    """The dataset.json description of windows made from simulated sessions."""
    return DatasetSpec(
        modalities=(
            ModalitySpec("imu", IMU_CHANNELS, IMU_UNITS, cfg.imu_rate_hz, int(round(cfg.window_s * cfg.imu_rate_hz))),
            ModalitySpec("position", POSITION_CHANNELS, POSITION_UNITS, gnss_hz, int(round(cfg.window_s * gnss_hz))),
        ),
        tasks=(
            TaskSpec("action", "class", labels=ACTIONS),
            TaskSpec("tactic", "class", labels=TACTICS),
            TaskSpec("quality", "regression", value_range=(0.0, 1.0)),
        ),
        window_seconds=cfg.window_s,
        hop_seconds=3.0,
        preprocessing=cfg.preprocessing_json(source_imu_hz, gnss_hz),
        source=source,
        description="Simulated sport-scenario sessions (fusion-edge simulate)",
    )


def _preprocess_imu(imu: np.ndarray, src_hz: float, cfg: WindowingConfig) -> np.ndarray:
    filled, _ = interpolate_gaps(imu, max_gap=int(round(cfg.imu_max_gap_s * src_hz)))
    bad = np.isnan(filled).any(axis=1)
    smooth = moving_average(np.where(bad[:, None], 0.0, filled), cfg.moving_average)
    # A window touching a long gap is dropped, so mark everything the average smeared it into.
    smeared = np.convolve(bad.astype(float), np.ones(cfg.moving_average), mode="full")[: len(bad)] > 0
    smooth[smeared] = np.nan
    length = int(round(imu.shape[0] * cfg.imu_rate_hz / src_hz))
    return resample_linear(smooth, length)


def session_windows(
    session: SimulatedSession, cfg: WindowingConfig, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, int]:
    """Cut one session into windows. Returns (inputs, targets, player ids, windows dropped)."""
    p = len(session.player_ids)
    imu = [_preprocess_imu(session.imu[i], session.imu_rate_hz, cfg) for i in range(p)]
    tracks = np.stack(
        [
            clean_gnss_track(
                session.gnss[i], session.gnss_rate_hz, max_gap_s=cfg.gnss_max_gap_s, smooth=cfg.gnss_smooth
            )
            for i in range(p)
        ]
    )
    pos = team_features(tracks, session.team, session.attack_dir)
    n_imu = int(round(cfg.window_s * cfg.imu_rate_hz))
    n_pos = int(round(cfg.window_s * session.gnss_rate_hz))
    imu_w, pos_w, act, tac, qual, pid = [], [], [], [], [], []
    dropped = 0
    cycles = len(session.cycle_start_s)
    for i in range(p):
        for k, start in enumerate(session.cycle_start_s):
            if cfg.windows == "any_phase":
                event = session.event_s[i, k]
                following = session.event_s[i, k + 1] if k + 1 < cycles else event + session.cycle_s
                end = rng.uniform(event, following) + cfg.event_margin_s
                t0 = end - cfg.window_s
            else:
                t0 = start - cfg.lead_s + rng.uniform(-cfg.jitter_s, cfg.jitter_s)
            t0 = round(t0 * session.gnss_rate_hz) / session.gnss_rate_hz
            if t0 < 0 or t0 + cfg.window_s > session.duration_s:
                continue
            a = int(round(t0 * cfg.imu_rate_hz))
            g = int(round(t0 * session.gnss_rate_hz))
            wi = imu[i][a : a + n_imu]
            wp = pos[i, g : g + n_pos]
            if wi.shape[0] < n_imu or wp.shape[0] < n_pos or np.isnan(wi).any() or np.isnan(wp).any():
                dropped += 1
                continue
            imu_w.append(wi.T)
            pos_w.append(wp.T)
            act.append(session.action[i, k])
            tac.append(session.tactic[i, k])
            qual.append(session.quality[i, k])
            pid.append(session.player_ids[i])
    inputs = {
        "imu": np.asarray(imu_w, dtype=np.float32).reshape(-1, len(IMU_CHANNELS), n_imu),
        "position": np.asarray(pos_w, dtype=np.float32).reshape(-1, len(POSITION_CHANNELS), n_pos),
    }
    targets = {
        "action": np.asarray(act, dtype=np.int64),
        "tactic": np.asarray(tac, dtype=np.int64),
        "quality": np.asarray(qual, dtype=np.float32),
    }
    return inputs, targets, np.asarray(pid), dropped


def simulate_dataset(
    scenarios: Sequence[Scenario],
    out: str | Path,
    *,
    seed: int = 0,
    duration_s: float | None = None,
    sessions: int = 1,
    cfg: WindowingConfig | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Simulate ``sessions`` sessions of each scenario and write them as one dataset.

    Returns a summary dict (windows, dropped, players, sessions).
    """
    cfg = cfg or WindowingConfig()
    rng = np.random.default_rng(seed + 7919)
    source = {
        "kind": "simulated",
        "scenarios": [s.to_json() for s in scenarios],
        "seed": seed,
        "sessions_per_scenario": sessions,
        "duration_s": duration_s,
        "windows": cfg.windows,
    }
    spec = scenario_dataset_spec(cfg, 10.0, source)
    total = dropped = 0
    players: set[str] = set()
    with DatasetWriter(out, spec, overwrite=overwrite) as writer:
        for si, scenario in enumerate(scenarios):
            for s in range(sessions):
                sess_seed = seed + 1000 * si + s
                session = simulate_session(scenario, seed=sess_seed, duration_s=duration_s)
                inputs, targets, pid, drop = session_windows(session, cfg, rng)
                if pid.size:
                    writer.add(inputs, targets, player=pid, session=np.full(pid.size, session.session_id))
                total += pid.size
                dropped += drop
                players.update(pid.tolist())
                if progress:
                    progress(f"{session.session_id}: {pid.size} windows ({drop} dropped for long gaps)")
        if total == 0:
            length = "the scenarios' own length" if duration_s is None else f"{duration_s:g} s"
            raise DatasetError(
                f"the simulated sessions ({length}) gave no {cfg.window_s:g} s windows, so nothing "
                f"was written to {out}: windows end at action-cycle ends after the first "
                f"{cfg.window_s:g} s, so a session needs well over {cfg.window_s:g} s; simulate "
                "1 minute or more (--minutes 1)"
            )
    return {"windows": total, "dropped": dropped, "players": len(players), "sessions": sessions * len(scenarios)}
