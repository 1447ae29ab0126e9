"""statusd commands, both directions (sans-I/O); framing from :mod:`transport.chatd.wire`.

=========  =====  ===========================================  =========================================
command    op     client to server                             server to client
=========  =====  ===========================================  =========================================
KEEPALIVE  0      (empty)                                      (empty)
AUTH       1      ``userid(8) toklen(2) token``                ``result(1)``, 0 = ok
HELLO      2      ``version(2) presence(1) reserved(1)``       the presence dump (PRES ..., PRES 0 last)
PRES       3      —                                            ``userid(8) presence(1)``, MSB always 0
SETPRES    4      ``presence(1)``, MSB set = by the idle timer —
ERROR      255    —                                            ``code(1) len(2) text``
=========  =====  ===========================================  =========================================

>>> SetPres.of(3, automatic=True).encode().hex()
'0483'
>>> Pres(0, 4).encode().hex()
'03000000000000000004'
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
OP_PRES = 3
OP_SETPRES = 4
OP_ERROR = 255

#: The most significant bit of a client's presence byte: set by an idle timer, not by the user.
AUTOMATIC = 0x80


class _PresenceByte:
    """The client's presence byte (HELLO, SETPRES): the value, and the MSB that says an idle timer set it."""

    presence: int

    @property
    def value(self) -> int:
        return self.presence & ~AUTOMATIC

    @property
    def automatic(self) -> bool:
        return bool(self.presence & AUTOMATIC)


@dataclass(frozen=True)
class Hello(_PresenceByte, Command):
    """HELLO: version and this client's initial presence byte (MSB = automatic)."""

    OPCODE = OP_HELLO
    FIELDS = (2, 1, 1)
    version: int
    presence: int
    reserved: int = 0


@dataclass(frozen=True)
class SetPres(_PresenceByte, Command):
    """SETPRES: a new presence for this client (MSB = set by the idle timer)."""

    OPCODE = OP_SETPRES
    FIELDS = (1,)
    presence: int

    @classmethod
    def of(cls, value: int, automatic: bool = False) -> SetPres:
        return cls((value & ~AUTOMATIC) | (AUTOMATIC if automatic else 0))


@dataclass(frozen=True)
class Pres(Command):
    """PRES: *userid*'s presence (0 = offline); ``userid`` 0 means the receiving client's own user."""

    OPCODE = OP_PRES
    FIELDS = (8, 1)
    userid: int
    presence: int


CLIENT_COMMANDS = command_table([KeepAlive, Auth, Hello, SetPres])
SERVER_COMMANDS = command_table([KeepAlive, AuthResult, Pres, Error])


def server_connection(max_size: int) -> ServerConnection:
    """The sans-I/O server side of one statusd client."""
    return ServerConnection(CLIENT_COMMANDS, Hello, max_size)


def client_connection(max_size: int = 1 << 16) -> ClientConnection:
    """The sans-I/O client side of a statusd connection."""
    return ClientConnection(SERVER_COMMANDS, max_size)


__all__ = ["AUTOMATIC", "Auth", "AuthResult", "Error", "Hello", "KeepAlive", "Pres", "SetPres",
           "CLIENT_COMMANDS", "SERVER_COMMANDS", "server_connection", "client_connection"]
