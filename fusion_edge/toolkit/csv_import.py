"""Convert a user's own CSV recording into a fusion-edge dataset.

One CSV row is one sample; some columns are signal channels, some are labels, and optionally
one is the time and one is the player. Any channels, any rate, any label names: the importer
windows the signal as it is (no filtering or resampling; the rate stored is the CSV's rate) and
writes through `DatasetWriter`. The worked example is in ``docs/dataset-format.md``.

Rules a user can predict:

* A window's class label is the most frequent label among its samples (ties go to the label
  listed first); its regression value is the mean. If fewer than ``min_labeled_fraction`` of a
  window's samples carry a label, the window has no label for that task (-1 / NaN).
* An empty label cell means "no label". An empty or non-numeric signal cell makes a NaN sample;
  windows containing one are dropped and counted (interpolate beforehand to keep them).
* With a time column, a jump longer than 1.5 sample periods is a gap: windows never span a gap.
* With a player column, each player's rows are windowed separately, in file order.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fusion_edge.csv_text import delimiter, file_delimiter, is_missing, number
from fusion_edge.errors import DatasetError
from fusion_edge.toolkit.dataset import (
    MISSING_CLASS,
    DatasetSpec,
    DatasetWriter,
    ModalitySpec,
    TaskSpec,
)

_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_GAP_PERIODS = 1.5  # a time step this many periods long means samples were lost


@dataclass(frozen=True)
class CsvImportResult:
    """What `import_csv` wrote.

    Attributes:
        root: The dataset folder.
        num_windows: Windows written.
        sample_rate_hz: The rate used (given or inferred from the time column).
        window_samples: Samples per window.
        labels: Class task -> label names in index order (inferred ones included).
        dropped_nan_windows: Windows dropped because a channel had an empty/non-numeric cell.
        gaps: Time gaps found (windows never span one).
    """

    root: Path
    num_windows: int
    sample_rate_hz: float
    window_samples: int
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    dropped_nan_windows: int = 0
    gaps: int = 0


def read_csv_columns(path: Path | str, columns: Sequence[str]) -> dict[str, list[str]]:
    """Read the named columns of a CSV with a header row, as strings (cells stripped).

    Raises:
        DatasetError: The file is missing, empty, or lacks a column (the message lists the
            columns it has).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} not found. Check the path of the CSV recording")
    with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: Excel writes a BOM
        first = f.readline()
        f.seek(0)
        reader = csv.reader(f, delimiter=delimiter(first))
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise DatasetError(f"{path} is empty: expected a header row and one row per sample")
        missing = [c for c in columns if c not in header]
        if missing:
            raise DatasetError(
                f"{path}: no column(s) {missing}; the header has {header}. Fix the column names "
                f"passed to import_csv"
            )
        index = [header.index(c) for c in columns]
        out: dict[str, list[str]] = {c: [] for c in columns}
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < len(header):
                raise DatasetError(f"{path}:{line}: row has {len(row)} cells, the header has "
                                   f"{len(header)}. Repair or remove the row")
            for c, i in zip(columns, index, strict=True):
                out[c].append(row[i].strip())
    return out


def _decimal_comma(path: Path) -> bool:
    """Whether a CSV's cells are not separated by commas, so ``1,25`` can only mean 1.25."""
    return file_delimiter(path) != ","


def _numbers(
    cells: list[str], path: Path | None = None, column: str = "", decimal_comma: bool = False
) -> np.ndarray:
    """Floats of a column's cells; empty (or NA-like) cells are NaN, a missing sample.
    With ``decimal_comma`` (a ``;``- or tab-separated file), ``1,25`` reads as 1.25.

    Raises:
        DatasetError: A cell holds text that is no number (a unit, a typo, a decimal comma):
            the message names its line and column. Such a cell is not a missing sample, and
            dropping the windows around it would lose good data without a word.
    """
    out = np.full(len(cells), np.nan)
    for i, cell in enumerate(cells):
        try:
            out[i] = number(cell, decimal_comma)
        except ValueError:
            if is_missing(cell):
                continue
            hint = (
                "; write decimals with a point (1.25), or export the CSV with ',' between cells "
                "and '.' in numbers"
                if re.fullmatch(r"[+-]?\d+,\d+", cell) else "; fix the cell or leave it empty"
            )
            where = f"{path}:{i + 2}" if path is not None else f"row {i + 2}"
            raise DatasetError(f"{where}: {cell!r} in column {column!r} is not a number{hint}") from None
    return out


