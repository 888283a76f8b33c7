"""Kinematic signature of each action over one action cycle.

An action cycle is a few seconds of one player's movement with one labelled action whose key
event (the jump, the plant-and-swing, the slide...) happens near the middle. Each signature is
a set of body-motion profiles sampled at the IMU rate; `sensors.py` turns them into what a
body-worn IMU and a GNSS receiver measure, so both modalities come from the same motion.

The training-quality score ``q`` in [0, 1] changes how cleanly the action is executed: a poor
execution is slower, weaker at its key event, wobblier and less regular in its stride.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion_edge.scenarios.vocabulary import ACTIONS

__all__ = ["CycleProfile", "PlayerStyle", "action_profile"]

G = 9.80665


@dataclass
class CycleProfile:
    """Body motion over one cycle, every array sampled at the IMU rate.

    Attributes:
        v_fwd: speed along the heading (m/s).
        v_lat: speed to the left of the heading (m/s).
        yaw_rate: heading change the action itself makes (rad/s), steering comes on top.
        a_vert: vertical acceleration of the trunk without gravity (m/s^2).
        pitch: trunk lean forward (rad); roll: trunk lean to the left (rad).
        gyro_extra: extra body-frame angular rate of swings [n, 3] (rad/s).
        acc_extra: extra body-frame acceleration of impacts and ground contact [n, 3] (m/s^2).
        gait: 0..1 how much stride oscillation the cadence model adds.
        event_s: when the key event (take-off, plant-and-swing, slide...) happens, seconds from
            the start of the cycle.
    """

    v_fwd: np.ndarray
    v_lat: np.ndarray
    yaw_rate: np.ndarray
    a_vert: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    gyro_extra: np.ndarray
    acc_extra: np.ndarray
    gait: np.ndarray
    event_s: float = 0.0


@dataclass(frozen=True)
class PlayerStyle:
    """How one player moves, whatever the action: drawn once per player and session.

    Players differ: a quick winger's jog is a slow defender's sprint, a strong player's pass
    swings as hard as a weak player's shot. These factors make the classes overlap in any one
    cue (speed alone, swing strength alone), so telling them apart needs the player's own
    baseline, which the earlier part of a window shows.

    Attributes:
        speed: multiplies every running speed of the player's actions.
        power: multiplies swings and impacts (the key events' angular rates and accelerations).
        cadence: multiplies the stride frequency at a given speed.
    """

    speed: float = 1.0
    power: float = 1.0
    cadence: float = 1.0

    @classmethod
    def random(cls, rng: np.random.Generator) -> PlayerStyle:
        """A plausible player: speed and cadence within +-18% / +-10%, power within +-30%."""
        return cls(
            speed=float(rng.uniform(0.82, 1.18)),
            power=float(rng.uniform(0.7, 1.3)),
            cadence=float(rng.uniform(0.9, 1.1)),
        )


def _bump(t: np.ndarray, t0: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - t0) / width) ** 2)


def _step(t: np.ndarray, t0: float, dur: float) -> np.ndarray:
    """Smooth 0 -> 1 transition starting at t0 and lasting dur."""
    x = np.clip((t - t0) / max(dur, 1e-3), 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def action_profile(
    action: str,
    n: int,
    rate_hz: float,
    quality: float,
    intensity: float,
    rng: np.random.Generator,
    style: PlayerStyle | None = None,
) -> CycleProfile:
    """The body-motion profile of one action cycle of ``n`` samples.

    Args:
        action: one of ``ACTIONS``.
        n: samples in the cycle.
        rate_hz: sample rate.
        quality: execution quality in [0, 1].
        intensity: scenario intensity in [0, 1], scales speeds.
        rng: the session's random generator (the only source of randomness).
        style: the player's `PlayerStyle` (a neutral player when omitted).
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    t = np.arange(n) / rate_hz
    dur = n / rate_hz
    q = float(np.clip(quality, 0.0, 1.0))
    sharp = 0.55 + 0.45 * q  # how strong the key event is
    slow = 1.0 + 0.6 * (1.0 - q)  # how drawn-out it is
    style = style or PlayerStyle()
    spd = (0.8 + 0.4 * intensity) * rng.uniform(0.9, 1.1) * style.speed
    te = dur * rng.uniform(0.38, 0.62)  # key event time
    z = np.zeros(n)
    p = CycleProfile(
        v_fwd=z.copy(),
        v_lat=z.copy(),
        yaw_rate=z.copy(),
        a_vert=z.copy(),
        pitch=np.full(n, 0.08),
        roll=z.copy(),
        gyro_extra=np.zeros((n, 3)),
        acc_extra=np.zeros((n, 3)),
        gait=np.ones(n),
        event_s=float(te),
    )
    side = rng.choice([-1.0, 1.0])

    if action == "take_off":
        vmax = 6.0 * spd
        tau = 0.55 * slow
        p.v_fwd = 0.3 + (vmax - 0.3) * (1.0 - np.exp(-np.clip(t - te, 0, None) / tau))
        p.pitch = 0.08 + 0.35 * sharp * _bump(t, te + 0.35, 0.35)
        p.a_vert += 7.0 * sharp * _bump(t, te, 0.06 * slow)
        p.gait = _step(t, te - 0.1, 0.3)
    elif action == "shooting":
        v0 = 4.2 * spd
        p.v_fwd = v0 - (v0 - 1.2) * _step(t, te - 0.35 * slow, 0.3 * slow)
        p.v_fwd += 0.8 * _step(t, te + 0.5, 0.5)
        p.gyro_extra[:, 2] = side * 9.0 * sharp * _bump(t, te, 0.07 * slow)
        p.gyro_extra[:, 1] = -5.0 * sharp * _bump(t, te + 0.03, 0.06 * slow)
        p.gyro_extra[:, 0] = side * 3.0 * sharp * _bump(t, te + 0.05, 0.08)
        p.acc_extra[:, 0] = 28.0 * sharp * _bump(t, te + 0.06, 0.015)
        p.acc_extra[:, 2] = 14.0 * sharp * _bump(t, te + 0.06, 0.02)
        p.pitch = 0.08 - 0.25 * _bump(t, te, 0.15)
        p.gait = 1.0 - 0.8 * _bump(t, te, 0.25)
    elif action == "turning":
        v0 = 4.0 * spd
        p.v_fwd = v0 - (v0 - 1.6) * _bump(t, te, 0.35 * slow)
        angle = rng.uniform(0.7, 1.0) * np.pi
        width = 0.22 * slow
        p.yaw_rate = side * angle * _bump(t, te, width) / (width * np.sqrt(2 * np.pi))
        p.roll = side * 0.35 * sharp * _bump(t, te, width)
    elif action == "defending":
        p.v_fwd = -0.7 * spd + 0.3 * np.sin(2 * np.pi * 0.5 * t + rng.uniform(0, 6.3))
        p.v_lat = 1.6 * spd * np.sin(2 * np.pi * 0.9 * t + rng.uniform(0, 6.3))
        p.v_lat += side * 2.2 * sharp * _bump(t, te, 0.2 * slow)  # a lunge to block
        p.pitch = np.full(n, 0.38)
        p.gait = np.full(n, 0.55)
    elif action == "running":
        v0 = rng.uniform(3.4, 4.8) * spd
        p.v_fwd = v0 + 0.3 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6.3))
        p.yaw_rate = 0.15 * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 6.3))
    elif action == "passing":
        v0 = 3.0 * spd
        p.v_fwd = v0 - 1.0 * _bump(t, te - 0.15, 0.25 * slow)
        p.gyro_extra[:, 2] = side * 4.0 * sharp * _bump(t, te, 0.09 * slow)
        p.gyro_extra[:, 1] = -1.5 * sharp * _bump(t, te + 0.03, 0.08 * slow)
        p.acc_extra[:, 0] = 10.0 * sharp * _bump(t, te + 0.07, 0.015)
        p.gait = 1.0 - 0.6 * _bump(t, te, 0.2)
    elif action == "dribbling":
        p.v_fwd = 2.7 * spd + 0.3 * np.sin(2 * np.pi * 0.7 * t)
        phase = rng.uniform(0, 6.3)
        p.yaw_rate = 1.1 * np.sin(2 * np.pi * 0.9 * t + phase)
        touch_dt = 0.45 * slow
        for tt in np.arange(rng.uniform(0, touch_dt), dur, touch_dt):
            p.acc_extra[:, 0] += 6.0 * sharp * _bump(t, tt, 0.012)
            p.gyro_extra[:, 2] += 1.2 * sharp * np.sign(np.sin(tt * 7.0)) * _bump(t, tt, 0.05)
        p.gait = np.full(n, 0.75)
    elif action == "stopping":
        v0 = 5.2 * spd
        brake = 0.55 * slow
        p.v_fwd = 0.2 + (v0 - 0.2) * (1.0 - _step(t, te, brake))
        p.pitch = 0.08 - 0.3 * sharp * _bump(t, te + brake / 2, brake / 2)
        p.acc_extra[:, 0] = -4.0 * sharp * _bump(t, te + brake, 0.05)
        p.gait = 1.0 - _step(t, te + brake * 0.5, brake)
    elif action == "jumping":
        p.v_fwd = 0.4 * spd + z
        flight = 0.42 * (0.8 + 0.2 * sharp)
        p.a_vert = (
            -6.0 * _bump(t, te - 0.28 * slow, 0.08 * slow)
            + 15.0 * sharp * _bump(t, te - 0.08, 0.06 * slow)
            + 38.0 * sharp * _bump(t, te + flight + 0.02, 0.03)
            - 8.0 * _bump(t, te + flight + 0.12, 0.05)
        )
        in_air = (t >= te) & (t < te + flight)
        p.a_vert[in_air] = -G  # free fall: the accelerometer reads ~0
        p.pitch = 0.08 + 0.3 * _bump(t, te - 0.25, 0.12) + 0.25 * _bump(t, te + flight + 0.1, 0.1)
        p.gait = 1.0 - _step(t, te - 0.6, 0.3) + _step(t, te + flight + 0.3, 0.3)
        p.gait = np.clip(p.gait, 0.0, 1.0) * 0.5
    elif action == "sliding":
        v0 = 5.0 * spd
        slide = 0.8 * slow
        decel = np.clip((t - te) / slide, 0.0, 1.0)
        p.v_fwd = v0 * (1.0 - decel) + 0.3 * _step(t, te + slide + 0.6, 0.4)
        down = _step(t, te - 0.1, 0.25) * (1.0 - _step(t, te + slide + 0.3, 0.6))
        p.roll = side * 1.25 * down
        p.pitch = 0.08 - 0.5 * down
        contact = (t >= te) & (t < te + slide)
        vib = rng.normal(0.0, 5.0 * sharp, (n, 3))
        p.acc_extra[contact] += vib[contact]
        p.acc_extra[:, 2] += 18.0 * sharp * _bump(t, te + 0.05, 0.03)
        p.gait = 1.0 - down
    elif action == "sprinting":
        v0 = rng.uniform(7.0, 8.6) * spd
        p.v_fwd = v0 + 0.2 * np.sin(2 * np.pi * 0.4 * t)
        p.pitch = np.full(n, 0.22)
        p.gait = np.full(n, 1.25)
    elif action == "assisting_defense":
        v0 = 3.2 * spd
        p.v_fwd = v0 - (v0 - 0.3) * _step(t, te, 0.4 * slow)
        p.yaw_rate = side * 0.55 * (1.0 - _step(t, te, 0.4))
        p.v_lat = 1.2 * spd * np.sin(2 * np.pi * 1.0 * t) * _step(t, te + 0.2, 0.3)
        p.pitch = 0.08 + 0.32 * _step(t, te, 0.4)
        p.gait = 1.0 - 0.45 * _step(t, te, 0.4)

    p.gyro_extra *= style.power
    p.acc_extra *= style.power

    # A poorer execution wobbles: low-frequency trunk sway on top of everything.
    wobble = (1.0 - q) * 0.9
    if wobble > 0:
        k = max(int(rate_hz * 0.15), 1)
        kern = np.ones(k) / k
        for ax in range(3):
            noise = np.convolve(rng.normal(0.0, wobble * 2.0, n), kern, mode="same")
            p.gyro_extra[:, ax] += noise
        p.acc_extra += np.stack(
            [np.convolve(rng.normal(0.0, wobble * 3.0, n), kern, mode="same") for _ in range(3)],
            axis=1,
        )
    return p
