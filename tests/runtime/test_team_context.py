"""Position features with team context, on hand-built layouts, and GNSS track cleaning."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_edge.runtime.team_context import (
    NO_OPPONENT_DISTANCE,
    POSITION_CHANNELS,
    clean_gnss_track,
    team_features,
)

CH = {name: i for i, name in enumerate(POSITION_CHANNELS)}
TEAM = np.array([0, 0, 1, 1])
ATTACK = np.array([1.0, 1.0, -1.0, -1.0])


def layout() -> np.ndarray:
    """2v2 at two instants: tracks ``[4 players, 2 steps, (x, y, vx, vy)]``; player 3 has no fix
    at the second step."""
    t = np.full((4, 2, 4), np.nan)
    t[0, 0] = [0.0, 0.0, 1.0, 0.0]
    t[1, 0] = [4.0, 2.0, 0.0, 1.0]
    t[2, 0] = [3.0, 0.0, -2.0, 0.0]
    t[3, 0] = [10.0, -4.0, 0.0, 0.0]
    t[0, 1] = [1.0, 0.0, 1.0, 0.0]
    t[1, 1] = [4.0, 3.0, 0.0, 1.0]
    t[2, 1] = [2.0, 0.0, -2.0, 0.0]
    return t


def test_channels() -> None:
    assert POSITION_CHANNELS == (
        "x_att",
        "y_att",
        "speed",
        "v_att",
        "v_lat",
        "dx_team",
        "dy_team",
        "d_opp",
    )


def test_hand_built_2v2_first_step() -> None:
    f = team_features(layout(), TEAM, ATTACK)[:, 0]
    assert f.shape == (4, 8)
    # Own track, mirrored for the team attacking towards -x.
    np.testing.assert_allclose(f[:, CH["x_att"]], [0.0, 4.0, -3.0, -10.0])
    np.testing.assert_allclose(f[:, CH["y_att"]], [0.0, 2.0, 0.0, 4.0])
    np.testing.assert_allclose(f[:, CH["speed"]], [1.0, 1.0, 2.0, 0.0])
    np.testing.assert_allclose(f[:, CH["v_att"]], [1.0, 0.0, 2.0, 0.0])  # player 2 runs at goal
    np.testing.assert_allclose(f[:, CH["v_lat"]], [0.0, 1.0, 0.0, 0.0])
    # Offsets from the team centroid: (2, 1) for team 0, (6.5, -2) for team 1 (mirrored).
    np.testing.assert_allclose(f[:, CH["dx_team"]], [-2.0, 2.0, 3.5, -3.5])
    np.testing.assert_allclose(f[:, CH["dy_team"]], [-1.0, 1.0, -2.0, 2.0])
    # Nearest opponent.
    np.testing.assert_allclose(f[:, CH["d_opp"]], [3.0, np.sqrt(5.0), np.sqrt(5.0), np.sqrt(72.0)])


def test_a_player_without_a_fix_is_nan_and_left_out_of_the_others() -> None:
    f = team_features(layout(), TEAM, ATTACK)[:, 1]
    assert np.isnan(f[3]).all()
    assert np.isfinite(f[:3]).all()
    # Team 1's centroid is player 2 alone now; opponents of team 0 are player 2 alone.
    np.testing.assert_allclose(f[2, [CH["dx_team"], CH["dy_team"]]], [0.0, 0.0])
    np.testing.assert_allclose(f[:2, CH["d_opp"]], [1.0, np.sqrt(13.0)])
    np.testing.assert_allclose(f[2, CH["d_opp"]], 1.0)


def test_attack_direction_mirroring_makes_the_two_halves_equivalent() -> None:
    """Rotating the pitch by 180 degrees and swapping attack directions changes nothing."""
    t = layout()
    rotated = t.copy()
    rotated[..., :4] *= -1.0  # x, y, vx, vy all flip
    a = team_features(t, TEAM, ATTACK)
    b = team_features(rotated, TEAM, -ATTACK)
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_no_opponents_reads_the_no_opponent_distance() -> None:
    t = layout()[:2]
    f = team_features(t, np.array([0, 0]), np.array([1.0, 1.0]))
    np.testing.assert_array_equal(f[:, :, CH["d_opp"]], NO_OPPONENT_DISTANCE)


# ------------------------------------------------------------------ GNSS cleaning


def straight_run(k: int = 100, speed: float = 5.0, course: float = np.pi / 2) -> np.ndarray:
    t = np.arange(k) / 10.0
    return np.column_stack(
        [
            speed * np.cos(course) * t,
            speed * np.sin(course) * t,
            np.full(k, speed),
            np.full(k, course),
        ]
    )


def test_clean_track_turns_speed_and_course_into_velocity() -> None:
    out = clean_gnss_track(straight_run(), 10.0, smooth=1)
    np.testing.assert_allclose(out[:, 2], 0.0, atol=1e-9)
    np.testing.assert_allclose(out[:, 3], 5.0)
    np.testing.assert_allclose(out[:, 1], np.arange(100) * 0.5)


def test_clean_track_smooths_causally() -> None:
    fixes = straight_run()
    out = clean_gnss_track(fixes, 10.0, smooth=3)
    # A causal 3-fix average of a straight line lags it by one fix.
    np.testing.assert_allclose(out[2:, 1], fixes[1:-1, 1], atol=1e-9)


def test_clean_track_rejects_a_jump_and_fills_short_gaps() -> None:
    fixes = straight_run()
    truth = fixes.copy()
    fixes[30, 0] += 15.0  # multipath
    fixes[50:60] = np.nan  # 1 s dropout
    out = clean_gnss_track(fixes, 10.0, smooth=1)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, :2], truth[:, :2], atol=1e-6)


def test_clean_track_leaves_long_gaps_nan() -> None:
    fixes = straight_run()
    fixes[40:80] = np.nan  # 4 s: longer than the 3 s allowed
    out = clean_gnss_track(fixes, 10.0, max_gap_s=3.0, smooth=3)
    assert np.isnan(out[40:80]).all()
    assert np.isfinite(out[:40]).all() and np.isfinite(out[80:]).all()
    # Smoothing restarts after the gap: no NaN leaks, and no stale fixes are averaged in.
    np.testing.assert_allclose(out[80, 1], fixes[80, 1])


@pytest.mark.parametrize("smooth", [1, 3])
def test_clean_track_of_a_receiver_that_never_had_a_fix(smooth: int) -> None:
    out = clean_gnss_track(np.full((20, 4), np.nan), 10.0, smooth=smooth)
    assert out.shape == (20, 4) and np.isnan(out).all()


def test_a_team_without_any_fix_warns_nothing_and_stays_nan() -> None:
    """All of one team's receivers out at a step (unplugged): no warning, NaN features for them,
    and the other team's features still computed (nearest opponent falls back)."""
    t = layout()
    t[2:, 1] = np.nan  # team 1 has no fix at the second step
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = team_features(t, TEAM, ATTACK)
    assert np.isnan(f[2:, 1]).all()
    assert np.isfinite(f[:2, 1]).all()
    np.testing.assert_allclose(f[:2, 1, CH["d_opp"]], NO_OPPONENT_DISTANCE)
    np.testing.assert_allclose(f[:, 0], team_features(layout(), TEAM, ATTACK)[:, 0])
