"""The `fusion-edge` command line: thin commands over the library."""

from fusion_edge.cli.app import app, main

__all__ = ["app", "main"]
