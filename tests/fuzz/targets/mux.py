"""mux: the frame codec, control messages, and the multiplexer state machine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack

from tests.fuzz.script import build, records, stream
from tests.fuzz.targets import target
from transport.mux import codec
from transport.mux.codec import (
    CONTROL_CHANNEL,
    HEADER_SIZE,
    MAX_BODY,
    PROTOCOL_CHANNEL,
    Frame,
    FrameDecoder,
    MessageStream,
    MuxProtocolError,
    StreamDecoder,
    encode_frame,
    parse_request,
)
from transport.mux.multiplexer import MAX_CHANNELS, Multiplexer, State


def _wire_samples() -> list[bytes]:
    return [
        codec.encode_version(),
        codec.encode_beacon(True),
        codec.encode_beacon(False),
        codec.encode_request("backend", 1, codec.REQUEST),
        codec.encode_request("backend", 0x8000, codec.ACCEPT),
        codec.encode_request("x", 7, codec.DECLINE),
        codec.encode_data(5, b"hello"),
        codec.encode_eof(5),
        encode_frame(CONTROL_CHANNEL, msgpack.packb([b"raw", 3, 9])),
        encode_frame(PROTOCOL_CHANNEL, msgpack.packb({"v": 1, "p": True})),
    ]


def _codec_seeds() -> Iterator[bytes]:
    samples = _wire_samples()
    for data in samples:
        yield stream(data)
    yield stream(b"".join(samples), 1, 3, 4, 5, 9)
    yield build([(0x80, msgpack.packb(["name", 1, 0])), (0x80, msgpack.packb([1, 2])),
                 (0x81, msgpack.packb({"v": 1})), (0x81, b"\x92\x91")])


@target("mux_codec", _codec_seeds)
def mux_codec(data: bytes) -> None:
    """``FrameDecoder.feed``, ``StreamDecoder.feed``, ``MessageStream.feed`` and ``parse_request``.

    Contract: the frame decoders never raise; the message stream and
    ``parse_request`` raise only ``MuxProtocolError``. Invariants: frames do
    not depend on the split and encode back to the same bytes; the streaming
    decoder's pieces join into exactly those frames (plus the one in
    progress) and it keeps at most an incomplete header; the reassembling
    decoder never buffers more than one frame (65,539 bytes).
    """
    decoder = FrameDecoder()
    streaming = StreamDecoder()
    rebuilt: list[list[Any]] = []  # [channel, body] per frame, from the pieces
    frames: list[Frame] = []
    whole = bytearray()
    messages = MessageStream(max_buffer=1024)
    for op, payload in records(data):
        if op & 0x80:
            try:
                for obj in messages.feed(payload):
                    if op & 1:
                        continue
                    try:
                        req = parse_request(obj)
                    except MuxProtocolError:
                        continue
                    assert parse_request(msgpack.unpackb(msgpack.packb([req.name, req.channel, req.state]))) == req
            except MuxProtocolError:
                messages = MessageStream(max_buffer=1024)
            continue
        whole += payload
        frames += decoder.feed(payload)
        assert decoder.buffered < HEADER_SIZE + MAX_BODY
        for channel, piece, first in streaming.feed(payload):
            if first:
                rebuilt.append([channel, bytearray()])
            assert rebuilt and rebuilt[-1][0] == channel, "a piece without its frame's first piece"
            rebuilt[-1][1] += piece
        assert streaming.buffered < HEADER_SIZE
    assert FrameDecoder().feed(bytes(whole)) == frames
    joined = [Frame(channel, bytes(body)) for channel, body in rebuilt]
    assert joined[:len(frames)] == frames and len(joined) - len(frames) in (0, 1), (joined, frames)
    consumed = b"".join(encode_frame(f.channel, f.body) for f in frames)
    assert bytes(whole).startswith(consumed) and len(whole) - len(consumed) == decoder.buffered


# ---------------------------------------------------------------------------
# the multiplexer

OP_ACCEPT = 1    # accept a pending request (payload[0] picks which)
OP_DECLINE = 2
OP_REQUEST = 3   # request a channel named by the payload
OP_SEND = 4      # payload[0] picks a channel, the rest is sent
OP_EOF = 5       # payload[0] picks a channel
OP_BEACON = 6
OP_LOST = 7      # connection lost (everything forgotten)
# anything else: bytes from the peer


def _multiplexer_seeds() -> Iterator[bytes]:
    peer_request = codec.encode_request("backend", 0x8000, codec.REQUEST)
    yield build([(0, codec.encode_version() + peer_request), (OP_ACCEPT, b"\x00"), (0, codec.encode_data(0x8000, b"x")),
                 (OP_SEND, b"\x00data"), (OP_EOF, b"\x00"), (0, codec.encode_eof(0x8000))])
    yield build([(OP_REQUEST, b"remote"), (0, codec.encode_request("remote", 1, codec.ACCEPT)),
                 (0, codec.encode_data(1, b"hi")), (0, codec.encode_eof(1)), (OP_REQUEST, b"again")])
    yield build([(OP_REQUEST, b"a"), (0, codec.encode_request("a", 1, codec.DECLINE)), (OP_BEACON, b""),
                 (0, codec.encode_beacon(False) + codec.encode_beacon(True))])
    yield build([(0, peer_request + peer_request), (OP_DECLINE, b"\x00"), (OP_LOST, b"")])
    for data in _wire_samples():
        yield stream(data)


class _Side:
    """One multiplexer and the peer that parses everything it sends."""

    def __init__(self, is_client: bool) -> None:
        self.mux = Multiplexer(is_client)
        self.peer = Multiplexer(not is_client)

    def sent(self, data: bytes) -> None:
        # what we send must always parse on the other side
        self.peer.receive_data(data)


def _pick(channels: list[int], payload: bytes) -> int | None:
    if not channels:
        return None
    return channels[(payload[0] if payload else 0) % len(channels)]


@target("mux_multiplexer", _multiplexer_seeds)
def mux_multiplexer(data: bytes) -> None:
    """``Multiplexer.receive_data`` interleaved with the application's calls (accept, request, send, EOF).

    Contract: ``receive_data`` raises only ``MuxProtocolError`` (the adapter
    then closes the connection; so do we). Invariants: every byte we send
    parses on a peer multiplexer; at most 65,534 channels; the channels we
    requested get ids from our own half first.
    """
    side = _Side(is_client=bool(data[:1]) and data[0] & 1 == 1)
    mux = side.mux
    for op, payload in records(data[1:]):
        if op == OP_ACCEPT or op == OP_DECLINE:
            pending = sorted(c for c in list(mux._channels) if mux.state(c) is State.REQUESTED_IN)
            cid = _pick(pending, payload)
            if cid is not None:
                side.sent(mux.accept(cid) if op == OP_ACCEPT else mux.decline(cid))
        elif op == OP_REQUEST:
            cid, out = mux.request_channel(payload.decode("utf-8", "replace"))
            assert 0 < cid < PROTOCOL_CHANNEL and mux.state(cid) is State.REQUESTED_OUT
            side.sent(out)
        elif op == OP_SEND or op == OP_EOF:
            cid = _pick(sorted(mux._channels), payload)
            if cid is not None:
                side.sent(mux.send(cid, payload[1:]) if op == OP_SEND else mux.send_eof(cid))
        elif op == OP_BEACON:
            side.sent(mux.send_beacon())
        elif op == OP_LOST:
            mux.connection_lost()
            assert mux.channels_in_use == 0
        else:
            try:
                mux.receive_data(payload)
            except MuxProtocolError:
                return
            side.sent(mux.data_to_send())
        assert mux.channels_in_use <= MAX_CHANNELS
