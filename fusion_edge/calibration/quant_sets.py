"""Calibration windows for INT8 quantization: which windows, stored how, fed how.

Static INT8 quantization sets each activation's scale from the ranges the model sees on a
calibration set. Those ranges must come from real windows that look like the field: every
class (and every session / scenario) represented, normalized exactly as the box will normalize
them. This module picks such a stratified sample, stores it as ``.npz`` (no pickle), and feeds
it to onnxruntime's quantizer. numpy only; onnxruntime is imported inside
`CalibrationSet.data_reader`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fusion_edge.errors import CalibrationError
from fusion_edge.file_access import probe_writable

__all__ = [
    "MIN_CALIBRATION_WINDOWS",
    "DatasetLike",
    "select_calibration_windows",
    "CalibrationSet",
]

# Below this, per-tensor min/max ranges are set by a handful of windows and INT8 accuracy
# depends on which ones were drawn; onnxruntime's own examples use hundreds.
MIN_CALIBRATION_WINDOWS = 16
_NPZ_INPUT = "input."
_NPZ_INDEX = "indices"


class DatasetLike(Protocol):
    """What `select_calibration_windows` needs: targets and group ids, ``N`` windows each."""

    @property
    def targets(self) -> Mapping[str, np.ndarray]: ...

    @property
    def player(self) -> np.ndarray: ...

    @property
    def session(self) -> np.ndarray: ...


def _strata_key(dataset: DatasetLike, stratify_by: Sequence[str], pool: np.ndarray) -> np.ndarray:
    if not stratify_by:
        return np.zeros(pool.size, dtype=np.int64)
    columns = []
    for key in stratify_by:
        if key in ("session", "player"):
            col = np.asarray(getattr(dataset, key)).astype(str)[pool]
        elif key in dataset.targets:
            col = np.asarray(dataset.targets[key])[pool]
            # Missing labels (-1 / NaN) form their own stratum rather than being dropped.
            col = np.where(np.isnan(col), -1, col) if col.dtype.kind == "f" else col
            col = col.astype(str)
        else:
            known = sorted([*dataset.targets, "session", "player"])
            raise CalibrationError(
                f"cannot stratify calibration windows by {key!r}: the dataset has no such task "
                f"or group (known: {known}); pass stratify_by from those"
            )
        columns.append(col)
    joined = np.array(["\x1f".join(parts) for parts in zip(*columns, strict=True)])
    _, key = np.unique(joined, return_inverse=True)
    return key


def select_calibration_windows(
    dataset: DatasetLike,
    n: int,
    *,
    stratify_by: Sequence[str] = ("action",),
    seed: int = 0,
    pool: np.ndarray | None = None,
) -> np.ndarray:
    """Pick ``n`` window indices, stratified so that every stratum is represented.

    Each stratum (a combination of the ``stratify_by`` values, e.g. one action class in one
    session) first gets one window while ``n`` allows, largest strata first; the rest is shared
    in proportion to stratum size. Within a stratum, windows are drawn at random with ``seed``.

    Args:
        dataset: Anything with ``targets``, ``player`` and ``session`` (a `Dataset`).
        n: How many windows to pick.
        stratify_by: Task names and/or ``"session"`` / ``"player"``.
        seed: Random seed; same inputs and seed give the same indices.
        pool: Indices to choose from (e.g. the training split); default all windows.

    Returns:
        Sorted int64 indices into the dataset.

    Raises:
        CalibrationError: ``n`` is below `MIN_CALIBRATION_WINDOWS`, or the pool holds fewer
            than ``n`` windows, or a stratify key is unknown.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < MIN_CALIBRATION_WINDOWS:
        raise CalibrationError(
            f"{n!r} calibration windows are too few for INT8 quantization (need at least "
            f"{MIN_CALIBRATION_WINDOWS}, a few hundred is better); raise --calibration-windows (export) or --windows "
            "(calibrate quant-set)"
        )
    total = len(dataset.player)
    pool = np.arange(total, dtype=np.int64) if pool is None else np.asarray(pool, dtype=np.int64)
    if pool.size < n:
        raise CalibrationError(
            f"asked for {n} calibration windows but only {pool.size} training windows exist; "
            "ask for fewer (export --calibration-windows, calibrate quant-set --windows), or "
            "leave the option out to take them all, or add training data"
        )
    key = _strata_key(dataset, stratify_by, pool)
    rng = np.random.default_rng(seed)
    strata = [rng.permutation(np.flatnonzero(key == k)) for k in range(int(key.max()) + 1)]
    sizes = np.array([s.size for s in strata])
    take = np.zeros(len(strata), dtype=np.int64)
    for k in np.argsort(-sizes, kind="stable")[: min(n, len(strata))]:
        take[k] = 1
    left = n - int(take.sum())
    if left > 0:
        room = sizes - take
        share = left * room / max(room.sum(), 1)
        extra = np.minimum(np.floor(share).astype(np.int64), room)
        take += extra
        left -= int(extra.sum())
        # Hand out what rounding left over to the strata with the largest remainders.
        for k in np.argsort(-(share - np.floor(share)), kind="stable"):
            if left == 0:
                break
            if take[k] < sizes[k]:
                take[k] += 1
                left -= 1
    chosen = np.concatenate([s[:t] for s, t in zip(strata, take, strict=True)])
    return np.sort(pool[chosen])


