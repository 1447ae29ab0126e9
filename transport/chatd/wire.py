"""Command framing shared by chatd and statusd (sans-I/O).

Both protocols are streams of self-delimiting binary commands: a 1-byte opcode,
fixed little-endian integer fields, and for a few commands a trailing byte
string preceded by its 2- or 3-byte length. The same bytes travel over a TCP
(or TLS) stream and inside WebSocket binary messages (one or more commands per
message), so this module knows nothing about transports:

* :class:`Command` subclasses describe one command each (its opcode, fields and
  optional trailing payload) and encode themselves;
* :class:`Decoder` turns arbitrary chunks of bytes into commands, bounded by
  ``max_size`` (a longer payload is reported as :class:`Oversized` and skipped
  as it arrives, never buffered), and stops at an unknown opcode
  (:class:`UnknownOpcode`): the stream can no longer be delimited;
* :class:`ServerConnection` / :class:`ClientConnection` add the login order
  (AUTH, then HELLO) on top, returning events and :class:`Violation`\\s for the
  adapter to act on.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from enum import Enum, IntEnum
from typing import Any, ClassVar

OP_KEEPALIVE = 0
OP_AUTH = 1
OP_HELLO = 2
OP_ERROR = 255

#: Never assigned (the draft's INVALID_USERID / INVALID_CLIENTID).
INVALID_USERID = 0
INVALID_CLIENTID = 0

DEFAULT_MAX_SIZE = 64 * 1024


class ErrorCode(IntEnum):
    """The ``code`` of an ERROR command (server to client)."""

    #: Unknown opcode: the stream cannot be delimited any more (then disconnect).
    PROTOCOL = 1
    #: A length field over ``max_message_size``: the payload was skipped, the connection stays.
    TOO_LARGE = 2
    #: The first command was not AUTH (then disconnect).
    AUTH_REQUIRED = 3
    #: A command out of the login order, e.g. a second HELLO (then disconnect).
    STATE = 4
    #: The client sent a command for a room it has not joined.
    NOT_JOINED = 5
    #: An RTMSG receiver (user or client) is not in the room: nothing was delivered.
    NOT_IN_ROOM = 6
    #: A field holds a value the protocol does not allow.
    BAD_VALUE = 7
    #: The client is too slow or sends too much.
    OVERLOAD = 8
    #: A WebSocket text message (only binary messages carry commands).
    NOT_BINARY = 9


_INT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


@dataclass(frozen=True)
class Command:
    """One wire command. Subclasses set the class variables and declare their fields in wire order.

    ``FIELDS`` are unsigned little-endian integers of the given sizes; when
    ``LENGTH`` is non-zero the last dataclass field is a ``bytes`` payload sent
    after a ``LENGTH``-byte length.
    """

    OPCODE: ClassVar[int] = -1
    FIELDS: ClassVar[tuple[int, ...]] = ()
    LENGTH: ClassVar[int] = 0
    _STRUCT: ClassVar[struct.Struct]
    _NAMES: ClassVar[tuple[str, ...]]
    HEAD: ClassVar[int]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._STRUCT = struct.Struct("<" + "".join(_INT_CODES[n] for n in cls.FIELDS))
        cls.HEAD = 1 + cls._STRUCT.size + cls.LENGTH

    def __post_init__(self) -> None:
        names = [f.name for f in fields(self)]
        for name, size in zip(names, self.FIELDS, strict=False):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < (1 << (8 * size)):
                raise ValueError(f"{type(self).__name__}.{name} = {value!r} does not fit {size} bytes")
        if self.LENGTH:
            payload = getattr(self, names[-1])
            if not isinstance(payload, bytes) or len(payload) >= (1 << (8 * self.LENGTH)):
                raise ValueError(f"{type(self).__name__}.{names[-1]} must be bytes of fewer than "
                                 f"2**{8 * self.LENGTH} bytes")

    def encode(self) -> bytes:
        """The command's bytes on the wire."""
        values = [getattr(self, f.name) for f in fields(self)]
        head = bytes((self.OPCODE,)) + self._STRUCT.pack(*values[:len(self.FIELDS)])
        if not self.LENGTH:
            return head
        payload: bytes = values[-1]
        return head + len(payload).to_bytes(self.LENGTH, "little") + payload

    @classmethod
    def decode_parts(cls, head: bytes | bytearray, payload: bytes) -> Command:
        """Build the command from its fixed part (after the opcode) and its payload."""
        values: list[Any] = list(cls._STRUCT.unpack(head[:cls._STRUCT.size]))
        if cls.LENGTH:
            values.append(payload)
        return cls(*values)


