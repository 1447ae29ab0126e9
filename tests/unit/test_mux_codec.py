"""The mux frame codec: byte fixtures and hypothesis round-trips."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport.mux import codec
from transport.mux.codec import Frame, FrameDecoder, MessageStream, MuxProtocolError


def test_frame_fixture() -> None:
    assert codec.encode_frame(1, b"abc") == b"\x00\x03\x00\x01abc"
    assert codec.encode_frame(0x8000, b"") == b"\x00\x00\x80\x00"
    assert codec.encode_eof(0x1234) == b"\x00\x00\x12\x34"


def test_control_request_fixture() -> None:
    # msgpack ["git", 5, 0]: fixarray(3), fixstr(3) "git", 5, 0 - header length 7, channel 0
    assert codec.encode_request("git", 5, codec.REQUEST) == b"\x00\x07\x00\x00\x93\xa3git\x05\x00"
    assert codec.encode_request("git", 0x8001, codec.ACCEPT) == b"\x00\x09\x00\x00\x93\xa3git\xcd\x80\x01\x01"


def test_protocol_channel_fixtures() -> None:
    assert codec.encode_version() == b"\x00\x04\xff\xff\x81\xa1v\x01"
    assert codec.encode_beacon(True) == b"\x00\x04\xff\xff\x81\xa1p\xc3"
    assert codec.encode_beacon(False) == b"\x00\x04\xff\xff\x81\xa1p\xc2"


def test_large_write_is_split() -> None:
    data = bytes(range(256)) * 600  # 153600 bytes
    out = codec.encode_data(7, data)
    frames = FrameDecoder().feed(out)
    assert [len(f.body) for f in frames] == [65535, 65535, 153600 - 2 * 65535]
    assert all(f.channel == 7 for f in frames)
    assert b"".join(f.body for f in frames) == data
    assert codec.encode_data(7, b"") == b""


def test_body_limit() -> None:
    with pytest.raises(ValueError):
        codec.encode_frame(1, b"x" * 65536)
    with pytest.raises(ValueError):
        codec.encode_frame(0x10000, b"")


def test_decoder_byte_by_byte_and_bounded() -> None:
    wire = codec.encode_frame(3, b"hello") + codec.encode_eof(3) + codec.encode_frame(4, b"x" * 1000)
    dec = FrameDecoder()
    got: list[Frame] = []
    for i in range(len(wire)):
        got += dec.feed(wire[i:i + 1])
        assert dec.buffered <= codec.HEADER_SIZE + codec.MAX_BODY
    assert got == [Frame(3, b"hello"), Frame(3, b""), Frame(4, b"x" * 1000)]
    assert got[1].is_eof


def test_parse_request_rules() -> None:
    assert codec.parse_request(["a", 2, 0]) == codec.ChannelRequest("a", 2, codec.REQUEST)
    assert codec.parse_request(["a", 2, 9]).state == codec.DECLINE  # unknown state counts as DECLINE
    assert codec.parse_request([b"a", 2, 1]).name == "a"
    for bad in ([1, 2, 0], ["a", "2", 0], ["a", 70000, 0], {"a": 1}, ["a", 1]):
        with pytest.raises(MuxProtocolError):
            codec.parse_request(bad)


def test_message_stream_spans_frames_and_rejects_garbage() -> None:
    stream = MessageStream()
    packed = msgpack.packb(["name", 3, 0]) + msgpack.packb(["other", 4, 0])
    assert stream.feed(packed[:5]) == []
    assert stream.feed(packed[5:]) == [["name", 3, 0], ["other", 4, 0]]
    with pytest.raises(MuxProtocolError):
        MessageStream().feed(b"\xc1")  # never-used msgpack byte
    with pytest.raises(MuxProtocolError):
        MessageStream(max_buffer=100).feed(b"\xda\xff\xff" + b"a" * 200)  # incomplete str larger than the budget


@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=70000)), max_size=6), st.integers(1, 5000))
def test_roundtrip_any_chunking(writes: list[tuple[int, bytes]], chunk: int) -> None:
    wire = b"".join(codec.encode_data(c, d) for c, d in writes)
    dec = FrameDecoder()
    frames: list[Frame] = []
    for i in range(0, len(wire), chunk):
        frames += dec.feed(wire[i:i + chunk])
    assert dec.buffered == 0
    expected: dict[int, bytes] = {}
    for c, d in writes:
        expected[c] = expected.get(c, b"") + d
    got: dict[int, bytes] = {}
    for f in frames:
        assert 0 < len(f.body) <= codec.MAX_BODY
        got[f.channel] = got.get(f.channel, b"") + f.body
    assert got == {c: d for c, d in expected.items() if d}


@given(st.text(max_size=200), st.integers(0, 0xFFFF), st.sampled_from([0, 1, 2]))
def test_request_roundtrip(name: str, channel: int, state: int) -> None:
    frames = FrameDecoder().feed(codec.encode_request(name, channel, state))
    assert len(frames) == 1 and frames[0].channel == codec.CONTROL_CHANNEL
    [obj] = MessageStream().feed(frames[0].body)
    assert codec.parse_request(obj) == codec.ChannelRequest(name, channel, state)


@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=70000)), max_size=6), st.integers(1, 5000))
def test_stream_decoder_roundtrip_any_chunking(writes: list[tuple[int, bytes]], chunk: int) -> None:
    wire = b"".join(codec.encode_data(c, d) + codec.encode_eof(c) for c, d in writes)
    dec = codec.StreamDecoder()
    pieces: list[tuple[int, bytes, bool]] = []
    for i in range(0, len(wire), chunk):
        pieces += dec.feed(wire[i:i + chunk])
        assert dec.buffered < codec.HEADER_SIZE
    # reassemble per channel, cutting at each EOF
    streams: list[tuple[int, bytes]] = []
    current: dict[int, bytes] = {}
    for cid, piece, _first in pieces:
        if piece:
            current[cid] = current.get(cid, b"") + piece
        else:
            streams.append((cid, current.pop(cid, b"")))
    assert streams == writes
    assert sum(1 for _, p, first in pieces if first and p) == sum(
        -(-len(d) // codec.MAX_BODY) for _, d in writes)  # one "first" piece per non-empty frame


def test_stream_decoder_fixture_split_header() -> None:
    dec = codec.StreamDecoder()
    assert dec.feed(b"\x00\x05\x00") == []
    assert dec.feed(b"\x07he") == [(7, b"he", True)]
    assert dec.feed(b"llo\x00\x00\x00\x07") == [(7, b"llo", False), (7, b"", True)]
