"""What every command shares: the consoles and the translation of library errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from fusion_edge.errors import FusionEdgeError

console = Console()
err_console = Console(stderr=True)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn a FusionEdgeError into a one-line message and exit code 2 (no traceback)."""
    try:
        yield
    except FusionEdgeError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
