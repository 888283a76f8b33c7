"""Position features with team context, computed from every player's GNSS track.

The tactical behaviours depend on where a player is relative to teammates and opponents, so the
model's position stream carries, beside the player's own track, their offset from their team's
centroid and the distance to the nearest opponent. The box computes the same features from the
fixes of all players it receives, so these functions are shared by training and the box.
"""

from __future__ import annotations

import numpy as np

from fusion_edge.runtime.dsp import interpolate_gaps, moving_average, reject_jumps

__all__ = ["POSITION_CHANNELS", "POSITION_UNITS", "clean_gnss_track", "team_features"]

POSITION_CHANNELS = ("x_att", "y_att", "speed", "v_att", "v_lat", "dx_team", "dy_team", "d_opp")
POSITION_UNITS = ("m", "m", "m/s", "m/s", "m/s", "m", "m", "m")
MAX_PLAYER_SPEED = 12.0  # m/s: anything faster between fixes is a multipath jump
NO_OPPONENT_DISTANCE = 60.0  # m: what d_opp reads when there is no opponent (a drill)


def clean_gnss_track(
    fixes: np.ndarray, rate_hz: float, *, max_gap_s: float = 3.0, smooth: int = 3
) -> np.ndarray:
    """One receiver's fixes ``[k, 4]`` (x, y, speed, course) -> ``[k, 4]`` (x, y, vx, vy).

    Multipath jumps are rejected, gaps up to ``max_gap_s`` are interpolated linearly, and a
    causal moving average of ``smooth`` fixes is applied. Longer gaps stay NaN.
    """
    fixes = np.asarray(fixes, dtype=np.float64)
    xy = reject_jumps(fixes[:, :2], 1.0 / rate_hz, MAX_PLAYER_SPEED)
    vel = np.column_stack(
        [fixes[:, 2] * np.cos(fixes[:, 3]), fixes[:, 2] * np.sin(fixes[:, 3])]
    )
    track = np.column_stack([xy, vel])
    track[np.isnan(track).any(axis=1)] = np.nan
    filled, _ = interpolate_gaps(track, max_gap=int(round(max_gap_s * rate_hz)))
    bad = np.isnan(filled).any(axis=1)
    if bad.all():
        return filled
    # Smooth each good stretch separately so NaN never leaks into neighbours.
    out = np.full_like(filled, np.nan)
    good = ~bad
    edges = np.flatnonzero(np.diff(np.concatenate(([0], good.astype(np.int8), [0]))))
    for s, e in zip(edges[::2], edges[1::2], strict=True):
        out[s:e] = moving_average(filled[s:e], smooth)
    return out


def team_features(tracks: np.ndarray, team: np.ndarray, attack_dir: np.ndarray) -> np.ndarray:
    """Per-player position features ``[players, k, 8]`` (``POSITION_CHANNELS``).

    Args:
        tracks: ``[players, k, 4]`` cleaned tracks (x, y, vx, vy), time-aligned; NaN = no fix.
        team: ``[players]`` team index.
        attack_dir: ``[players]`` +1 when the player's team attacks towards +x, else -1.
    """
    tracks = np.asarray(tracks, dtype=np.float64)
    p, k, _ = tracks.shape
    d = np.asarray(attack_dir, dtype=np.float64)[:, None]
    out = np.empty((p, k, len(POSITION_CHANNELS)))
    out[:, :, 0] = tracks[:, :, 0] * d
    out[:, :, 1] = tracks[:, :, 1] * d
    out[:, :, 2] = np.hypot(tracks[:, :, 2], tracks[:, :, 3])
    out[:, :, 3] = tracks[:, :, 2] * d
    out[:, :, 4] = tracks[:, :, 3] * d
    with np.errstate(invalid="ignore"):
        for tm in np.unique(team):
            mates = team == tm
            # The team's centroid at each step over the mates with a fix; NaN where none has
            # one (a whole team's receivers out), without nanmean's empty-slice warning.
            xy = tracks[mates, :, :2]
            have = ~np.isnan(xy)
            count = have.sum(axis=0)
            centroid = np.where(count > 0, np.where(have, xy, 0.0).sum(axis=0) / np.maximum(count, 1), np.nan)
            out[mates, :, 5] = (tracks[mates, :, 0] - centroid[None, :, 0]) * d[mates]
            out[mates, :, 6] = (tracks[mates, :, 1] - centroid[None, :, 1]) * d[mates]
            opp = ~mates
            if opp.any():
                diff = tracks[mates, None, :, :2] - tracks[None, opp, :, :2]
                dist = np.hypot(diff[..., 0], diff[..., 1])
                nearest = np.nanmin(np.where(np.isnan(dist), np.inf, dist), axis=1)
                nearest[np.isinf(nearest)] = NO_OPPONENT_DISTANCE
                out[mates, :, 7] = nearest
            else:
                out[mates, :, 7] = NO_OPPONENT_DISTANCE
    out[np.isnan(tracks[:, :, 0])] = np.nan
    return out