def window_signal(signal: np.ndarray, window_samples: int, hop_samples: int) -> np.ndarray:
    """Cut ``[T, C]`` samples into ``[N, C, window_samples]`` windows every ``hop_samples``."""
    if signal.shape[0] < window_samples:
        return np.empty((0, signal.shape[1], window_samples), signal.dtype)
    return sliding_window_view(signal, window_samples, axis=0)[::hop_samples]


def window_class_labels(labels: np.ndarray, num_classes: int, window_samples: int,
                        hop_samples: int, min_labeled_fraction: float = 0.5) -> np.ndarray:
    """Majority label per window from per-sample labels ``[T]`` (-1 = none); -1 if too few."""
    wins = sliding_window_view(labels, window_samples)[::hop_samples] \
        if labels.shape[0] >= window_samples else np.empty((0, window_samples), np.int64)
    counts = (wins[:, :, None] == np.arange(num_classes)).sum(axis=1)
    out = counts.argmax(axis=1).astype(np.int64)  # argmax: ties go to the lower index
    out[counts.sum(axis=1) < min_labeled_fraction * window_samples] = MISSING_CLASS
    return out


def window_regression(values: np.ndarray, window_samples: int, hop_samples: int,
                      min_labeled_fraction: float = 0.5) -> np.ndarray:
    """Mean per window of per-sample values ``[T]`` (NaN = none); NaN if too few are present."""
    wins = sliding_window_view(values, window_samples)[::hop_samples] \
        if values.shape[0] >= window_samples else np.empty((0, window_samples))
    present = (~np.isnan(wins)).sum(axis=1)
    total = np.where(np.isnan(wins), 0.0, wins).sum(axis=1)
    out = np.full(wins.shape[0], np.nan, np.float32)
    ok = (present >= min_labeled_fraction * window_samples) & (present > 0)
    out[ok] = (total[ok] / present[ok]).astype(np.float32)
    return out


def _segments(time_s: np.ndarray | None, n: int, rate: float) -> list[tuple[int, int]]:
    """Row ranges without time gaps (the whole stream when there is no time column)."""
    if time_s is None or n == 0:
        return [(0, n)]
    breaks = np.flatnonzero(np.diff(time_s) > _GAP_PERIODS / rate) + 1
    edges = [0, *breaks.tolist(), n]
    return list(zip(edges[:-1], edges[1:], strict=True))


