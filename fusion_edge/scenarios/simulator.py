"""Turn a scenario into a session: every player's motion, IMU and GNSS signals, and labels.

One motion per player drives both modalities, so they agree: the GNSS track is the integral of
the same velocity whose derivative the IMU feels. Everything is drawn from one seeded generator:
the same scenario, seed and duration give the same session, sample for sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fusion_edge.scenarios.catalogue import Scenario
from fusion_edge.scenarios.motion import PlayerStyle, action_profile
from fusion_edge.scenarios.sensors import BodyMotion, GnssModel, ImuModel
from fusion_edge.scenarios.team import TeamState
from fusion_edge.scenarios.vocabulary import ACTIONS, TACTICS

__all__ = ["SimulatedSession", "simulate_session", "ArraySampleSource"]

IMU_RATE_HZ = 100.0
GNSS_RATE_HZ = 10.0
CYCLE_S = 3.0


@dataclass
class SimulatedSession:
    """A simulated session of one scenario.

    Attributes:
        imu: ``[players, n, 9]`` float32 IMU samples at ``imu_rate_hz``; NaN rows are lost.
        gnss: ``[players, k, 4]`` float32 fixes (x, y, speed, course) at ``gnss_rate_hz``.
        action, tactic: ``[players, cycles]`` label indices into ``ACTIONS`` / ``TACTICS``.
        quality: ``[players, cycles]`` training-quality score in [0, 1].
        cycle_start_s: ``[cycles]`` start time of each action cycle.
        event_s: ``[players, cycles]`` session time of each cycle's key event (the jump, the
            swing, the slide...): what a player "just did" at time t is the cycle whose key
            event came last before t.
        team: ``[players]`` team index; attack_dir: ``[players]`` +1 / -1 along x.
    """

    scenario: Scenario
    seed: int
    session_id: str
    player_ids: list[str]
    team: np.ndarray
    attack_dir: np.ndarray
    imu_rate_hz: float
    gnss_rate_hz: float
    cycle_s: float
    imu: np.ndarray
    gnss: np.ndarray
    action: np.ndarray
    tactic: np.ndarray
    quality: np.ndarray
    cycle_start_s: np.ndarray
    truth_pos: np.ndarray
    event_s: np.ndarray

    @property
    def duration_s(self) -> float:
        """Length of the session in seconds."""
        return self.imu.shape[1] / self.imu_rate_hz

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (what made it and how the labels are spread)."""
        return {
            "scenario": self.scenario.to_json(),
            "seed": self.seed,
            "session": self.session_id,
            "players": len(self.player_ids),
            "duration_s": self.duration_s,
            "actions": {a: int((self.action == i).sum()) for i, a in enumerate(ACTIONS)},
            "tactics": {t: int((self.tactic == i).sum()) for i, t in enumerate(TACTICS)},
        }

    def imu_source(self, player: int) -> ArraySampleSource:
        """A sample source for a simulated pod worn by ``player``."""
        return ArraySampleSource(self.imu[player], self.imu_rate_hz)