@dataclass(frozen=True)
class KeepAlive(Command):
    """KEEPALIVE (0), both ways: the server sends one every ``keepalive_interval``; clients answer."""

    OPCODE = OP_KEEPALIVE


@dataclass(frozen=True)
class Error(Command):
    """ERROR (255), server to client: ``code(1) len(2) text``."""

    OPCODE = OP_ERROR
    FIELDS = (1,)
    LENGTH = 2
    code: int
    text_bytes: bytes = b""

    @classmethod
    def of(cls, code: int, text: str) -> Error:
        return cls(int(code), text.encode("utf-8")[:65535])

    @property
    def text(self) -> str:
        return self.text_bytes.decode("utf-8", "replace")


@dataclass(frozen=True)
class Auth(Command):
    """AUTH (1), client to server: ``userid(8) toklen(2) token``. The same in chatd and statusd."""

    OPCODE = OP_AUTH
    FIELDS = (8,)
    LENGTH = 2
    userid: int
    token: bytes


@dataclass(frozen=True)
class AuthResult(Command):
    """AUTH (1), server to client: ``result(1)``; 0 = accepted, 1 = refused (then disconnect)."""

    OPCODE = OP_AUTH
    FIELDS = (1,)
    result: int


AUTH_OK = 0
AUTH_REFUSED = 1


# ---------------------------------------------------------------------------
# decoding


@dataclass(frozen=True)
class Oversized:
    """A command whose declared length exceeds the limit; its payload is being skipped."""

    opcode: int
    length: int


@dataclass(frozen=True)
class UnknownOpcode:
    """An opcode this side does not know; nothing after it can be decoded."""

    opcode: int


Decoded = Command | Oversized | UnknownOpcode


class Decoder:
    """Incremental decoder for one direction of one protocol.

    *table* maps opcodes to the :class:`Command` classes this side may receive.
    The internal buffer never holds more than one incomplete command, itself at
    most ``max_size`` bytes of payload plus its fixed head.
    """

    def __init__(self, table: Mapping[int, type[Command]], max_size: int = DEFAULT_MAX_SIZE) -> None:
        self._table = dict(table)
        self.max_size = max_size
        self._buf = bytearray()
        self._skip = 0
        self.dead = False

    def feed(self, data: bytes) -> list[Decoded]:
        """Decode as many commands as *data* completes."""
        out: list[Decoded] = []
        if self.dead:
            return out
        view = memoryview(data)
        if self._skip:
            n = min(self._skip, len(view))
            self._skip -= n
            view = view[n:]
        if not view:
            return out
        self._buf += view
        buf = self._buf
        pos = 0
        end = len(buf)
        table = self._table
        while pos < end:
            opcode = buf[pos]
            cls = table.get(opcode)
            if cls is None:
                out.append(UnknownOpcode(opcode))
                self.dead = True
                self._buf = bytearray()
                return out
            head = cls.HEAD
            if end - pos < head:
                break
            if not cls.LENGTH:
                out.append(cls.decode_parts(buf[pos + 1:pos + head], b""))
                pos += head
                continue
            length = int.from_bytes(buf[pos + head - cls.LENGTH:pos + head], "little")
            if length > self.max_size:
                out.append(Oversized(opcode, length))
                available = end - pos - head
                if available >= length:
                    pos += head + length
                    continue
                self._skip = length - available
                pos = end
                break
            if end - pos < head + length:
                break
            out.append(cls.decode_parts(buf[pos + 1:pos + head], bytes(buf[pos + head:pos + head + length])))
            pos += head + length
        if pos:
            del buf[:pos]
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)


