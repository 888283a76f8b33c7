"""Creating files others can read, and checking a folder can take them, before the work.

The permissions a file or folder gets when it is created the ordinary way:

``tempfile.mkstemp`` makes 0600 files, ``mkdtemp`` 0700 folders, and safetensors writes its
files 0600. What this project writes is meant to be copied to a box and read there, often by
another user than the one who wrote it (a kit service account, a file made under ``sudo``),
so such files are given the mode ``open()`` would have given them: 0666 (files) or 0777
(folders) less the process umask.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["ordinary_mode", "make_ordinary", "probe_writable", "nearest_existing"]


def ordinary_mode(*, folder: bool = False) -> int:
    """0666 or 0777 less the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if folder else 0o666) & ~umask


def make_ordinary(path: str | os.PathLike[str] | int) -> None:
    """Give ``path`` (a path, or an open file descriptor) the ordinary mode for its kind."""
    if isinstance(path, int):
        os.fchmod(path, ordinary_mode())
        return
    p = Path(path)
    p.chmod(ordinary_mode(folder=p.is_dir()))


def probe_writable(folder: str | os.PathLike[str]) -> None:
    """Create ``folder`` if needed and check a file can be created in it (and remove it).

    Raises:
        OSError: the folder cannot be made or written; callers turn it into a message that
            names their option.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-", suffix=".tmp")
    os.close(fd)
    os.unlink(probe)


def nearest_existing(path: str | os.PathLike[str]) -> Path:
    """``path`` itself if it exists, else its closest existing ancestor: the folder that
    creating ``path`` (and any missing folders above it) would write into, or a file that
    stands in the way. Creates nothing."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return p
