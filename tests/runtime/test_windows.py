"""Window assembly: streamed windows equal the training windows; each status rule fires."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_edge.errors import ConfigError
from fusion_edge.runtime.streaming import GnssStreamPipeline, ImuStreamConfig, ImuStreamPipeline
from fusion_edge.runtime.team_context import clean_gnss_track, team_features
from fusion_edge.runtime.windows import SquadAssembler, WindowConfig, WindowStatus

T0 = 7 * 10**12  # host ns of the session's first sample
S = 10**9


@pytest.fixture(scope="module")
def session():
    from fusion_edge.scenarios import get_scenario, simulate_session

    sess = simulate_session(get_scenario("rondo"), seed=1, duration_s=30)
    imu = sess.imu.copy()
    gnss = sess.gnss.copy()
    imu[0, 1200:1600] = np.nan  # 4 s lost: INSUFFICIENT_IMU
    imu[3, 800:950] = np.nan  # 1.5 s lost: FILLED
    imu[4, 1500:1750] = np.nan  # 2.5 s in one gap: LONG_GAP
    imu[2, 2400:] = np.nan  # the pod goes silent at 24 s: STALE_POD
    gnss[1, 100:180] = np.nan  # 8 s without fixes: NO_GNSS
    return sess, imu, gnss


def _batch(sess, imu, gnss):
    from fusion_edge.toolkit.scenario_dataset import WindowingConfig, _preprocess_imu

    wcfg = WindowingConfig()
    pre = np.stack([_preprocess_imu(imu[i], 100.0, wcfg) for i in range(imu.shape[0])])
    tracks = np.stack([clean_gnss_track(gnss[i], 10.0) for i in range(gnss.shape[0])])
    return pre, team_features(tracks, sess.team, sess.attack_dir)


def _stream(sess, imu, gnss, cfg: WindowConfig, delay_s: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    squad = SquadAssembler(cfg, origin_ns=T0, delay_s=delay_s)
    ids = sess.player_ids
    imu_p = {p: ImuStreamPipeline(ImuStreamConfig()) for p in ids}
    gnss_p = {p: GnssStreamPipeline() for p in ids}
    for i, p in enumerate(ids):
        squad.add_player(p, team=int(sess.team[i]), attack_dir=float(sess.attack_dir[i]))
    results = {}
    n = imu.shape[1]
    step = 50  # 0.5 s of IMU per round
    for a in range(0, n, step):
        for i, p in enumerate(ids):
            cuts = np.sort(rng.integers(a, a + step, 3))
            for s, e in zip(np.r_[a, cuts], np.r_[cuts, a + step], strict=True):
                if i == 2 and s >= 2400:
                    break  # the silent pod sends nothing at all (its GNSS goes on)
                t = T0 + np.arange(s, e, dtype=np.int64) * 10_000_000
                squad.push_imu(p, *imu_p[p].push(imu[i, s:e], t))
            g = np.arange(a // 10, (a + step) // 10)
            squad.push_gnss(p, *gnss_p[p].push(gnss[i, g], T0 + g * 100_000_000))
        now = T0 + (a + step) * 10_000_000
        for end in squad.due(now):
            results[end] = squad.tick(end)
        for p in ids:
            assert squad.player(p).buffered[0] <= (cfg.window_s + cfg.history_s) * 40 + 2
    return results


def test_streamed_windows_equal_training_windows_and_rules_fire(session) -> None:
    sess, imu, gnss = session
    cfg = WindowConfig(history_s=5.0)
    results = _stream(sess, imu, gnss, cfg, delay_s=3.5)
    pre, pos = _batch(sess, imu, gnss)
    compared = 0
    seen: dict[str, set] = {}
    for end, out in results.items():
        e_s = (end - T0) / S
        assert e_s == int(e_s)
        a, g = int(round((e_s - 6) * 40)), int(round((e_s - 6) * 10))
        for i, p in enumerate(sess.player_ids):
            st = out.statuses[p]
            seen.setdefault(p, set()).add(st)
            if e_s < 6:
                assert st is WindowStatus.WARMING_UP
                continue
            wi, wp = pre[i, a : a + 240], pos[i, g : g + 60]
            batch_ok = not (np.isnan(wi).any() or np.isnan(wp).any())
            assert (st is WindowStatus.READY) == batch_ok, (p, e_s, st)
            if st is WindowStatus.READY:
                b = out.player_ids.index(p)
                np.testing.assert_allclose(
                    out.inputs["imu"][b], wi.T.astype(np.float32), rtol=1e-6, atol=1e-6
                )
                np.testing.assert_allclose(
                    out.inputs["position"][b], wp.T.astype(np.float32), rtol=1e-6, atol=1e-5
                )
                compared += 1
        assert out.inputs["imu"].shape == (len(out.player_ids), 9, 240)
        assert out.inputs["position"].shape == (len(out.player_ids), 8, 60)
    assert compared > 150
    ids = sess.player_ids
    assert WindowStatus.INSUFFICIENT_IMU in seen[ids[0]]
    assert WindowStatus.NO_GNSS in seen[ids[1]]
    assert WindowStatus.STALE_POD in seen[ids[2]]
    assert WindowStatus.FILLED in seen[ids[3]]
    assert WindowStatus.LONG_GAP in seen[ids[4]]
    # The silent pod is stale once its last sample is more than 2 s before the window end.
    assert results[T0 + 26 * S].statuses[ids[2]] is WindowStatus.STALE_POD
    assert results[T0 + 25 * S].statuses[ids[2]] is not WindowStatus.STALE_POD


def test_hold_last_position_scores_without_gnss(session) -> None:
    sess, imu, gnss = session
    cfg = WindowConfig(hold_last_position=True, history_s=5.0)
    results = _stream(sess, imu, gnss, cfg, delay_s=3.5)
    p1 = sess.player_ids[1]
    out = results[T0 + 18 * S]  # window 12..18 s: fixes stop at 10 s
    assert out.statuses[p1] is WindowStatus.GNSS_HELD
    b = out.player_ids.index(p1)
    pos = out.inputs["position"][b]
    assert np.isfinite(pos).all()
    last = clean_gnss_track(gnss[1], 10.0)[99]
    np.testing.assert_allclose(pos[0], last[0] * sess.attack_dir[1], rtol=1e-5)  # x held
    np.testing.assert_allclose(pos[2], 0.0, atol=1e-6)  # standing still


def test_default_delay_still_scores_most_windows(session) -> None:
    sess, imu, gnss = session
    results = _stream(sess, imu, gnss, WindowConfig(), delay_s=0.75, seed=1)
    scored = sum(len(r.player_ids) for r in results.values() if r.end_ns >= T0 + 6 * S)
    total = sum(len(r.statuses) for r in results.values() if r.end_ns >= T0 + 6 * S)
    assert scored / total > 0.7


def test_due_ticks_follow_the_hop_grid() -> None:
    squad = SquadAssembler(WindowConfig(hop_s=1.0), origin_ns=0, delay_s=0.5)
    assert squad.due(400_000_000) == []  # -0.1 s: nothing closed yet
    assert squad.due(2_600_000_000) == [0, S, 2 * S]
    squad.tick(2 * S)
    assert squad.due(2_900_000_000) == []
    assert squad.due(5_000_000_000) == [3 * S, 4 * S]


def test_unknown_player_and_bad_config_are_refused() -> None:
    squad = SquadAssembler()
    with pytest.raises(ConfigError, match="add_player"):
        squad.push_imu("nobody", np.zeros((1, 9)), np.zeros(1, np.int64))
    with pytest.raises(ConfigError, match="must be > 0"):
        WindowConfig(hop_s=0)


def test_status_values_are_stable_strings() -> None:
    assert WindowStatus("no_gnss") is WindowStatus.NO_GNSS
    assert {s.value for s in WindowStatus if s.scored} == {"ready", "filled", "gnss_held"}
