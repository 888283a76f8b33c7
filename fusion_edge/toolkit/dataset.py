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
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np

from fusion_edge.errors import DatasetError
from fusion_edge.toolkit.dataset_spec import (
    _SHARD_ENTRY_KEYS,
    _STORAGE_KEYS,
    DOCS,
    FORMAT,
    FORMAT_VERSION,
    MISSING_CLASS,
    SHARD_DIR,
    SPEC_FILE,
    DatasetSpec,
    ModalitySpec,
    TaskKind,
    TaskSpec,
    _check_keys,
)

__all__ = [
    "DOCS",
    "FORMAT",
    "FORMAT_VERSION",
    "MISSING_CLASS",
    "SHARD_DIR",
    "SPEC_FILE",
    "Dataset",
    "DatasetSpec",
    "DatasetWriter",
    "ModalitySpec",
    "TaskKind",
    "TaskSpec",
    "write_dataset",
]


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
            shards/shard-*.npz; other files are left alone). The old files are moved aside and
            deleted only once the new dataset.json is written; `abort` (a failed or
            interrupted write) puts them back. Without it a non-empty ``root`` is refused.

    Raises:
        DatasetError: ``root`` is not empty and ``overwrite`` is False, or arguments are invalid.
    """

    def __init__(self, root: Path | str, spec: DatasetSpec, *, shard_windows: int = 4096,
                 overwrite: bool = False) -> None:
        self._backup: Path | None = None
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
            # The old dataset is moved aside, not deleted, until the new one is complete: a
            # failed or interrupted write puts it back. dataset.json goes first so the folder
            # never looks complete with stale shards.
            try:
                self._backup = Path(tempfile.mkdtemp(prefix=".overwritten-", dir=self.root))
                if (self.root / SPEC_FILE).exists():
                    os.replace(self.root / SPEC_FILE, self._backup / SPEC_FILE)
                for old in sorted((self.root / SHARD_DIR).glob("shard-*.npz")):
                    os.replace(old, self._backup / old.name)
            except OSError as exc:
                self._restore()
                raise DatasetError(
                    f"cannot replace the dataset in {self.root} ({exc.strerror or exc}); it is "
                    "left as it was. Choose a writable folder"
                ) from None
        self._created_root = not self.root.exists()
        try:
            (self.root / SHARD_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._restore()
            raise DatasetError(
                f"cannot create the dataset folder {self.root} ({exc.strerror or exc}); choose a "
                "writable folder"
            ) from None
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
            kept = " (the dataset already there is kept)" if self._backup is not None else ""
            self.abort()
            raise DatasetError(
                f"no windows were added to {self.root}; nothing was written{kept}. "
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
        if self._backup is not None:  # the new dataset is committed: drop the old one
            shutil.rmtree(self._backup, ignore_errors=True)
            self._backup = None
        return self.root

    def _restore(self) -> None:
        """Put back the dataset this writer was replacing (shards first, dataset.json last)."""
        if self._backup is None:
            return
        for old in sorted(self._backup.glob("shard-*.npz")):
            os.replace(old, self.root / SHARD_DIR / old.name)
        if (self._backup / SPEC_FILE).exists():
            os.replace(self._backup / SPEC_FILE, self.root / SPEC_FILE)
        shutil.rmtree(self._backup, ignore_errors=True)
        self._backup = None

    def abort(self) -> None:
        """Remove what this writer wrote; the folder is left without dataset.json."""
        self._closed = True
        self._pending, self._pending_n = [], 0
        (self.root / (SPEC_FILE + ".tmp")).unlink(missing_ok=True)
        for entry in self._shards:
            (self.root / entry["file"]).unlink(missing_ok=True)
        self._shards = []
        self._restore()
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
