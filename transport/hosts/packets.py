"""The hosts wire format: a sans-I/O codec for NoLimitConnect-style host packets.

Every packet is a 40-byte big-endian header followed by a fixed body and, for
most types, a *blob* (a 16-byte blob header and at most 14,320 bytes of
serialised values). The whole packet is padded with zeros to a multiple of 16
bytes and is at most 16,384 bytes long::

    offset  0  length u16   (whole packet, padded)
            2  type u16
            4  pluginNum u8 (host type for host packets)
            5  seq u8       (random per request, echoed in the reply)
            6  routeFlags u8
            7  version u8   (1)
            8  src online id (hi u64, lo u64)
           24  dst online id

Inside a blob, strings are a u32 length (including a trailing NUL), the bytes
and the NUL; integers are big-endian; an online id is written lo then hi - the
reverse of the header, as NoLimitConnect does.

Packets are frozen dataclasses (:class:`ChatReq`, :class:`HostJoinReq`, ...);
:func:`encode` turns one into bytes and :class:`PacketDecoder` turns a byte
stream into packets, raising :class:`MalformedPacket` on anything the
specification forbids (the caller then closes that one connection).

>>> from transport.hosts.packets import ChatReq, PacketDecoder, encode, OnlineId
>>> data = encode(ChatReq(src=OnlineId(b"\\x01" * 16), text="hi", sent_ms=5))
>>> len(data)
80
>>> PacketDecoder().receive_data(data)[0].text
'hi'
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any, ClassVar, TypeVar

HEADER_SIZE = 40
MAX_PACKET_SIZE = 16384
BLOB_HEADER_SIZE = 16
MAX_BLOB_DATA = 14320
PROTOCOL_VERSION = 1

#: Largest string accepted inside a blob (a bound, not a protocol value).
MAX_STRING = MAX_BLOB_DATA

_HEADER = struct.Struct(">HHBBBB16s16s")
_BLOB_HEADER = struct.Struct(">BBBBHHHHI")


class MalformedPacket(ValueError):
    """The peer sent something the protocol forbids; close its connection."""


# ---------------------------------------------------------------------------
# enumerations (NoLimitConnect's values)


class EHostType(IntEnum):
    UNKNOWN = 0
    CONNECT_TEST = 1
    NETWORK = 2
    PEER_USER = 3
    GROUP = 4
    CHAT_ROOM = 5
    RANDOM_CONNECT = 6


#: Host types a user host may have (announced, searched, joined).
USER_HOST_TYPES = (EHostType.GROUP, EHostType.CHAT_ROOM, EHostType.RANDOM_CONNECT)


class EJoinState(IntEnum):
    NONE = 0
    SENDING = 1
    SEND_FAIL = 2
    SEND_ACKED = 3
    JOIN_REQUESTED = 4
    JOIN_WAS_GRANTED = 5
    JOIN_IS_GRANTED = 6
    JOIN_DENIED = 7
    JOIN_LEAVE_HOST = 8


class EMembershipState(IntEnum):
    NONE = 0
    CAN_BE_REQUESTED = 1
    JOINED = 2
    JOIN_DENIED = 3


class EFriendState(IntEnum):
    IGNORE = 0
    ANONYMOUS = 1
    GUEST = 2
    FRIEND = 3
    ADMIN = 4


class EPluginAccess(IntEnum):
    NOT_SET = 0
    OK = 1
    LOCKED = 2
    DISABLED = 3
    IGNORED = 4
    INACTIVE = 5
    BUSY = 6
    REQUIRES_DIRECT_CONNECT = 7
    REQUIRES_ONLINE = 8


class ECommErr(IntEnum):
    NONE = 0
    INVALID_PKT = 1
    USER_OFFLINE = 2
    SEARCH_TEXT_TOO_SHORT = 3
    SEARCH_TEXT_TOO_LONG = 4
    SEARCH_NO_MATCH = 5
    INVALID_HOST_TYPE = 6


class ERandAction(IntEnum):
    NONE = 0
    SELECT_USER = 1
    DESELECT_USER = 2
    OFFER_REQUEST = 3
    OFFER_ACCEPT = 4
    OFFER_REJECT = 5
    OFFER_CANCEL = 6
    OFFER_NO_RESPONSE = 7
    OFFER_MISSED = 8


class RouteFlags(IntEnum):
    LOOPBACK = 0x01
    GROUP_RELAY = 0x02
    CHAT_ROOM_RELAY = 0x04
    RANDOM_CONNECT_RELAY = 0x08


# ---------------------------------------------------------------------------
# online ids


@dataclass(frozen=True, order=True)
class OnlineId:
    """A 16-byte identity: the first 16 bytes of SHA-256 over a certificate's public key.

    ``hi`` is bytes 0-7 and ``lo`` bytes 8-15, both as big-endian u64. Ordering
    is byte order, which the directory uses for paging.
    """

    raw: bytes = b"\x00" * 16

    def __post_init__(self) -> None:
        if len(self.raw) != 16:
            raise ValueError("an online id is 16 bytes")

    @property
    def hi(self) -> int:
        return int.from_bytes(self.raw[:8], "big")

    @property
    def lo(self) -> int:
        return int.from_bytes(self.raw[8:], "big")

    @classmethod
    def from_hi_lo(cls, hi: int, lo: int) -> OnlineId:
        return cls(hi.to_bytes(8, "big") + lo.to_bytes(8, "big"))

    @classmethod
    def from_hex(cls, text: str) -> OnlineId:
        """Parse the 32 hex digits :meth:`hex` writes (``-`` and spaces ignored)."""
        cleaned = text.strip().replace("-", "").replace(" ", "")
        try:
            raw = bytes.fromhex(cleaned)
        except ValueError:
            raise ValueError(f"not an online id (32 hex digits): {text!r}") from None
        if len(raw) != 16:
            raise ValueError(f"not an online id (32 hex digits): {text!r}")
        return cls(raw)

    def hex(self) -> str:
        return self.raw.hex()

    def __bool__(self) -> bool:
        return self.raw != ZERO_RAW

    def __str__(self) -> str:
        return self.hex()

    def __repr__(self) -> str:
        return f"OnlineId({self.hex()!r})"

    def blob_bytes(self) -> bytes:
        """The blob layout: lo then hi."""
        return self.raw[8:] + self.raw[:8]

    @classmethod
    def from_blob_bytes(cls, data: bytes) -> OnlineId:
        return cls(data[8:16] + data[:8])


ZERO_RAW = b"\x00" * 16
ZERO_ID = OnlineId(ZERO_RAW)


# ---------------------------------------------------------------------------
# blob


class BlobWriter:
    """Serialises values into a blob's data part, refusing to grow past its bound."""

    def __init__(self, limit: int = MAX_BLOB_DATA) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._limit = limit

    def __len__(self) -> int:
        return self._size

    def _add(self, data: bytes) -> None:
        if self._size + len(data) > self._limit:
            raise OverflowError("blob full")
        self._parts.append(data)
        self._size += len(data)

    def string(self, text: str) -> None:
        raw = text.encode("utf-8")
        if b"\x00" in raw:
            raise ValueError("strings cannot contain NUL")
        self._add(struct.pack(">I", len(raw) + 1) + raw + b"\x00")

    def u8(self, value: int) -> None:
        self._add(struct.pack(">B", value))

    def u32(self, value: int) -> None:
        self._add(struct.pack(">I", value))

    def i64(self, value: int) -> None:
        self._add(struct.pack(">q", value))

    def online_id(self, value: OnlineId) -> None:
        self._add(value.blob_bytes())

    def data(self) -> bytes:
        return b"".join(self._parts)

    @staticmethod
    def string_size(text: str) -> int:
        return 5 + len(text.encode("utf-8"))


