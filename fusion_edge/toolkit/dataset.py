"""The dataset on-disk format: what training reads and what recordings are converted to.

A dataset is a folder::

    <root>/dataset.json               spec + shard list; written last, atomically
    <root>/shards/shard-00000.npz     input.<modality> [n, C, S] float32, target.<task> [n],
                                      player [n], session [n] (fixed-width unicode)

``dataset.json`` is the commit marker: a folder without it is an unfinished or failed write and
`Dataset.open` refuses it. Everything is numpy (`np.savez`, `np.load(allow_pickle=False)`), no
pickle and no torch, so the box and the converters can use this module too. The full format is
documented in ``docs/dataset-format.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from fusion_edge.errors import DatasetError

FORMAT = "fusion-edge-dataset"
FORMAT_VERSION = 1
SPEC_FILE = "dataset.json"
SHARD_DIR = "shards"
DOCS = "docs/dataset-format.md"
MISSING_CLASS = -1

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
_GROUPS = ("player", "session")
# Keys dataset.json holds besides the spec: they describe the stored shards, not the data.
_STORAGE_KEYS = ("num_windows", "shards")
_SHARD_ENTRY_KEYS = ("file", "num_windows", "bytes", "sha256")


class TaskKind(str, Enum):
    """What a task predicts: a class index or a real value."""

    CLASS = "class"
    REGRESSION = "regression"

    def __str__(self) -> str:
        return self.value


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise DatasetError(
            f"{what} name {value!r} is not valid: use letters, digits, '_' or '-', starting with a "
            "letter (it becomes an array key in the shards)"
        )
    return value


def _str_tuple(values: Any, what: str) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise DatasetError(f"{what} must be a list of strings, got {values!r}")
    out = tuple(values)
    for v in out:
        if not isinstance(v, str) or not v:
            raise DatasetError(f"{what} must be non-empty strings, got {v!r}")
    if len(set(out)) != len(out):
        raise DatasetError(f"{what} must be unique, got {list(out)}")
    return out


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DatasetError(f"{what} must be a number, got {value!r}")
    if not np.isfinite(value) or value <= 0:
        raise DatasetError(f"{what} must be a finite number > 0, got {value!r}")
    return float(value)


def _plain_json(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise DatasetError(f"{what} must be a JSON object (a dict), got {type(value).__name__}")
    try:
        # Round-trip so the spec holds exactly what dataset.json will hold (tuples -> lists).
        return json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise DatasetError(
            f"{what} must hold only JSON values (str, numbers, bools, lists, dicts): {exc}"
        ) from exc


@dataclass(frozen=True)
class ModalitySpec:
    """One sensor stream; each window of it is an array ``[len(channels), window_samples]``.

    Attributes:
        name: Key of the stream, e.g. ``"imu"``; shards store it as ``input.<name>``.
        channels: Channel names in array order, e.g. ``("acc_x", ..., "hr")``.
        units: One unit per channel, e.g. ``("m/s^2", ..., "bpm")``.
        sample_rate_hz: Rate of the stored windows (after any resampling).
        window_samples: Samples per window; ``window_seconds * sample_rate_hz`` within one sample.
    """

    name: str
    channels: tuple[str, ...]
    units: tuple[str, ...]
    sample_rate_hz: float
    window_samples: int

    def __post_init__(self) -> None:
        _name(self.name, "modality")
        what = f"modality {self.name!r}"
        object.__setattr__(self, "channels", _str_tuple(self.channels, f"{what} channels"))
        if isinstance(self.units, str) or not isinstance(self.units, Sequence):
            raise DatasetError(f"{what} units must be a list of strings, got {self.units!r}")
        units = tuple(self.units)
        if not all(isinstance(u, str) for u in units) or len(units) != len(self.channels):
            raise DatasetError(
                f"{what} needs one unit string per channel: {len(self.channels)} channels, "
                f"units {list(units)} (use '' for a unitless channel)"
            )
        object.__setattr__(self, "units", units)
        object.__setattr__(
            self, "sample_rate_hz", _positive(self.sample_rate_hz, f"{what} sample_rate_hz")
        )
        if isinstance(self.window_samples, bool) or not isinstance(
            self.window_samples, (int, np.integer)
        ) or self.window_samples < 1:
            raise DatasetError(
                f"{what} window_samples must be an integer >= 1, got {self.window_samples!r}"
            )
        object.__setattr__(self, "window_samples", int(self.window_samples))

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of one window: ``(channels, window_samples)``."""
        return (len(self.channels), self.window_samples)

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in dataset.json."""
        return {
            "name": self.name,
            "channels": list(self.channels),
            "units": list(self.units),
            "sample_rate_hz": self.sample_rate_hz,
            "window_samples": self.window_samples,
        }


@dataclass(frozen=True)
class TaskSpec:
    """One prediction target.

    Attributes:
        name: Key of the task; shards store it as ``target.<name>``.
        kind: ``"class"`` (int64 label index, -1 = missing) or ``"regression"`` (float32, NaN =
            missing).
        labels: Class names in index order (class tasks only).
        value_range: Inclusive ``(low, high)`` that valid values lie in (regression only;
            ``None`` means any finite value).
    """

    name: str
    kind: TaskKind | str
    labels: tuple[str, ...] = ()
    value_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        _name(self.name, "task")
        what = f"task {self.name!r}"
        try:
            kind = TaskKind(self.kind)
        except ValueError:
            raise DatasetError(
                f"{what} kind {self.kind!r} is not known: use 'class' or 'regression'"
            ) from None
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "labels", _str_tuple(self.labels, f"{what} labels"))
        if kind is TaskKind.CLASS:
            if not self.labels:
                raise DatasetError(f"{what} is a class task: give its label names in 'labels'")
            if self.value_range is not None:
                raise DatasetError(f"{what} is a class task: value_range must be null")
        else:
            if self.labels:
                raise DatasetError(f"{what} is a regression task: labels must be empty")
            if self.value_range is not None:
                vr = self.value_range
                ok = isinstance(vr, Sequence) and not isinstance(vr, str) and len(vr) == 2
                ok = ok and all(
                    not isinstance(v, bool) and isinstance(v, (int, float, np.number)) for v in vr
                )
                if not ok or not (np.isfinite(vr[0]) and np.isfinite(vr[1]) and vr[0] <= vr[1]):
                    raise DatasetError(
                        f"{what} value_range must be [low, high] with finite low <= high, "
                        f"got {vr!r}"
                    )
                object.__setattr__(self, "value_range", (float(vr[0]), float(vr[1])))

    @property
    def is_classification(self) -> bool:
        """True for a class task."""
        return self.kind is TaskKind.CLASS

    @property
    def num_classes(self) -> int:
        """Number of classes (0 for a regression task)."""
        return len(self.labels)

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in dataset.json."""
        out: dict[str, Any] = {"name": self.name, "kind": str(self.kind)}
        if self.is_classification:
            out["labels"] = list(self.labels)
        else:
            out["value_range"] = None if self.value_range is None else list(self.value_range)
        return out


