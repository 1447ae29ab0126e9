"""Sans-I/O codec for the backend protocol (Spectrum 2 wire format).

A frame is a 4-byte big-endian unsigned length followed by a serialized
``pbnetwork.WrapperMessage``. The wrapper's ``payload`` holds a second message
whose class depends on the wrapper's ``type`` (see :data:`PAYLOAD_TYPES`).

:class:`FrameDecoder` turns bytes into :class:`Packet` events; :func:`encode`
turns a type and a payload into bytes. Neither touches a socket, so the same
core serves a TCP link, a mux channel and the conformance kit.

Two rules protect the main instance from a broken or hostile peer:

* a frame longer than ``max_frame_size`` raises :class:`FrameTooLarge` - the
  caller closes the link instead of buffering gigabytes;
* a frame that does not parse is skipped and counted (``skipped``), as
  Spectrum 2 does, and decoding continues with the next frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from transport.backend import transport_pb2 as pb

W = pb.WrapperMessage

DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024
_HEADER = struct.Struct(">I")

#: Payload class for each wrapper type; ``None`` means "no payload"; ``str``
#: means the payload is UTF-8 text rather than protobuf (raw XML).
PAYLOAD_TYPES: dict[int, type[Message] | type[str] | None] = {
    W.TYPE_CONNECTED: pb.Connected,
    W.TYPE_DISCONNECTED: pb.Disconnected,
    W.TYPE_LOGIN: pb.Login,
    W.TYPE_LOGOUT: pb.Logout,
    W.TYPE_BUDDY_CHANGED: pb.Buddy,
    W.TYPE_BUDDY_REMOVED: pb.Buddy,
    W.TYPE_CONV_MESSAGE: pb.ConversationMessage,
    W.TYPE_PING: None,
    W.TYPE_PONG: None,
    W.TYPE_JOIN_ROOM: pb.Room,
    W.TYPE_LEAVE_ROOM: pb.Room,
    W.TYPE_PARTICIPANT_CHANGED: pb.Participant,
    W.TYPE_ROOM_NICKNAME_CHANGED: pb.Room,
    W.TYPE_ROOM_SUBJECT_CHANGED: pb.ConversationMessage,
    W.TYPE_VCARD: pb.VCard,
    W.TYPE_STATUS_CHANGED: pb.Status,
    W.TYPE_BUDDY_TYPING: pb.Buddy,
    W.TYPE_BUDDY_STOPPED_TYPING: pb.Buddy,
    W.TYPE_BUDDY_TYPED: pb.Buddy,
    W.TYPE_AUTH_REQUEST: pb.Buddy,
    W.TYPE_ATTENTION: pb.ConversationMessage,
    W.TYPE_STATS: pb.Stats,
    W.TYPE_FT_START: pb.File,
    W.TYPE_FT_FINISH: pb.File,
    W.TYPE_FT_DATA: pb.FileTransferData,
    W.TYPE_FT_PAUSE: pb.File,
    W.TYPE_FT_CONTINUE: pb.File,
    W.TYPE_EXIT: None,
    W.TYPE_BACKEND_CONFIG: pb.BackendConfig,
    W.TYPE_QUERY: pb.BackendConfig,
    W.TYPE_ROOM_LIST: pb.RoomList,
    W.TYPE_CONV_MESSAGE_ACK: pb.ConversationMessage,
    W.TYPE_RAW_XML: str,
    W.TYPE_BUDDIES: pb.Buddies,
    W.TYPE_API_VERSION: pb.APIVersion,
}

Payload = Message | str | None


class CodecError(Exception):
    """Base class of the codec's errors."""


