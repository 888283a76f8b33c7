"""The sport-scenario catalogue: TOML tables of players, duration, action mix and intensity."""

from __future__ import annotations

import difflib
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fusion_edge.errors import ScenarioError
from fusion_edge.scenarios.vocabulary import ACTIONS
from fusion_edge.toml_lines import TomlLocator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Scenario", "load_catalogue", "get_scenario"]

log = logging.getLogger(__name__)

_KEYS = {
    "sport",
    "description",
    "teams",
    "players",
    "duration_s",
    "pitch_m",
    "intensity",
    "quality",
    "action_mix",
}


@dataclass(frozen=True)
class Scenario:
    """One sport scenario: who plays, for how long, where, how hard and doing what."""

    name: str
    sport: str
    description: str
    teams: int
    players: int
    duration_s: float
    pitch_m: tuple[float, float]
    intensity: float
    quality: tuple[float, float] = (0.0, 1.0)
    action_mix: Mapping[str, float] = field(default_factory=dict)

    @property
    def total_players(self) -> int:
        """Players on the pitch across all teams."""
        return self.teams * self.players

    def mix_weights(self) -> list[float]:
        """Weight of each action in ``ACTIONS`` order (1.0 where the scenario is silent)."""
        return [float(self.action_mix.get(a, 1.0)) for a in ACTIONS]

    def to_json(self) -> dict[str, Any]:
        """The scenario as a JSON-able dict (the TOML table plus its name)."""
        return {
            "name": self.name,
            "sport": self.sport,
            "description": self.description,
            "teams": self.teams,
            "players": self.players,
            "duration_s": self.duration_s,
            "pitch_m": list(self.pitch_m),
            "intensity": self.intensity,
            "quality": list(self.quality),
            "action_mix": dict(self.action_mix),
        }

    @classmethod
    def from_table(
        cls, name: str, table: Mapping[str, Any], origin: str, locator: TomlLocator | None = None
    ) -> Scenario:
        """Build and validate a scenario from one TOML table.

        ``locator`` (of the file's text) puts the line of the bad key into the message.

        Raises:
            ScenarioError: naming the file, the line, the scenario and the bad key or value.
        """

        def fail(message: str, *key: str) -> ScenarioError:
            line = locator.line_of((name, *key)) if locator is not None else None
            at = f"{origin}:{line}" if line is not None else origin
            return ScenarioError(f"scenario [{name}] in {at}: {message}")

        unknown = sorted(set(table) - _KEYS)
        if unknown:
            close = difflib.get_close_matches(unknown[0], _KEYS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise fail(f"unknown key(s) {unknown}; {hint}allowed keys are {sorted(_KEYS)}",
                       unknown[0])
        missing = {"teams", "players", "duration_s", "pitch_m", "intensity"} - set(table)
        if missing:
            raise fail(f"missing key(s) {sorted(missing)}")

        def num(key: str, lo: float, hi: float) -> float:
            v = table[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise fail(f"'{key}' must be a number in [{lo}, {hi}], got {v!r}", key)
            return float(v)

        def whole(key: str, lo: int, hi: int) -> int:
            v = num(key, lo, hi)
            if not v.is_integer():
                raise fail(f"'{key}' must be a whole number in [{lo}, {hi}], got {table[key]!r}", key)
            return int(v)

        teams = whole("teams", 1, 2)
        players = whole("players", 1, 30)
        duration = num("duration_s", 1, 24 * 3600)
        intensity = num("intensity", 0.0, 1.0)
        pitch = table["pitch_m"]
        if (
            not isinstance(pitch, list)
            or len(pitch) != 2
            or not all(isinstance(p, (int, float)) and 5 <= p <= 200 for p in pitch)
        ):
            raise fail("'pitch_m' must be [length, width] in metres (5..200)", "pitch_m")
        quality = table.get("quality", [0.0, 1.0])
        if (
            not isinstance(quality, list)
            or len(quality) != 2
            or not all(isinstance(q, (int, float)) and not isinstance(q, bool) for q in quality)
            or not 0.0 <= quality[0] <= quality[1] <= 1.0
        ):
            raise fail("'quality' must be [low, high] with 0 <= low <= high <= 1", "quality")
        mix = table.get("action_mix", {})
        if not isinstance(mix, Mapping):
            raise fail("'action_mix' must be a table of action = weight", "action_mix")
        for action, weight in mix.items():
            if action not in ACTIONS:
                close = difflib.get_close_matches(action, ACTIONS, n=1, cutoff=0.8)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise fail(f"unknown action '{action}' in action_mix; {hint}known actions: "
                           f"{', '.join(ACTIONS)}", "action_mix", action)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                raise fail(f"weight of '{action}' must be a number >= 0", "action_mix", action)
        if len(mix) == len(ACTIONS) and not any(mix.values()):
            raise fail("action_mix switches off every action, so no player could do anything: "
                       "give at least one action a weight above 0", "action_mix")
        unlisted = len(ACTIONS) - len(mix)
        if mix and unlisted and all(w < 1 for w in mix.values()) and abs(sum(mix.values()) - 1) < 0.02:
            # Shares that add up to 1 read as "40% sprinting"; as weights against the unlisted
            # actions' 1.0 they make the listed actions the rarest ones.
            log.warning(
                "scenario [%s] in %s: action_mix weights add up to 1, as if they were shares, but "
                "they are relative weights and the %d unlisted actions keep weight 1, so the listed "
                "ones become the rarest; to favour them give them weights above 1 (e.g. %s = %.1f), "
                "or list all %d actions", name, origin, unlisted, next(iter(mix)),
                10 * next(iter(mix.values())), len(ACTIONS))
        return cls(
            name=name,
            sport=str(table.get("sport", "football")),
            description=str(table.get("description", "")),
            teams=teams,
            players=players,
            duration_s=duration,
            pitch_m=(float(pitch[0]), float(pitch[1])),
            intensity=intensity,
            quality=(float(quality[0]), float(quality[1])),
            action_mix={k: float(v) for k, v in mix.items()},
        )


def _parse(text: str, origin: str) -> dict[str, Scenario]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{origin} is not valid TOML: {exc}") from None
    locator = TomlLocator(text)
    out = {}
    for name, table in doc.items():
        if not isinstance(table, Mapping):
            line = locator.line_of((name,))
            at = f"{origin}:{line}" if line is not None else origin
            raise ScenarioError(f"{at}: '{name}' must be a table like [{name}]")
        out[name] = Scenario.from_table(name, table, origin, locator)
    return out


def load_catalogue(user_file: str | Path | None = None) -> dict[str, Scenario]:
    """The shipped catalogue, extended (and overridden by name) with a user's TOML file."""
    text = resources.files("fusion_edge.scenarios").joinpath("catalogue.toml").read_text("utf-8")
    catalogue = _parse(text, "the built-in catalogue")
    if user_file is not None:
        path = Path(user_file)
        if path.is_dir():
            raise ScenarioError(
                f"scenario file {path} is a folder; give the TOML file itself "
                "(docs/scenarios.md shows one), or leave --scenario-file out for the built-in catalogue"
            )
        if not path.is_file():
            raise ScenarioError(
                f"scenario file {path} does not exist; check the path, or leave --scenario-file "
                "out for the built-in catalogue ('fusion-edge scenarios' lists it)"
            )
        try:
            text = path.read_text("utf-8-sig")
        except UnicodeDecodeError:
            raise ScenarioError(
                f"scenario file {path} is not text (not UTF-8); give a TOML file of scenario "
                "tables (docs/scenarios.md)"
            ) from None
        except OSError as exc:
            raise ScenarioError(f"scenario file {path} cannot be read ({exc.strerror or exc})") from None
        catalogue.update(_parse(text, str(path)))
    return catalogue


def get_scenario(name: str, user_file: str | Path | None = None) -> Scenario:
    """Look a scenario up by name, with a message listing the known ones on a typo."""
    catalogue = load_catalogue(user_file)
    if name not in catalogue:
        import difflib

        close = difflib.get_close_matches(name, catalogue, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ScenarioError(
            f"unknown scenario '{name}'.{hint} Known scenarios: {', '.join(sorted(catalogue))} "
            "(add your own with --scenario-file FILE.toml)"
        )
    return catalogue[name]
