"""Property tests of the backend codec: every payload type round-trips, any split decodes the same,
and no byte sequence makes the decoder raise anything but FrameTooLarge."""

from __future__ import annotations

import struct

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from transport.backend import transport_pb2 as pb
from transport.backend.codec import PAYLOAD_TYPES, FrameDecoder, FrameTooLarge, Packet, encode

W = pb.WrapperMessage
F = FieldDescriptor

_SCALARS: dict[int, st.SearchStrategy[object]] = {
    F.TYPE_STRING: st.text(max_size=40),
    F.TYPE_BYTES: st.binary(max_size=40),
    F.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    F.TYPE_BOOL: st.booleans(),
}


def _value(field: FieldDescriptor) -> st.SearchStrategy[object]:
    if field.type == F.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values])
    if field.type == F.TYPE_MESSAGE:
        return messages(field.message_type._concrete_class)  # type: ignore[attr-defined]
    return _SCALARS[field.type]


@st.composite
def _message(draw: st.DrawFn, cls: type[Message]) -> Message:
    message = cls()
    for field in cls.DESCRIPTOR.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            mapping = draw(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3))
            getattr(message, field.name).update(mapping)
        elif field.is_repeated:
            values = draw(st.lists(_value(field), max_size=3))
            container = getattr(message, field.name)
            if field.type == F.TYPE_MESSAGE:
                for value in values:
                    container.add().CopyFrom(value)
            else:
                container.extend(values)
        elif field.is_required or draw(st.booleans()):
            value = draw(_value(field))
            if field.type == F.TYPE_MESSAGE:
                getattr(message, field.name).CopyFrom(value)
            else:
                setattr(message, field.name, value)
    return message


def messages(cls: type[Message]) -> st.SearchStrategy[Message]:
    return _message(cls)


def _payload_for(type_: int) -> st.SearchStrategy[object]:
    cls = PAYLOAD_TYPES[type_]
    if cls is None:
        return st.none()
    if cls is str:
        return st.text(max_size=80)
    return messages(cls)  # type: ignore[arg-type]


packets = st.sampled_from(sorted(PAYLOAD_TYPES)).flatmap(
    lambda t: _payload_for(t).map(lambda p: Packet(t, p))  # type: ignore[arg-type]
)


def _same(a: Packet, b: Packet) -> bool:
    if a.type != b.type:
        return False
    if isinstance(a.payload, Message):
        return type(a.payload) is type(b.payload) and a.payload == b.payload
    return a.payload == b.payload


def test_every_payload_type_has_a_strategy() -> None:
    for type_ in PAYLOAD_TYPES:
        assert _payload_for(type_) is not None


@settings(max_examples=400, deadline=None)
@given(packets)
def test_round_trip_any_packet(packet: Packet) -> None:
    decoded = FrameDecoder().feed(encode(packet.type, packet.payload))
    assert len(decoded) == 1 and _same(decoded[0], packet)


@settings(max_examples=150, deadline=None)
@given(st.lists(packets, min_size=1, max_size=12), st.data())
def test_random_splits_decode_the_same(items: list[Packet], data: st.DataObject) -> None:
    stream = b"".join(encode(p.type, p.payload) for p in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    decoder = FrameDecoder()
    out: list[Packet] = []
    previous = 0
    for cut in [*cuts, len(stream)]:
        out.extend(decoder.feed(stream[previous:cut]))
        previous = cut
    assert len(out) == len(items)
    assert all(_same(a, b) for a, b in zip(out, items, strict=True))
    assert decoder.buffered == 0 and decoder.skipped == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=10))
def test_arbitrary_frame_bodies_never_break_the_decoder(bodies: list[bytes]) -> None:
    decoder = FrameDecoder()
    good = encode(W.TYPE_PONG)
    stream = b"".join(struct.pack(">I", len(b)) + b + good for b in bodies)
    out = decoder.feed(stream)
    # every good frame is still there; a random body either parsed or was counted
    assert out.count(Packet(W.TYPE_PONG)) >= len(bodies)
    assert len(out) + decoder.skipped == 2 * len(bodies)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_frame_too_large(data: bytes) -> None:
    decoder = FrameDecoder(max_frame_size=1024)
    try:
        decoder.feed(data)
    except FrameTooLarge as e:
        assert e.length > 1024