def _check_keys(d: Any, required: Sequence[str], optional: Sequence[str], where: str) -> None:
    if not isinstance(d, Mapping):
        raise DatasetError(f"{where} must be a JSON object, got {type(d).__name__}")
    for key in required:
        if key not in d:
            raise DatasetError(f"{where}: missing key '{key}'. Add it (see {DOCS})")
    for key in d:
        if key not in required and key not in optional:
            raise DatasetError(
                f"{where}: unknown key '{key}'. Remove it, or check the spelling against {DOCS} "
                f"(known: {', '.join(list(required) + list(optional))})"
            )


@dataclass(frozen=True)
class DatasetSpec:
    """Everything dataset.json says about the data, apart from the stored shards.

    Attributes:
        modalities: The sensor streams, at least one.
        tasks: The prediction targets (may be empty, e.g. for calibration windows).
        window_seconds: Length of one window.
        hop_seconds: Step between the starts of consecutive windows.
        groups: Ids that splits must keep together (``"player"`` and/or ``"session"``).
        preprocessing: Free JSON saying what was done to the signals (filter widths, source rates).
        source: Free JSON saying how the data was made (recording, scenario, seed).
        description: Free text for people.
    """

    modalities: tuple[ModalitySpec, ...]
    tasks: tuple[TaskSpec, ...]
    window_seconds: float
    hop_seconds: float
    groups: tuple[str, ...] = _GROUPS
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        mods, tasks = tuple(self.modalities), tuple(self.tasks)
        if not mods or not all(isinstance(m, ModalitySpec) for m in mods):
            raise DatasetError("a dataset needs at least one ModalitySpec in 'modalities'")
        if not all(isinstance(t, TaskSpec) for t in tasks):
            raise DatasetError("'tasks' must hold TaskSpec objects")
        for what, names in (("modality", [m.name for m in mods]),
                            ("task", [t.name for t in tasks])):
            if len(set(names)) != len(names):
                raise DatasetError(f"{what} names must be unique, got {names}")
        object.__setattr__(self, "modalities", mods)
        object.__setattr__(self, "tasks", tasks)
        window = _positive(self.window_seconds, "window_seconds")
        object.__setattr__(self, "window_seconds", window)
        object.__setattr__(self, "hop_seconds", _positive(self.hop_seconds, "hop_seconds"))
        groups = _str_tuple(self.groups, "groups")
        for g in groups:
            if g not in _GROUPS:
                raise DatasetError(
                    f"groups entry {g!r} is not known: use 'player' and/or 'session'")
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "preprocessing", _plain_json(self.preprocessing, "preprocessing"))
        object.__setattr__(self, "source", _plain_json(self.source, "source"))
        if not isinstance(self.description, str):
            raise DatasetError(f"description must be a string, got {self.description!r}")
        for m in mods:
            expected = window * m.sample_rate_hz
            if abs(m.window_samples - expected) > 1.0:
                raise DatasetError(
                    f"modality {m.name!r}: window_samples={m.window_samples} does not match "
                    f"window_seconds * sample_rate_hz = {window:g} * {m.sample_rate_hz:g} = "
                    f"{expected:g}. Set window_samples to {round(expected)} or fix the rate"
                )

    def modality(self, name: str) -> ModalitySpec:
        """The modality called ``name``; raises DatasetError listing the known ones."""
        for m in self.modalities:
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.modalities)
        raise DatasetError(f"the dataset has no modality {name!r} (it has: {known})")

    def task(self, name: str) -> TaskSpec:
        """The task called ``name``; raises DatasetError listing the known ones."""
        for t in self.tasks:
            if t.name == name:
                return t
        known = ", ".join(t.name for t in self.tasks) or "none"
        raise DatasetError(f"the dataset has no task {name!r} (it has: {known})")

    def to_json(self) -> dict[str, Any]:
        """The spec part of dataset.json (format, version and every spec key)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "description": self.description,
            "window_seconds": self.window_seconds,
            "hop_seconds": self.hop_seconds,
            "groups": list(self.groups),
            "modalities": [m.to_json() for m in self.modalities],
            "tasks": [t.to_json() for t in self.tasks],
            "preprocessing": dict(self.preprocessing),
            "source": dict(self.source),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any], *, file: str | os.PathLike[str] = SPEC_FILE
                  ) -> DatasetSpec:
        """Parse the spec from a dataset.json object, strictly.

        The storage keys (``num_windows``, ``shards``) are accepted and ignored, so the whole
        dataset.json can be passed.

        Args:
            d: The parsed JSON object.
            file: Where it came from, named in error messages.

        Raises:
            DatasetError: A key is missing or unknown, the format or version is not this one, or
                a value is invalid. The message names the file and the key.
        """
        spec_keys = ("format", "format_version", "modalities", "tasks", "window_seconds",
                     "hop_seconds")
        optional = ("groups", "preprocessing", "source", "description", *_STORAGE_KEYS)
        _check_keys(d, spec_keys, optional, str(file))
        if d["format"] != FORMAT:
            raise DatasetError(
                f"{file}: format is {d['format']!r}, expected {FORMAT!r}. This is not a "
                f"fusion-edge dataset; convert it (see {DOCS})"
            )
        version = d["format_version"]
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise DatasetError(
                f"{file}: format_version {version!r} is not known (this fusion-edge reads "
                f"version {FORMAT_VERSION}). Upgrade fusion-edge or re-create the dataset"
            )
        try:
            mods = d["modalities"]
            tasks = d["tasks"]
            if not isinstance(mods, list) or not isinstance(tasks, list):
                raise DatasetError("'modalities' and 'tasks' must be JSON lists")
            modalities = []
            for i, m in enumerate(mods):
                _check_keys(m, ("name", "channels", "units", "sample_rate_hz", "window_samples"),
                            (), f"modalities[{i}]")
                modalities.append(ModalitySpec(**m))
            task_specs = []
            for i, t in enumerate(tasks):
                _check_keys(t, ("name", "kind"), ("labels", "value_range"), f"tasks[{i}]")
                labels = t.get("labels", [])
                task_specs.append(TaskSpec(t["name"], t["kind"], labels, t.get("value_range")))
            kw = {k: d[k] for k in ("groups", "preprocessing", "source", "description") if k in d}
            return cls(tuple(modalities), tuple(task_specs), d["window_seconds"],
                       d["hop_seconds"], **kw)
        except DatasetError as exc:
            raise DatasetError(f"{file}: {exc}") from exc


# ---------------------------------------------------------------- array validation (shared)


def _as_ids(values: Any, n: int, key: str, where: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "O" and all(isinstance(v, str) for v in arr.ravel()):
        arr = arr.astype(str)  # e.g. a pandas column: plain strings stored as objects
    if arr.dtype.kind != "U":
        raise DatasetError(
            f"{where}: '{key}' must hold strings, found dtype {arr.dtype}. "
            f"Pass ids as str (e.g. [str(p) for p in ids])"
        )
    if arr.shape != (n,):
        raise DatasetError(f"{where}: '{key}' has shape {arr.shape}, expected ({n},)")
    if n and (np.char.str_len(arr) == 0).any():
        raise DatasetError(
            f"{where}: '{key}' has {int((np.char.str_len(arr) == 0).sum())} empty ids. "
            f"Give every window a {key} id"
        )
    return arr


def _check_input(arr: np.ndarray, m: ModalitySpec, n: int | None, key: str, where: str) -> None:
    expected = "[N, " + ", ".join(str(s) for s in m.shape) + "]" if n is None else \
        str((n, *m.shape))
    if arr.ndim != 3 or arr.shape[1:] != m.shape or (n is not None and arr.shape[0] != n):
        raise DatasetError(
            f"{where}: {key} has shape {arr.shape}, expected {expected} "
            f"(windows, channels {list(m.channels)}, window_samples). Re-window the data to "
            f"match dataset.json"
        )
    if arr.size and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        count = int((~np.isfinite(arr)).any(axis=(1, 2)).sum())
        raise DatasetError(
            f"{where}: {key} has NaN/inf values in {count} windows (first at window "
            f"{bad[0]}, channel {m.channels[bad[1]]!r}, sample {bad[2]}). Interpolate short gaps "
            f"or drop those windows before writing"
        )


def _check_target(arr: np.ndarray, t: TaskSpec, key: str, where: str) -> None:
    if t.is_classification:
        bad = (arr < MISSING_CLASS) | (arr >= t.num_classes)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DatasetError(
                f"{where}: {key} has {int(bad.sum())} labels outside [0, {t.num_classes}) "
                f"(first: {int(arr[i])} at window {i}); task {t.name!r} has labels "
                f"{list(t.labels)}. Use -1 for a window without this label"
            )
    else:
        if np.isinf(arr).any():
            i = int(np.flatnonzero(np.isinf(arr))[0])
            raise DatasetError(
                f"{where}: {key} has infinite values (first at window {i}). "
                f"Use NaN for a window without this label"
            )
        if t.value_range is not None:
            lo, hi = np.float32(t.value_range[0]), np.float32(t.value_range[1])
            with np.errstate(invalid="ignore"):
                bad = (arr < lo) | (arr > hi)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise DatasetError(
                    f"{where}: {key} has {int(bad.sum())} values outside value_range "
                    f"[{t.value_range[0]:g}, {t.value_range[1]:g}] (first: {float(arr[i]):g} at "
                    f"window {i}). Fix the values or widen value_range; NaN marks a missing label"
                )


def _coerce_arrays(spec: DatasetSpec, inputs: Mapping[str, Any], targets: Mapping[str, Any],
                   player: Any, session: Any, where: str
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Check caller-given arrays against the spec and return them in stored dtypes."""
    for what, given, names in (("inputs", inputs, [m.name for m in spec.modalities]),
                               ("targets", targets, [t.name for t in spec.tasks])):
        if not isinstance(given, Mapping):
            raise DatasetError(f"{where}: {what} must be a dict name -> array")
        missing = [k for k in names if k not in given]
        extra = [k for k in given if k not in names]
        if missing or extra:
            raise DatasetError(
                f"{where}: {what} keys {sorted(given)} do not match the spec "
                f"(missing: {missing}, unknown: {extra}). Give exactly: {names}"
            )
    out_in: dict[str, np.ndarray] = {}
    n: int | None = None
    for m in spec.modalities:
        arr = np.asarray(inputs[m.name])
        if arr.dtype.kind not in "fiu":
            raise DatasetError(
                f"{where}: inputs[{m.name!r}] has dtype {arr.dtype}; expected float32 numbers "
                f"(object, string and complex arrays cannot be stored without pickle)"
            )
        with np.errstate(over="ignore"):
            arr = np.ascontiguousarray(arr, dtype=np.float32)
        _check_input(arr, m, n, f"inputs[{m.name!r}]", where)
        n = arr.shape[0]
        out_in[m.name] = arr
    n_windows = int(n or 0)
    out_t: dict[str, np.ndarray] = {}
    for t in spec.tasks:
        key = f"targets[{t.name!r}]"
        arr = np.asarray(targets[t.name])
        if arr.shape != (n_windows,):
            raise DatasetError(f"{where}: {key} has shape {arr.shape}, expected ({n_windows},)")
        if t.is_classification:
            if arr.dtype.kind == "f" and np.isfinite(arr).all() and (arr == np.round(arr)).all():
                arr = arr.astype(np.int64)  # integral floats, e.g. read from a CSV
            if arr.dtype.kind not in "iu":
                raise DatasetError(
                    f"{where}: {key} has dtype {arr.dtype}; class labels must be integers "
                    f"(index into {list(t.labels)}, -1 for missing)"
                )
            arr = arr.astype(np.int64)
        else:
            if arr.dtype.kind not in "fiu":
                raise DatasetError(
                    f"{where}: {key} has dtype {arr.dtype}; regression targets must be numbers "
                    f"(NaN for missing)"
                )
            arr = arr.astype(np.float32)
        _check_target(arr, t, key, where)
        out_t[t.name] = arr
    return (out_in, out_t, _as_ids(player, n_windows, "player", where),
            _as_ids(session, n_windows, "session", where))


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- writing


