"""Root typer app. Each command group lives in its own module and registers itself on `app`."""

from __future__ import annotations

import typer

from fusion_edge import __version__
from fusion_edge.cli.common import console

app = typer.Typer(
    name="fusion-edge",
    help="Simulate, train, export and run multimodal sports models on edge boxes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"fusion-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """fusion-edge: edge deployment toolkit for multimodal sports models."""


# Command groups: one module each.
from fusion_edge.cli import toolkit_commands  # noqa: E402,F401  (registers on `app` when imported)
from fusion_edge.cli.calibrate_commands import calibrate_app  # noqa: E402

app.add_typer(calibrate_app, name="calibrate")
from fusion_edge.cli import run_commands  # noqa: E402

run_commands.register(app)
from fusion_edge.cli import export_commands  # noqa: E402

export_commands.register(app)
from fusion_edge.cli import dataset_commands  # noqa: E402

dataset_commands.register(app)
from fusion_edge.cli import bridge_commands  # noqa: E402

bridge_commands.register(app)
from fusion_edge.cli import profile_commands  # noqa: E402

profile_commands.register(app)
from fusion_edge.cli import recording_commands  # noqa: E402

recording_commands.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
