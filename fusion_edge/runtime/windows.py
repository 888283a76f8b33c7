"""Per-player window assembly on the box: ring buffers at model rate, one decision per hop.

Each player has a :class:`PlayerWindowAssembler` that keeps the last ``window + history``
seconds of model-rate IMU samples (from :class:`~fusion_edge.runtime.streaming.ImuStreamPipeline`)
and of cleaned GNSS track samples (from :class:`~fusion_edge.runtime.streaming.GnssStreamPipeline`),
each with its integer host-ns timestamp. At every hop the :class:`SquadAssembler` cuts the
window ``[end - window_s, end)`` for every player, computes the team-context position features
over the whole squad's GNSS (a player's features depend on teammates and opponents), decides
for each player whether the window can be scored, and returns the ready ones batched.

The rules (documented in docs/runtime-windows.md), checked in this order:

* ``WARMING_UP`` - the player's IMU stream began after the window's start;
* ``STALE_POD`` - no IMU sample in the last ``stale_s`` before the window end;
* ``INSUFFICIENT_IMU`` - more than ``max_lost_s`` of the window's IMU is lost (missing or NaN);
* ``LONG_GAP`` - one IMU gap inside the window is longer than ``max_gap_s``;
* ``NO_GNSS`` - more than ``max_lost_s`` of GNSS lost, and the last known position may not be
  held (``hold_last_position``) or is older than ``hold_max_s``; with holding allowed the window
  is scored with status ``GNSS_HELD``;
* otherwise ``READY`` (nothing lost) or ``FILLED`` (lost samples, within the limits, filled by
  linear interpolation inside the window; edges held).

Samples are placed on the window's grid ``start + k / rate`` by nearest slot; a slot no sample
falls in is lost. Hop ends should sit on the GNSS epochs (whole UTC seconds mapped to host
time) so GNSS fixes fall in the middle of their slots.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fusion_edge.errors import ConfigError
from fusion_edge.runtime.dsp import interpolate_gaps
from fusion_edge.runtime.team_context import POSITION_CHANNELS, team_features

__all__ = [
    "WindowStatus",
    "WindowConfig",
    "PlayerWindowAssembler",
    "SquadWindows",
    "SquadAssembler",
]

_NS = 1_000_000_000


class WindowStatus(str, enum.Enum):
    """What happened to one player's window at one hop."""

    READY = "ready"  # complete: scored
    FILLED = "filled"  # scored; lost samples within the limits were interpolated
    GNSS_HELD = "gnss_held"  # scored with the last known position held (config allows it)
    WARMING_UP = "warming_up"  # the pod has streamed for less than a window
    STALE_POD = "stale_pod"  # no IMU data for more than stale_s at the window end
    INSUFFICIENT_IMU = "insufficient_imu"  # more than max_lost_s of IMU lost in the window
    LONG_GAP = "long_gap"  # one IMU gap longer than max_gap_s inside the window
    NO_GNSS = "no_gnss"  # more than max_lost_s of GNSS lost (and no position may be held)

    @property
    def scored(self) -> bool:
        """Whether a window with this status goes to the model."""
        return self in (WindowStatus.READY, WindowStatus.FILLED, WindowStatus.GNSS_HELD)


@dataclass(frozen=True)
class WindowConfig:
    """Windowing on the box (window and hop will come from the bundle manifest).

    Attributes:
        window_s: Window length, s.
        hop_s: Time between windows, s.
        imu_rate_hz: Model rate of the IMU stream.
        gnss_rate_hz: Rate of the position stream.
        max_lost_s: Most lost data (per modality) a scored window may have, s.
        max_gap_s: Longest single IMU gap a scored window may have, s.
        stale_s: A pod with no IMU sample for longer than this before the window end is stale.
        hold_last_position: Score a player without GNSS by holding the last known position
            (velocity 0) instead of reporting ``NO_GNSS``.
        hold_max_s: How old that last position may be, s.
        history_s: Extra time kept in the ring buffers beyond one window (late ticks).
    """

    window_s: float = 6.0
    hop_s: float = 1.0
    imu_rate_hz: float = 40.0
    gnss_rate_hz: float = 10.0
    max_lost_s: float = 3.0
    max_gap_s: float = 2.0
    stale_s: float = 2.0
    hold_last_position: bool = False
    hold_max_s: float = 30.0
    history_s: float = 4.0

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.hop_s <= 0 or self.imu_rate_hz <= 0 or self.gnss_rate_hz <= 0:
            raise ConfigError(
                f"window_s, hop_s and the rates must be > 0 (got window {self.window_s} s, hop "
                f"{self.hop_s} s, {self.imu_rate_hz} Hz, {self.gnss_rate_hz} Hz); fix the config"
            )
        if self.max_lost_s < 0 or self.max_gap_s < 0 or self.stale_s <= 0 or self.history_s < 0:
            raise ConfigError("max_lost_s, max_gap_s and history_s must be >= 0 and stale_s > 0")

    @property
    def imu_samples(self) -> int:
        """IMU samples per window."""
        return int(round(self.window_s * self.imu_rate_hz))

    @property
    def gnss_samples(self) -> int:
        """Position samples per window."""
        return int(round(self.window_s * self.gnss_rate_hz))

    @property
    def window_ns(self) -> int:
        """Window length, ns."""
        return int(round(self.window_s * _NS))

    @property
    def hop_ns(self) -> int:
        """Hop, ns."""
        return int(round(self.hop_s * _NS))