class DatasetWriter:
    """Writes a dataset folder shard by shard; ``dataset.json`` is written last, atomically.

    Use it as a context manager: leaving the ``with`` block normally calls `close`; leaving it
    with an exception calls `abort`, which removes the shards written so far.

    Args:
        root: The dataset folder (created if missing).
        spec: What the data is.
        shard_windows: Windows per shard file.
        overwrite: Replace an existing dataset in ``root`` (its dataset.json and
            shards/shard-*.npz; other files are left alone). Without it a non-empty ``root``
            is refused.

    Raises:
        DatasetError: ``root`` is not empty and ``overwrite`` is False, or arguments are invalid.
    """

    def __init__(self, root: Path | str, spec: DatasetSpec, *, shard_windows: int = 4096,
                 overwrite: bool = False) -> None:
        if not isinstance(spec, DatasetSpec):
            raise DatasetError(f"spec must be a DatasetSpec, got {type(spec).__name__}")
        if isinstance(shard_windows, bool) or not isinstance(shard_windows, int) \
                or shard_windows < 1:
            raise DatasetError(f"shard_windows must be an integer >= 1, got {shard_windows!r}")
        self.root = Path(root)
        self.spec = spec
        self.shard_windows = shard_windows
        if self.root.exists() and not self.root.is_dir():
            raise DatasetError(f"{self.root} exists and is not a folder. Choose another path")
        if self.root.is_dir() and any(self.root.iterdir()):
            if not overwrite:
                raise DatasetError(
                    f"{self.root} is not empty. Choose a new folder, or pass overwrite=True "
                    f"(--overwrite) to replace the dataset in it"
                )
            # dataset.json goes first so the folder never looks complete with stale shards.
            (self.root / SPEC_FILE).unlink(missing_ok=True)
            for old in (self.root / SHARD_DIR).glob("shard-*.npz"):
                old.unlink()
        self._created_root = not self.root.exists()
        (self.root / SHARD_DIR).mkdir(parents=True, exist_ok=True)
        self._pending: list[tuple[dict, dict, np.ndarray, np.ndarray]] = []
        self._pending_n = 0
        self._shards: list[dict[str, Any]] = []
        self._num_windows = 0
        self._closed = False

    @property
    def num_windows(self) -> int:
        """Windows accepted so far (written or buffered)."""
        return self._num_windows + self._pending_n

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def add(self, inputs: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray],
            player: Sequence[str] | np.ndarray, session: Sequence[str] | np.ndarray) -> None:
        """Add N windows; everything is checked before anything is buffered.

        Args:
            inputs: Modality name -> ``[N, channels, window_samples]`` numbers (stored float32).
            targets: Task name -> ``[N]``: class index (-1 missing) or float (NaN missing).
            player: N player ids (strings).
            session: N session ids (strings).

        Raises:
            DatasetError: Shapes, dtypes, NaN/inf inputs or labels do not fit the spec, or the
                writer is closed. Nothing from this call is kept.
        """
        if self._closed:
            raise DatasetError(f"DatasetWriter for {self.root} is closed; open a new one")
        arrays = _coerce_arrays(self.spec, inputs, targets, player, session,
                                "DatasetWriter.add()")
        n = arrays[2].shape[0]
        if n == 0:
            return
        self._pending.append(arrays)
        self._pending_n += n
        while self._pending_n >= self.shard_windows:
            self._flush(self.shard_windows)

    def _flush(self, count: int) -> None:
        """Write the first ``count`` buffered windows as one shard."""
        def cat(parts: list[np.ndarray]) -> np.ndarray:
            return parts[0] if len(parts) == 1 else np.concatenate(parts)

        ins = {m.name: cat([p[0][m.name] for p in self._pending]) for m in self.spec.modalities}
        tgs = {t.name: cat([p[1][t.name] for p in self._pending]) for t in self.spec.tasks}
        player = cat([p[2] for p in self._pending])
        session = cat([p[3] for p in self._pending])
        arrays = {f"input.{k}": v[:count] for k, v in ins.items()}
        arrays.update({f"target.{k}": v[:count] for k, v in tgs.items()})
        arrays["player"], arrays["session"] = player[:count], session[:count]
        rel = f"{SHARD_DIR}/shard-{len(self._shards):05d}.npz"
        path = self.root / rel
        with path.open("wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # stubs: allow_pickle kw
            f.flush()
            os.fsync(f.fileno())
        self._shards.append({"file": rel, "num_windows": count, "bytes": path.stat().st_size,
                             "sha256": _sha256(path)})
        self._num_windows += count
        rest = self._pending_n - count
        self._pending = [] if rest == 0 else [(
            {k: v[count:] for k, v in ins.items()}, {k: v[count:] for k, v in tgs.items()},
            player[count:], session[count:])]
        self._pending_n = rest

    def close(self) -> Path:
        """Write the last shard and then dataset.json (atomically); returns the root.

        Raises:
            DatasetError: No windows were added (nothing is left on disk).
        """
        if self._closed:
            return self.root
        if self.num_windows == 0:
            self.abort()
            raise DatasetError(
                f"no windows were added to {self.root}; nothing was written. "
                f"Check that the recording is longer than one window"
            )
        try:
            if self._pending_n:
                self._flush(self._pending_n)
            doc = self.spec.to_json()
            doc["num_windows"] = self._num_windows
            doc["shards"] = self._shards
            tmp = self.root / (SPEC_FILE + ".tmp")
            with tmp.open("w", encoding="utf-8") as f:
                json.dump(doc, f, indent=2, allow_nan=False)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.root / SPEC_FILE)
            _fsync_dir(self.root)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.root

    def abort(self) -> None:
        """Remove what this writer wrote; the folder is left without dataset.json."""
        self._closed = True
        self._pending, self._pending_n = [], 0
        (self.root / (SPEC_FILE + ".tmp")).unlink(missing_ok=True)
        for entry in self._shards:
            (self.root / entry["file"]).unlink(missing_ok=True)
        self._shards = []
        # Remove folders only if they are now empty: never delete files we did not write.
        with suppress(OSError):
            (self.root / SHARD_DIR).rmdir()
        if self._created_root:
            with suppress(OSError):
                self.root.rmdir()


