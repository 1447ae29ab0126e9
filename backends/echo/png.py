"""A tiny PNG encoder, enough to give the echo buddy an avatar without any image library."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(width: int, height: int, pixel: Callable[[int, int], tuple[int, int, int]]) -> bytes:
    """An 8-bit RGB PNG of *width* x *height* whose colour at (x, y) is ``pixel(x, y)``."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            rows.extend(pixel(x, y))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + _chunk(b"IEND", b"")
    )


def echo_avatar(name: str, size: int = 32) -> bytes:
    """Concentric rings (an echo) in a colour derived from *name*."""
    seed = zlib.crc32(name.encode("utf-8"))
    base = ((seed >> 16) & 0xFF, (seed >> 8) & 0xFF, seed & 0xFF)
    centre = (size - 1) / 2

    def pixel(x: int, y: int) -> tuple[int, int, int]:
        ring = int(((x - centre) ** 2 + (y - centre) ** 2) ** 0.5) // 4
        if ring % 2:
            return base
        return (255 - base[0] // 2, 255 - base[1] // 2, 255 - base[2] // 2)

    return encode_png(size, size, pixel)