class _TimedRing:
    """Fixed-capacity ring of ``[channels]`` rows with int64 timestamps (oldest overwritten)."""

    def __init__(self, capacity: int, channels: int) -> None:
        self.capacity = int(capacity)
        self.values = np.full((self.capacity, channels), np.nan)
        self.times = np.zeros(self.capacity, dtype=np.int64)
        self.count = 0  # rows ever pushed
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.last_good: tuple[int, np.ndarray] | None = None
        # The last good row before each gap, so a position can be held after it left the ring.
        self.before_gaps: deque[tuple[int, np.ndarray]] = deque(maxlen=32)
        self._prev_good = False

    def __len__(self) -> int:
        return min(self.count, self.capacity)

    def push(self, values: np.ndarray, times: np.ndarray) -> None:
        n = values.shape[0]
        if n == 0:
            return
        if self.first_ns is None:
            self.first_ns = int(times[0])
        self.last_ns = int(times[-1])
        ok = ~np.isnan(values).any(axis=1)
        prev_ok = np.concatenate(([self._prev_good], ok[:-1]))
        for i in np.flatnonzero(prev_ok & ~ok):
            if i > 0:
                self.before_gaps.append((int(times[i - 1]), values[i - 1].copy()))
            elif self.last_good is not None:
                self.before_gaps.append(self.last_good)
        self._prev_good = bool(ok[-1])
        good = np.flatnonzero(ok)
        if good.size:
            self.last_good = (int(times[good[-1]]), values[good[-1]].copy())
        if n >= self.capacity:
            values, times = values[-self.capacity :], times[-self.capacity :]
            self.count += n - self.capacity
            n = self.capacity
        idx = (self.count + np.arange(n)) % self.capacity
        self.values[idx] = values
        self.times[idx] = times
        self.count += n

    def last_good_before(self, end_ns: int) -> tuple[int, np.ndarray] | None:
        """The newest non-NaN row older than ``end_ns`` (also one already overwritten)."""
        k = len(self)
        ok = (self.times[:k] < end_ns) & ~np.isnan(self.values[:k]).any(axis=1)
        if ok.any():
            i = int(np.flatnonzero(ok)[np.argmax(self.times[:k][ok])])
            return int(self.times[i]), self.values[i].copy()
        for t, row in (self.last_good, *reversed(self.before_gaps)) if self.last_good else ():
            if t < end_ns:
                return t, row.copy()
        return None

    def slots(self, start_ns: int, n: int, rate_hz: float) -> np.ndarray:
        """``[n, channels]``: the sample nearest each slot ``start + k / rate``; NaN if none."""
        out = np.full((n, self.values.shape[1]), np.nan)
        k = len(self)
        if k == 0:
            return out
        pos = (self.times[:k] - start_ns) * (rate_hz / _NS)
        slot = np.floor(pos + 0.5).astype(np.int64)
        inside = (slot >= 0) & (slot < n)
        if inside.any():
            order = np.argsort(self.times[:k][inside], kind="stable")  # later samples win
            out[slot[inside][order]] = self.values[:k][inside][order]
        return out


def _longest_run(mask: np.ndarray) -> int:
    if not mask.any():
        return 0
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return int((np.flatnonzero(d == -1) - np.flatnonzero(d == 1)).max())


def _fill(x: np.ndarray) -> np.ndarray:
    filled, _ = interpolate_gaps(x)  # no limit: the window rules already bounded the loss
    return filled


@dataclass(frozen=True)
class PlayerWindow:
    """One player's IMU window and GNSS track slots at one hop, before team features."""

    imu: np.ndarray  # [S, C] float64, NaN where lost
    track: np.ndarray  # [Sg, 4] float64, NaN where lost
    status: WindowStatus
    imu_lost_s: float
    gnss_lost_s: float


