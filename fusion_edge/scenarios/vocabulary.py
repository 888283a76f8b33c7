"""The label vocabularies of the football model (REFERENCE.md): 12 actions, 8 tactics."""

from __future__ import annotations

ACTIONS: tuple[str, ...] = (
    "take_off",
    "shooting",
    "turning",
    "defending",
    "running",
    "passing",
    "dribbling",
    "stopping",
    "jumping",
    "sliding",
    "sprinting",
    "assisting_defense",
)

TACTICS: tuple[str, ...] = (
    "ball_possession",
    "pressing",
    "assisting_defense",
    "breakthrough",
    "running",
    "passing",
    "shooting",
    "retreating_defense",
)

A = {name: i for i, name in enumerate(ACTIONS)}
T = {name: i for i, name in enumerate(TACTICS)}
