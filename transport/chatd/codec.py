"""chatd commands, both directions (sans-I/O).

=========  =====  =============================================  ==============================================
command    op     client to server                               server to client
=========  =====  =============================================  ==============================================
KEEPALIVE  0      (empty)                                        (empty)
AUTH       1      ``userid(8) toklen(2) token``                  ``result(1)``, 0 = ok
HELLO      2      ``client_version(2) reserved(2)``              ``client_id(4)``
JOIN       3      ``chatid(8)``                                  ``chatid(8) result(1)``, then IN_CALL
LEAVE      4      ``chatid(8)``                                  ``chatid(8)``
RTMSG      5      ``chatid(8) userid(8) clientid(4) msgtype(1)   ``chatid(8) sender_userid(8)
                  msglen(3) data``                               sender_clientid(4) msgtype(1) msglen(3) data``
IN_CALL    6      ``chatid(8) status(1)``, a heartbeat           ``chatid(8) status(1)``, the room flag
ERROR      255    —                                              ``code(1) len(2) text``
=========  =====  =============================================  ==============================================

All integers are little-endian. Client-to-server classes are the request names
(``Join``), server-to-client classes say what they carry (``JoinResult``).

>>> Join(7).encode().hex()
'030700000000000000'
>>> RtMsg(7, 0, 0, 1, b"hi").encode()[-6:].hex()   # msgtype, msglen(3), data
'010200006869'
"""

from __future__ import annotations

from dataclasses import dataclass

from transport.chatd.wire import (
    Auth,
    AuthResult,
    ClientConnection,
    Command,
    Error,
    KeepAlive,
    ServerConnection,
    command_table,
)

OP_KEEPALIVE = 0
OP_AUTH = 1
OP_HELLO = 2
OP_JOIN = 3
OP_LEAVE = 4
OP_RTMSG = 5
OP_IN_CALL = 6
OP_ERROR = 255

#: JOIN results.
JOIN_OK = 0
JOIN_NO_SUCH_ROOM = 1
JOIN_NOT_A_MEMBER = 2

#: Largest RTMSG payload the 3-byte length can express.
MAX_RTMSG = (1 << 24) - 1


# client to server ------------------------------------------------------------


@dataclass(frozen=True)
class Hello(Command):
    """HELLO: the client's version; the server answers with the client id it assigned."""

    OPCODE = OP_HELLO
    FIELDS = (2, 2)
    client_version: int
    reserved: int = 0


@dataclass(frozen=True)
class Join(Command):
    """JOIN a room (for RTMSG and the in-call flag)."""

    OPCODE = OP_JOIN
    FIELDS = (8,)
    chatid: int


@dataclass(frozen=True)
class Leave(Command):
    OPCODE = OP_LEAVE
    FIELDS = (8,)
    chatid: int


@dataclass(frozen=True)
class RtMsg(Command):
    """RTMSG to ``(0, 0)`` everyone in the room, ``(U, 0)`` every client of U, ``(U, C)`` one client."""

    OPCODE = OP_RTMSG
    FIELDS = (8, 8, 4, 1)
    LENGTH = 3
    chatid: int
    userid: int
    clientid: int
    msgtype: int
    data: bytes


@dataclass(frozen=True)
class InCall(Command):
    """IN_CALL heartbeat: status 1 while in a call (every 2-5 s), 0 to leave it."""

    OPCODE = OP_IN_CALL
    FIELDS = (8, 1)
    chatid: int
    status: int


# server to client ------------------------------------------------------------


@dataclass(frozen=True)
class ClientId(Command):
    """HELLO answer: the client id assigned to this connection (never 0)."""

    OPCODE = OP_HELLO
    FIELDS = (4,)
    client_id: int


@dataclass(frozen=True)
class JoinResult(Command):
    OPCODE = OP_JOIN
    FIELDS = (8, 1)
    chatid: int
    result: int


@dataclass(frozen=True)
class Left(Command):
    """LEAVE answer; also sent unasked when the client lost the right to be in the room."""

    OPCODE = OP_LEAVE
    FIELDS = (8,)
    chatid: int


@dataclass(frozen=True)
class RtMsgDelivery(Command):
    """RTMSG as delivered: who sent it (user and client), the untouched msgtype and data."""

    OPCODE = OP_RTMSG
    FIELDS = (8, 8, 4, 1)
    LENGTH = 3
    chatid: int
    sender_userid: int
    sender_clientid: int
    msgtype: int
    data: bytes


@dataclass(frozen=True)
class InCallFlag(Command):
    """IN_CALL from the server: the room's flag (1 when at least two users are in a call)."""

    OPCODE = OP_IN_CALL
    FIELDS = (8, 1)
    chatid: int
    status: int


CLIENT_COMMANDS = command_table([KeepAlive, Auth, Hello, Join, Leave, RtMsg, InCall])
SERVER_COMMANDS = command_table([KeepAlive, AuthResult, ClientId, JoinResult, Left, RtMsgDelivery, InCallFlag, Error])


def server_connection(max_size: int) -> ServerConnection:
    """The sans-I/O server side of one chatd client."""
    return ServerConnection(CLIENT_COMMANDS, Hello, max_size)


def client_connection(max_size: int = MAX_RTMSG + 64) -> ClientConnection:
    """The sans-I/O client side of a chatd connection."""
    return ClientConnection(SERVER_COMMANDS, max_size)


__all__ = [
    "Auth", "AuthResult", "ClientId", "Error", "Hello", "InCall", "InCallFlag", "Join", "JoinResult", "KeepAlive",
    "Leave", "Left", "RtMsg", "RtMsgDelivery", "CLIENT_COMMANDS", "SERVER_COMMANDS", "server_connection",
    "client_connection",
]