class FrameTooLarge(CodecError):
    """The peer announced a frame longer than the configured maximum."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"frame of {length} bytes exceeds the limit of {limit} bytes")
        self.length = length
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Packet:
    """One decoded frame: the wrapper type and its parsed payload."""

    type: int
    payload: Payload = None

    @property
    def type_name(self) -> str:
        return type_name(self.type)


def type_name(value: int) -> str:
    """``TYPE_PING`` for 9; ``TYPE_9?`` for a number the protocol does not define."""
    try:
        return W.Type.Name(value)
    except ValueError:
        return f"TYPE_{value}?"


def encode(type_: int, payload: Payload | bytes = None) -> bytes:
    """Serialize one frame: length prefix + WrapperMessage(type, payload)."""
    wrapper = W()
    wrapper.type = type_  # type: ignore[assignment]
    if payload is not None:
        if isinstance(payload, Message):
            wrapper.payload = payload.SerializeToString()
        elif isinstance(payload, str):
            wrapper.payload = payload.encode("utf-8")
        else:
            wrapper.payload = bytes(payload)
    body = wrapper.SerializeToString()
    return _HEADER.pack(len(body)) + body


def decode_payload(type_: int, raw: bytes) -> Payload:
    """Parse a wrapper's payload bytes for *type_*; raises DecodeError on garbage.

    Garbage includes a payload whose required fields are missing, and string
    fields that are not UTF-8.
    """
    cls = PAYLOAD_TYPES.get(type_)
    if cls is None:
        return None
    if cls is str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError(f"raw XML is not UTF-8: {e}") from e
    message: Message = cls()  # type: ignore[assignment]
    message.ParseFromString(raw)
    # upb's ParseFromString accepts a proto2 message with required fields
    # missing; Spectrum 2's C++ parser refuses it, and so do we.
    if not message.IsInitialized():
        missing = message.FindInitializationErrors()  # type: ignore[attr-defined]
        raise DecodeError("missing required field(s): " + ", ".join(missing))
    if not raw.isascii():  # ASCII is UTF-8: the common case needs no walk over the fields
        _check_text(message)
    return message


# proto2 does not make the parser check that string fields are UTF-8 (Spectrum 2's
# C++ side does not either); upb then hands such a field over as bytes, or raises
# UnicodeDecodeError when a map is read. Such a frame is garbage for us: refused
# here, once, rather than crashing whichever handler reads the field.
_TextPlan = tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, bool], ...], tuple[str, ...]]
_TEXT_PLANS: dict[str, _TextPlan] = {}


def _text_plan(descriptor: Any) -> _TextPlan:
    plan = _TEXT_PLANS.get(descriptor.full_name)
    if plan is None:
        strings: list[str] = []
        repeated: list[str] = []
        messages: list[tuple[str, bool]] = []
        maps: list[str] = []
        for field in descriptor.fields:
            if field.type == FieldDescriptor.TYPE_STRING:
                (repeated if field.is_repeated else strings).append(field.name)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                if field.message_type.GetOptions().map_entry:
                    maps.append(field.name)
                else:
                    messages.append((field.name, field.is_repeated))
        plan = _TEXT_PLANS[descriptor.full_name] = (tuple(strings), tuple(repeated), tuple(messages), tuple(maps))
    return plan


def _check_text(message: Any) -> None:
    """Raise DecodeError when a string field of *message* (or of a nested one) is not UTF-8."""
    strings, repeated, messages, maps = _text_plan(message.DESCRIPTOR)
    for name in strings:
        if type(getattr(message, name)) is not str:
            raise DecodeError(f"{message.DESCRIPTOR.name}.{name} is not UTF-8")
    for name in repeated:
        for value in getattr(message, name):
            if type(value) is not str:
                raise DecodeError(f"{message.DESCRIPTOR.name}.{name} is not UTF-8")
    for name, is_repeated in messages:
        if is_repeated:
            for item in getattr(message, name):
                _check_text(item)
        elif message.HasField(name):
            _check_text(getattr(message, name))
    for name in maps:
        try:
            dict(getattr(message, name))
        except UnicodeDecodeError:
            raise DecodeError(f"{message.DESCRIPTOR.name}.{name} is not UTF-8") from None


class FrameDecoder:
    """Incremental decoder: feed it bytes, get the complete packets back.

    ``skipped`` counts frames that were well delimited but did not parse (bad
    wrapper, unknown type, bad payload); they are dropped and decoding goes on.
    ``unknown`` counts the subset whose wrapper parsed but whose type is unknown.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self.skipped = 0
        self.unknown = 0
        self.last_error: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Packet]:
        """Add *data*; return every packet completed by it, in order.

        Raises :class:`FrameTooLarge` as soon as a header announces a frame over
        the limit; the decoder must not be used after that.
        """
        buf = self._buffer
        buf += data
        packets: list[Packet] = []
        offset = 0
        end = len(buf)
        limit = self.max_frame_size
        unpack = _HEADER.unpack_from
        while end - offset >= 4:
            (length,) = unpack(buf, offset)
            if length > limit:
                raise FrameTooLarge(length, limit)
            stop = offset + 4 + length
            if stop > end:
                break
            packet = self._parse(bytes(buf[offset + 4 : stop]))
            if packet is not None:
                packets.append(packet)
            offset = stop
        if offset:
            del buf[:offset]
        return packets

    def _parse(self, frame: bytes) -> Packet | None:
        wrapper = W()
        try:
            wrapper.ParseFromString(frame)
            type_ = wrapper.type
            if type_ not in PAYLOAD_TYPES:
                # proto2 keeps unknown enum values out of the field: type reads as
                # the default (1) while HasField is false, or the value is out of range.
                self.unknown += 1
                raise DecodeError("unknown or missing wrapper type")
            if not wrapper.HasField("type"):
                self.unknown += 1
                raise DecodeError("unknown or missing wrapper type")
            payload = decode_payload(type_, wrapper.payload)
        except DecodeError as e:
            self.skipped += 1
            self.last_error = str(e)
            return None
        return Packet(type_, payload)
