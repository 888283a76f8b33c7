"""Splits grouped by player: no player's windows appear in two splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion_edge.errors import DatasetError

__all__ = ["GroupedSplit", "split_by_player"]


@dataclass(frozen=True)
class GroupedSplit:
    """Player ids of each split."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def indices(self, player: np.ndarray, part: str) -> np.ndarray:
        """Window indices of ``part`` ("train", "val" or "test")."""
        members = getattr(self, part)
        return np.flatnonzero(np.isin(player, np.asarray(members)))

    def to_json(self) -> dict[str, list[str]]:
        """JSON form."""
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test)}

    @classmethod
    def from_json(cls, d: dict[str, list[str]]) -> GroupedSplit:
        """Inverse of ``to_json``."""
        return cls(tuple(d["train"]), tuple(d["val"]), tuple(d["test"]))


def split_by_player(
    player: np.ndarray, *, val: float = 0.15, test: float = 0.15, seed: int = 0
) -> GroupedSplit:
    """Shuffle the distinct players with ``seed`` and cut 70/15/15 (by default) by player.

    Raises:
        DatasetError: when there are too few players to give every split at least one.
    """
    players = np.unique(np.asarray(player).astype(str))
    if players.size < 3:
        raise DatasetError(
            f"the dataset has {players.size} player(s); a grouped train/val/test split needs at "
            "least 3 (simulate more players or sessions, or record more players)"
        )
    order = np.random.default_rng(seed).permutation(players)
    n_test = max(1, int(round(test * players.size)))
    n_val = max(1, int(round(val * players.size)))
    n_train = players.size - n_test - n_val
    if n_train < 1:
        raise DatasetError(f"{players.size} players leave none for training with val={val}, test={test}")
    return GroupedSplit(
        train=tuple(sorted(order[:n_train])),
        val=tuple(sorted(order[n_train : n_train + n_val])),
        test=tuple(sorted(order[n_train + n_val :])),
    )