class BlobReader:
    """Reads values from a blob's data part; running past its end is a malformed packet."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, n: int) -> bytes:
        if self._pos + n > len(self._data):
            raise MalformedPacket("blob truncated")
        chunk = self._data[self._pos:self._pos + n]
        self._pos += n
        return chunk

    def string(self) -> str:
        (length,) = struct.unpack(">I", self._take(4))
        if length < 1 or length > MAX_STRING:
            raise MalformedPacket(f"blob string length {length} out of range")
        raw = self._take(length)
        if raw[-1] != 0 or b"\x00" in raw[:-1]:
            raise MalformedPacket("blob string not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPacket("blob string is not UTF-8") from None

    def u8(self) -> int:
        return int(self._take(1)[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self._take(4))[0])

    def i64(self) -> int:
        return int(struct.unpack(">q", self._take(8))[0])

    def online_id(self) -> OnlineId:
        return OnlineId.from_blob_bytes(self._take(16))

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos


def encode_blob(data: bytes, data_type: int = 0) -> bytes:
    """A blob: its 16-byte header, then *data* (at most 14,320 bytes)."""
    if len(data) > MAX_BLOB_DATA:
        raise ValueError(f"blob data of {len(data)} bytes exceeds {MAX_BLOB_DATA}")
    return _BLOB_HEADER.pack(1, 1, 0, 1, data_type, 0, len(data), MAX_BLOB_DATA, 0) + data


def decode_blob(data: bytes) -> bytes:
    """The data part of the blob at the start of *data* (trailing padding ignored)."""
    if len(data) < BLOB_HEADER_SIZE:
        raise MalformedPacket("blob header truncated")
    net_order, obj_ver, _past_end, _data_ver, _data_type, _idx, blob_len, _max_len, _res = (
        _BLOB_HEADER.unpack_from(data))
    if net_order != 1:
        raise MalformedPacket("blob not in network byte order")
    if blob_len > MAX_BLOB_DATA:
        raise MalformedPacket(f"blob length {blob_len} exceeds {MAX_BLOB_DATA}")
    if BLOB_HEADER_SIZE + blob_len > len(data):
        raise MalformedPacket("blob truncated")
    return data[BLOB_HEADER_SIZE:BLOB_HEADER_SIZE + blob_len]


# ---------------------------------------------------------------------------
# header


@dataclass(frozen=True)
class Header:
    length: int
    type: int
    plugin_num: int
    seq: int
    route_flags: int
    version: int
    src: OnlineId
    dst: OnlineId

    def encode(self) -> bytes:
        return _HEADER.pack(self.length, self.type, self.plugin_num, self.seq, self.route_flags,
                            self.version, self.src.raw, self.dst.raw)

    @classmethod
    def decode(cls, data: bytes) -> Header:
        if len(data) < HEADER_SIZE:
            raise MalformedPacket("header truncated")
        length, ptype, plugin, seq, route, version, src, dst = _HEADER.unpack_from(data)
        return cls(length, ptype, plugin, seq, route, version, OnlineId(src), OnlineId(dst))


def _pad16(n: int) -> int:
    return (n + 15) & ~15


# ---------------------------------------------------------------------------
# packets


@dataclass(frozen=True, kw_only=True)
class Packet:
    """Fields every packet has (its header); subclasses add their body."""

    TYPE: ClassVar[int] = 0
    #: True when the body ends with a blob.
    HAS_BLOB: ClassVar[bool] = False
    #: Size of the fixed body (between the header and the blob).
    BODY_SIZE: ClassVar[int] = 0

    src: OnlineId = ZERO_ID
    dst: OnlineId = ZERO_ID
    seq: int = 0
    plugin_num: int = 0
    route_flags: int = 0

    def encode_body(self) -> bytes:
        return b""

    def encode_blob(self) -> bytes:
        return b""

    @classmethod
    def decode_body(cls, body: bytes, blob: BlobReader | None, common: dict[str, Any]) -> Packet:
        return cls(**common)


P = TypeVar("P", bound=type[Packet])
PACKET_TYPES: dict[int, type[Packet]] = {}


def _register(cls: P) -> P:
    if cls.TYPE in PACKET_TYPES:  # pragma: no cover - a declaration error
        raise AssertionError(f"packet type {cls.TYPE} registered twice")
    PACKET_TYPES[cls.TYPE] = cls
    return cls


_RES7 = b"\x00" * 7


# -- announce (identity exchange after TLS) ---------------------------------


@_register
@dataclass(frozen=True, kw_only=True)
class Announce(Packet):
    """Sent by both sides once after the TLS handshake: who I am."""

    TYPE = 1
    HAS_BLOB = True
    name: str = ""
    motto: str = ""
    url: str = ""

    def encode_blob(self) -> bytes:
        w = BlobWriter()
        w.string(self.name)
        w.string(self.motto)
        w.string(self.url)
        return w.data()

    @classmethod
    def decode_body(cls, body: bytes, blob: BlobReader | None, common: dict[str, Any]) -> Packet:
        assert blob is not None
        return cls(name=blob.string(), motto=blob.string(), url=blob.string(), **common)


# -- chat ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Chat(Packet):
    HAS_BLOB = True
    text: str = ""
    sent_ms: int = 0

    def encode_blob(self) -> bytes:
        w = BlobWriter()
        w.string(self.text)
        w.i64(self.sent_ms)
        return w.data()

    @classmethod
    def decode_body(cls, body: bytes, blob: BlobReader | None, common: dict[str, Any]) -> Packet:
        assert blob is not None
        return cls(text=blob.string(), sent_ms=blob.i64(), **common)


@_register
@dataclass(frozen=True, kw_only=True)
class ChatReq(_Chat):
    """A member's chat message to the host."""

    TYPE = 7


