"""Acute:chronic workload ratio (ACWR) and the injury-risk band shown next to each player.

``ACWR = mean daily load over the last 7 days / mean daily load over the last 28 days``, both
windows ending today and including today's running load (the session in progress). Days with no
record are left out of both means (they are unknown, not zero): staff record rest days as load 0.
With fewer than ``min_chronic_days`` (21) recorded days in the 28-day window there is no ratio
and no band (None), because a chronic mean over a few days says nothing.

The ratio becomes a 0-1 risk score through a piecewise-linear map whose knots put the common
'sweet spot' into the paper's bands (< 0.35 low, 0.35-0.65 medium, >= 0.65 high):

====== ===== ==============================================
ACWR   score why
====== ===== ==============================================
0.0    0.60  no recent load at all: under-loaded (medium)
0.8    0.35  lower edge of the sweet spot
1.05   0.10  centre of the sweet spot
1.3    0.35  upper edge of the sweet spot
1.5    0.65  spike: high from here
2.0    1.00  and above: score 1
====== ===== ==============================================

So the band is low for 0.8 < ACWR < 1.3, medium for ACWR <= 0.8 or 1.3 <= ACWR < 1.5, and high for
ACWR >= 1.5. Load histories are JSON, per player or for the whole squad (docs/feedback.md).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from fusion_edge.errors import ConfigError

__all__ = [
    "RiskBand",
    "DailyLoadHistory",
    "RiskAssessment",
    "ACWR_SCORE_KNOTS",
    "load_history",
    "acwr_to_score",
    "band_for_score",
    "assess_risk",
]

# (ACWR, score) knots of the piecewise-linear map; see the module docstring.
ACWR_SCORE_KNOTS: tuple[tuple[float, float], ...] = (
    (0.0, 0.60),
    (0.8, 0.35),
    (1.05, 0.10),
    (1.3, 0.35),
    (1.5, 0.65),
    (2.0, 1.00),
)
LOW_BELOW = 0.35
HIGH_FROM = 0.65


class RiskBand(str, Enum):
    """Injury-risk band of a 0-1 risk score."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True)
class DailyLoadHistory:
    """One player's daily loads before today.

    Attributes:
        player: Player id as in the kit file.
        days: ``{date: load}``; one entry per recorded day.
    """

    player: str
    days: Mapping[dt.date, float]


@dataclass(frozen=True)
class RiskAssessment:
    """ACWR and the risk derived from it for one player today.

    Attributes:
        acwr: Acute:chronic workload ratio.
        score: 0-1 risk score from :func:`acwr_to_score`.
        band: Band of the score.
        acute: Mean daily load over the last 7 days (today included).
        chronic: Mean daily load over the last 28 days (today included).
        chronic_days: Recorded days in the 28-day window (today included).
    """

    acwr: float
    score: float
    band: RiskBand
    acute: float
    chronic: float
    chronic_days: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (band as its string value)."""
        return {
            "acwr": self.acwr,
            "score": self.score,
            "band": self.band.value,
            "acute": self.acute,
            "chronic": self.chronic,
            "chronic_days": self.chronic_days,
        }


def acwr_to_score(acwr: float) -> float:
    """Map an ACWR onto the 0-1 risk score (piecewise linear over :data:`ACWR_SCORE_KNOTS`)."""
    if not math.isfinite(acwr) or acwr < 0:
        raise ValueError(f"ACWR must be a finite number >= 0, got {acwr!r}")
    xs, ys = zip(*ACWR_SCORE_KNOTS, strict=True)
    return float(np.interp(acwr, xs, ys))


def band_for_score(score: float) -> RiskBand:
    """The paper's bands: < 0.35 low, 0.35-0.65 medium, >= 0.65 high."""
    if score < LOW_BELOW:
        return RiskBand.LOW
    if score < HIGH_FROM:
        return RiskBand.MEDIUM
    return RiskBand.HIGH