class PlayerWindowAssembler:
    """Ring buffers of one player's model-rate streams and the window rules.

    Args:
        player_id: Name used in statuses and logs.
        config: Windowing parameters.
        imu_channels: Columns of the IMU stream.
        team: Team index (for team features).
        attack_dir: +1 when the player's team attacks towards +x, else -1.
    """

    def __init__(
        self,
        player_id: str,
        config: WindowConfig | None = None,
        *,
        imu_channels: int = 9,
        team: int = 0,
        attack_dir: float = 1.0,
    ) -> None:
        self.player_id = player_id
        self.config = config or WindowConfig()
        self.team = int(team)
        self.attack_dir = float(attack_dir)
        keep = self.config.window_s + self.config.history_s
        self._imu = _TimedRing(int(np.ceil(keep * self.config.imu_rate_hz)) + 2, imu_channels)
        self._gnss = _TimedRing(int(np.ceil(keep * self.config.gnss_rate_hz)) + 2, 4)

    @property
    def buffered(self) -> tuple[int, int]:
        """Rows held (IMU, GNSS): bounded by the ring capacities."""
        return len(self._imu), len(self._gnss)

    @property
    def last_imu_ns(self) -> int | None:
        """Host time of the newest IMU sample, or None before the first."""
        return self._imu.last_ns

    def push_imu(self, values: np.ndarray, times_ns: np.ndarray) -> None:
        """Add model-rate IMU samples ``[n, C]`` (NaN = lost) with their host ns times."""
        self._imu.push(np.asarray(values, dtype=np.float64), np.asarray(times_ns, dtype=np.int64))

    def push_gnss(self, track: np.ndarray, times_ns: np.ndarray) -> None:
        """Add cleaned track samples ``[n, 4]`` (x, y, vx, vy; NaN = lost) with host ns times."""
        self._gnss.push(np.asarray(track, dtype=np.float64), np.asarray(times_ns, dtype=np.int64))

    def window(self, end_ns: int) -> PlayerWindow:
        """Cut the window ``[end - window_s, end)`` and decide its status (before team context)."""
        cfg = self.config
        start = int(end_ns) - cfg.window_ns
        imu = self._imu.slots(start, cfg.imu_samples, cfg.imu_rate_hz)
        track = self._gnss.slots(start, cfg.gnss_samples, cfg.gnss_rate_hz)
        imu_lost = np.isnan(imu).any(axis=1)
        gnss_lost = np.isnan(track).any(axis=1)
        imu_lost_s = float(imu_lost.sum()) / cfg.imu_rate_hz
        gnss_lost_s = float(gnss_lost.sum()) / cfg.gnss_rate_hz
        half = _NS / (2 * cfg.imu_rate_hz)
        if self._imu.first_ns is None or self._imu.first_ns > start + half:
            status = WindowStatus.WARMING_UP
        elif self._imu.last_ns is None or end_ns - self._imu.last_ns > cfg.stale_s * _NS:
            status = WindowStatus.STALE_POD
        elif imu_lost_s > cfg.max_lost_s:
            status = WindowStatus.INSUFFICIENT_IMU
        elif _longest_run(imu_lost) / cfg.imu_rate_hz > cfg.max_gap_s:
            status = WindowStatus.LONG_GAP
        elif gnss_lost_s > cfg.max_lost_s:
            last = self._gnss.last_good_before(int(end_ns))
            if (
                cfg.hold_last_position
                and last is not None
                and end_ns - last[0] <= cfg.hold_max_s * _NS
            ):
                status = WindowStatus.GNSS_HELD
                held = np.array([last[1][0], last[1][1], 0.0, 0.0])
                track = track.copy()
                track[gnss_lost] = held
            else:
                status = WindowStatus.NO_GNSS
        elif imu_lost.any() or gnss_lost.any():
            status = WindowStatus.FILLED
        else:
            status = WindowStatus.READY
        return PlayerWindow(imu, track, status, imu_lost_s, gnss_lost_s)


@dataclass(frozen=True)
class SquadWindows:
    """What one hop produced for the whole squad.

    Attributes:
        end_ns: Window end (host ns); windows cover ``[end_ns - window, end_ns)``.
        player_ids: Players whose windows are scored, in the order of the batch.
        inputs: ``{"imu": [P, C, S], "position": [P, 8, Sg]}`` float32, ready for a backend.
        statuses: Every player's status, scored or not.
        lost_s: Every player's lost seconds ``(imu, gnss)`` in this window.
    """

    end_ns: int
    player_ids: tuple[str, ...]
    inputs: dict[str, np.ndarray]
    statuses: dict[str, WindowStatus]
    lost_s: dict[str, tuple[float, float]] = field(default_factory=dict)

    def skipped(self) -> dict[str, WindowStatus]:
        """Players not scored at this hop and why."""
        return {p: s for p, s in self.statuses.items() if not s.scored}