@_register
@dataclass(frozen=True, kw_only=True)
class ChatReply(_Chat):
    """A chat message relayed by the host; ``src`` is the original sender."""

    TYPE = 8


# -- join / unjoin / leave / offer ------------------------------------------------

_JOIN_REQ = struct.Struct(">B7s16s")
_JOIN_REPLY = struct.Struct(">BBBB4s16s")


@dataclass(frozen=True, kw_only=True)
class _HostReq(Packet):
    """hostType u8, 7 reserved bytes, sessionId(16)."""

    BODY_SIZE = _JOIN_REQ.size
    host_type: int = 0
    session_id: OnlineId = ZERO_ID

    def encode_body(self) -> bytes:
        return _JOIN_REQ.pack(self.host_type, _RES7, self.session_id.raw)

    @classmethod
    def _fields(cls, body: bytes) -> dict[str, Any]:
        host_type, _res, session = _JOIN_REQ.unpack_from(body)
        return {"host_type": host_type, "session_id": OnlineId(session)}

    @classmethod
    def decode_body(cls, body: bytes, blob: BlobReader | None, common: dict[str, Any]) -> Packet:
        return cls(**cls._fields(body), **common)


@dataclass(frozen=True, kw_only=True)
class _HostReply(Packet):
    """hostType u8, access u8, commErr u8, joinState u8, 4 reserved, sessionId(16)."""

    BODY_SIZE = _JOIN_REPLY.size
    host_type: int = 0
    access: int = 0
    comm_err: int = 0
    join_state: int = 0
    session_id: OnlineId = ZERO_ID

    def encode_body(self) -> bytes:
        return _JOIN_REPLY.pack(self.host_type, self.access, self.comm_err, self.join_state, b"\x00" * 4,
                                self.session_id.raw)

    @classmethod
    def _fields(cls, body: bytes) -> dict[str, Any]:
        host_type, access, err, state, _res, session = _JOIN_REPLY.unpack_from(body)
        return {"host_type": host_type, "access": access, "comm_err": err, "join_state": state,
                "session_id": OnlineId(session)}

    @classmethod
    def decode_body(cls, body: bytes, blob: BlobReader | None, common: dict[str, Any]) -> Packet:
        return cls(**cls._fields(body), **common)