def assess_risk(
    history: DailyLoadHistory | None,
    today: dt.date,
    today_load: float,
    *,
    min_chronic_days: int = 21,
) -> RiskAssessment | None:
    """ACWR, score and band for today, or None without enough history.

    Args:
        history: The player's loads on previous days (a record for ``today`` is ignored: the
            running load replaces it). None when the player has no history.
        today: The session's date.
        today_load: Load so far today, in the history's unit (e.g. PlayerLoad).
        min_chronic_days: Recorded days needed in the 28-day window, today included.

    Returns:
        The assessment, or None when fewer than ``min_chronic_days`` of the 28 days are recorded
        or the chronic mean is zero (no ratio exists).
    """
    if not math.isfinite(today_load) or today_load < 0:
        raise ValueError(f"today's load must be a finite number >= 0, got {today_load!r}")
    days = dict(history.days) if history is not None else {}
    days[today] = float(today_load)
    acute: list[float] = []
    chronic: list[float] = []
    for back in range(28):
        load = days.get(today - dt.timedelta(days=back))
        if load is None:
            continue
        chronic.append(load)
        if back < 7:
            acute.append(load)
    if len(chronic) < min_chronic_days:
        return None
    chronic_mean = sum(chronic) / len(chronic)
    if chronic_mean <= 0:
        return None
    acute_mean = sum(acute) / len(acute)
    ratio = acute_mean / chronic_mean
    score = acwr_to_score(ratio)
    return RiskAssessment(
        acwr=ratio,
        score=score,
        band=band_for_score(score),
        acute=acute_mean,
        chronic=chronic_mean,
        chronic_days=len(chronic),
    )


def _history_error(path: Path, what: str) -> ConfigError:
    return ConfigError(
        f"load history {path}: {what}; write it as "
        '{"player": "p01", "days": [{"date": "YYYY-MM-DD", "load": 412.0}, ...]} '
        'or {"players": [<that object>, ...]} for the squad'
    )


def _parse_player(entry: Any, path: Path, where: str) -> DailyLoadHistory:
    if not isinstance(entry, dict) or not isinstance(entry.get("player"), str):
        raise _history_error(path, f"{where} has no string 'player'")
    if not isinstance(entry.get("days"), list):
        raise _history_error(path, f"{where} ('{entry['player']}') has no list 'days'")
    days: dict[dt.date, float] = {}
    for i, day in enumerate(entry["days"]):
        at = f"{where}.days[{i}]"
        if not isinstance(day, dict) or "date" not in day or "load" not in day:
            raise _history_error(path, f"{at} needs 'date' and 'load'")
        try:
            date = dt.date.fromisoformat(str(day["date"]))
        except ValueError:
            raise _history_error(path, f"{at} date {day['date']!r} is not YYYY-MM-DD") from None
        load = day["load"]
        if isinstance(load, bool) or not isinstance(load, (int, float)) or not (
            math.isfinite(load) and load >= 0
        ):
            raise _history_error(path, f"{at} load {load!r} is not a number >= 0")
        if date in days:
            raise _history_error(path, f"{at} repeats the date {date}: give each day once")
        days[date] = float(load)
    return DailyLoadHistory(player=entry["player"], days=days)


def load_history(path: str | os.PathLike[str]) -> dict[str, DailyLoadHistory]:
    """Read a per-player or squad load-history JSON file.

    Args:
        path: A file holding ``{"player", "days"}`` or ``{"players": [...]}``.

    Returns:
        Histories by player id.

    Raises:
        ConfigError: The file is missing, not JSON, or not in one of the two shapes.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"load history {p} does not exist: point the kit at the file exported from your "
            "load-monitoring tool, or leave it out to show no risk band"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _history_error(p, f"is not valid JSON ({exc})") from None
    if isinstance(data, dict) and "players" in data:
        if not isinstance(data["players"], list):
            raise _history_error(p, "'players' is not a list")
        out: dict[str, DailyLoadHistory] = {}
        for i, entry in enumerate(data["players"]):
            hist = _parse_player(entry, p, f"players[{i}]")
            if hist.player in out:
                raise _history_error(p, f"players[{i}] repeats player '{hist.player}'")
            out[hist.player] = hist
        return out
    hist = _parse_player(data, p, "the top-level object")
    return {hist.player: hist}
