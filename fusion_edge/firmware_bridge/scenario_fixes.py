"""Fix sources for the simulated GNSS receiver made from a simulated session's pitch positions.

The scenario simulator (:mod:`fusion_edge.scenarios`) gives each player's GNSS measurements in
metres on the pitch: ``session.gnss[player, k] = (x, y, speed_mps, course_rad)`` at
``session.gnss_rate_hz``, NaN rows where the receiver had no fix, with the pitch centre at
``(0, 0)``, ``x`` along the length and the course measured counter-clockwise from ``+x``.
:class:`ScenarioFixSource` turns one player's rows into the
:class:`~fusion_edge.firmware_bridge.gnss_encode.FixSample` tuples a
:class:`~fusion_edge.firmware_bridge.sim_gnss.SimulatedReceiver` writes, placing the pitch on
the globe with a flat-earth (local tangent plane) approximation around ``origin``: at 105 m
from the origin the error of that approximation is below a millimetre, far under GNSS noise.

The session is duck-typed (anything with ``gnss`` and ``gnss_rate_hz``), so this module does not
import the scenario package: the simulated receiver still does not know where its fixes come
from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fusion_edge.firmware_bridge.gnss_encode import FixSample

__all__ = ["PitchOrigin", "ScenarioFixSource", "scenario_fix_sources"]

_EARTH_RADIUS_M = 6_371_000.0


@dataclass(frozen=True)
class PitchOrigin:
    """Where the pitch centre is and which way its ``x`` axis points.

    Attributes:
        lat_deg, lon_deg: WGS84 position of the pitch centre (default: a London pitch).
        alt_m: altitude of the pitch above mean sea level.
        x_bearing_deg: bearing of the pitch's ``+x`` axis, degrees clockwise from true north
            (90: ``x`` points east and ``y`` north).
    """

    lat_deg: float = 51.556
    lon_deg: float = -0.2796
    alt_m: float = 45.0
    x_bearing_deg: float = 90.0

    def __post_init__(self) -> None:
        if not -85.0 <= self.lat_deg <= 85.0 or not -180.0 <= self.lon_deg <= 180.0:
            raise ValueError(
                f"pitch origin ({self.lat_deg}, {self.lon_deg}) is not a usable WGS84 position; "
                "give latitude in -85..85 and longitude in -180..180 degrees"
            )

    def to_lat_lon(self, x_m: float, y_m: float) -> tuple[float, float]:
        """Latitude and longitude (degrees) of the pitch point ``(x_m, y_m)``."""
        b = math.radians(self.x_bearing_deg)
        # +x is (sin b, cos b) in (east, north); +y is +x turned 90 degrees counter-clockwise.
        east = x_m * math.sin(b) - y_m * math.cos(b)
        north = x_m * math.cos(b) + y_m * math.sin(b)
        lat = self.lat_deg + math.degrees(north / _EARTH_RADIUS_M)
        lon = self.lon_deg + math.degrees(
            east / (_EARTH_RADIUS_M * math.cos(math.radians(self.lat_deg)))
        )
        return lat, lon

    def course_deg(self, course_rad: float) -> float:
        """Course over ground in degrees true for a pitch course (radians from ``+x``, CCW)."""
        return (self.x_bearing_deg - math.degrees(course_rad)) % 360.0


class ScenarioFixSource:
    """One player's simulated GNSS track as a fix source for :class:`SimulatedReceiver`.

    Args:
        session: a simulated session (``session.gnss`` ``[players, k, 4]`` and
            ``session.gnss_rate_hz``).
        player: index of the player.
        origin: where the pitch is on the globe.
        num_sats: satellites reported with each fix.
        hdop: HDOP reported with each fix.
        loop: start again from the first row after the last one (else: silent, like a receiver
            switched off).

    Epoch ``t_s`` reads row ``round(t_s * gnss_rate_hz)``. A NaN row (the simulated receiver lost
    its fix) is written as a no-fix epoch (quality 0), the way a receiver keeps talking without
    a fix.

    Raises:
        ValueError: the session has no GNSS rows for ``player``.
    """

    def __init__(
        self,
        session: Any,
        player: int,
        origin: PitchOrigin | None = None,
        *,
        num_sats: int = 14,
        hdop: float = 0.7,
        loop: bool = True,
    ) -> None:
        gnss = np.asarray(session.gnss)
        if gnss.ndim != 3 or gnss.shape[2] < 4 or not 0 <= player < gnss.shape[0]:
            raise ValueError(
                f"session.gnss has shape {gnss.shape} and player {player} was asked for: give a "
                "session from fusion_edge.scenarios.simulate_session and a player index in range"
            )
        if gnss.shape[1] == 0:
            raise ValueError("the session has no GNSS fixes: simulate a longer session")
        self.rows = np.asarray(gnss[player], dtype=np.float64)
        self.rate_hz = float(session.gnss_rate_hz)
        self.origin = origin or PitchOrigin()
        self.num_sats = num_sats
        self.hdop = hdop
        self.loop = loop

    def next_fix(self, t_s: float) -> FixSample | None:
        """The fix of epoch ``t_s`` seconds after start."""
        k = round(t_s * self.rate_hz)
        if k >= len(self.rows):
            if not self.loop:
                return None
            k %= len(self.rows)
        x, y, speed, course = self.rows[k, :4]
        o = self.origin
        if not np.isfinite([x, y, speed, course]).all():
            return FixSample(o.lat_deg, o.lon_deg, o.alt_m, 0.0, 0.0, 0, 3, 99.99)
        lat, lon = o.to_lat_lon(float(x), float(y))
        return FixSample(
            lat,
            lon,
            o.alt_m,
            float(speed),
            o.course_deg(float(course)),
            1,
            self.num_sats,
            self.hdop,
        )


def scenario_fix_sources(
    session: Any,
    players: int | None = None,
    origin: PitchOrigin | None = None,
    *,
    name_format: str = "P{index:02d}",
) -> Mapping[str, ScenarioFixSource]:
    """``{name: source}`` for the first ``players`` players (all by default), for a TAG-blocked
    :class:`SimulatedReceiver` carrying several players on one line."""
    count = np.asarray(session.gnss).shape[0] if players is None else players
    return {
        name_format.format(index=i): ScenarioFixSource(session, i, origin) for i in range(count)
    }
