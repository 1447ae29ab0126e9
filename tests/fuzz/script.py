"""The input format every harness reads: a *script* of records ``(op, payload)``.

A fuzz input is a byte string cut into records::

    op u8 | n u8 | payload (n bytes)          n < 255
    op u8 | 0xFF | n u16 LE | payload          n >= 255

A truncated last record takes whatever bytes are left. Stateful harnesses read
``op`` as "what to do next" (feed bytes, accept a channel, advance the clock,
...); stream harnesses use the records as the chunks the bytes arrive in, so a
decoder is exercised across every possible split. The format is total: every
byte string is a valid script, which is what libFuzzer's mutations need, and
:func:`build` writes scripts for the seed corpus.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

Record = tuple[int, bytes]


def records(data: bytes) -> Iterator[Record]:
    """The records of *data*, in order (the format never fails)."""
    pos, end = 0, len(data)
    while pos < end:
        op = data[pos]
        pos += 1
        if pos >= end:
            yield op, b""
            return
        n = data[pos]
        pos += 1
        if n == 0xFF:
            n = int.from_bytes(data[pos:pos + 2], "little")
            pos += 2
        yield op, data[pos:pos + n]
        pos += n


def build(items: Iterable[Record]) -> bytes:
    """The script that :func:`records` reads back as *items*."""
    out = bytearray()
    for op, payload in items:
        if not 0 <= op <= 255:
            raise ValueError(f"op out of range: {op}")
        n = len(payload)
        if n > 0xFFFF:
            raise ValueError(f"record payload too long: {n}")
        out.append(op)
        if n < 0xFF:
            out.append(n)
        else:
            out += b"\xff" + n.to_bytes(2, "little")
        out += payload
    return bytes(out)


def chunks(data: bytes, sizes: Iterable[int]) -> list[bytes]:
    """*data* cut at the given chunk sizes (the rest is the last chunk): seeds with odd splits."""
    out, pos = [], 0
    for size in sizes:
        if pos >= len(data):
            break
        out.append(data[pos:pos + size])
        pos += size
    if pos < len(data):
        out.append(data[pos:])
    return out


def stream(data: bytes, *sizes: int, op: int = 0) -> bytes:
    """A script feeding *data* in chunks of *sizes* (one chunk when none are given)."""
    return build((op, c) for c in chunks(data, sizes or (0xFFFF,) * (len(data) // 0xFFFF + 1)))
