"""How the CSV files people hand fusion-edge are read: one rule for every reader.

Recordings arrive from loggers, spreadsheets and scripts. Cells are separated by ``,``; a file
whose header line has no comma but ``;`` or tabs uses that separator (Excel in locales with a
decimal comma saves CSV with ``;``), and then ``1,25`` can only mean 1.25. Empty cells, and the
"no value" markers R, pandas and loggers write, mean a missing value; any other text in a number
column is the caller's to refuse, naming its line.
"""

from __future__ import annotations

from typing import TextIO

__all__ = ["MISSING", "delimiter", "sniff_delimiter", "is_missing", "number"]

#: Cells that mean "no value", as an empty cell does (compared in lower case).
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none"})


def delimiter(header_line: str) -> str:
    """``,``, or ``;`` / a tab when the header line has no comma but one of those."""
    if "," in header_line:
        return ","
    return next((d for d in (";", "\t") if d in header_line), ",")


def sniff_delimiter(f: TextIO) -> str:
    """`delimiter` of an open file's first line; the file is left where it was."""
    start = f.tell()
    sep = delimiter(f.readline())
    f.seek(start)
    return sep


def is_missing(cell: str) -> bool:
    """Whether a (stripped) cell means "no value"."""
    return cell.lower() in MISSING


def number(cell: str, decimal_comma: bool = False) -> float:
    """A cell as a float; with ``decimal_comma`` (a file not separated by commas) ``1,25`` is 1.25.

    Raises:
        ValueError: The cell is not a number (missing markers included: check `is_missing` first).
    """
    return float(cell.replace(",", ".", 1) if decimal_comma else cell)