def write_dataset(root: Path | str, spec: DatasetSpec, inputs: Mapping[str, np.ndarray],
                  targets: Mapping[str, np.ndarray], player: Sequence[str] | np.ndarray,
                  session: Sequence[str] | np.ndarray, **kw: Any) -> Path:
    """Write a whole dataset in one call (``kw`` goes to `DatasetWriter`); returns the root."""
    with DatasetWriter(root, spec, **kw) as writer:
        writer.add(inputs, targets, player, session)
    return writer.root


# ---------------------------------------------------------------- reading


class Dataset:
    """A validated dataset held in memory: every shard concatenated.

    Build one with `Dataset.open` (from disk) or directly from arrays (validated like
    `DatasetWriter.add`); `subset` gives another Dataset for splits.

    Args:
        spec: What the data is.
        inputs: Modality name -> ``[N, C, S]``.
        targets: Task name -> ``[N]``.
        player: N player ids.
        session: N session ids.
        root: The folder it came from, if any.
    """

    def __init__(self, spec: DatasetSpec, inputs: Mapping[str, np.ndarray],
                 targets: Mapping[str, np.ndarray], player: Sequence[str] | np.ndarray,
                 session: Sequence[str] | np.ndarray, *, root: Path | str | None = None) -> None:
        ins, tgs, pl, se = _coerce_arrays(spec, inputs, targets, player, session, "Dataset()")
        self._set(spec, ins, tgs, pl, se, None if root is None else Path(root))

    def _set(self, spec: DatasetSpec, inputs: dict[str, np.ndarray],
             targets: dict[str, np.ndarray], player: np.ndarray, session: np.ndarray,
             root: Path | None) -> None:
        self._spec, self._inputs, self._targets = spec, inputs, targets
        self._player, self._session, self._root = player, session, root

    @classmethod
    def _trusted(cls, spec: DatasetSpec, inputs: dict[str, np.ndarray],
                 targets: dict[str, np.ndarray], player: np.ndarray, session: np.ndarray,
                 root: Path | None) -> Dataset:
        obj = cls.__new__(cls)
        obj._set(spec, inputs, targets, player, session, root)
        return obj

    @classmethod
    def open(cls, root: Path | str, *, verify_hashes: bool = True) -> Dataset:
        """Open and fully validate a dataset folder.

        Args:
            root: The folder holding dataset.json.
            verify_hashes: Check every shard's sha256 (turn off only for trusted local data).

        Raises:
            DatasetError: The folder is not a complete, consistent dataset; the message names
                the file, the key, what was expected and what was found.
        """
        root = Path(root)
        spec_path = root / SPEC_FILE
        if not root.is_dir():
            raise DatasetError(
                f"{root} does not exist or is not a folder. Create a dataset with "
                f"`fusion-edge simulate`, or convert your recording (see {DOCS})"
            )
        if not spec_path.is_file():
            raise DatasetError(
                f"{spec_path} not found: {root} is not a finished fusion-edge dataset. Create one "
                f"with `fusion-edge simulate`, or convert your recording (see {DOCS})"
            )
        try:
            doc = json.loads(spec_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{spec_path} is not valid JSON ({exc}). Re-create the dataset") \
                from exc
        spec = DatasetSpec.from_json(doc, file=spec_path)
        for key in _STORAGE_KEYS:
            if key not in doc:
                raise DatasetError(f"{spec_path}: missing key '{key}'. Re-create the dataset")
        shards = doc["shards"]
        if not isinstance(shards, list) or not shards:
            raise DatasetError(f"{spec_path}: 'shards' must be a non-empty list")
        parts = [cls._read_shard(root, spec_path, i, e, spec, verify_hashes)
                 for i, e in enumerate(shards)]
        total = sum(p[2].shape[0] for p in parts)
        if doc["num_windows"] != total:
            raise DatasetError(
                f"{spec_path}: 'num_windows' is {doc['num_windows']!r} but the shards hold "
                f"{total} windows. Re-create the dataset"
            )

        def cat(arrs: list[np.ndarray]) -> np.ndarray:
            return arrs[0] if len(arrs) == 1 else np.concatenate(arrs)

        inputs = {m.name: cat([p[0][m.name] for p in parts]) for m in spec.modalities}
        targets = {t.name: cat([p[1][t.name] for p in parts]) for t in spec.tasks}
        return cls._trusted(spec, inputs, targets, cat([p[2] for p in parts]),
                            cat([p[3] for p in parts]), root)

    @staticmethod
    def _read_shard(root: Path, spec_path: Path, i: int, entry: Any, spec: DatasetSpec,
                    verify_hashes: bool
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray,
                               np.ndarray]:
        _check_keys(entry, _SHARD_ENTRY_KEYS, (), f"{spec_path}: shards[{i}]")
        for key in ("num_windows", "bytes"):
            if isinstance(entry[key], bool) or not isinstance(entry[key], int) or entry[key] < 0:
                raise DatasetError(f"{spec_path}: shards[{i}].{key} must be an integer >= 0, "
                                   f"got {entry[key]!r}. Re-create the dataset")
        rel = entry["file"]
        if not isinstance(rel, str) or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise DatasetError(f"{spec_path}: shards[{i}].file {rel!r} must be a path inside "
                               f"the dataset folder")
        path = root / rel
        if not path.is_file():
            raise DatasetError(f"{path} is listed in {SPEC_FILE} but missing. The dataset is "
                               f"incomplete: copy it again or re-create it")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise DatasetError(
                f"{path} is {size} bytes, {SPEC_FILE} says {entry['bytes']}: the file is "
                f"truncated or was changed (an interrupted copy?). Copy it again or re-create it"
            )
        if verify_hashes and _sha256(path) != entry["sha256"]:
            raise DatasetError(
                f"{path}: sha256 does not match {SPEC_FILE} (expected {entry['sha256']}): the "
                f"file is corrupt or was changed. Copy it again or re-create the dataset"
            )
        n = entry["num_windows"]
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except Exception as exc:  # zipfile, zlib, EOF and format errors all mean "bad file"
            raise DatasetError(
                f"{path} cannot be read as a .npz without pickle ({type(exc).__name__}: {exc}). "
                f"Copy it again or re-create the dataset"
            ) from exc
        keys = ([f"input.{m.name}" for m in spec.modalities]
                + [f"target.{t.name}" for t in spec.tasks] + ["player", "session"])
        _check_keys(data, keys, (), str(path))
        where = str(path)
        ins = {}
        for m in spec.modalities:
            arr = data[f"input.{m.name}"]
            if arr.dtype != np.float32:
                raise DatasetError(f"{where}: 'input.{m.name}' has dtype {arr.dtype}, expected "
                                   f"float32. Re-create the dataset with DatasetWriter")
            _check_input(arr, m, n, f"'input.{m.name}'", where)
            ins[m.name] = arr
        tgs = {}
        for t in spec.tasks:
            key, arr = f"'target.{t.name}'", data[f"target.{t.name}"]
            want = np.int64 if t.is_classification else np.float32
            if arr.dtype != want or arr.shape != (n,):
                raise DatasetError(
                    f"{where}: {key} has dtype {arr.dtype} shape {arr.shape}, expected "
                    f"{np.dtype(want)} ({n},). Re-create the dataset with DatasetWriter")
            _check_target(arr, t, key, where)
            tgs[t.name] = arr
        return ins, tgs, _as_ids(data["player"], n, "player", where), \
            _as_ids(data["session"], n, "session", where)

    @property
    def root(self) -> Path | None:
        """The folder the data came from (None when built from arrays)."""
        return self._root

    @property
    def spec(self) -> DatasetSpec:
        """What the data is."""
        return self._spec

    @property
    def num_windows(self) -> int:
        """Number of windows."""
        return int(self._player.shape[0])

    def __len__(self) -> int:
        return self.num_windows

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        """Modality name -> ``[N, C, S]`` float32."""
        return self._inputs

    @property
    def targets(self) -> dict[str, np.ndarray]:
        """Task name -> ``[N]``: int64 (-1 missing) for class tasks, float32 (NaN missing)."""
        return self._targets

    @property
    def player(self) -> np.ndarray:
        """``[N]`` player ids (unicode)."""
        return self._player

    @property
    def session(self) -> np.ndarray:
        """``[N]`` session ids (unicode)."""
        return self._session

    def subset(self, indices: Sequence[int] | np.ndarray) -> Dataset:
        """The windows at ``indices`` (ints or a boolean mask of length N), as a new Dataset."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (self.num_windows,):
                raise DatasetError(f"subset mask has shape {idx.shape}, expected "
                                   f"({self.num_windows},)")
            idx = np.flatnonzero(idx)
        if idx.size == 0:
            idx = idx.astype(np.int64)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise DatasetError(f"subset indices must be a 1-D list of ints, got dtype {idx.dtype}")
        if idx.size and (idx.min() < -self.num_windows or idx.max() >= self.num_windows):
            raise DatasetError(f"subset indices must lie in [0, {self.num_windows})")
        return Dataset._trusted(
            self._spec, {k: v[idx] for k, v in self._inputs.items()},
            {k: v[idx] for k, v in self._targets.items()}, self._player[idx],
            self._session[idx], self._root)

    def summary(self) -> dict[str, Any]:
        """Counts for printing: windows, players, sessions, and per task the label counts."""
        tasks: dict[str, Any] = {}
        for t in self._spec.tasks:
            y = self._targets[t.name]
            if t.is_classification:
                counts = np.bincount(y[y >= 0], minlength=t.num_classes)
                by_label = zip(t.labels, counts, strict=True)
                tasks[t.name] = {"kind": "class",
                                 "counts": {lab: int(c) for lab, c in by_label},
                                 "missing": int((y < 0).sum())}
            else:
                ok = y[~np.isnan(y)]
                tasks[t.name] = {"kind": "regression", "count": int(ok.size),
                                 "missing": int(y.size - ok.size),
                                 "min": float(ok.min()) if ok.size else None,
                                 "max": float(ok.max()) if ok.size else None,
                                 "mean": float(ok.mean()) if ok.size else None}
        players, pcounts = np.unique(self._player, return_counts=True)
        sessions, scounts = np.unique(self._session, return_counts=True)
        return {
            "root": None if self._root is None else str(self._root),
            "num_windows": self.num_windows,
            "window_seconds": self._spec.window_seconds,
            "hop_seconds": self._spec.hop_seconds,
            "modalities": {m.name: {"channels": list(m.channels), "sample_rate_hz":
                                    m.sample_rate_hz, "window_samples": m.window_samples}
                           for m in self._spec.modalities},
            "players": {str(p): int(c) for p, c in zip(players, pcounts, strict=True)},
            "sessions": {str(s): int(c) for s, c in zip(sessions, scounts, strict=True)},
            "tasks": tasks,
        }

    def __repr__(self) -> str:
        mods = ", ".join(f"{m.name}{list(m.shape)}" for m in self._spec.modalities)
        return (f"Dataset({self.num_windows} windows, {mods}, tasks="
                f"{[t.name for t in self._spec.tasks]}, root={self._root})")
