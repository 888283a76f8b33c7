"""ACWR from daily-load histories, the ACWR -> score map and the risk bands."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from fusion_edge.errors import ConfigError
from fusion_edge.runtime.risk import (
    DailyLoadHistory,
    RiskBand,
    acwr_to_score,
    assess_risk,
    band_for_score,
    load_history,
)

TODAY = dt.date(2024, 3, 28)


def history(loads_by_days_back: dict[int, float], player: str = "p01") -> DailyLoadHistory:
    return DailyLoadHistory(
        player, {TODAY - dt.timedelta(days=back): load for back, load in loads_by_days_back.items()}
    )


def test_acwr_is_acute_over_chronic_including_today() -> None:
    # Days 7..27 back at 100 (21 days); days 1..6 back and today at 200 (the acute week).
    loads = {back: 100.0 for back in range(7, 28)}
    loads.update({back: 200.0 for back in range(1, 7)})
    r = assess_risk(history(loads), TODAY, today_load=200.0)
    assert r is not None
    assert r.acute == pytest.approx(200.0)
    assert r.chronic == pytest.approx((21 * 100 + 7 * 200) / 28)
    assert r.acwr == pytest.approx(200 / 125)
    assert r.chronic_days == 28
    assert r.band is RiskBand.HIGH  # 1.6 >= 1.5


def test_steady_load_sits_in_the_sweet_spot() -> None:
    r = assess_risk(history({b: 300.0 for b in range(1, 28)}), TODAY, today_load=300.0)
    assert r is not None and r.acwr == pytest.approx(1.0)
    assert r.band is RiskBand.LOW and r.score < 0.35


def test_not_enough_history_gives_none() -> None:
    # 19 earlier days + today = 20 of 28: below the 21-day minimum.
    assert assess_risk(history({b: 100.0 for b in range(1, 20)}), TODAY, 100.0) is None
    assert assess_risk(history({b: 100.0 for b in range(1, 21)}), TODAY, 100.0) is not None
    assert assess_risk(None, TODAY, 100.0) is None
    # Days older than 28 do not count towards the chronic window.
    assert assess_risk(history({b: 100.0 for b in range(28, 60)}), TODAY, 100.0) is None


def test_missing_days_are_left_out_of_both_means() -> None:
    loads = {b: 100.0 for b in range(1, 28) if b not in (3, 10, 11)}
    r = assess_risk(history(loads), TODAY, 100.0)
    assert r is not None and r.chronic_days == 25 and r.acwr == pytest.approx(1.0)


def test_todays_record_in_the_history_is_replaced_by_the_running_load() -> None:
    loads = {b: 100.0 for b in range(0, 28)}  # includes a stale record for today
    r = assess_risk(history(loads), TODAY, today_load=100.0)
    assert r is not None and r.acwr == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("acwr", "band"),
    [
        (0.0, RiskBand.MEDIUM),
        (0.5, RiskBand.MEDIUM),
        (0.8, RiskBand.MEDIUM),
        (0.81, RiskBand.LOW),
        (1.05, RiskBand.LOW),
        (1.29, RiskBand.LOW),
        (1.3, RiskBand.MEDIUM),
        (1.49, RiskBand.MEDIUM),
        (1.5, RiskBand.HIGH),
        (3.0, RiskBand.HIGH),
    ],
)
def test_acwr_bands_through_the_score(acwr: float, band: RiskBand) -> None:
    assert band_for_score(acwr_to_score(acwr)) is band


def test_score_map_knots_and_clamp() -> None:
    assert acwr_to_score(1.05) == pytest.approx(0.10)
    assert acwr_to_score(1.5) == pytest.approx(0.65)
    assert acwr_to_score(2.0) == 1.0 and acwr_to_score(5.0) == 1.0
    assert acwr_to_score(1.4) == pytest.approx(0.5)
    assert band_for_score(0.3499) is RiskBand.LOW
    assert band_for_score(0.35) is RiskBand.MEDIUM
    assert band_for_score(0.65) is RiskBand.HIGH
    with pytest.raises(ValueError):
        acwr_to_score(float("nan"))


def test_load_history_per_player_and_squad(tmp_path: Path) -> None:
    one = tmp_path / "p01.json"
    one.write_text(json.dumps({"player": "p01", "days": [{"date": "2024-03-27", "load": 410.5}]}))
    h = load_history(one)
    assert h["p01"].days == {dt.date(2024, 3, 27): 410.5}
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"players": [
        {"player": "p01", "days": [{"date": "2024-03-27", "load": 1}]},
        {"player": "p02", "days": []},
    ]}))
    assert sorted(load_history(squad)) == ["p01", "p02"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON"),
        ('{"days": []}', "no string 'player'"),
        ('{"player": "p01", "days": [{"date": "27/03/2024", "load": 1}]}', "not YYYY-MM-DD"),
        ('{"player": "p01", "days": [{"date": "2024-03-27", "load": -1}]}', "load -1"),
        ('{"player": "p01", "days": [{"date": "2024-03-27", "load": 1},'
         ' {"date": "2024-03-27", "load": 2}]}', "repeats the date"),
        ('{"players": [{"player": "a", "days": []}, {"player": "a", "days": []}]}',
         "repeats player 'a'"),
    ],
)
def test_bad_history_files_say_what_and_how(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "h.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_history(path)
    assert "YYYY-MM-DD" in str(info.value)  # every message shows the expected shape
    with pytest.raises(ConfigError, match="does not exist"):
        load_history(tmp_path / "missing.json")