@_register
@dataclass(frozen=True, kw_only=True)
class HostJoinReq(_HostReq):
    TYPE = 77


@_register
@dataclass(frozen=True, kw_only=True)
class HostJoinReply(_HostReply):
    TYPE = 78


@_register
@dataclass(frozen=True, kw_only=True)
class HostUnjoinReq(_HostReq):
    """Permanent removal of the membership record."""

    TYPE = 79


@_register
@dataclass(frozen=True, kw_only=True)
class HostUnjoinReply(_HostReply):
    TYPE = 80


@_register
@dataclass(frozen=True, kw_only=True)
class HostLeaveReq(_HostReq):
    """End of the session; the membership record is kept."""

    TYPE = 81


@_register
@dataclass(frozen=True, kw_only=True)
class HostLeaveReply(_HostReply):
    TYPE = 82


class _StringBlob:
    """Host packets whose blob is one string, kept in the field named by ``BLOB_FIELD``.

    Listed first among the bases, so its blob methods take precedence; the fixed
    body comes from the host request/reply base (``_fields``).
    """

    HAS_BLOB: ClassVar[bool] = True
    BLOB_FIELD: ClassVar[str] = ""

    def encode_blob(self) -> bytes:
        w = BlobWriter()
        w.string(getattr(self, self.BLOB_FIELD))
        return w.data()

    @classmethod
    def decode_body(cls, body: bytes, blob: BlobReader | None, common: dict[str, Any]) -> Packet:
        assert blob is not None
        fields = cls._fields(body)  # type: ignore[attr-defined]
        return cls(**fields, **{cls.BLOB_FIELD: blob.string()}, **common)  # type: ignore[return-value]


@_register
@dataclass(frozen=True, kw_only=True)
class HostOfferReq(_StringBlob, _HostReq):
    """A join request carrying a message for the admin."""

    TYPE = 83
    BLOB_FIELD = "message"
    message: str = ""


@_register
@dataclass(frozen=True, kw_only=True)
class HostOfferReply(_StringBlob, _HostReply):
    TYPE = 84
    BLOB_FIELD = "message"
    message: str = ""


