"""Declarative wire layouts and the one engine that encodes and decodes them.

Every fixed-size part of the pod protocol (the packet header, each control command's arguments,
each response payload) is a table of ``(field name, struct type code[, scale])`` rows, in wire
order, little-endian. :class:`Layout` compiles such a table once into a :class:`struct.Struct`
and both directions go through it, so a field cannot be encoded at one offset and decoded at
another. Scaled fields (``scale`` given) hold a physical value in Python and ``round(value /
scale)`` on the wire, as in pyubx2's attribute tables.

The CRC used by every frame is here too: CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no
reflection, no final XOR), appended little-endian after the bytes it covers.
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: struct type codes a layout may use (all little-endian, no padding).
TYPE_CODES: Mapping[str, str] = {
    "B": "u8",
    "b": "i8",
    "H": "u16",
    "h": "i16",
    "I": "u32",
    "i": "i32",
    "Q": "u64",
    "q": "i64",
}

CRC_SIZE = 2
_CRC_STRUCT = struct.Struct("<H")


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_ccitt_false(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (check value of b"123456789" is 0x29B1).

    Args:
        data: The bytes to cover.
        crc: Running value, to continue a CRC over several chunks (default: the init 0xFFFF).

    Returns:
        The 16-bit CRC as an int.
    """
    # binascii.crc_hqx is this exact CRC (poly 0x1021, MSB first, no final XOR) in C, ~100x the
    # speed of the table loop below; the loop stays as the readable reference the tests pin.
    return binascii.crc_hqx(data, crc)


def crc16_ccitt_false_reference(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """Table-driven pure-Python CRC-16/CCITT-FALSE, the reference for firmware authors."""
    table = _CRC_TABLE
    for byte in bytes(data):
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ byte) & 0xFF]
    return crc


def append_crc(body: bytes) -> bytes:
    """Return ``body`` followed by its CRC-16/CCITT-FALSE, little-endian."""
    return body + _CRC_STRUCT.pack(crc16_ccitt_false(body))


def crc_matches(frame: bytes) -> bool:
    """True when the last two bytes of ``frame`` are the CRC of everything before them."""
    if len(frame) < CRC_SIZE:
        return False
    (carried,) = _CRC_STRUCT.unpack_from(frame, len(frame) - CRC_SIZE)
    return binascii.crc_hqx(memoryview(frame)[:-CRC_SIZE], 0xFFFF) == carried


def carried_crc(frame: bytes) -> int:
    """The CRC value a frame carries in its last two bytes."""
    (value,) = _CRC_STRUCT.unpack_from(frame, len(frame) - CRC_SIZE)
    return int(value)


@dataclass(frozen=True)
class Field:
    """One row of a layout table.

    Attributes:
        name: Python-side name (a dataclass attribute or dict key).
        code: struct type code, one of :data:`TYPE_CODES`.
        scale: Physical units per LSB; ``None`` for an integer field.
    """

    name: str
    code: str
    scale: float | None = None

    def __post_init__(self) -> None:
        if self.code not in TYPE_CODES:
            raise ValueError(
                f"field {self.name!r} has struct code {self.code!r}; "
                f"use one of {sorted(TYPE_CODES)}"
            )


LayoutTable = Sequence[tuple[str, str] | tuple[str, str, float]]


class Layout:
    """A compiled little-endian layout: ordered fields, offsets, size, encode and decode.

    Args:
        name: What the layout describes (used in error messages).
        table: Rows ``(name, code)`` or ``(name, code, scale)`` in wire order.
    """

    def __init__(self, name: str, table: LayoutTable) -> None:
        self.name = name
        self.fields: tuple[Field, ...] = tuple(Field(*row) for row in table)
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"layout {name!r} repeats a field name: {names}")
        self._struct = struct.Struct("<" + "".join(f.code for f in self.fields))
        offsets: dict[str, int] = {}
        offset = 0
        for f in self.fields:
            offsets[f.name] = offset
            offset += struct.calcsize("<" + f.code)
        self.offsets: Mapping[str, int] = offsets
        self._scaled = any(f.scale is not None for f in self.fields)

    @property
    def size(self) -> int:
        """Encoded size in bytes."""
        return self._struct.size

    @property
    def names(self) -> tuple[str, ...]:
        """Field names in wire order."""
        return tuple(f.name for f in self.fields)

    def encode(self, values: Mapping[str, Any]) -> bytes:
        """Pack ``values`` (one entry per field; scaled fields in physical units).

        Raises:
            ValueError: A field is missing or does not fit its wire type.
        """
        raw = []
        for f in self.fields:
            if f.name not in values:
                raise ValueError(f"{self.name}: field {f.name!r} is missing; give a value for it")
            value = values[f.name]
            raw.append(int(round(value / f.scale)) if f.scale is not None else int(value))
        try:
            return self._struct.pack(*raw)
        except struct.error as exc:
            detail = ", ".join(f"{f.name}={v}" for f, v in zip(self.fields, raw, strict=True))
            raise ValueError(
                f"{self.name}: a field does not fit its wire type ({detail}): {exc}; "
                f"keep each value inside the range PROTOCOL.md gives for it"
            ) from exc

    def unpack(self, data: bytes | memoryview, offset: int = 0) -> tuple[Any, ...]:
        """Unpack the fields at ``offset`` as a tuple in wire order (scaled fields as floats).

        The hot-path twin of :meth:`decode`: no dict is built, and a layout without scaled
        fields returns ``struct``'s tuple as is. The caller checks the length first.
        """
        raw = self._struct.unpack_from(data, offset)
        if not self._scaled:
            return raw
        return tuple(
            value * f.scale if f.scale is not None else value
            for f, value in zip(self.fields, raw, strict=True)
        )

    def decode(self, data: bytes | memoryview, offset: int = 0) -> dict[str, Any]:
        """Unpack the fields at ``offset`` into a dict (scaled fields as floats).

        The caller checks the length first; a short buffer raises ``struct.error``.
        """
        raw = self._struct.unpack_from(data, offset)
        out: dict[str, Any] = {}
        for f, value in zip(self.fields, raw, strict=True):
            out[f.name] = value * f.scale if f.scale is not None else int(value)
        return out

    def __repr__(self) -> str:
        return f"Layout({self.name!r}, size={self.size}, fields={self.names})"