def import_csv(
    csv_path: Path | str,
    out_dir: Path | str,
    *,
    channels: Sequence[str],
    window_seconds: float,
    hop_seconds: float,
    modality_name: str = "imu",
    units: Sequence[str] | None = None,
    sample_rate_hz: float | None = None,
    time_column: str | None = None,
    time_unit: str = "s",
    label_columns: Mapping[str, str] | None = None,
    label_names: Mapping[str, Sequence[str]] | None = None,
    regression: Mapping[str, tuple[float, float] | None] | None = None,
    player: str | None = None,
    player_column: str | None = None,
    session: str | None = None,
    min_labeled_fraction: float = 0.5,
    description: str = "",
    overwrite: bool = False,
    shard_windows: int = 4096,
) -> CsvImportResult:
    """Window a CSV recording and write it as a fusion-edge dataset.

    Args:
        csv_path: The CSV, with a header row and one row per sample.
        out_dir: The dataset folder to create.
        channels: Signal columns, in the order the model will see them.
        window_seconds: Window length.
        hop_seconds: Step between window starts.
        modality_name: Name of the stream in the dataset (``input.<name>`` in the shards).
        units: One unit per channel (default: ``""`` each).
        sample_rate_hz: The sampling rate; inferred from ``time_column`` when omitted.
        time_column: Column with sample times, used to infer the rate and to find gaps.
        time_unit: Unit of ``time_column``: ``"s"``, ``"ms"``, ``"us"`` or ``"ns"``.
        label_columns: Task name -> column holding its per-sample label.
        label_names: Class task -> its label names in index order. Omitted: the sorted distinct
            values of the column (give them when importing several files, so indices agree).
        regression: Task name -> ``(low, high)`` or None, for tasks whose column is a number
            (the rest of ``label_columns`` are class tasks).
        player: The player id, when the file is one player's.
        player_column: Column with the player id, when the file mixes players.
        session: The session id (default: the file name without extension).
        min_labeled_fraction: Share of a window's samples that must carry a label for the
            window to get one.
        description: Free text stored in dataset.json.
        overwrite: Replace an existing dataset in ``out_dir``.
        shard_windows: Windows per shard file.

    Returns:
        What was written.

    Raises:
        DatasetError: A column is missing, a label is not in ``label_names``, the rate cannot be
            determined, or the recording yields no window.
    """
    csv_path = Path(csv_path)
    for name, flag, value in (("window_seconds", "--window", window_seconds), ("hop_seconds", "--hop", hop_seconds)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise DatasetError(f"{name} ({flag}) must be a positive number of seconds, got {value!r}")
    if not 0.0 < min_labeled_fraction <= 1.0:
        raise DatasetError(
            f"min_labeled_fraction (--min-labeled) must be in (0, 1], got {min_labeled_fraction!r}: the "
            "share of a window's samples that must carry a label"
        )
    label_columns = dict(label_columns or {})
    regression = dict(regression or {})
    names_given = {k: tuple(v) for k, v in (label_names or {}).items()}
    for task in [*regression, *names_given]:
        if task not in label_columns:
            raise DatasetError(f"task {task!r} has no column: add it to label_columns")
    if (player is None) == (player_column is None):
        raise DatasetError("give exactly one of player (one id for the file) or player_column")
    if time_unit not in _TIME_UNITS:
        raise DatasetError(f"time_unit {time_unit!r} is not known: use one of {list(_TIME_UNITS)}")
    wanted = [*channels, *label_columns.values()]
    wanted += [c for c in (time_column, player_column) if c is not None]
    cols = read_csv_columns(csv_path, list(dict.fromkeys(wanted)))
    comma = _decimal_comma(csv_path)
    n = len(cols[channels[0]]) if channels else 0

    players = np.array(cols[player_column] if player_column else [player] * n, dtype=str)
    time_s = None
    if time_column is not None:
        time_s = _numbers(cols[time_column], csv_path, time_column, comma) * _TIME_UNITS[time_unit]
        steps = [np.diff(time_s[players == pid]) for pid in dict.fromkeys(players.tolist())]
        steps_all = np.concatenate(steps) if steps else np.empty(0)
        if np.isnan(time_s).any() or (steps_all <= 0).any():
            raise DatasetError(f"{csv_path}: column {time_column!r} must hold increasing numbers "
                               f"in {time_unit} for each player (sort the rows, fill empty cells)")
        if steps_all.size:
            # Mean of the ordinary steps: robust to gaps, and to timestamps rounded to 1 ms
            # (52 Hz logged in ms alternates 19 and 20 ms steps; their median would say 50 Hz).
            ordinary = steps_all[steps_all <= _GAP_PERIODS * np.median(steps_all)]
            inferred = 1.0 / float(ordinary.mean())
            if sample_rate_hz is None:
                sample_rate_hz = round(inferred, 2)
            elif abs(inferred - sample_rate_hz) > 0.05 * sample_rate_hz:
                raise DatasetError(
                    f"{csv_path}: column {time_column!r} says {inferred:.3g} Hz but "
                    f"sample_rate_hz={sample_rate_hz:g}. Check time_unit or the rate")
    if sample_rate_hz is None:
        raise DatasetError("give sample_rate_hz, or a time_column to infer it from")
    window = round(window_seconds * sample_rate_hz)
    hop = max(1, round(hop_seconds * sample_rate_hz))

    tasks: list[TaskSpec] = []
    per_sample: dict[str, np.ndarray] = {}
    for task, column in label_columns.items():
        cells = cols[column]
        if task in regression:
            tasks.append(TaskSpec(task, "regression", value_range=regression[task]))
            per_sample[task] = _numbers(cells, csv_path, column, comma)
            continue
        names = names_given.get(task) or tuple(sorted({c for c in cells if c}))
        if not names:
            raise DatasetError(f"{csv_path}: column {column!r} has no labels; fill it or leave "
                               f"task {task!r} out of label_columns")
        index = {name: i for i, name in enumerate(names)}
        codes = np.full(n, MISSING_CLASS, np.int64)
        for row, cell in enumerate(cells):
            if cell:
                if cell not in index:
                    raise DatasetError(
                        f"{csv_path}:{row + 2}: label {cell!r} in column {column!r} is not in "
                        f"label_names[{task!r}] = {list(names)}. Add it or fix the cell")
                codes[row] = index[cell]
        tasks.append(TaskSpec(task, "class", names))
        per_sample[task] = codes

    spec = DatasetSpec(
        modalities=(ModalitySpec(modality_name, tuple(channels),
                                 tuple(units) if units is not None else ("",) * len(channels),
                                 sample_rate_hz, window),),
        tasks=tuple(tasks), window_seconds=window_seconds, hop_seconds=hop_seconds,
        preprocessing={"filter": None, "resampled": False, "sample_rate_hz": sample_rate_hz},
        source={"kind": "csv", "file": csv_path.name,
                "sha256": hashlib.sha256(csv_path.read_bytes()).hexdigest(),
                "label_columns": label_columns, "min_labeled_fraction": min_labeled_fraction},
        description=description,
    )
    signal = np.stack([_numbers(cols[c], csv_path, c, comma) for c in channels], axis=1) if n else \
        np.empty((0, len(channels)))
    session_id = session if session is not None else csv_path.stem
    dropped = gaps = 0
    with DatasetWriter(out_dir, spec, shard_windows=shard_windows, overwrite=overwrite) as w:
        for pid in dict.fromkeys(players.tolist()):
            rows = np.flatnonzero(players == pid)
            t = None if time_s is None else time_s[rows]
            segs = _segments(t, rows.size, sample_rate_hz)
            gaps += len(segs) - 1
            for lo, hi in segs:
                r = rows[lo:hi]
                x = window_signal(signal[r], window, hop)
                ys = {}
                for ts in spec.tasks:
                    ys[ts.name] = (
                        window_class_labels(per_sample[ts.name][r], ts.num_classes, window, hop,
                                            min_labeled_fraction)
                        if ts.is_classification else
                        window_regression(per_sample[ts.name][r], window, hop,
                                          min_labeled_fraction))
                keep = np.isfinite(x).all(axis=(1, 2))
                dropped += int((~keep).sum())
                if keep.any():
                    w.add({modality_name: x[keep]}, {k: v[keep] for k, v in ys.items()},
                          [pid] * int(keep.sum()), [session_id] * int(keep.sum()))
        if w.num_windows == 0:
            raise DatasetError(
                f"{csv_path}: no complete window of {window_seconds:g} s ({window} samples) "
                f"without empty cells; {dropped} windows had empty/non-numeric signal cells. "
                f"Check the channels and window_seconds")
        total = w.num_windows
    return CsvImportResult(Path(out_dir), total, float(sample_rate_hz), window,
                           {t.name: t.labels for t in spec.tasks if t.is_classification},
                           dropped, gaps)
