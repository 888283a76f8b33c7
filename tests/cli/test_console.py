"""The CLI's consoles keep wide tables whole when the output is a log or a pipe."""

from __future__ import annotations

import io

from fusion_edge.cli.common import PIPE_WIDTH, make_console


def test_a_pipe_gets_the_wide_width(monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())  # not a terminal
    assert make_console().width == PIPE_WIDTH


def test_columns_still_wins(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert make_console().width == 100
