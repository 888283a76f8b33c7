"""Convert a user's own CSV recording into a fusion-edge dataset.

One CSV row is one sample; some columns are signal channels, some are labels, and optionally
one is the time and one is the player. Any channels, any rate, any label names: the importer
windows the signal as it is (no filtering or resampling; the rate stored is the CSV's rate) and
writes through `DatasetWriter`. The worked example is in ``docs/dataset-format.md``.

Rules a user can predict:

* A window's class label is the most frequent label among its samples (ties go to the label
  listed first); its regression value is the mean. If fewer than ``min_labeled_fraction`` of a
  window's samples carry a label, the window has no label for that task (-1 / NaN).
* An empty label cell means "no label" (so does ``NA`` & co. in a class column whose
  ``label_names`` are given and do not list it). An empty (or ``NA``) signal cell makes a NaN
  sample; windows containing one are dropped and counted, and the first such cell is named
  (interpolate beforehand to keep them). Other text in a number column is an error naming its
  line, never a silent NaN.
* Label names inferred from a column (no ``label_names``) are checked: a label that differs from
  another only in case, or a rare one spelled like a far more frequent one (``layupp`` next to
  ``layup``), is an error naming its first line; giving ``label_names`` accepts it as a class.
* The file is UTF-8 (with or without a BOM), or UTF-16/32 with a byte-order mark (Excel's
  "Unicode Text").
* With a time column, a jump longer than 1.5 sample periods is a gap: windows never span a gap.
* With a player column, each player's rows are windowed separately, in file order.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fusion_edge.csv_text import is_missing, number, sniff_delimiter
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
        dropped_nan_windows: Windows left out because a signal cell was empty or a no-value
            marker (``NaN``, ``NA``, ...).
        gaps: Time gaps found (windows never span one).
        window_seconds: The window written, ``window_samples / sample_rate_hz``: the length asked
            for rounded to whole samples (dataset.json records this one).
        hop_seconds: The hop written, likewise rounded to whole samples (at least one).
        first_missing: ``(line, column, cell)`` of the first missing sample that made a window be
            left out (None when none was); `missing_cell` words it.
        ties: Class task -> windows written whose label won a tie (it went to the label listed
            first).
        warnings: What the analyst should look at although the import succeeded (an inferred
            label that is no window's label).
    """

    root: Path
    num_windows: int
    sample_rate_hz: float
    window_samples: int
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    dropped_nan_windows: int = 0
    gaps: int = 0
    window_seconds: float = 0.0
    hop_seconds: float = 0.0
    first_missing: tuple[int, str, str] | None = None
    ties: Mapping[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def read_csv_columns(path: Path | str, columns: Sequence[str]) -> dict[str, list[str]]:
    """Read the named columns of a CSV with a header row, as strings (cells stripped).

    Raises:
        DatasetError: The file is missing, empty (or without data rows), not UTF-8, lacks a
            column (the message lists the columns it has) or names one twice, or a row has too
            few cells or more non-empty cells than the header.
    """
    return _read_csv(Path(path), columns)[0]


def _read_csv(
    path: Path, columns: Sequence[str], roles: Mapping[str, str] | None = None
) -> tuple[dict[str, list[str]], list[int], str]:
    """`read_csv_columns`, plus the file line of each row and the cell separator; ``roles``
    names, for the message about a missing column, the argument (and option) that asked for it."""
    if not path.is_file():
        raise DatasetError(f"{path} not found. Check the path of the CSV recording")
    encoding = _text_encoding(path)
    try:
        out, lines, sep = _read_text_csv(path, columns, roles, encoding)
    except UnicodeDecodeError as exc:
        byte = f"byte 0x{exc.object[exc.start]:02x} cannot be read"
        if encoding != "utf-8-sig":
            raise DatasetError(
                f"{path} starts with a {encoding.upper()} byte-order mark but is not {encoding.upper()} "
                f"text ({byte}; a truncated file?): save it again as 'CSV UTF-8' (Excel: Save As)"
            ) from None
        raise DatasetError(
            f"{path} is not UTF-8 text ({byte}): save it "
            f"as 'CSV UTF-8' (Excel: Save As), or convert it, e.g. iconv -f cp1252 -t utf-8 "
            f"{path.name} > {path.stem}-utf8.csv") from None
    if not lines:
        raise DatasetError(f"{path} has a header but no data rows: expected one row per sample")
    return out, lines, sep


# Byte-order marks, longest first (UTF-32 LE starts with the UTF-16 LE one). Excel's "Unicode
# Text" export is UTF-16 LE with a BOM, tab-separated.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _text_encoding(path: Path) -> str:
    """The codec to read ``path`` with: UTF-16/32 when it starts with their byte-order mark,
    otherwise UTF-8 (with or without Excel's UTF-8 BOM).

    Raises:
        DatasetError: The file holds NUL bytes without a byte-order mark: UTF-16 text without one,
            or no text at all (an .xlsx workbook), which read as UTF-8 would be garbage.
    """
    with path.open("rb") as f:
        head = f.read(4096)
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    if b"\0" in head:
        order = "le" if head[1::2].count(0) >= head[::2].count(0) else "be"
        raise DatasetError(
            f"{path} is not UTF-8 text: it holds NUL bytes (UTF-16 text without a byte-order mark, or "
            f"a workbook such as .xlsx?). Save it as 'CSV UTF-8' (Excel: Save As), or convert it, e.g. "
            f"iconv -f utf-16{order} -t utf-8 {path.name} > {path.stem}-utf8.csv")
    return "utf-8-sig"  # -sig: Excel writes a BOM


def _column_meant(name: str, header: Sequence[str]) -> str | None:
    """The header name a missing column name most likely meant: one that differs only in case,
    then one that differs only in case and ``_``, ``-`` or spaces (``acc_x`` -> ``accX``), and only
    then the closest by spelling, ignoring case (difflib alone takes ``accx`` for ``accZ``)."""
    def squash(text: str) -> str:
        return re.sub(r"[\s_-]", "", text.casefold())

    for key in (str.casefold, squash):
        same = [h for h in header if key(h) == key(name)]
        if same:
            return same[0]
    folded: dict[str, str] = {}
    for h in header:
        folded.setdefault(h.casefold(), h)
    close = difflib.get_close_matches(name.casefold(), list(folded), n=1)
    return folded[close[0]] if close else None


def _read_text_csv(
    path: Path, columns: Sequence[str], roles: Mapping[str, str] | None, encoding: str
) -> tuple[dict[str, list[str]], list[int], str]:
    with path.open(newline="", encoding=encoding) as f:
        reader = csv.reader(f, delimiter=sniff_delimiter(f))
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise DatasetError(f"{path} is empty: expected a header row and one row per sample")
        missing = [c for c in columns if c not in header]
        if missing:
            hints = [f"Did you mean {meant!r} for {c!r}? "
                     for c in missing if (meant := _column_meant(c, header))]
            given = list(dict.fromkeys((roles or {}).get(c, "") for c in missing))
            fix = (f"Fix the names given as {', '.join(given)}" if roles and all(given)
                   else "Fix the column names passed to import_csv")
            raise DatasetError(
                f"{path}: no column(s) {missing}; the header has {header}. {''.join(hints)}{fix}"
            )
        for c in dict.fromkeys(columns):
            at = [i + 1 for i, h in enumerate(header) if h == c]
            if len(at) > 1:
                raise DatasetError(
                    f"{path}: column {c!r} appears {len(at)} times in the header (columns "
                    f"{', '.join(map(str, at))}); rename them so each name says which one to read"
                )
        index = [header.index(c) for c in columns]
        out: dict[str, list[str]] = {c: [] for c in columns}
        lines: list[int] = []
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) < len(header):
                raise DatasetError(f"{path}:{line}: row has {len(row)} cells, the header has "
                                   f"{len(header)}. Repair or remove the row")
            if any(cell.strip() for cell in row[len(header):]):
                raise DatasetError(
                    f"{path}:{line}: row has {len(row)} cells, the header has {len(header)}: a "
                    f"cell holds an unquoted {reader.dialect.delimiter!r} (a decimal comma?), so "
                    "the cells after it are in the wrong columns. Quote or repair the row"
                )
            lines.append(line)
            for c, i in zip(columns, index, strict=True):
                out[c].append(row[i].strip())
    return out, lines, reader.dialect.delimiter