@_register
@dataclass(frozen=True, kw_only=True)
class HostSearchReq(_StringBlob, _HostReq):
    """Search this host's members by name; answered as a paged user list (:class:`HostSearchReply`)."""

    TYPE = 85
    BLOB_FIELD = "text"
    text: str = ""


# -- paged lists (directory search, member lists) ------------------------------------

_PAGE_REPLY = struct.Struct(">BBBBHH4s16s16s")
_MORE_REQ = struct.Struct(">B7s16s16s")


@dataclass(frozen=True)
class HostedInfo:
    """One directory entry: a user host as announced."""

    online_id: OnlineId
    last_modified_ms: int
    url: str
    title: str
    description: str
    thumb_id: OnlineId

    def write(self, w: BlobWriter) -> None:
        w.online_id(self.online_id)
        w.i64(self.last_modified_ms)
        w.string(self.url)
        w.string(self.title)
        w.string(self.description)
        w.online_id(self.thumb_id)

    def size(self) -> int:
        return 16 + 8 + sum(BlobWriter.string_size(s) for s in (self.url, self.title, self.description)) + 16

    @classmethod
    def read(cls, r: BlobReader) -> HostedInfo:
        return cls(r.online_id(), r.i64(), r.string(), r.string(), r.string(), r.online_id())


@dataclass(frozen=True)
class MemberInfo:
    """One member record in a user list."""

    online_id: OnlineId
    name: str
    join_state: int
    online: bool

    def write(self, w: BlobWriter) -> None:
        w.online_id(self.online_id)
        w.string(self.name)
        w.u8(self.join_state)
        w.u8(1 if self.online else 0)

    def size(self) -> int:
        return 16 + BlobWriter.string_size(self.name) + 2

    @classmethod
    def read(cls, r: BlobReader) -> MemberInfo:
        return cls(r.online_id(), r.string(), r.u8(), bool(r.u8()))


@dataclass(frozen=True, kw_only=True)
class _PageReply(Packet):
    """hostType u8, moreExist u8, commErr u8, reserved u8, count u16, reserved u16, 4 reserved,
    sessionId(16), nextId(16) + blob of ``count`` records."""

    BODY_SIZE = _PAGE_REPLY.size
    HAS_BLOB = True
    host_type: int = 0
    more_exist: bool = False
    comm_err: int = 0
    session_id: OnlineId = ZERO_ID
    next_id: OnlineId = ZERO_ID

    def _records(self) -> Sequence[HostedInfo | MemberInfo]:
        raise NotImplementedError

    def encode_body(self) -> bytes:
        return _PAGE_REPLY.pack(self.host_type, 1 if self.more_exist else 0, self.comm_err, 0,
                                len(self._records()), 0, b"\x00" * 4, self.session_id.raw, self.next_id.raw)

    def encode_blob(self) -> bytes:
        w = BlobWriter()
        for record in self._records():
            record.write(w)
        return w.data()

    @classmethod
    def _page_fields(cls, body: bytes, blob: BlobReader | None,
                     read: Callable[[BlobReader], Any]) -> tuple[dict[str, Any], list[Any]]:
        assert blob is not None
        host_type, more, err, _r1, count, _r2, _r3, session, next_id = _PAGE_REPLY.unpack_from(body)
        records = [read(blob) for _ in range(count)]
        return ({"host_type": host_type, "more_exist": bool(more), "comm_err": err,
                 "session_id": OnlineId(session), "next_id": OnlineId(next_id)}, records)


@dataclass(frozen=True, kw_only=True)
class _HostedPage(_PageReply):
    entries: tuple[HostedInfo, ...] = ()

    def _records(self) -> Sequence[HostedInfo]:
        return self.entries

    @classmethod
    def decode_body(cls, body: bytes, blob: BlobReader | None, common: dict[str, Any]) -> Packet:
        values, records = cls._page_fields(body, blob, HostedInfo.read)
        return cls(**values, entries=tuple(records), **common)


@dataclass(frozen=True, kw_only=True)
class _MemberPage(_PageReply):
    users: tuple[MemberInfo, ...] = ()

    def _records(self) -> Sequence[MemberInfo]:
        return self.users

    @classmethod
    def decode_body(cls, body: bytes, blob: BlobReader | None, common: dict[str, Any]) -> Packet:
        values, records = cls._page_fields(body, blob, MemberInfo.read)
        return cls(**values, users=tuple(records), **common)