def _is_calibration_set(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as z:
            return hasattr(z, "files") and _NPZ_INDEX in z.files
    except (OSError, ValueError, EOFError):
        return False


@dataclass(frozen=True)
class CalibrationSet:
    """Normalized calibration windows, one ``[N, C, S]`` float32 array per model input.

    Attributes:
        inputs: Input name -> windows, in the model's input order.
        indices: Which dataset windows they are (for the record).
        meta: Free JSON-able strings (how they were chosen).
    """

    inputs: Mapping[str, np.ndarray]
    indices: np.ndarray
    meta: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise CalibrationError("a calibration set needs at least one input array")
        counts = {k: int(np.asarray(v).shape[0]) for k, v in self.inputs.items()}
        if len(set(counts.values())) != 1:
            raise CalibrationError(
                f"calibration inputs differ in window count: {counts}; rebuild the set"
            )
        if len(self) < MIN_CALIBRATION_WINDOWS:
            raise CalibrationError(
                f"the calibration set holds {len(self)} windows, fewer than the "
                f"{MIN_CALIBRATION_WINDOWS} INT8 quantization needs; build it with more windows"
            )
        object.__setattr__(
            self,
            "inputs",
            {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.inputs.items()},
        )

    def __len__(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def batches(self, batch_size: int = 32) -> Iterator[dict[str, np.ndarray]]:
        """Feeds of up to ``batch_size`` windows: input name -> array."""
        for s in range(0, len(self), batch_size):
            yield {k: v[s : s + batch_size] for k, v in self.inputs.items()}

    @staticmethod
    def check_target(path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
        """Refuse a place `save` could not write to, before the set is chosen (which takes
        seconds): a folder, a file in a folder that cannot be created or written, an existing
        file that is not a calibration set, or (``overwrite=False``) any existing file."""
        path = Path(path)
        if path.is_dir():
            raise CalibrationError(
                f"{path} is a folder; give the .npz file to write, e.g. {path / 'quant-set.npz'}"
            )
        if path.exists():
            if not overwrite:
                raise CalibrationError(
                    f"{path} already exists; choose another --out or pass --overwrite to replace it"
                )
            if not _is_calibration_set(path):
                raise CalibrationError(
                    f"{path} exists and is not a calibration set: it is left alone; give a new "
                    "file (only a set written by 'fusion-edge calibrate quant-set' is replaced)"
                )
        try:
            probe_writable(path.parent)
        except OSError as exc:
            raise CalibrationError(
                f"cannot write the calibration set to {path} ({exc.strerror or exc}); give a file "
                "in a writable folder"
            ) from None
        return path

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to ``.npz`` (atomically; readable with ``allow_pickle=False``)."""
        path = self.check_target(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        arrays: dict[str, Any] = {_NPZ_INPUT + k: v for k, v in self.inputs.items()}
        arrays[_NPZ_INDEX] = np.asarray(self.indices, dtype=np.int64)
        for k, v in self.meta.items():
            arrays["meta." + k] = np.asarray(str(v))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        except OSError as exc:
            if tmp.is_file():
                tmp.unlink()  # nothing half-written is left next to it
            raise CalibrationError(
                f"cannot write the calibration set to {path} ({exc.strerror or exc}); free disk "
                "space or give a file in a writable folder"
            ) from None
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CalibrationSet:
        """Read a set written by `save`."""
        try:
            with np.load(path, allow_pickle=False) as z:
                inputs = {k[len(_NPZ_INPUT) :]: z[k] for k in z.files if k.startswith(_NPZ_INPUT)}
                meta = {k[5:]: str(z[k]) for k in z.files if k.startswith("meta.")}
                indices = z[_NPZ_INDEX] if _NPZ_INDEX in z.files else np.arange(0)
        except (OSError, ValueError) as exc:
            raise CalibrationError(
                f"cannot read calibration set {path}: {exc}; rebuild it"
            ) from None
        return cls(inputs, indices, meta)

    def data_reader(self, input_names: Sequence[str], batch_size: int = 32) -> Any:
        """An onnxruntime ``CalibrationDataReader`` over this set (imports onnxruntime)."""
        missing = [n for n in input_names if n not in self.inputs]
        if missing:
            raise CalibrationError(
                f"the calibration set lacks model inputs {missing} (it has {sorted(self.inputs)}); "
                "rebuild it from a dataset with those modalities"
            )
        try:
            from onnxruntime.quantization import CalibrationDataReader
        except ImportError:
            raise CalibrationError(
                "feeding calibration windows to the quantizer needs onnxruntime; "
                "install it with: pip install 'fusion-edge[edge]'"
            ) from None
        names = list(input_names)
        parent = self

        class _Reader(CalibrationDataReader):  # type: ignore[misc]
            def __init__(self) -> None:
                self._it = iter(())
                self.rewind()

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self._it, None)

            def rewind(self) -> None:
                self._it = ({n: feed[n] for n in names} for feed in parent.batches(batch_size))

        return _Reader()
