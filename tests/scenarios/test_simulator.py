"""The scenario simulator: determinism, shapes, physics of the IMU and GNSS, per-action signatures,
tactics that follow from positions, and lost samples."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_edge.scenarios import (
    ACTIONS,
    TACTICS,
    ArraySampleSource,
    SimulatedSession,
    get_scenario,
    simulate_session,
)
from fusion_edge.scenarios.motion import CycleProfile, action_profile
from fusion_edge.scenarios.sensors import BodyMotion, G, GnssModel, ImuModel

RATE = 100.0
IDEAL_IMU = ImuModel(
    accel_bias=(0.0, 0.0, 0.0),
    accel_scale=(1.0, 1.0, 1.0),
    gyro_bias=(0.0, 0.0, 0.0),
    mag_hard_iron=(0.0, 0.0, 0.0),
    accel_noise=0.0,
    gyro_noise=0.0,
    mag_noise=0.0,
)
IDEAL_GNSS = GnssModel(wander_m=0.0, white_m=0.0, speed_noise=0.0)


@pytest.fixture(scope="module")
def session() -> SimulatedSession:
    """90 s of 5v5 with every fault switched on."""
    return simulate_session(get_scenario("5v5"), seed=3, duration_s=90.0)


@pytest.fixture(scope="module")
def clean_session() -> SimulatedSession:
    """90 s of 5v5 without lost samples or GNSS faults."""
    return simulate_session(
        get_scenario("5v5"), seed=3, duration_s=90.0, lost_samples=False, gnss_faults=False
    )


# ------------------------------------------------------------------ determinism and shapes


def test_same_seed_gives_identical_arrays(session: SimulatedSession) -> None:
    again = simulate_session(get_scenario("5v5"), seed=3, duration_s=90.0)
    for name in ("imu", "gnss", "action", "tactic", "quality", "truth_pos", "team", "attack_dir"):
        np.testing.assert_array_equal(getattr(again, name), getattr(session, name), err_msg=name)
    assert again.player_ids == session.player_ids
    assert again.describe() == session.describe()


def test_different_seeds_differ(session: SimulatedSession) -> None:
    other = simulate_session(get_scenario("5v5"), seed=4, duration_s=90.0)
    assert not np.array_equal(np.nan_to_num(other.imu), np.nan_to_num(session.imu))
    assert not np.array_equal(other.action, session.action)
    assert other.player_ids != session.player_ids  # new session, new players


def test_shapes_and_label_ranges(session: SimulatedSession) -> None:
    p = get_scenario("5v5").total_players
    cycles = int(90.0 // session.cycle_s)
    n = int(cycles * session.cycle_s * session.imu_rate_hz)
    assert session.imu.shape == (p, n, 9) and session.imu.dtype == np.float32
    assert session.gnss.shape == (p, n // 10, 4) and session.gnss.dtype == np.float32
    assert session.truth_pos.shape == (p, n, 2)
    assert session.action.shape == session.tactic.shape == session.quality.shape == (p, cycles)
    assert session.cycle_start_s.shape == (cycles,)
    assert session.duration_s == pytest.approx(90.0)
    assert session.action.min() >= 0 and session.action.max() < len(ACTIONS)
    assert session.tactic.min() >= 0 and session.tactic.max() < len(TACTICS)
    lo, hi = get_scenario("5v5").quality
    assert lo <= session.quality.min() and session.quality.max() <= hi
    assert len(set(session.player_ids)) == p
    assert list(session.team) == [0] * 5 + [1] * 5
    assert list(session.attack_dir) == [1.0] * 5 + [-1.0] * 5
    d = session.describe()
    assert sum(d["actions"].values()) == p * cycles and sum(d["tactics"].values()) == p * cycles


def test_duration_rounds_down_to_whole_cycles_and_refuses_less_than_one() -> None:
    s = simulate_session(get_scenario("drill"), seed=0, duration_s=10.0)
    assert s.imu.shape[1] == 900 and s.action.shape == (4, 3)
    with pytest.raises(ValueError, match="shorter than one 3.0 s action cycle"):
        simulate_session(get_scenario("drill"), seed=0, duration_s=2.0)


@pytest.mark.parametrize("name", ["drill", "rondo", "11v11", "basketball"])
def test_every_shipped_scenario_simulates(name: str) -> None:
    sc = get_scenario(name)
    s = simulate_session(sc, seed=1, duration_s=9.0)
    assert s.imu.shape[0] == sc.total_players
    lim = np.array(sc.pitch_m) / 2 + 3.0
    assert np.all(np.abs(s.truth_pos) <= lim + 2.5)  # players brake at the lines


# ------------------------------------------------------------------ sensor physics


def _still(n: int = 500, pitch: float = 0.0, roll: float = 0.0) -> BodyMotion:
    z = np.zeros(n)
    return BodyMotion(
        RATE,
        np.zeros((n, 2)),
        np.zeros((n, 2)),
        z,
        z + pitch,
        z + roll,
        z,
        np.zeros((n, 3)),
        np.zeros((n, 3)),
    )


def test_standing_imu_reads_gravity_up_and_no_rotation() -> None:
    pod = ImuModel.random(np.random.default_rng(5))  # with its small errors and noise
    imu = pod.measure(_still(), np.random.default_rng(6), lost_samples=False)
    acc = imu[:, :3].astype(float)
    assert np.linalg.norm(acc, axis=1).mean() == pytest.approx(G, abs=0.3)
    assert acc[:, 2].mean() == pytest.approx(G, abs=0.4)  # specific force points up: +z
    assert np.abs(imu[:, 3:6]).mean() < 0.1
    mag = np.linalg.norm(imu[:, 6:9] - np.asarray(pod.mag_hard_iron), axis=1)
    assert mag.mean() == pytest.approx(pod.field_ut, rel=0.02)


def test_tilt_moves_gravity_between_axes() -> None:
    imu = IDEAL_IMU.measure(_still(pitch=np.pi / 6), np.random.default_rng(0), lost_samples=False)
    # Leaning forward by 30 degrees: body x points partly down, so it reads -g sin(30).
    assert imu[:, 0].mean() == pytest.approx(-G * 0.5, abs=1e-3)
    assert imu[:, 2].mean() == pytest.approx(G * np.cos(np.pi / 6), abs=1e-3)
    imu = IDEAL_IMU.measure(_still(roll=np.pi / 2), np.random.default_rng(0), lost_samples=False)
    assert abs(imu[:, 2].mean()) < 1e-3 and abs(imu[:, 1].mean()) == pytest.approx(G, abs=1e-3)


def test_imu_saturates_at_its_range() -> None:
    m = _still(100)
    m.acc_body[50, 0] = 500.0
    imu = IDEAL_IMU.measure(m, np.random.default_rng(0), lost_samples=False)
    assert imu[50, 0] == pytest.approx(IDEAL_IMU.accel_range)


def test_simulated_standing_gravity_on_average(clean_session: SimulatedSession) -> None:
    # Over a whole session the specific force averages to gravity (accelerations cancel out).
    mean_acc = np.nanmean(clean_session.imu[:, :, :3].astype(float), axis=1)
    assert np.linalg.norm(mean_acc, axis=1) == pytest.approx(np.full(10, G), abs=1.5)


def test_gnss_track_agrees_with_the_motion_that_drives_the_imu(
    clean_session: SimulatedSession,
) -> None:
    s = clean_session
    truth = s.truth_pos[:, ::10].astype(float)  # the IMU-rate truth at every GNSS fix
    err = np.hypot(*(s.gnss[:, :, :2] - truth).transpose(2, 0, 1))
    assert np.median(err) < 1.5 and err.max() < 4.0  # metre-level wander and noise, no bias
    # Speed from the GNSS (Doppler) against the speed implied by the true track.
    v = np.gradient(s.truth_pos.astype(float), 1.0 / s.imu_rate_hz, axis=1)
    true_speed = np.hypot(v[..., 0], v[..., 1])[:, ::10]
    speed_err = np.abs(s.gnss[:, :, 2] - true_speed)
    assert np.median(speed_err) < 0.2
    assert np.percentile(speed_err, 99) < 1.0, "GNSS speed disagrees with the position track"
    # Course points where the track goes when the player moves.
    moving = true_speed > 2.0
    true_course = np.arctan2(v[..., 1], v[..., 0])[:, ::10]
    dc = np.angle(np.exp(1j * (s.gnss[:, :, 3] - true_course)))
    assert np.percentile(np.abs(dc[moving]), 95) < 0.3
    # The distance the IMU-driving motion covers is what GNSS measures (1-2 % in the field).
    gnss_dist = np.nansum(s.gnss[:, :, 2], axis=1) / s.gnss_rate_hz
    true_dist = np.hypot(*np.diff(s.truth_pos.astype(float), axis=1).transpose(2, 0, 1)).sum(axis=1)
    np.testing.assert_allclose(gnss_dist, true_dist, rtol=0.06)


def test_imu_acceleration_matches_the_track(clean_session: SimulatedSession) -> None:
    """Horizontal specific force (low-passed) tracks the derivative of the GNSS-like velocity."""
    s = clean_session
    v = np.gradient(s.truth_pos.astype(float), 1.0 / s.imu_rate_hz, axis=1)
    speed = np.hypot(v[..., 0], v[..., 1])
    acc = np.linalg.norm(s.imu[:, :, :3].astype(float), axis=2)
    # Faster running means harder ground contacts: the IMU energy rises with speed.
    for i in range(s.imu.shape[0]):
        fast, slow = speed[i] > 5.0, speed[i] < 1.5
        if fast.sum() > 100 and slow.sum() > 100:
            assert acc[i][fast].std() > acc[i][slow].std()


# ------------------------------------------------------------------ action signatures


def _motion(
    action: str, seed: int, quality: float = 1.0, n: int = 300
) -> tuple[CycleProfile, BodyMotion]:
    """One cycle of ``action`` integrated as the simulator does (no steering, no stride)."""
    p = action_profile(action, n, RATE, quality, 0.75, np.random.default_rng(seed))
    dt = 1.0 / RATE
    yaw = np.cumsum(p.yaw_rate) * dt
    c, s = np.cos(yaw), np.sin(yaw)
    vel = np.column_stack([p.v_fwd * c - p.v_lat * s, p.v_fwd * s + p.v_lat * c])
    pos = np.cumsum(vel, axis=0) * dt
    return p, BodyMotion(RATE, pos, vel, yaw, p.pitch, p.roll, p.a_vert, p.acc_extra, p.gyro_extra)


def _measure(action: str, seed: int, quality: float = 1.0):
    p, m = _motion(action, seed, quality)
    imu = IDEAL_IMU.measure(m, np.random.default_rng(seed), lost_samples=False).astype(float)
    gnss = IDEAL_GNSS.measure(m, np.random.default_rng(seed), faults=False).astype(float)
    return p, m, imu, gnss


def _sig_take_off(p, m, imu, gnss):
    assert gnss[:5, 2].mean() < 1.5 and gnss[-5:, 2].mean() > 4.0  # accelerates from near rest


def _sig_shooting(p, m, imu, gnss):
    assert np.abs(imu[:, 5]).max() > 6.0  # the swing of the kicking side
    assert imu[:, 0].max() > 20.0  # the strike


def _sig_turning(p, m, imu, gnss):
    assert np.abs(imu[:, 5]).max() > 2.5
    assert abs(np.degrees(m.yaw[-1] - m.yaw[0])) > 100.0
    assert gnss[:, 2].min() > 1.0  # keeps moving through the turn


def _sig_defending(p, m, imu, gnss):
    assert p.v_fwd.mean() < 0.0  # backpedals
    assert np.abs(p.v_lat).max() > 1.5  # shuffles sideways
    assert imu[:, 0].mean() < -2.5  # deep forward lean: gravity on -x


def _sig_running(p, m, imu, gnss):
    assert 2.5 < gnss[:, 2].mean() < 6.0 and gnss[:, 2].std() < 0.6
    assert np.linalg.norm(imu[:, :3], axis=1).max() < 12.0  # no impacts
    assert np.abs(imu[:, 5]).max() < 1.0


def _sig_passing(p, m, imu, gnss):
    assert 2.0 < np.abs(imu[:, 5]).max() < 6.0  # a gentler swing than a shot
    assert 12.0 < np.linalg.norm(imu[:, :3], axis=1).max() < 22.0


def _sig_dribbling(p, m, imu, gnss):
    ax = imu[:, 0] - np.median(imu[:, 0])
    touches = np.flatnonzero((ax[1:-1] > 3.0) & (ax[1:-1] >= ax[:-2]) & (ax[1:-1] >= ax[2:]))
    assert touches.size >= 4  # repeated ball touches
    assert 1.5 < gnss[:, 2].mean() < 4.5


def _sig_stopping(p, m, imu, gnss):
    assert gnss[:5, 2].mean() > 4.0 and gnss[-5:, 2].mean() < 0.5


def _sig_jumping(p, m, imu, gnss):
    mag = np.linalg.norm(imu[:, :3], axis=1)
    air = np.flatnonzero(mag < 1.5)  # near free fall
    assert air.size >= 25  # at least a quarter of a second in the air
    landing = mag[air[-1] : air[-1] + 30].max()
    assert landing > 30.0  # the landing spike right after
    assert gnss[:, 2].max() < 1.5  # a jump on the spot


def _sig_sliding(p, m, imu, gnss):
    down = np.abs(p.roll) > 1.0
    assert down.sum() > 30
    assert np.median(imu[down, 2]) < 5.0  # gravity leaves z ...
    assert np.median(np.abs(imu[down, 1])) > 6.0  # ... for the side the player lies on
    assert gnss[:5, 2].mean() > 4.0 and gnss[:, 2].min() < 1.0


def _sig_sprinting(p, m, imu, gnss):
    assert gnss[:, 2].mean() > 6.5


def _sig_assisting_defense(p, m, imu, gnss):
    assert gnss[-5:, 2].mean() < 0.5 * gnss[:5, 2].mean()  # slows to take position
    assert imu[-100:, 0].mean() < imu[:100, 0].mean() - 1.5  # then sinks into a stance


SIGNATURES = {
    "take_off": _sig_take_off,
    "shooting": _sig_shooting,
    "turning": _sig_turning,
    "defending": _sig_defending,
    "running": _sig_running,
    "passing": _sig_passing,
    "dribbling": _sig_dribbling,
    "stopping": _sig_stopping,
    "jumping": _sig_jumping,
    "sliding": _sig_sliding,
    "sprinting": _sig_sprinting,
    "assisting_defense": _sig_assisting_defense,
}


def test_every_action_has_a_signature_check() -> None:
    assert set(SIGNATURES) == set(ACTIONS)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_action_signature(action: str, seed: int) -> None:
    SIGNATURES[action](*_measure(action, seed))


@pytest.mark.parametrize("action", ACTIONS)
def test_other_actions_do_not_show_the_jump_signature(action: str) -> None:
    if action == "jumping":
        return
    _, _, imu, _ = _measure(action, 0)
    assert (np.linalg.norm(imu[:, :3], axis=1) < 1.5).sum() == 0


def test_sprinting_is_faster_than_running() -> None:
    sprint = [_measure("sprinting", s)[3][:, 2].mean() for s in range(4)]
    run = [_measure("running", s)[3][:, 2].mean() for s in range(4)]
    assert min(sprint) > max(run)


def test_turning_spins_harder_than_straight_actions() -> None:
    turn = min(np.abs(_measure("turning", s)[2][:, 5]).max() for s in range(4))
    for other in ("running", "sprinting", "stopping", "take_off"):
        assert turn > 2.0 * max(np.abs(_measure(other, s)[2][:, 5]).max() for s in range(4))


def test_poor_quality_weakens_the_key_event() -> None:
    good = [np.abs(_measure("shooting", s, 1.0)[2][:, 5]).max() for s in range(4)]
    poor = [np.abs(_measure("shooting", s, 0.0)[2][:, 5]).max() for s in range(4)]
    assert np.mean(good) > np.mean(poor) + 1.5


def test_unknown_action_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown action 'cartwheel'"):
        action_profile("cartwheel", 100, RATE, 1.0, 0.5, np.random.default_rng(0))


def _longest_run(mask: np.ndarray) -> int:
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    runs = np.flatnonzero(d == -1) - np.flatnonzero(d == 1)
    return int(runs.max()) if runs.size else 0


def test_simulated_windows_carry_their_action(clean_session: SimulatedSession) -> None:
    """In the full simulator (steering, stride, sensor errors) labels still show in the signals."""
    s = clean_session
    per = int(s.cycle_s * s.imu_rate_hz)
    gper = int(s.cycle_s * s.gnss_rate_hz)
    speed = {a: [] for a in ("sprinting", "running", "jumping")}
    free_fall = {True: 0, False: 0}
    for i in range(s.imu.shape[0]):
        for k in range(s.action.shape[1]):
            a = ACTIONS[s.action[i, k]]
            if a in speed:
                speed[a].append(s.gnss[i, k * gper : (k + 1) * gper, 2].mean())
            mag = np.linalg.norm(s.imu[i, k * per : (k + 1) * per, :3], axis=1)
            # A jump's flight lasts ~0.4 s; a running stride's flight phase only a few samples.
            free_fall[a == "jumping"] += int(_longest_run(mag < 2.0) >= 15)
    if speed["sprinting"] and speed["running"]:
        assert np.mean(speed["sprinting"]) > np.mean(speed["running"]) + 1.0
    if speed["jumping"]:
        assert free_fall[True] >= 0.7 * len(speed["jumping"])
    assert free_fall[False] == 0


# ------------------------------------------------------------------ tactics


def test_pressing_players_are_closer_to_an_opponent_than_retreating_ones(
    clean_session: SimulatedSession,
) -> None:
    s = clean_session
    per = int(s.cycle_s * s.imu_rate_hz)
    near = {"pressing": [], "retreating_defense": []}
    for k in range(s.action.shape[1]):
        pos = s.truth_pos[:, k * per + per // 2].astype(float)  # mid-cycle
        for i in range(pos.shape[0]):
            tactic = TACTICS[s.tactic[i, k]]
            if tactic in near:
                opp = s.team != s.team[i]
                near[tactic].append(np.hypot(*(pos[opp] - pos[i]).T).min())
    assert len(near["pressing"]) == s.action.shape[1]  # exactly one presser per cycle in 5v5
    assert np.mean(near["pressing"]) < np.mean(near["retreating_defense"])


def test_tactics_follow_possession(clean_session: SimulatedSession) -> None:
    s = clean_session
    on_ball = {"ball_possession", "passing", "shooting", "breakthrough"}
    defending = {"pressing", "assisting_defense", "retreating_defense"}
    for k in range(s.tactic.shape[1]):
        names = [TACTICS[t] for t in s.tactic[:, k]]
        carriers = [i for i, n in enumerate(names) if n in on_ball]
        assert len(carriers) == 1  # one ball carrier per cycle
        attacking = s.team[carriers[0]]
        for i, n in enumerate(names):
            if n in defending:
                assert s.team[i] != attacking
        assert sum(n == "pressing" for n in names) == 1


def test_actions_fit_their_tactic(clean_session: SimulatedSession) -> None:
    from fusion_edge.scenarios.team import TACTIC_ACTIONS

    for t, a in zip(clean_session.tactic.ravel(), clean_session.action.ravel(), strict=True):
        assert ACTIONS[a] in TACTIC_ACTIONS[TACTICS[t]]


# ------------------------------------------------------------------ faults


def test_lost_samples_are_nan_bursts(session: SimulatedSession) -> None:
    bad = np.isnan(session.imu).any(axis=2)
    assert bad.any()
    # Whole rows go missing (a lost packet loses every channel) ...
    np.testing.assert_array_equal(bad, np.isnan(session.imu).all(axis=2))
    # ... in bursts of consecutive samples.
    runs = []
    for row in bad:
        d = np.diff(np.concatenate(([0], row.astype(np.int8), [0])))
        runs += list(np.flatnonzero(d == -1) - np.flatnonzero(d == 1))
    assert min(runs) >= 1 and np.median(runs) >= 3
    assert bad.mean() < 0.05
    assert np.isnan(session.gnss).all(axis=2).any()  # GNSS dropouts too


def test_no_lost_samples_when_switched_off(clean_session: SimulatedSession) -> None:
    assert not np.isnan(clean_session.imu).any()
    assert not np.isnan(clean_session.gnss).any()


def test_array_sample_source_holds_lost_rows_and_loops() -> None:
    x = np.array([[1.0, 1.0], [np.nan, np.nan], [np.nan, np.nan], [4.0, 4.0]])
    src = ArraySampleSource(x, 100.0)
    np.testing.assert_array_equal(src.read(3)[:, 0], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(src.read(3)[:, 0], [4.0, 1.0, 1.0])
    lead = ArraySampleSource(np.array([[np.nan], [2.0]]), 100.0)
    np.testing.assert_array_equal(lead.read(2)[:, 0], [2.0, 2.0])
    with pytest.raises(ValueError, match="no valid samples"):
        ArraySampleSource(np.full((3, 2), np.nan), 100.0)


def test_imu_source_of_a_session(session: SimulatedSession) -> None:
    src = session.imu_source(0)
    block = src.read(500)
    assert block.shape == (500, 9) and not np.isnan(block).any()


# ------------------------------------------------------------------ player style and pressure


def test_player_style_scales_speed_and_swing() -> None:
    """A faster, stronger player runs faster and swings harder in the same action."""
    from fusion_edge.scenarios.motion import PlayerStyle

    n = 300
    slow = action_profile("shooting", n, RATE, 1.0, 0.75, np.random.default_rng(7), PlayerStyle(0.85, 0.7, 1.0))
    fast = action_profile("shooting", n, RATE, 1.0, 0.75, np.random.default_rng(7), PlayerStyle(1.15, 1.3, 1.0))
    assert fast.v_fwd.max() == pytest.approx(slow.v_fwd.max() * 1.15 / 0.85, rel=1e-6)
    assert np.abs(fast.gyro_extra).max() > 1.5 * np.abs(slow.gyro_extra).max()
    # Omitted style is a neutral player, the same as before styles existed.
    neutral = action_profile("running", n, RATE, 1.0, 0.75, np.random.default_rng(1))
    same = action_profile("running", n, RATE, 1.0, 0.75, np.random.default_rng(1), PlayerStyle())
    np.testing.assert_array_equal(neutral.v_fwd, same.v_fwd)



# ------------------------------------------------------------------ key events and window layouts


def test_key_events_lie_mid_cycle_and_jumps_leave_the_ground_there(clean_session: SimulatedSession) -> None:
    s = clean_session
    k = np.arange(s.action.shape[1])
    into = s.event_s - k * s.cycle_s
    assert s.event_s.shape == s.action.shape
    assert (into >= 0.38 * s.cycle_s - 1e-9).all() and (into <= 0.62 * s.cycle_s + 1e-9).all()
    # A jump's flight happens around its key event, not anywhere in the cycle.
    for i, kk in zip(*np.nonzero(s.action == ACTIONS.index("jumping")), strict=True):
        e = int(s.event_s[i, kk] * s.imu_rate_hz)
        mag = np.linalg.norm(s.imu[i, e - 80 : e + 80, :3], axis=1)
        assert _longest_run(mag < 2.0) >= 15


class _Recorder:
    """An rng stand-in that records each ``uniform(a, b)`` and returns ``a + f * (b - a)``."""

    def __init__(self, f: float) -> None:
        self.f, self.calls = f, []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return a + self.f * (b - a)


def test_any_phase_windows_end_after_their_key_event(clean_session: SimulatedSession) -> None:
    from fusion_edge.toolkit.scenario_dataset import WindowingConfig, session_windows

    s = clean_session
    cfg = WindowingConfig(windows="any_phase")
    rec = _Recorder(0.5)
    _, targets, pid, _ = session_windows(s, cfg, rec)
    players, cycles = s.action.shape
    assert len(rec.calls) == players * cycles
    for n, (a, b) in enumerate(rec.calls):
        i, k = divmod(n, cycles)
        assert a == s.event_s[i, k]
        assert b == (s.event_s[i, k + 1] if k + 1 < cycles else s.event_s[i, k] + s.cycle_s)
    # Each kept window is labelled with its own cycle: the one whose key event it ends after.
    # (A window needs 6 s of history and must end inside the session; the session is clean, so
    # nothing drops for gaps.)
    kept = []
    for n, (a, b) in enumerate(rec.calls):
        end = a + 0.5 * (b - a) + cfg.event_margin_s
        t0 = round((end - cfg.window_s) * s.gnss_rate_hz) / s.gnss_rate_hz
        if t0 >= 0 and t0 + cfg.window_s <= s.duration_s:
            kept.append(divmod(n, cycles))
    assert pid.size == len(kept) > 0
    assert targets["action"].tolist() == [s.action[i, k] for i, k in kept]
    assert targets["quality"].tolist() == [s.quality[i, k] for i, k in kept]


def test_unknown_window_layout_is_refused() -> None:
    from fusion_edge.toolkit.scenario_dataset import WindowingConfig

    with pytest.raises(ValueError, match="windows must be one of cycle_end, any_phase, got 'sliding'"):
        WindowingConfig(windows="sliding")