@dataclass(frozen=True, kw_only=True)
class _MoreReq(Packet):
    """hostType u8, 7 reserved, sessionId(16), nextId(16)."""

    BODY_SIZE = _MORE_REQ.size
    host_type: int = 0
    session_id: OnlineId = ZERO_ID
    next_id: OnlineId = ZERO_ID

    def encode_body(self) -> bytes:
        return _MORE_REQ.pack(self.host_type, _RES7, self.session_id.raw, self.next_id.raw)

    @classmethod
    def decode_body(cls, body: bytes, blob: BlobReader | None, common: dict[str, Any]) -> Packet:
        host_type, _res, session, next_id = _MORE_REQ.unpack_from(body)
        return cls(host_type=host_type, session_id=OnlineId(session), next_id=OnlineId(next_id),
                   **common)


@_register
@dataclass(frozen=True, kw_only=True)
class HostSearchReply(_MemberPage):
    """Members of this host whose name matches a :class:`HostSearchReq`."""

    TYPE = 86


# -- host info --------------------------------------------------------------------

_INFO_REPLY = struct.Struct(">BB6s16s")


@_register
@dataclass(frozen=True, kw_only=True)
class HostInfoReq(_HostReq):
    TYPE = 108


@_register
@dataclass(frozen=True, kw_only=True)
class HostInfoReply(Packet):
    """hostType u8, commErr u8, 6 reserved, sessionId + blob [title, description, thumbId,
    int64 lastModifiedMs, u32 memberCount]."""

    TYPE = 109
    BODY_SIZE = _INFO_REPLY.size
    HAS_BLOB = True
    host_type: int = 0
    comm_err: int = 0
    session_id: OnlineId = ZERO_ID
    title: str = ""
    description: str = ""
    thumb_id: OnlineId = ZERO_ID
    last_modified_ms: int = 0
    member_count: int = 0

    def encode_body(self) -> bytes:
        return _INFO_REPLY.pack(self.host_type, self.comm_err, b"\x00" * 6, self.session_id.raw)

    def encode_blob(self) -> bytes:
        w = BlobWriter()
        w.string(self.title)
        w.string(self.description)
        w.online_id(self.thumb_id)
        w.i64(self.last_modified_ms)
        w.u32(self.member_count)
        return w.data()

    @classmethod
    def decode_body(cls, body: bytes, blob: BlobReader | None, common: dict[str, Any]) -> Packet:
        assert blob is not None
        host_type, err, _res, session = _INFO_REPLY.unpack_from(body)
        return cls(host_type=host_type, comm_err=err, session_id=OnlineId(session), title=blob.string(),
                   description=blob.string(), thumb_id=blob.online_id(), last_modified_ms=blob.i64(),
                   member_count=blob.u32(), **common)


# -- announce to the network host ---------------------------------------------------


@_register
@dataclass(frozen=True, kw_only=True)
class HostInviteAnnounceReq(_HostReq):
    """A user host registering (or refreshing) its directory entry."""

    TYPE = 110
    HAS_BLOB = True
    last_modified_ms: int = 0
    url: str = ""
    title: str = ""
    description: str = ""
    thumb_id: OnlineId = ZERO_ID

    def encode_blob(self) -> bytes:
        w = BlobWriter()
        w.i64(self.last_modified_ms)
        w.string(self.url)
        w.string(self.title)
        w.string(self.description)
        w.online_id(self.thumb_id)
        return w.data()

    @classmethod
    def decode_body(cls, body: bytes, blob: BlobReader | None, common: dict[str, Any]) -> Packet:
        assert blob is not None
        return cls(**cls._fields(body), last_modified_ms=blob.i64(), url=blob.string(), title=blob.string(),
                   description=blob.string(), thumb_id=blob.online_id(), **common)


@_register
@dataclass(frozen=True, kw_only=True)
class HostInviteAnnounceReply(Packet):
    """hostType u8, commErr u8, 6 reserved, sessionId."""

    TYPE = 111
    BODY_SIZE = _INFO_REPLY.size
    host_type: int = 0
    comm_err: int = 0
    session_id: OnlineId = ZERO_ID

    def encode_body(self) -> bytes:
        return _INFO_REPLY.pack(self.host_type, self.comm_err, b"\x00" * 6, self.session_id.raw)

    @classmethod
    def decode_body(cls, body: bytes, blob: BlobReader | None, common: dict[str, Any]) -> Packet:
        host_type, err, _res, session = _INFO_REPLY.unpack_from(body)
        return cls(host_type=host_type, comm_err=err, session_id=OnlineId(session), **common)


