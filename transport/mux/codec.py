"""Sans-I/O frame codec of the multiplexed socket (seed 002, Jami's ConnectionManager).

Every frame on the TLS stream is ``length u16 BE | channel u16 BE | body``: a
32-bit header followed by at most 65535 bytes of body. A zero-length body on a
channel is that channel's EOF. Two channels are special:

* channel 0 (:data:`CONTROL_CHANNEL`) carries channel requests, each a msgpack
  array ``[name, channel_id, state]`` (dhtnet's ``ChannelRequest``) with state
  ``REQUEST`` 0, ``ACCEPT`` 1 or ``DECLINE`` 2;
* channel 0xFFFF (:data:`PROTOCOL_CHANNEL`) carries msgpack maps: the version
  ``{"v": 1}`` each side sends first, and beacons ``{"p": true}`` (a request)
  answered by ``{"p": false}``.

:func:`encode_frame` and :func:`encode_data` make bytes; :class:`FrameDecoder`
turns bytes into :class:`Frame` values. Neither touches a socket. The decoder
can never buffer more than one frame (65539 bytes) beyond what it returns.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgpack

CONTROL_CHANNEL = 0
PROTOCOL_CHANNEL = 0xFFFF
MAX_BODY = 0xFFFF
HEADER_SIZE = 4
PROTOCOL_VERSION = 1

REQUEST = 0
ACCEPT = 1
DECLINE = 2

_HEADER = struct.Struct(">HH")


class MuxProtocolError(Exception):
    """The peer broke the framing or sent a control message that does not parse."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: its channel and body (an empty body is the channel's EOF)."""

    channel: int
    body: bytes

    @property
    def is_eof(self) -> bool:
        return not self.body


@dataclass(frozen=True, slots=True)
class ChannelRequest:
    """A control message: ``[name, channel_id, state]``."""

    name: str
    channel: int
    state: int


def encode_frame(channel: int, body: bytes) -> bytes:
    """One frame; *body* must be at most 65535 bytes (empty means EOF)."""
    if not 0 <= channel <= 0xFFFF:
        raise ValueError(f"channel id out of range: {channel}")
    if len(body) > MAX_BODY:
        raise ValueError(f"frame body too long: {len(body)} > {MAX_BODY}")
    return _HEADER.pack(len(body), channel) + body


def encode_data(channel: int, data: bytes | bytearray | memoryview) -> bytes:
    """*data* on *channel*, split into frames of at most 65535 bytes.

    Empty *data* gives no frames at all (an EOF is sent with :func:`encode_eof`).
    """
    n = len(data)
    if n <= MAX_BODY:
        return _HEADER.pack(n, channel) + bytes(data) if n else b""
    view = memoryview(data)
    parts: list[bytes | memoryview] = []
    for start in range(0, n, MAX_BODY):
        chunk = view[start:start + MAX_BODY]
        parts.append(_HEADER.pack(len(chunk), channel))
        parts.append(chunk)
    return b"".join(parts)


def encode_eof(channel: int) -> bytes:
    return _HEADER.pack(0, channel)


def encode_request(name: str, channel: int, state: int) -> bytes:
    """A channel request (or its answer) as a control-channel frame."""
    return encode_data(CONTROL_CHANNEL, msgpack.packb([name, channel, state], use_bin_type=True))


def encode_version(version: int = PROTOCOL_VERSION) -> bytes:
    return encode_data(PROTOCOL_CHANNEL, msgpack.packb({"v": version}))


def encode_beacon(request: bool) -> bytes:
    """A beacon request (``{"p": true}``) or its answer (``{"p": false}``)."""
    return encode_data(PROTOCOL_CHANNEL, msgpack.packb({"p": request}))