def _regression_hint(task: str, column: str) -> str:
    """How to give ``task`` a range, on the command line and from Python (one message serves both)."""
    spec = task if column == task else f"{task}={column}"
    return f"--regression {spec}:LOW:HIGH; from Python, regression={{{task!r}: (LOW, HIGH)}}"


def _label_names_hint(task: str, names: Sequence[str]) -> str:
    """How to list ``task``'s labels, on the command line and from Python."""
    listed, shown = (",".join(names), repr(list(names))) if len(names) <= 12 else ("NAME,NAME,...", "[...]")
    return f"--label-names {task}={listed}; from Python, label_names={{{task!r}: {shown}}}"


def _check_in_range(values: np.ndarray, value_range: tuple[float, float] | None, path: Path,
                    column: str, task: str, cells: list[str], lines: Sequence[int]) -> None:
    """Refuse values outside the task's range, naming the first one's line and the flag to fix.

    The dataset writer would refuse them too, but by window index and API name, after the
    whole file was read.
    """
    if value_range is None:
        return
    lo, hi = value_range
    bad = np.flatnonzero(~np.isnan(values) & ((values < lo) | (values > hi)))
    if bad.size:
        finite = values[~np.isnan(values)]
        raise DatasetError(
            f"{path}:{lines[bad[0]]}: {cells[bad[0]]!r} in column {column!r} is outside the range "
            f"{lo:g} to {hi:g} given for task {task!r} ({bad.size} value(s) outside; the column "
            f"spans {finite.min():g} to {finite.max():g}). Give the scale's range "
            f"({_regression_hint(task, column)}) or fix the cells"
        )