# -- directory search ----------------------------------------------------------------

_SEARCH_REQ = struct.Struct(">B7s16s16s")


@_register
@dataclass(frozen=True, kw_only=True)
class HostInviteSearchReq(Packet):
    """hostType u8, 7 reserved, searchSessionId, specificOnlineId (zero = all) + blob [text]."""

    TYPE = 112
    BODY_SIZE = _SEARCH_REQ.size
    HAS_BLOB = True
    host_type: int = 0
    session_id: OnlineId = ZERO_ID
    specific_id: OnlineId = ZERO_ID
    text: str = ""

    def encode_body(self) -> bytes:
        return _SEARCH_REQ.pack(self.host_type, _RES7, self.session_id.raw, self.specific_id.raw)

    def encode_blob(self) -> bytes:
        w = BlobWriter()
        w.string(self.text)
        return w.data()

    @classmethod
    def decode_body(cls, body: bytes, blob: BlobReader | None, common: dict[str, Any]) -> Packet:
        assert blob is not None
        host_type, _res, session, specific = _SEARCH_REQ.unpack_from(body)
        # The text is optional: an empty blob means no text.
        text = blob.string() if blob.remaining else ""
        return cls(host_type=host_type, session_id=OnlineId(session), specific_id=OnlineId(specific),
                   text=text, **common)


@_register
@dataclass(frozen=True, kw_only=True)
class HostInviteSearchReply(_HostedPage):
    TYPE = 113


@_register
@dataclass(frozen=True, kw_only=True)
class HostInviteMoreReq(_MoreReq):
    TYPE = 114


@_register
@dataclass(frozen=True, kw_only=True)
class HostInviteMoreReply(_HostedPage):
    TYPE = 115


# -- user info and user lists ----------------------------------------------------------


@_register
@dataclass(frozen=True, kw_only=True)
class HostUserInfoReq(Packet):
    """targetOnlineId(16)."""

    TYPE = 135
    BODY_SIZE = 16
    target: OnlineId = ZERO_ID

    def encode_body(self) -> bytes:
        return self.target.raw

    @classmethod
    def decode_body(cls, body: bytes, blob: BlobReader | None, common: dict[str, Any]) -> Packet:
        return cls(target=OnlineId(body[:16]), **common)


@_register
@dataclass(frozen=True, kw_only=True)
class HostUserInfoReply(Packet):
    """blob [onlineId, name, motto, u8 friendState, u8 online]."""

    TYPE = 136
    HAS_BLOB = True
    online_id: OnlineId = ZERO_ID
    name: str = ""
    motto: str = ""
    friend_state: int = 0
    online: bool = False

    def encode_blob(self) -> bytes:
        w = BlobWriter()
        w.online_id(self.online_id)
        w.string(self.name)
        w.string(self.motto)
        w.u8(self.friend_state)
        w.u8(1 if self.online else 0)
        return w.data()

    @classmethod
    def decode_body(cls, body: bytes, blob: BlobReader | None, common: dict[str, Any]) -> Packet:
        assert blob is not None
        return cls(online_id=blob.online_id(), name=blob.string(), motto=blob.string(), friend_state=blob.u8(),
                   online=bool(blob.u8()), **common)


@_register
@dataclass(frozen=True, kw_only=True)
class HostUserListReq(_HostReq):
    TYPE = 139


@_register
@dataclass(frozen=True, kw_only=True)
class HostUserListReply(_MemberPage):
    TYPE = 140


@_register
@dataclass(frozen=True, kw_only=True)
class HostUserListMoreReq(_MoreReq):
    TYPE = 141


@_register
@dataclass(frozen=True, kw_only=True)
class HostUserListMoreReply(_MemberPage):
    TYPE = 142


# -- random connect and admin availability ------------------------------------------------

_RAND = struct.Struct(">B7s16s16s16s")


@dataclass(frozen=True, kw_only=True)
class _RandConnect(Packet):
    BODY_SIZE = _RAND.size
    action: int = 0
    user_id: OnlineId = ZERO_ID
    host_id: OnlineId = ZERO_ID
    to_user_id: OnlineId = ZERO_ID

    def encode_body(self) -> bytes:
        return _RAND.pack(self.action, _RES7, self.user_id.raw, self.host_id.raw, self.to_user_id.raw)

    @classmethod
    def decode_body(cls, body: bytes, blob: BlobReader | None, common: dict[str, Any]) -> Packet:
        action, _res, user, host, to_user = _RAND.unpack_from(body)
        return cls(action=action, user_id=OnlineId(user), host_id=OnlineId(host), to_user_id=OnlineId(to_user),
                   **common)