def command_table(commands: Iterable[type[Command]]) -> dict[int, type[Command]]:
    """``{opcode: class}``, refusing two classes for one opcode."""
    table: dict[int, type[Command]] = {}
    for cls in commands:
        if cls.OPCODE in table:
            raise ValueError(f"opcode {cls.OPCODE} is used twice")
        table[cls.OPCODE] = cls
    return table


# ---------------------------------------------------------------------------
# connections


@dataclass(frozen=True)
class Violation:
    """The client broke the protocol: send ``Error(code, text)``; when *fatal*, disconnect after it."""

    code: int
    text: str
    fatal: bool

    def error(self) -> Error:
        return Error.of(self.code, self.text)


class Phase(Enum):
    AUTH = "auth"        # nothing received yet: AUTH must come first
    HELLO = "hello"      # AUTH received: HELLO must come next (KEEPALIVE allowed)
    READY = "ready"      # logged in
    CLOSED = "closed"    # a fatal violation or close(): nothing more is decoded


class ServerConnection:
    """The server's view of one client: decoding plus the login order.

    ``receive_data`` returns the client's commands, in order, and
    :class:`Violation` events. It checks the order optimistically - AUTH moves
    the phase on before the token is checked - so a client may pipeline AUTH and
    HELLO; the adapter holds later events until the validator answers and drops
    them when it says no.
    """

    def __init__(self, table: Mapping[int, type[Command]], hello: type[Command],
                 max_size: int = DEFAULT_MAX_SIZE) -> None:
        self._decoder = Decoder(table, max_size)
        self._table = dict(table)
        self._hello = hello
        self.phase = Phase.AUTH

    def receive_data(self, data: bytes) -> list[Command | Violation]:
        events: list[Command | Violation] = []
        if self.phase is Phase.CLOSED:
            return events
        for item in self._decoder.feed(data):
            if isinstance(item, UnknownOpcode):
                events.append(self._fatal(ErrorCode.PROTOCOL, f"unknown opcode {item.opcode}"))
                break
            kind = self._table[item.opcode] if isinstance(item, Oversized) else type(item)
            violation = self._check_order(kind)
            if violation is not None:
                events.append(violation)
                break
            if isinstance(item, Oversized):
                events.append(Violation(ErrorCode.TOO_LARGE, f"opcode {item.opcode}: length {item.length} over the "
                                        f"limit of {self._decoder.max_size} bytes; skipped", fatal=False))
                if kind is Auth:
                    self.phase = Phase.AUTH  # the skipped AUTH did not count
                continue
            events.append(item)
        return events

    def _check_order(self, kind: type[Command]) -> Violation | None:
        phase = self.phase
        if phase is Phase.AUTH:
            if kind is Auth:
                self.phase = Phase.HELLO
                return None
            return self._fatal(ErrorCode.AUTH_REQUIRED, "AUTH must be the first command")
        if kind is Auth:
            return self._fatal(ErrorCode.STATE, "already authenticated")
        if phase is Phase.HELLO:
            if kind is self._hello:
                self.phase = Phase.READY
                return None
            if kind is KeepAlive:
                return None
            return self._fatal(ErrorCode.STATE, "HELLO must follow AUTH")
        if kind is self._hello:
            return self._fatal(ErrorCode.STATE, "HELLO was already sent")
        return None

    def _fatal(self, code: int, text: str) -> Violation:
        self.phase = Phase.CLOSED
        return Violation(code, text, fatal=True)

    def close(self) -> None:
        self.phase = Phase.CLOSED

    @staticmethod
    def send(command: Command) -> bytes:
        return command.encode()


class ClientConnection:
    """The client's side: decodes what the server sends, encodes what the client sends.

    An unknown opcode from the server ends decoding (:class:`UnknownOpcode` is
    returned once); the adapter should close.
    """

    def __init__(self, table: Mapping[int, type[Command]], max_size: int = 16 * 1024 * 1024) -> None:
        self._decoder = Decoder(table, max_size)

    def receive_data(self, data: bytes) -> list[Decoded]:
        return self._decoder.feed(data)

    @staticmethod
    def send(command: Command) -> bytes:
        return command.encode()
