"""Checks on where a command will write, made before any long work starts.

Training, an ablation or an export can run for hours; finding only at the end that ``--out``
or ``--json`` cannot be written loses that work. These checks create nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from fusion_edge.errors import ConfigError
from fusion_edge.file_access import nearest_existing

__all__ = ["check_writable"]


def check_writable(path: str | Path, option: str, *, folder: bool) -> Path:
    """Refuse ``path`` early when it cannot be written; returns it as a `Path`.

    Args:
        path: The file or folder a command will write (it may not exist yet).
        option: The command-line option that named it, for the message (e.g. ``--json``).
        folder: True when ``path`` is a folder to create or fill, False for a file.

    Raises:
        ConfigError: ``path`` is the wrong kind (a file where a folder is needed or the
            reverse), a parent is a file, or the nearest existing folder is not writable.
    """
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise ConfigError(f"{option} {path} is a file, not a folder; choose a folder path")
        if not folder and path.is_dir():
            raise ConfigError(f"{option} {path} is a folder; give a file path such as {path / 'out.json'}")
    probe = path if folder and path.is_dir() else nearest_existing(path.parent)
    if not probe.is_dir():
        raise ConfigError(
            f"{option} {path} cannot be created: {probe} is a file, not a folder; choose another path"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{option} {path} cannot be written: no write permission in {probe}; choose a "
            "writable path"
        )
    return path
