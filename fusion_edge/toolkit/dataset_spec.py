"""What ``dataset.json`` says: modalities, tasks, windows and how samples group (the spec half
of the dataset format; `fusion_edge.toolkit.dataset` reads and writes the shards).

The folder layout, the shards and the commit marker are described in `fusion_edge.toolkit.dataset`
and ``docs/dataset-format.md``. numpy only, no pickle, no torch.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
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
