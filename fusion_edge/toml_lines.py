"""Where a key of a TOML document is written: its line, for errors that name file:line.

``tomllib`` reports line and column for syntax errors only, not for a value that parses and is
wrong. :class:`TomlLocator` scans the text once and maps key paths such as ``players[3].pod`` to
the line where that key is written. The kit file and the scenario catalogue both use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["KeyPath", "TomlLocator", "format_key"]

KeyPath = tuple[str | int, ...]


def _split_dotted(text: str) -> list[str]:
    """Split a TOML dotted key (``a."b.c".d``) into its parts."""
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_-]+)', text)
    return [a or b or c for a, b, c in parts]


class TomlLocator:
    """Maps key paths of a TOML document to the lines where they are written.

    Handles ``[table]``, ``[[array.of.tables]]`` (indexed in order), ``key = value`` and dotted
    keys. Values spanning lines (arrays, multi-line strings) are skipped so their contents are
    never taken for keys. A path that is not written literally (a key inside an inline table, an
    array element) resolves to its nearest written ancestor.
    """

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')"
                      r"(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*=")

    def __init__(self, text: str) -> None:
        self.lines: dict[KeyPath, int] = {}
        arrays: dict[tuple[str, ...], int] = {}
        prefix: KeyPath = ()
        in_multiline: str | None = None
        depth = 0
        array_path: KeyPath | None = None
        array_index = 0
        for number, line in enumerate(text.splitlines(), start=1):
            if in_multiline is not None:
                if in_multiline in line:
                    in_multiline = None
                continue
            if depth > 0:
                if array_path is not None and depth == 1:
                    # One element per line is the usual style: point at the element itself.
                    for _ in self._items(line):
                        self.lines.setdefault(array_path + (array_index,), number)
                        array_index += 1
                depth += self._bracket_balance(line)
                continue
            header = self._HEADER.match(line)
            if header and not self._KEY.match(line):
                names = _split_dotted(header.group(2))
                if header.group(1) == "[[":
                    arrays[tuple(names)] = arrays.get(tuple(names), -1) + 1
                prefix = self._resolve(names, arrays)
                self.lines.setdefault(prefix, number)
                continue
            key = self._KEY.match(line)
            if not key:
                continue
            path = prefix + tuple(_split_dotted(key.group(1)))
            self.lines.setdefault(path, number)
            value = line[key.end():]
            for quote in ('"""', "'''"):
                if value.count(quote) == 1:
                    in_multiline = quote
            if in_multiline is None:
                depth = max(0, self._bracket_balance(value))
                array_path, array_index = None, 0
                if depth == 1 and value.strip().startswith("["):
                    array_path = path
                    array_index = len(self._items(value.strip()[1:]))

    @staticmethod
    def _resolve(names: list[str], arrays: Mapping[tuple[str, ...], int]) -> KeyPath:
        path: list[str | int] = []
        for i, name in enumerate(names):
            path.append(name)
            if tuple(names[: i + 1]) in arrays:
                path.append(arrays[tuple(names[: i + 1])])
        return tuple(path)

    @staticmethod
    def _bracket_balance(text: str) -> int:
        text = re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', "", text).split("#", 1)[0]
        return text.count("[") + text.count("{") - text.count("]") - text.count("}")

    @staticmethod
    def _items(text: str) -> list[str]:
        """Scalar items written on one line of an array (strings, numbers, booleans)."""
        bare = re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', '""', text).split("#", 1)[0]
        return [t for t in (p.strip() for p in bare.split(",")) if t and t.strip("[]")]

    def line_of(self, path: KeyPath) -> int | None:
        """Line of ``path`` or of its nearest written ancestor; None if nothing matches."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


def format_key(path: KeyPath) -> str:
    """``("players", 2, "pod")`` -> ``players[2].pod``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
