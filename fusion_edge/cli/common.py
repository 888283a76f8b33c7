"""What every command shares: the consoles and the translation of library errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from fusion_edge.errors import FusionEdgeError

# Width of the tables when the output is not a terminal (a CI log, a file, a pipe), where rich
# would otherwise assume 80 columns and wrap the export table's 11 columns into unreadable
# slivers. COLUMNS, when set, still wins.
PIPE_WIDTH = 160


def make_console(*, stderr: bool = False) -> Console:
    """A rich console that keeps tables whole when its output is not a terminal."""
    c = Console(stderr=stderr)
    if not c.is_terminal and "COLUMNS" not in os.environ:
        c = Console(stderr=stderr, width=PIPE_WIDTH)
    return c


console = make_console()
err_console = make_console(stderr=True)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn a FusionEdgeError into a one-line message and exit code 2 (no traceback).

    The message is escaped: it is plain text, and its square brackets (``[gnss_ports.rx9]``,
    ``[[players]]``, ``pip install 'fusion-edge[gpu]'``) must reach the user, not be taken for
    rich markup and silently removed.
    """
    try:
        yield
    except FusionEdgeError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