class FrameDecoder:
    """Incremental frame parser: ``feed(data)`` returns the complete frames.

    At most one incomplete frame is kept between calls, so the buffer is bounded
    by the header's 16-bit length whatever the peer sends.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buffer
        buf += data
        frames: list[Frame] = []
        pos = 0
        end = len(buf)
        unpack = _HEADER.unpack_from
        while end - pos >= HEADER_SIZE:
            length, channel = unpack(buf, pos)
            stop = pos + HEADER_SIZE + length
            if stop > end:
                break
            frames.append(Frame(channel, bytes(buf[pos + HEADER_SIZE:stop])))
            pos = stop
        if pos:
            del buf[:pos]
        return frames


class StreamDecoder:
    """Incremental frame parser that does not reassemble bodies.

    ``feed(data)`` returns ``(channel, piece, first)`` tuples: each piece is a
    part of one frame's body (``first`` marks the frame's first piece), in
    order; a zero-length frame gives ``(channel, b"", True)`` - the EOF. Channel
    data is a byte stream, so nothing needs whole frames: bodies go on as they
    arrive, without copying them into a reassembly buffer. Only an incomplete
    4-byte header is kept between calls.
    """

    def __init__(self) -> None:
        self._header = b""
        self._channel = 0
        self._remaining = 0
        self._started = False

    @property
    def buffered(self) -> int:
        return len(self._header)

    def feed(self, data: bytes) -> list[tuple[int, bytes, bool]]:
        out: list[tuple[int, bytes, bool]] = []
        pos = 0
        n = len(data)
        unpack = _HEADER.unpack_from
        while pos < n:
            if self._remaining:
                take = min(self._remaining, n - pos)
                piece = data if (pos == 0 and take == n) else data[pos:pos + take]
                out.append((self._channel, piece, not self._started))
                self._started = True
                self._remaining -= take
                pos += take
                continue
            if self._header or n - pos < HEADER_SIZE:
                need = HEADER_SIZE - len(self._header)
                self._header += data[pos:pos + need]
                pos += need
                if len(self._header) < HEADER_SIZE:
                    break
                length, channel = _HEADER.unpack(self._header)
                self._header = b""
            else:
                length, channel = unpack(data, pos)
                pos += HEADER_SIZE
            if length:
                self._channel = channel
                self._remaining = length
                self._started = False
            else:
                out.append((channel, b"", True))
        return out


class MessageStream:
    """msgpack objects carried on a channel (control or protocol), decoded incrementally.

    Like dhtnet, a message may span frames; the unpacker buffers at most
    ``max_buffer`` bytes of an incomplete message and its limits reject huge
    containers, so a hostile peer cannot make it grow.
    """

    def __init__(self, max_buffer: int = 2 * MAX_BODY) -> None:
        self._unpacker = msgpack.Unpacker(
            raw=False, max_buffer_size=max_buffer, max_array_len=16, max_map_len=16,
            max_str_len=MAX_BODY, max_bin_len=MAX_BODY, strict_map_key=False,
        )

    def feed(self, data: bytes) -> list[Any]:
        try:
            self._unpacker.feed(data)
            return list(self._unpacker)
        except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
                msgpack.BufferFull) as e:  # TypeError: a map key msgpack cannot hash (an array, a map)
            raise MuxProtocolError(f"bad msgpack message: {e}") from None


def parse_request(obj: Any) -> ChannelRequest:
    """A control message as a :class:`ChannelRequest`; unknown states count as DECLINE."""
    if not isinstance(obj, (list, tuple)) or len(obj) < 3:
        raise MuxProtocolError(f"channel request is not [name, id, state]: {obj!r:.80}")
    name, channel, state = obj[0], obj[1], obj[2]
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    if not isinstance(name, str) or not isinstance(channel, int) or isinstance(channel, bool):
        raise MuxProtocolError(f"channel request has bad types: {obj!r:.80}")
    if not 0 <= channel <= 0xFFFF:
        raise MuxProtocolError(f"channel request id out of range: {channel}")
    if not isinstance(state, int) or state not in (REQUEST, ACCEPT, DECLINE):
        state = DECLINE
    return ChannelRequest(name, channel, state)
