"""Backend protocol: the frame codec, and the SDK's dispatch (the echo backend) fed raw bytes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from transport_backends.echo import EchoBackend
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tests.fuzz.script import build, records, stream
from tests.fuzz.targets import FailureWatch, target
from transport.backend import transport_pb2 as pb
from transport.backend.codec import PAYLOAD_TYPES, FrameDecoder, FrameTooLarge, Packet, decode_payload, encode
from transport.sdk import BackendConfigFile, MemoryUsage

W = pb.WrapperMessage
TYPES = sorted(PAYLOAD_TYPES)
#: Small, so that the fuzzer reaches the limit; the codec's contract is the same at 16 MiB.
MAX_FRAME = 4096


def _fixture_frames() -> list[bytes]:
    from tests.unit.test_codec import FIXTURES  # the codec's own byte fixtures

    return [encode(type_, payload) for _direction, type_, payload in FIXTURES]  # type: ignore[arg-type]


def _codec_seeds() -> Iterator[bytes]:
    frames = _fixture_frames()
    for frame in frames:
        yield stream(frame)
    everything = b"".join(frames)
    yield stream(everything, 1, 3, 5, 7, 11, 13, 17, 64)
    yield stream(b"\x00\x00\x00\x05" + b"\x08\x63\x12\x01\x00" + frames[0])  # unknown type, then a good frame
    yield stream(b"\x00\x00\x10\x01")  # one byte over the limit
    # payload-only records: op 0x80 | type index
    for i, type_ in enumerate(TYPES):
        yield build([(0x80 | i, b"\x0a\x01x\x12\x01y")])
        _ = type_


def non_text_strings(message: Any, path: str = "") -> list[str]:
    """Paths of the string fields of *message* that read back as bytes (not UTF-8 on the wire)."""
    out: list[str] = []
    for field, value in message.ListFields():
        items = list(value) if field.is_repeated else [value]
        for item in items:
            if field.type == FieldDescriptor.TYPE_STRING and not isinstance(item, str):
                out.append(path + field.name)
            elif field.type == FieldDescriptor.TYPE_MESSAGE and hasattr(item, "ListFields"):
                out += non_text_strings(item, f"{path}{field.name}.")
    return out


def _same(a: Packet, b: Packet) -> bool:
    return a.type == b.type and a.payload == b.payload


@target("backend_codec", _codec_seeds)
def backend_codec(data: bytes) -> None:
    """``FrameDecoder.feed`` and ``decode_payload``.

    Contract: ``feed`` raises only ``FrameTooLarge`` (then the decoder is not
    used again); ``decode_payload`` raises only protobuf's ``DecodeError``.
    Invariants: the packets do not depend on how the bytes were split; what
    decodes re-encodes to a frame that decodes to the same packet; every
    string field of what decodes is text (``str``); the buffer never holds
    more than one incomplete frame (header + limit).
    """
    decoder = FrameDecoder(MAX_FRAME)
    got: list[Packet] = []
    stream_bytes = bytearray()
    too_large = False
    for op, payload in records(data):
        if op & 0x80:
            type_ = TYPES[(op & 0x7F) % len(TYPES)]
            try:
                message = decode_payload(type_, payload)
            except DecodeError:
                continue
            if isinstance(message, Message):
                assert not non_text_strings(message), non_text_strings(message)
            continue
        if too_large:
            continue
        stream_bytes += payload
        try:
            got += decoder.feed(payload)
        except FrameTooLarge as e:
            assert e.length > MAX_FRAME
            too_large = True
            continue
        assert decoder.buffered < 4 + MAX_FRAME, decoder.buffered
    # split invariance: the same bytes in one piece
    whole = FrameDecoder(MAX_FRAME)
    try:
        once = whole.feed(bytes(stream_bytes))
    except FrameTooLarge:
        assert too_large, "one read raised FrameTooLarge, the split reads did not"
    else:
        assert not too_large, "the split reads raised FrameTooLarge, one read did not"
        assert len(once) == len(got) and all(_same(a, b) for a, b in zip(once, got, strict=True))
        assert whole.skipped == decoder.skipped and whole.unknown == decoder.unknown
    # round trip of what decoded
    for packet in got:
        if isinstance(packet.payload, Message):
            bad = non_text_strings(packet.payload)
            assert not bad, f"{packet.type_name}: string field(s) {bad} are not UTF-8 but decoded"
        again = FrameDecoder(len(encode(packet.type, packet.payload))).feed(encode(packet.type, packet.payload))
        assert len(again) == 1 and _same(again[0], packet), (packet, again)


# ---------------------------------------------------------------------------
# the SDK: NetworkPlugin dispatch, with the echo backend's handlers

OP_FRAME = 1   # payload[0] picks a type, the rest is the payload: a well-formed frame
OP_CLOCK = 2   # advance the clock by payload[0] seconds
OP_LOSE = 3    # the main instance closes the connection
# anything else: raw bytes to dataReceived


def _sdk_seeds() -> Iterator[bytes]:
    for frame in _fixture_frames():
        yield stream(frame)
    user = "alice@example.org"
    login = encode(W.TYPE_LOGIN, pb.Login(user=user, legacyName="alice", password="pw"))
    join = encode(W.TYPE_JOIN_ROOM, pb.Room(userName=user, room="echo", nickname="al"))
    say = encode(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=user, buddyName="echo", message="hi", id="1"))
    room = encode(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=user, buddyName="echo", message="all"))
    vcard = encode(W.TYPE_VCARD, pb.VCard(userName=user, buddyName="echo", id=3))
    subject = encode(W.TYPE_ROOM_SUBJECT_CHANGED, pb.ConversationMessage(userName=user, buddyName="echo",
                                                                         message="topic"))
    logout = encode(W.TYPE_LOGOUT, pb.Logout(user=user, legacyName="alice"))
    session = login + join + say + room + vcard + subject + logout
    yield stream(session, 3, 40, 2)
    yield build([(0, encode(W.TYPE_PING)), (OP_CLOCK, b"\x3b"), (OP_CLOCK, b"\x3b"), (0, session)])
    yield build([(0, login), (0, encode(W.TYPE_EXIT) + say), (OP_LOSE, b"")])
    yield build([(OP_FRAME, bytes([TYPES.index(W.TYPE_CONV_MESSAGE)]) + b"\x0a\x01a\x12\x01b")])


class _Outgoing:
    """Checks that what the backend writes is a well-formed frame stream."""

    def __init__(self, transport: StringTransport) -> None:
        self.transport = transport
        self.decoder = FrameDecoder()

    def check(self) -> None:
        out = self.transport.value()
        self.transport.clear()
        packets = self.decoder.feed(out)
        assert self.decoder.skipped == 0, f"the backend wrote a frame that does not parse: {self.decoder.last_error}"
        for packet in packets:
            assert packet.type in PAYLOAD_TYPES


@target("sdk_dispatch", _sdk_seeds)
def sdk_dispatch(data: bytes) -> None:
    """The SDK's ``NetworkPlugin.dataReceived`` with the echo backend, over a StringTransport and a Clock.

    Contract: ``dataReceived`` never raises and no handler fails (a handler
    exception is caught and logged by the SDK: that log is the finding); what
    the backend writes always parses; after EXIT or a close nothing more is
    dispatched.
    """
    clock = Clock()
    plugin: Any = EchoBackend(BackendConfigFile.from_text("[service]\nmax_frame_size = 64 KiB\n"), clock=clock,
                              initial_memory=MemoryUsage(1000, 10))
    transport = StringTransport()
    out = _Outgoing(transport)
    with FailureWatch():
        plugin.makeConnection(transport)
        for op, payload in records(data):
            if op == OP_FRAME and payload:
                plugin.dataReceived(encode(TYPES[payload[0] % len(TYPES)], payload[1:]))
            elif op == OP_CLOCK:
                clock.advance(payload[0] if payload else 1)
            elif op == OP_LOSE:
                plugin.connectionLost()
            else:
                plugin.dataReceived(payload)
            out.check()
            if plugin.stopping:
                before = transport.value()
                plugin.dataReceived(encode(W.TYPE_PING))
                assert transport.value() == before, "a stopping backend answered a PING"
        plugin.connectionLost()
        assert not clock.getDelayedCalls(), "the watchdog outlived the connection"