@_register
@dataclass(frozen=True, kw_only=True)
class RandConnectReq(_RandConnect):
    TYPE = 151


@_register
@dataclass(frozen=True, kw_only=True)
class RandConnectReply(_RandConnect):
    """Relayed to every client of a random-connect host; clients filter by ``to_user_id``."""

    TYPE = 152


@_register
@dataclass(frozen=True, kw_only=True)
class AdminAvail(Packet):
    """available u8 (then padding)."""

    TYPE = 155
    BODY_SIZE = 1
    available: bool = False

    def encode_body(self) -> bytes:
        return b"\x01" if self.available else b"\x00"

    @classmethod
    def decode_body(cls, body: bytes, blob: BlobReader | None, common: dict[str, Any]) -> Packet:
        return cls(available=bool(body[0]), **common)


# ---------------------------------------------------------------------------
# encoding and decoding


def encode(packet: Packet) -> bytes:
    """The packet's bytes: header, body, blob, zero padding to a multiple of 16."""
    body = packet.encode_body()
    if len(body) != packet.BODY_SIZE:  # pragma: no cover - a declaration error
        raise AssertionError(f"{type(packet).__name__} body is {len(body)} bytes, not {packet.BODY_SIZE}")
    if packet.HAS_BLOB:
        body += encode_blob(packet.encode_blob())
    length = _pad16(HEADER_SIZE + len(body))
    if length > MAX_PACKET_SIZE:
        raise ValueError(f"packet of {length} bytes exceeds {MAX_PACKET_SIZE}")
    header = Header(length, packet.TYPE, packet.plugin_num, packet.seq, packet.route_flags, PROTOCOL_VERSION,
                    packet.src, packet.dst)
    data = header.encode() + body
    return data + b"\x00" * (length - len(data))


def readdress(data: bytes, dst: OnlineId) -> bytes:
    """An encoded packet with another destination id: encode once, send to many."""
    return data[:24] + dst.raw + data[HEADER_SIZE:]


def decode(data: bytes) -> Packet:
    """One whole packet (exactly its ``length`` bytes)."""
    header = Header.decode(data)
    if header.length != len(data):
        raise MalformedPacket(f"length field {header.length} but {len(data)} bytes")
    _check_length(header.length)
    cls = PACKET_TYPES.get(header.type)
    if cls is None:
        raise MalformedPacket(f"invalid packet type {header.type}")
    body = data[HEADER_SIZE:]
    if len(body) < cls.BODY_SIZE:
        raise MalformedPacket(f"{cls.__name__} body truncated")
    blob = BlobReader(decode_blob(body[cls.BODY_SIZE:])) if cls.HAS_BLOB else None
    common: dict[str, Any] = {"src": header.src, "dst": header.dst, "seq": header.seq,
                                 "plugin_num": header.plugin_num, "route_flags": header.route_flags}
    try:
        return cls.decode_body(body[:cls.BODY_SIZE], blob, common)
    except struct.error as e:  # pragma: no cover - sizes are checked above
        raise MalformedPacket(str(e)) from None


def _check_length(length: int) -> None:
    if length % 16:
        raise MalformedPacket(f"length {length} is not a multiple of 16")
    if length > MAX_PACKET_SIZE:
        raise MalformedPacket(f"length {length} exceeds {MAX_PACKET_SIZE}")
    if length < HEADER_SIZE:
        raise MalformedPacket(f"length {length} is shorter than the header")


class PacketDecoder:
    """Splits a byte stream into packets (the sans-I/O framing).

    :meth:`receive_data` returns the complete packets so far. After a
    :class:`MalformedPacket` the stream is unusable: close the connection.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def receive_data(self, data: bytes) -> list[Packet]:
        self._buffer += data
        out: list[Packet] = []
        while len(self._buffer) >= 2:
            length = int.from_bytes(self._buffer[:2], "big")
            _check_length(length)
            if len(self._buffer) < length:
                break
            chunk = bytes(self._buffer[:length])
            del self._buffer[:length]
            out.append(decode(chunk))
        return out

    @property
    def buffered(self) -> int:
        return len(self._buffer)


def packet_fields(packet: Packet) -> dict[str, Any]:
    """A packet's fields as a dict (for logs)."""
    return {f.name: getattr(packet, f.name) for f in fields(packet)}