class SquadAssembler:
    """All players' assemblers; at each hop, the batch of ready windows with team context.

    Args:
        config: Windowing parameters.
        imu_channels: Columns of every IMU stream.
        origin_ns: Host time the hop grid starts from (ticks fall on ``origin + k * hop``);
            set it to a GNSS epoch. Defaults to the first :meth:`due` call's time.
        delay_s: How far behind real time windows end, so short gaps still being bridged by
            the stream pipelines and transport latency do not cost windows.
    """

    def __init__(
        self,
        config: WindowConfig | None = None,
        *,
        imu_channels: int = 9,
        origin_ns: int | None = None,
        delay_s: float = 0.75,
    ) -> None:
        self.config = config or WindowConfig()
        self.imu_channels = int(imu_channels)
        self.origin_ns = origin_ns
        self.delay_ns = int(round(delay_s * _NS))
        self._players: dict[str, PlayerWindowAssembler] = {}
        self._last_tick: int | None = None

    def add_player(
        self, player_id: str, *, team: int = 0, attack_dir: float = 1.0
    ) -> PlayerWindowAssembler:
        """Register a player (idempotent for the same id)."""
        if player_id not in self._players:
            self._players[player_id] = PlayerWindowAssembler(
                player_id,
                self.config,
                imu_channels=self.imu_channels,
                team=team,
                attack_dir=attack_dir,
            )
        return self._players[player_id]

    def player(self, player_id: str) -> PlayerWindowAssembler:
        """The assembler of a registered player.

        Raises:
            ConfigError: The player was never added.
        """
        try:
            return self._players[player_id]
        except KeyError:
            raise ConfigError(
                f"player {player_id!r} is not in the squad "
                f"({', '.join(self._players) or 'empty'}); "
                "add it with add_player() before feeding its data"
            ) from None

    @property
    def player_ids(self) -> tuple[str, ...]:
        """Players in registration order."""
        return tuple(self._players)

    def push_imu(self, player_id: str, values: np.ndarray, times_ns: np.ndarray) -> None:
        """Add model-rate IMU samples of one player."""
        self.player(player_id).push_imu(values, times_ns)

    def push_gnss(self, player_id: str, track: np.ndarray, times_ns: np.ndarray) -> None:
        """Add cleaned GNSS track samples of one player."""
        self.player(player_id).push_gnss(track, times_ns)

    def due(self, now_ns: int) -> list[int]:
        """Hop ends not yet assembled whose window closed ``delay_s`` before ``now_ns``."""
        if self.origin_ns is None:
            self.origin_ns = int(now_ns)
        hop = self.config.hop_ns
        newest = (int(now_ns) - self.delay_ns - self.origin_ns) // hop
        first = 0 if self._last_tick is None else (self._last_tick - self.origin_ns) // hop + 1
        return [self.origin_ns + k * hop for k in range(max(first, 0), newest + 1)]

    def tick(self, end_ns: int, players: Iterable[str] | None = None) -> SquadWindows:
        """Assemble the windows ending at ``end_ns`` (host ns)."""
        self._last_tick = (
            int(end_ns) if self._last_tick is None else max(self._last_tick, int(end_ns))
        )
        cfg = self.config
        ids: Sequence[str] = tuple(self._players) if players is None else tuple(players)
        windows = {p: self.player(p).window(end_ns) for p in ids}
        statuses = {p: w.status for p, w in windows.items()}
        lost = {p: (w.imu_lost_s, w.gnss_lost_s) for p, w in windows.items()}
        scored = [p for p in ids if statuses[p].scored]
        imu_out = np.zeros((len(scored), self.imu_channels, cfg.imu_samples), dtype=np.float32)
        pos_out = np.zeros(
            (len(scored), len(POSITION_CHANNELS), cfg.gnss_samples), dtype=np.float32
        )
        if scored:
            # Team context uses every player's track (as in training), scored or not.
            tracks = np.stack([windows[p].track for p in ids])
            team = np.array([self._players[p].team for p in ids])
            attack = np.array([self._players[p].attack_dir for p in ids])
            feats = team_features(tracks, team, attack)
            for b, p in enumerate(scored):
                w = windows[p]
                imu = w.imu if not np.isnan(w.imu).any() else _fill(w.imu)
                pos = feats[ids.index(p)]
                pos = pos if not np.isnan(pos).any() else _fill(pos)
                imu_out[b] = imu.T
                pos_out[b] = pos.T
        return SquadWindows(
            end_ns=int(end_ns),
            player_ids=tuple(scored),
            inputs={"imu": imu_out, "position": pos_out},
            statuses=statuses,
            lost_s=lost,
        )