def _numbers(
    cells: list[str], path: Path | None = None, column: str = "", decimal_comma: bool = False,
    lines: Sequence[int] | None = None, hint: str = "; fix the cell or leave it empty",
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
        if is_missing(cell):
            continue
        line = lines[i] if lines is not None else i + 2
        where = f"{path}:{line}" if path is not None else f"row {line}"
        try:
            out[i] = number(cell, decimal_comma)
        except ValueError:
            advice = (
                "; write decimals with a point (1.25), or export the CSV with ',' between cells "
                "and '.' in numbers"
                if re.fullmatch(r"[+-]?\d+,\d+", cell) else hint
            )
            raise DatasetError(f"{where}: {cell!r} in column {column!r} is not a number{advice}") from None
        if not math.isfinite(out[i]):  # 'inf', '-Infinity': an overflow, not a missing sample
            raise DatasetError(f"{where}: {cell!r} in column {column!r} is not a finite number; fix "
                               "the cell or leave it empty")
    return out


def _is_number(cell: str, decimal_comma: bool) -> bool:
    try:
        return math.isfinite(number(cell, decimal_comma))
    except ValueError:
        return False


def window_signal(signal: np.ndarray, window_samples: int, hop_samples: int) -> np.ndarray:
    """Cut ``[T, C]`` samples into ``[N, C, window_samples]`` windows every ``hop_samples``."""
    if signal.shape[0] < window_samples:
        return np.empty((0, signal.shape[1], window_samples), signal.dtype)
    return sliding_window_view(signal, window_samples, axis=0)[::hop_samples]


def window_class_labels(labels: np.ndarray, num_classes: int, window_samples: int,
                        hop_samples: int, min_labeled_fraction: float = 0.5) -> np.ndarray:
    """Majority label per window from per-sample labels ``[T]`` (-1 = none); -1 if too few."""
    return _class_windows(labels, num_classes, window_samples, hop_samples, min_labeled_fraction)[0]


def _class_windows(labels: np.ndarray, num_classes: int, window_samples: int, hop_samples: int,
                   min_labeled_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """`window_class_labels`, and per window whether its label won a tie (it went to the label
    listed first)."""
    wins = sliding_window_view(labels, window_samples)[::hop_samples] \
        if labels.shape[0] >= window_samples else np.empty((0, window_samples), np.int64)
    counts = (wins[:, :, None] == np.arange(num_classes)).sum(axis=1)
    out = counts.argmax(axis=1).astype(np.int64)  # argmax: ties go to the lower index
    out[counts.sum(axis=1) < min_labeled_fraction * window_samples] = MISSING_CLASS
    tied = (counts == counts.max(axis=1, keepdims=True)).sum(axis=1) > 1 if num_classes else \
        np.zeros(out.shape, bool)
    return out, tied & (out != MISSING_CLASS)


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


# An inferred label that looks like a typo of another (`_look_alike_labels`): one that differs
# from a more frequent label only in case, or one that is rare (on under 1% of the labelled rows,
# or the label of no window) and spelled like a label on at least 10 times as many rows.
_RARE_SHARE = 0.01
_MORE_FREQUENT = 10
_SIMILAR = 0.8  # difflib ratio, ignoring case: 'layupp' / 'layup' 0.91, 'jig' / 'jog' 0.67


def _look_alike_labels(rows: Mapping[str, int], windows: Mapping[str, int]) -> list[tuple[str, str, str]]:
    """(label, the label it probably meant, why) for each inferred label that looks mistyped."""
    total = sum(rows.values())
    out = []
    for lab, n in rows.items():
        folded = lab.casefold()
        cased = [m for m in rows if m != lab and m.casefold() == folded and (rows[m], m) > (n, lab)]
        if cased:
            meant = max(cased, key=lambda m: rows[m])
            out.append((lab, meant, f"differs from {meant!r} only in case"))
            continue
        if n >= _RARE_SHARE * total and windows[lab] > 0:
            continue
        ratio = {m: difflib.SequenceMatcher(None, folded, m.casefold()).ratio()
                 for m in rows if m != lab and rows[m] >= _MORE_FREQUENT * n}
        similar = [m for m, r in ratio.items() if r >= _SIMILAR]
        if similar:
            meant = max(similar, key=lambda m: (ratio[m], rows[m]))
            out.append((lab, meant, f"looks like a typo of {meant!r}"))
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
        DatasetError: A column is missing, a label is not in ``label_names``, an inferred label
            looks mistyped (it differs from another only in case, or is rare and spelled like a far
            more frequent one), the rate cannot be determined, or the recording yields no window.
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
            flag = "--label" if task in names_given else "--regression"
            raise DatasetError(f"task {task!r} has no column: give it with {flag} (label_columns)")
    both = [task for task in names_given if task in regression]
    if both:
        raise DatasetError(
            f"task {both[0]!r} is given label names (--label-names, label_names) and a range "
            "(--regression, regression): a task is a class task with names or a numeric one, not both"
        )
    if (player is None) == (player_column is None):
        raise DatasetError("give exactly one of player (--player, one id for the file) or player_column "
                           "(--player-column, a column naming each row's player)")
    if time_unit not in _TIME_UNITS:
        raise DatasetError(f"time_unit {time_unit!r} is not known: use one of {list(_TIME_UNITS)}")
    roles: dict[str, str] = {}
    for c in channels:
        roles.setdefault(c, "channels (--channels)")
    for task, c in label_columns.items():
        roles.setdefault(c, f"task {task!r} ({'--regression' if task in regression else '--label'})")
    if time_column is not None:
        roles.setdefault(time_column, "time_column (--time-column)")
    if player_column is not None:
        roles.setdefault(player_column, "player_column (--player-column)")
    cols, lines, sep = _read_csv(csv_path, list(roles), roles)
    comma = sep != ","  # cells not separated by commas: '1,25' can only mean 1.25
    n = len(lines)

    if player_column is not None:
        empty = [i for i, cell in enumerate(cols[player_column]) if not cell]
        if empty:
            raise DatasetError(f"{csv_path}:{lines[empty[0]]}: the player cell (column {player_column!r}) "
                               f"is empty; fill it ({len(empty)} row(s) lack a player)")
    players = np.array(cols[player_column] if player_column else [player] * n, dtype=str)
    time_s = None
    rate_given = sample_rate_hz is not None
    if time_column is not None:
        raw = _numbers(cols[time_column], csv_path, time_column, comma, lines,
                       f"; the time column must hold numbers in {time_unit} (--time-unit), e.g. seconds "
                       "since the start or epoch milliseconds: convert clock times to numbers")
        if np.isnan(raw).any():
            first = int(np.flatnonzero(np.isnan(raw))[0])
            raise DatasetError(f"{csv_path}:{lines[first]}: column {time_column!r} is empty; every row "
                               "needs its time (fill the cell or remove the row)")
        time_s = raw * _TIME_UNITS[time_unit]
        cells_t = cols[time_column]
        steps = []
        for pid in dict.fromkeys(players.tolist()):
            rows_p = np.flatnonzero(players == pid)
            step = np.diff(time_s[rows_p])
            bad = np.flatnonzero(step <= 0)
            if bad.size:
                i, j = rows_p[bad[0]], rows_p[bad[0] + 1]
                raise DatasetError(
                    f"{csv_path}:{lines[j]}: column {time_column!r} goes from {cells_t[i]} to {cells_t[j]} "
                    f"{time_unit} (player {pid!r}); the times must increase for each player (sort "
                    "the rows, or remove the repeated ones)")
            steps.append(step)
        steps_all = np.concatenate(steps) if steps else np.empty(0)
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
                    f"sample_rate_hz={sample_rate_hz:g}. Check time_unit or the rate (--time-unit, --rate)")
    if sample_rate_hz is None:
        raise DatasetError(
            f"{csv_path}: column {time_column!r} has no two rows of one player to infer the rate from; give "
            "sample_rate_hz (--rate)" if time_column is not None else
            "give sample_rate_hz (--rate), or a time_column (--time-column) to infer it from")
    rate_origin = ("given as sample_rate_hz / --rate" if rate_given
                   else f"inferred from column {time_column!r} read in {time_unit}")
    window = round(window_seconds * sample_rate_hz)
    hop = max(1, round(hop_seconds * sample_rate_hz))
    if window < 1:
        raise DatasetError(
            f"{csv_path}: a {window_seconds:g} s window is {window_seconds * sample_rate_hz:.3g} samples "
            f"at {sample_rate_hz:g} Hz ({rate_origin}). Check --time-unit (time_unit) and --rate "
            "(sample_rate_hz), or give a longer --window (window_seconds)")

    # Windows are whole samples: dataset.json records what was cut, not what was asked for
    # (1.25 s at 10 Hz is 12 samples, 1.2 s), so its seconds agree with its sample counts.
    window_cut, hop_cut = window / sample_rate_hz, hop / sample_rate_hz
    tasks: list[TaskSpec] = []
    per_sample: dict[str, np.ndarray] = {}
    inferred: list[str] = []  # class tasks whose label names come from the column
    for task, column in label_columns.items():
        cells = cols[column]
        if task in regression:
            tasks.append(TaskSpec(task, "regression", value_range=regression[task]))
            per_sample[task] = _numbers(cells, csv_path, column, comma, lines)
            _check_in_range(per_sample[task], regression[task], csv_path, column, task, cells, lines)
            continue
        given = names_given.get(task)
        if not given:
            marker = next((i for i, c in enumerate(cells) if c and is_missing(c)), None)
            if marker is not None:
                raise DatasetError(
                    f"{csv_path}:{lines[marker]}: {cells[marker]!r} in class column {column!r} means no "
                    f"label only when label_names is given (--label-names {task}=...): list the "
                    f"labels, and add {cells[marker]!r} to them if it is a class")
        names = given or tuple(sorted({c for c in cells if c}))
        if not names:
            raise DatasetError(f"{csv_path}: column {column!r} has no labels; fill it or leave "
                               f"task {task!r} out (--label, label_columns)")
        if not given and all(_is_number(c, comma) for c in names):
            ordered = sorted(names, key=lambda c: number(c, comma))
            shown = ", ".join(ordered[:8]) + (f", ... ({len(ordered)} distinct)" if len(ordered) > 8 else "")
            raise DatasetError(
                f"{csv_path}: column {column!r} of class task {task!r} holds only numbers ({shown}). "
                f"For a numeric target give it as a regression task ({_regression_hint(task, column)}); "
                f"if the numbers are class codes, list them as its labels "
                f"({_label_names_hint(task, ordered)})")
        index = {name: i for i, name in enumerate(names)}
        codes = np.full(n, MISSING_CLASS, np.int64)
        for row, cell in enumerate(cells):
            if cell:
                if cell not in index:
                    if is_missing(cell):
                        continue  # 'NA' not among the given labels: no label, as an empty cell
                    raise DatasetError(
                        f"{csv_path}:{lines[row]}: label {cell!r} in column {column!r} is not in "
                        f"label_names[{task!r}] = {list(names)}. Add it or fix the cell")
                codes[row] = index[cell]
        tasks.append(TaskSpec(task, "class", names))
        per_sample[task] = codes
        if not given:
            inferred.append(task)

    spec = DatasetSpec(
        modalities=(ModalitySpec(modality_name, tuple(channels),
                                 tuple(units) if units is not None else ("",) * len(channels),
                                 sample_rate_hz, window),),
        tasks=tuple(tasks), window_seconds=window_cut, hop_seconds=hop_cut,
        preprocessing={"filter": None, "resampled": False, "sample_rate_hz": sample_rate_hz},
        source={"kind": "csv", "file": csv_path.name,
                "sha256": hashlib.sha256(csv_path.read_bytes()).hexdigest(),
                "label_columns": label_columns, "min_labeled_fraction": min_labeled_fraction},
        description=description,
    )
    signal = np.stack([_numbers(cols[c], csv_path, c, comma, lines) for c in channels], axis=1) if n else \
        np.empty((0, len(channels)))
    session_id = session if session is not None else csv_path.stem
    # Cut every window first (views; no copy), so the label checks below see the windows
    # written and a refused import leaves nothing behind.
    batches = []  # (player, windows, targets, keep)
    gaps = longest = 0
    first_missing: tuple[int, str, str] | None = None  # (line, column, cell) of a dropped window
    ties = dict.fromkeys((t.name for t in spec.tasks if t.is_classification), 0)
    for pid in dict.fromkeys(players.tolist()):
        rows = np.flatnonzero(players == pid)
        t = None if time_s is None else time_s[rows]
        segs = _segments(t, rows.size, sample_rate_hz)
        gaps += len(segs) - 1
        for lo, hi in segs:
            longest = max(longest, hi - lo)
            r = rows[lo:hi]
            x = window_signal(signal[r], window, hop)
            keep = np.isfinite(x).all(axis=(1, 2))
            ys = {}
            for ts in spec.tasks:
                if ts.is_classification:
                    ys[ts.name], tied = _class_windows(per_sample[ts.name][r], ts.num_classes,
                                                       window, hop, min_labeled_fraction)
                    ties[ts.name] += int((tied & keep).sum())
                else:
                    ys[ts.name] = window_regression(per_sample[ts.name][r], window, hop,
                                                    min_labeled_fraction)
            if not keep.all():  # the first bad sample of the first dropped window is the first
                k = int(np.flatnonzero(~keep)[0])  # one any dropped window holds
                i, c = (int(v[0]) for v in np.nonzero(~np.isfinite(signal[r[k * hop: k * hop + window]])))
                row = int(r[k * hop + i])
                if first_missing is None or lines[row] < first_missing[0]:
                    first_missing = (lines[row], channels[c], cols[channels[c]][row])
            batches.append((pid, x, ys, keep))
    dropped = sum(int((~keep).sum()) for *_, keep in batches)
    total = sum(int(keep.sum()) for *_, keep in batches)
    if total == 0:
        at = (f"no complete window of {window_seconds:g} s ({window} samples) at "
              f"{sample_rate_hz:g} Hz ({rate_origin})")
        if longest < window:
            stretch = " without a time gap" if time_s is not None else ""
            raise DatasetError(
                f"{csv_path}: {at}: the longest stretch{stretch} is {longest} samples "
                f"({longest / sample_rate_hz:.3g} s). Give a shorter --window (window_seconds), "
                "or check --time-unit (time_unit) and --rate (sample_rate_hz)")
        first = f" (first: {missing_cell(csv_path, *first_missing)})" if first_missing else ""
        raise DatasetError(
            f"{csv_path}: {at} without a missing sample; all {dropped} windows hold an empty or NaN "
            f"signal cell{first}. Fill or interpolate them, or check the channels and window_seconds")
    warnings = _check_inferred_labels(csv_path, spec, inferred, label_columns, per_sample, lines,
                                      batches, window_cut)
    with DatasetWriter(out_dir, spec, shard_windows=shard_windows, overwrite=overwrite) as w:
        for pid, x, ys, keep in batches:
            if keep.any():
                w.add({modality_name: x[keep]}, {k: v[keep] for k, v in ys.items()},
                      [pid] * int(keep.sum()), [session_id] * int(keep.sum()))
    return CsvImportResult(Path(out_dir), total, float(sample_rate_hz), window,
                           {t.name: t.labels for t in spec.tasks if t.is_classification},
                           dropped, gaps, window_cut, hop_cut, first_missing, ties, tuple(warnings))


def missing_cell(path: Path | str, line: int, column: str, cell: str) -> str:
    """Where a missing sample is and what its cell holds: ``belt.csv:502, column 'ay' holds 'NaN'``
    (or ``... is empty``), for `CsvImportResult.first_missing`."""
    return f"{path}:{line}, column {column!r} " + (f"holds {cell!r}" if cell else "is empty")


def _check_inferred_labels(path: Path, spec: DatasetSpec, inferred: Sequence[str],
                           label_columns: Mapping[str, str], per_sample: Mapping[str, np.ndarray],
                           lines: Sequence[int], batches: Sequence[tuple], window_cut: float) -> list[str]:
    """Refuse inferred labels that look mistyped; warn about those that are no window's label.

    A label named in no ``label_names`` becomes a class of its own: a one-row typo
    (``layupp``) or a case variant (``Layup``) would make a class training never sees.

    Raises:
        DatasetError: An inferred label differs from another only in case, or is rare and spelled
            like a far more frequent one. The message names its first line and the label it
            probably meant; listing the labels (``--label-names``) accepts it as a class.
    """
    warnings = []
    for task in inferred:
        ts = spec.task(task)
        codes = per_sample[task]
        rows = dict(zip(ts.labels, np.bincount(codes[codes >= 0], minlength=ts.num_classes).tolist(),
                        strict=True))
        won = np.zeros(ts.num_classes, np.int64)
        for _, _, ys, keep in batches:
            y = ys[task][keep]
            won += np.bincount(y[y >= 0], minlength=ts.num_classes)
        windows = dict(zip(ts.labels, won.tolist(), strict=True))

        def first_line(label: str, codes: np.ndarray = codes, labels: tuple = ts.labels) -> int:
            return lines[int(np.argmax(codes == labels.index(label)))]

        column = label_columns[task]
        suspects = _look_alike_labels(rows, windows)
        if suspects:
            lab, meant, why = suspects[0]
            more = "".join(f"; also {s!r} (line {first_line(s)}), which {w}" for s, _, w in suspects[1:])
            raise DatasetError(
                f"{path}:{first_line(lab)}: label {lab!r} in column {column!r} {why} (it is on "
                f"{rows[lab]} row(s) and is the label of {windows[lab]} window(s); {meant!r} is on "
                f"{rows[meant]} rows){more}. With the label names taken from the column it would be a "
                f"class of its own. Fix the cells (to "
                f"{meant!r}, or leave them empty), or, if {lab!r} is a class, list the labels "
                f"({_label_names_hint(task, ts.labels)})")
        for lab, n in windows.items():
            if n == 0:
                warnings.append(
                    f"label {lab!r} of task {task!r} ({rows[lab]} row(s) in column {column!r}, first at "
                    f"{path}:{first_line(lab)}) is the label of no {window_cut:g} s window, so training "
                    "gets a class without examples: relabel or empty those cells, or give a shorter "
                    "window (--window, window_seconds)")
    return warnings