class ArraySampleSource:
    """Hands out samples from an array, in order, looping at the end; lost rows are held."""

    def __init__(self, samples: np.ndarray, rate_hz: float) -> None:
        s = np.array(samples, dtype=np.float64, copy=True)
        bad = np.isnan(s).any(axis=1)
        if bad.all():
            raise ValueError("sample source has no valid samples")
        if bad.any():  # a pod never sends NaN: it holds its last reading
            good = np.flatnonzero(~bad)
            idx = np.maximum.accumulate(np.where(bad, 0, np.arange(len(s))))
            idx[: good[0]] = good[0]
            s = s[idx]
        self.samples = s
        self.rate_hz = float(rate_hz)
        self._pos = 0

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` samples ``[n, channels]``."""
        idx = (self._pos + np.arange(n)) % self.samples.shape[0]
        self._pos = int((self._pos + n) % self.samples.shape[0])
        return self.samples[idx]


def _brake_at_lines(
    start: np.ndarray, v_w: np.ndarray, lim: np.ndarray, dt: float, brake_s: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """Velocity and track of a player who stops at ``+-lim`` instead of running through it.

    Clipping the track alone would leave the velocity (what GNSS Doppler and the IMU see)
    running on while the position stands still; zeroing it at the line would make the IMU feel
    a crash into a wall. The velocity lost at the line is instead taken off gradually (a
    Gaussian of ``brake_s``: hard braking, about 2.5 * v / brake_s m/s^2 at its peak), and the
    track is integrated from the braked velocity, so positions, speed and acceleration agree.
    """
    track = np.clip(start + np.cumsum(v_w, axis=0) * dt, -lim, lim)
    stopped = np.diff(track, axis=0, prepend=start[None]) / dt
    sigma = brake_s / dt
    r = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    lost = np.pad(stopped - v_w, ((r, r), (0, 0)), mode="edge")
    smooth = np.column_stack(
        [np.convolve(lost[:, j], kernel, mode="valid") for j in range(v_w.shape[1])]
    )
    # The smoothing looks ahead; fade it in from the cycle's first sample so the velocity
    # continues the previous cycle's without a jump.
    fade = np.exp(-0.5 * (np.arange(v_w.shape[0]) / sigma) ** 2)[:, None]
    v_b = v_w + smooth - smooth[0] * fade
    return v_b, start + np.cumsum(v_b, axis=0) * dt


def _wrap(a: np.ndarray | float) -> np.ndarray | float:
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def simulate_session(
    scenario: Scenario,
    *,
    seed: int = 0,
    duration_s: float | None = None,
    session_id: str | None = None,
    lost_samples: bool = True,
    gnss_faults: bool = True,
) -> SimulatedSession:
    """Simulate one session of ``scenario``.

    Args:
        scenario: from the catalogue.
        seed: all randomness comes from this seed.
        duration_s: length (defaults to the scenario's); rounded down to whole action cycles.
        session_id: prefix of the player ids (defaults to ``<scenario>-s<seed>``).
        lost_samples: drop IMU samples in bursts as a lossy radio link would.
        gnss_faults: add multipath outliers and dropouts to the GNSS.
    """
    rng = np.random.default_rng(seed)
    duration = scenario.duration_s if duration_s is None else float(duration_s)
    cycles = int(duration // CYCLE_S)
    if cycles < 1:
        raise ValueError(f"duration {duration} s is shorter than one {CYCLE_S} s action cycle")
    sid = session_id or f"{scenario.name}-s{seed}"
    n_players = scenario.total_players
    team_of = np.repeat(np.arange(scenario.teams), scenario.players)
    state = TeamState(scenario, team_of, rng)
    length, width = scenario.pitch_m
    per = int(CYCLE_S * IMU_RATE_HZ)
    n = cycles * per
    dt = 1.0 / IMU_RATE_HZ

    # Kick-off shape: each team in its own half.
    pos0 = np.column_stack(
        [
            np.where(team_of == 0, -1, 1) * rng.uniform(0.05, 0.45, n_players) * length,
            rng.uniform(-0.4, 0.4, n_players) * width,
        ]
    )
    yaw0 = np.where(team_of == 0, 0.0, np.pi) + rng.normal(0, 0.3, n_players)

    pos = np.zeros((n_players, n, 2))
    vel = np.zeros((n_players, n, 2))
    yaw = np.zeros((n_players, n))
    pitch = np.zeros((n_players, n))
    roll = np.zeros((n_players, n))
    a_vert = np.zeros((n_players, n))
    acc_body = np.zeros((n_players, n, 3))
    gyro_body = np.zeros((n_players, n, 3))
    action = np.zeros((n_players, cycles), dtype=np.int64)
    tactic = np.zeros((n_players, cycles), dtype=np.int64)
    quality = np.zeros((n_players, cycles), dtype=np.float32)
    event_s = np.zeros((n_players, cycles))

    cur_pos = pos0.copy()
    cur_yaw = yaw0.copy()
    cur_v = np.zeros((n_players, 2))  # forward, lateral
    cur_att = np.zeros((n_players, 2))  # pitch, roll
    gait_phase = rng.uniform(0, 2 * np.pi, n_players)
    styles = [PlayerStyle.random(rng) for _ in range(n_players)]
    t = np.arange(per) * dt
    settle = np.exp(-t / 0.25)

    for k in range(cycles):
        intents = state.plan(cur_pos)
        sl = slice(k * per, (k + 1) * per)
        for i, intent in enumerate(intents):
            action[i, k] = intent.action
            tactic[i, k] = intent.tactic
            quality[i, k] = intent.quality
            prof = action_profile(
                ACTIONS[intent.action], per, IMU_RATE_HZ, intent.quality, scenario.intensity, rng,
                styles[i],
            )
            event_s[i, k] = k * CYCLE_S + prof.event_s
            v_f = prof.v_fwd + (cur_v[i, 0] - prof.v_fwd[0]) * settle
            v_l = prof.v_lat + (cur_v[i, 1] - prof.v_lat[0]) * settle
            pit = prof.pitch + (cur_att[i, 0] - prof.pitch[0]) * settle
            rol = prof.roll + (cur_att[i, 1] - prof.roll[0]) * settle

            # Steer towards the tactical target; players backing off (v < 0) face it too.
            tgt = np.asarray(intent.target)
            err = float(_wrap(np.arctan2(*(tgt - cur_pos[i])[::-1]) - cur_yaw[i]))
            steer = err / 1.2 * np.exp(-t / 1.2)
            steer = np.clip(steer, -1.0, 1.0)
            psi = cur_yaw[i] + np.cumsum(prof.yaw_rate + steer) * dt
            c, s = np.cos(psi), np.sin(psi)
            v_w = np.column_stack([v_f * c - v_l * s, v_f * s + v_l * c])
            p = cur_pos[i] + np.cumsum(v_w, axis=0) * dt
            # Touchlines: players stop at the edge rather than leave the pitch. Both modalities
            # must see the stop, so the velocity is braked and the track re-integrated from it.
            lim = np.maximum([length / 2 + 3.0, width / 2 + 3.0], np.abs(cur_pos[i]))
            if (np.abs(p) > lim).any():
                v_w, p = _brake_at_lines(cur_pos[i], v_w, lim, dt)
            v_f = v_w[:, 0] * c + v_w[:, 1] * s
            v_l = v_w[:, 1] * c - v_w[:, 0] * s

            # Stride: cadence and bounce follow speed; poorer execution strides less evenly.
            speed = np.abs(v_f) + 0.6 * np.abs(v_l)
            cadence = (1.4 + 0.36 * speed) * styles[i].cadence
            jitter = rng.normal(0, 0.15 * (1.0 - intent.quality), per)
            phase = gait_phase[i] + np.cumsum(2 * np.pi * cadence * dt + jitter * dt * 6)
            amp = prof.gait * np.minimum(1.5 + 1.7 * speed, 16.0) * np.clip(speed / 0.8, 0, 1)
            gait_acc = np.column_stack(
                [0.35 * amp * np.sin(phase), 0.25 * amp * np.sin(phase / 2), amp * np.cos(phase)]
            )
            gait_gyr = np.column_stack(
                [0.06 * amp * np.cos(phase / 2), 0.03 * amp * np.sin(phase), 0.04 * amp * np.sin(phase / 2)]
            )

            pos[i, sl] = p
            vel[i, sl] = v_w
            yaw[i, sl] = psi
            pitch[i, sl] = pit
            roll[i, sl] = rol
            a_vert[i, sl] = prof.a_vert
            acc_body[i, sl] = prof.acc_extra + gait_acc
            gyro_body[i, sl] = prof.gyro_extra + gait_gyr

            cur_pos[i] = p[-1]
            cur_yaw[i] = float(_wrap(psi[-1]))
            cur_v[i] = (v_f[-1], v_l[-1])
            cur_att[i] = (pit[-1], rol[-1])
            gait_phase[i] = phase[-1] % (2 * np.pi)

    north = rng.uniform(0, 2 * np.pi)  # how the pitch lies relative to magnetic north
    gnss_model = GnssModel(rate_hz=GNSS_RATE_HZ)
    imu = np.zeros((n_players, n, 9), dtype=np.float32)
    gnss = np.zeros((n_players, n // int(IMU_RATE_HZ / GNSS_RATE_HZ), 4), dtype=np.float32)
    for i in range(n_players):
        motion = BodyMotion(
            IMU_RATE_HZ, pos[i], vel[i], yaw[i], pitch[i], roll[i], a_vert[i], acc_body[i], gyro_body[i]
        )
        imu[i] = ImuModel.random(rng).measure(motion, rng, lost_samples=lost_samples, north=north)
        gnss[i] = gnss_model.measure(motion, rng, faults=gnss_faults)

    return SimulatedSession(
        scenario=scenario,
        seed=seed,
        session_id=sid,
        player_ids=[f"{sid}-p{i:02d}" for i in range(n_players)],
        team=team_of,
        attack_dir=np.where(team_of == 0, 1.0, -1.0),
        imu_rate_hz=IMU_RATE_HZ,
        gnss_rate_hz=GNSS_RATE_HZ,
        cycle_s=CYCLE_S,
        imu=imu,
        gnss=gnss,
        action=action,
        tactic=tactic,
        quality=quality,
        cycle_start_s=np.arange(cycles) * CYCLE_S,
        truth_pos=pos.astype(np.float32),
        event_s=event_s,
    )
