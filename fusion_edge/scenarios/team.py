"""Team context: who has the ball, and so what each player is trying to do, cycle by cycle.

The eight tactical behaviours are not drawn at random: they follow from where a player stands
relative to the ball, teammates and opponents. The team in possession has a ball carrier who
keeps the ball, passes, breaks through or shoots; its other players make runs. The defending
team's nearest player presses, the next one covers (assisting defense), the rest retreat. The
action a player performs is then drawn from the actions that fit its tactic, weighted by the
scenario's action mix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion_edge.scenarios.catalogue import Scenario
from fusion_edge.scenarios.vocabulary import ACTIONS, TACTICS, A, T

__all__ = ["TeamState", "CycleIntent", "TACTIC_ACTIONS"]

# Which actions fit each tactic (relative weights before the scenario's action mix).
TACTIC_ACTIONS: dict[str, dict[str, float]] = {
    "ball_possession": {"dribbling": 5, "turning": 2, "stopping": 1, "take_off": 0.6},
    "pressing": {"sprinting": 3, "defending": 2, "sliding": 1.5, "take_off": 1, "turning": 0.6},
    "assisting_defense": {"assisting_defense": 5, "defending": 1.2, "turning": 0.6},
    "breakthrough": {"sprinting": 2, "dribbling": 1.5, "take_off": 2, "turning": 0.6},
    "running": {"running": 4, "sprinting": 2, "take_off": 1, "stopping": 1, "jumping": 1.2},
    "passing": {"passing": 6, "turning": 0.4},
    "shooting": {"shooting": 6, "jumping": 0.4},
    "retreating_defense": {"running": 3, "stopping": 1.2, "turning": 1, "jumping": 0.8},
}

_COMPAT = np.zeros((len(TACTICS), len(ACTIONS)))
for _tactic, _weights in TACTIC_ACTIONS.items():
    for _action, _w in _weights.items():
        _COMPAT[T[_tactic], A[_action]] = _w


@dataclass(frozen=True)
class CycleIntent:
    """What one player does in one cycle: labels plus where they head."""

    tactic: int
    action: int
    quality: float
    target: tuple[float, float]


class TeamState:
    """The match state between cycles: ball, possession, carrier."""

    def __init__(self, scenario: Scenario, team_of: np.ndarray, rng: np.random.Generator) -> None:
        self.scenario = scenario
        self.team_of = team_of
        self.rng = rng
        self.length, self.width = scenario.pitch_m
        self.possession = 0
        members = np.flatnonzero(team_of == 0)
        self.carrier = int(members[rng.integers(len(members))])
        self.ball = np.zeros(2)
        self._mix = np.asarray(scenario.mix_weights())
        # Players carry their own execution level; it drifts from cycle to cycle.
        lo, hi = scenario.quality
        self._skill = rng.uniform(lo, hi, size=team_of.shape[0])

    def attack_dir(self, team: int) -> float:
        """+1 when the team attacks towards +x, -1 otherwise."""
        return 1.0 if team == 0 else -1.0

    def _goal(self, team: int) -> np.ndarray:
        """The goal this team attacks."""
        return np.array([self.attack_dir(team) * self.length / 2, 0.0])

    def plan(self, pos: np.ndarray) -> list[CycleIntent]:
        """Decide every player's tactic, action, quality and target for the next cycle."""
        rng = self.rng
        n = pos.shape[0]
        self.ball = pos[self.carrier].copy()
        att = self.possession
        tactics = np.full(n, T["running"])
        targets = np.zeros((n, 2))
        goal = self._goal(att)

        # The carrier.
        to_goal = float(np.hypot(*(goal - self.ball)))
        r = rng.random()
        if to_goal < 0.35 * self.length and r < 0.5:
            carrier_tactic = "shooting"
        elif r < 0.45:
            carrier_tactic = "ball_possession"
        elif r < 0.75:
            carrier_tactic = "passing"
        else:
            carrier_tactic = "breakthrough"
        tactics[self.carrier] = T[carrier_tactic]
        targets[self.carrier] = goal

        # Teammates make runs towards space ahead of the ball.
        for i in np.flatnonzero(self.team_of == att):
            if i == self.carrier:
                continue
            ahead = self.ball + np.array([self.attack_dir(att) * rng.uniform(5, 15), 0.0])
            targets[i] = ahead + rng.normal(0, self.width / 4, 2)

        # Defenders: nearest presses, next covers, the rest retreat.
        defenders = np.flatnonzero(self.team_of != att)
        own_goal = -goal
        if defenders.size:
            d = np.hypot(*(pos[defenders] - self.ball).T)
            order = defenders[np.argsort(d)]
            tactics[order[0]] = T["pressing"]
            targets[order[0]] = self.ball
            if order.size > 1:
                tactics[order[1]] = T["assisting_defense"]
                targets[order[1]] = self.ball + 0.4 * (own_goal - self.ball)
            for i in order[2:]:
                tactics[i] = T["retreating_defense"]
                targets[i] = np.array([own_goal[0] * 0.6, pos[i, 1] * 0.7])

        intents = []
        for i in range(n):
            w = _COMPAT[tactics[i]] * self._mix
            if w.sum() <= 0:  # the mix switched off every fitting action
                w = _COMPAT[tactics[i]].copy()
            action = int(rng.choice(len(ACTIONS), p=w / w.sum()))
            self._skill[i] = np.clip(self._skill[i] + rng.normal(0, 0.08), 0.0, 1.0)
            lo, hi = self.scenario.quality
            q = float(np.clip(self._skill[i] + rng.normal(0, 0.08), lo, hi))
            tgt = np.clip(targets[i], [-self.length / 2, -self.width / 2], [self.length / 2, self.width / 2])
            intents.append(CycleIntent(int(tactics[i]), action, q, (float(tgt[0]), float(tgt[1]))))
        self._advance(pos, tactics, intents)
        return intents

    def _advance(self, pos: np.ndarray, tactics: np.ndarray, intents: list[CycleIntent]) -> None:
        """Move the ball on: passes find a teammate, shots and tackles turn the ball over."""
        rng = self.rng
        att = self.possession
        tactic = TACTICS[tactics[self.carrier]]
        mates = [i for i in np.flatnonzero(self.team_of == att) if i != self.carrier]
        opponents = np.flatnonzero(self.team_of != att)
        turnover = 0.08 + 0.12 * self.scenario.intensity
        if tactic == "shooting" and opponents.size:
            self._turn_over(opponents)
        elif tactic == "passing" and mates:
            self.carrier = int(rng.choice(mates))
        elif opponents.size and rng.random() < turnover:
            self._turn_over(opponents)

    def _turn_over(self, opponents: np.ndarray) -> None:
        self.possession = int(self.team_of[opponents[0]])
        self.carrier = int(self.rng.choice(opponents))
