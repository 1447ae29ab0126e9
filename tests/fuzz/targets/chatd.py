"""chatd / statusd: the shared command framing, and each server's sessions (login order, rooms, presence)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from twisted.internet.task import Clock

from tests.fuzz.script import build, records, stream
from tests.fuzz.targets import FailureWatch, target
from transport.chatd import codec as chatd
from transport.chatd.directory import Directory
from transport.chatd.server import ChatdServer
from transport.chatd.session import CommandServer, CommandSession, SessionSettings
from transport.chatd.store import RoomRecord, Snapshot
from transport.chatd.wire import Command, Decoder, Oversized, ServerConnection, UnknownOpcode, Violation
from transport.statusd import codec as statusd
from transport.statusd.server import StatusdServer

MAX_SIZE = 256
#: (name, table) of the four directions the wire decoder serves.
TABLES = [
    ("chatd client->server", chatd.CLIENT_COMMANDS),
    ("chatd server->client", chatd.SERVER_COMMANDS),
    ("statusd client->server", statusd.CLIENT_COMMANDS),
    ("statusd server->client", statusd.SERVER_COMMANDS),
]


def _fixtures() -> list[tuple[int, bytes]]:
    """(table index, wire bytes) of every command in the codecs' unit-test fixtures."""
    from tests.unit import test_chatd_codec as c
    from tests.unit import test_statusd_codec as s

    out: list[tuple[int, bytes]] = []
    for index, fixtures in enumerate((c.CLIENT_FIXTURES, c.SERVER_FIXTURES, s.CLIENT_FIXTURES, s.SERVER_FIXTURES)):
        out += [(index, bytes.fromhex(wire)) for _command, wire in fixtures]
    return out


def _wire_seeds() -> Iterator[bytes]:
    fixtures = _fixtures()
    for index, wire in fixtures:
        yield bytes([index]) + stream(wire)
    for index in range(4):
        joined = b"".join(w for i, w in fixtures if i == index)
        yield bytes([index]) + stream(joined, 1, 2, 3, 9)
    big = chatd.RtMsg(1, 0, 0, 1, b"x" * (MAX_SIZE + 10)).encode()
    yield bytes([0]) + stream(big + chatd.Join(1).encode(), 10, 100)


def _decoded_equal(a: list[Any], b: list[Any]) -> bool:
    return a == b


@target("chatd_wire", _wire_seeds)
def chatd_wire(data: bytes) -> None:
    """``Decoder.feed`` (both protocols, both directions) and ``ServerConnection.receive_data``.

    Contract: neither ever raises: an unknown opcode is an ``UnknownOpcode``
    event (the decoder then stops), an oversized length an ``Oversized`` event
    (the payload is skipped as it arrives). Invariants: the events do not
    depend on the split; a decoded command encodes back to bytes that decode
    to it; the buffer holds at most one incomplete command.
    """
    if not data:
        return
    _name, table = TABLES[data[0] % 4]
    decoder = Decoder(table, MAX_SIZE)
    server = ServerConnection(table, chatd.Hello if data[0] % 4 < 2 else statusd.Hello, MAX_SIZE)
    got: list[Any] = []
    whole = bytearray()
    head = max(cls.HEAD for cls in table.values())
    for _op, payload in records(data[1:]):
        whole += payload
        got += decoder.feed(payload)
        assert decoder.buffered <= head + MAX_SIZE, decoder.buffered
        for event in server.receive_data(payload):
            assert isinstance(event, (Command, Violation)), event
    assert Decoder(table, MAX_SIZE).feed(bytes(whole)) == got
    assert sum(isinstance(e, UnknownOpcode) for e in got) <= 1
    for item in got:
        if isinstance(item, Command):
            assert Decoder(table, MAX_SIZE).feed(item.encode()) == [item]
        else:
            assert isinstance(item, (Oversized, UnknownOpcode))


# ---------------------------------------------------------------------------
# sessions

GOOD_TOKEN = b"ok"
USERS = (1, 2, 3)
OP_CLOCK = 0xF0     # advance the clock by payload[0] seconds
OP_LOST = 0xF1      # client (op & 3) disconnects (and a new one takes its place)
OP_DIRECTORY = 0xF2  # the directory changes (rooms and contacts from the payload)
OP_LOGIN = 0xF3     # client (payload[0] & 3) sends AUTH (good or bad token) and HELLO
# any other op: bytes from client (op & 3)


class Validator:
    """Tokens: ``b"ok"`` is accepted for any user; anything else is refused."""

    def validate(self, userid: int, token: bytes) -> bool:
        return token == GOOD_TOKEN


class FakeLink:
    peer = "fuzz"

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder
        self.closed = False
        self.paused = False
        self.session: CommandSession | None = None

    def write(self, data: bytes) -> None:
        assert not self.closed, "written to after close()"
        # what the server sends always parses on a client
        for item in self.decoder.feed(data):
            assert isinstance(item, Command), item

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.session is not None:
                self.session.connection_lost()

    abort = close

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def _snapshot(payload: bytes, generation: int) -> Snapshot:
    rooms: dict[int, RoomRecord] = {}
    contacts: dict[int, frozenset[int]] = {}
    for i, byte in enumerate(payload[:8]):
        members = frozenset(u for u in USERS if byte & (1 << u))
        if i < 4:
            rooms[i + 1] = RoomRecord(i + 1, f"room {i + 1}", bool(byte & 1), members)
        else:
            contacts[USERS[(i - 4) % 3]] = members
    return Snapshot(generation, rooms, contacts)


class _Sessions:
    def __init__(self, server: CommandServer, client_table: dict[int, type[Command]]) -> None:
        self.server = server
        self.client_table = client_table
        self.links: list[FakeLink] = [self.connect() for _ in range(4)]

    def connect(self) -> FakeLink:
        link = FakeLink(Decoder(self.client_table, 1 << 24))
        session = self.server.make_session(link)
        link.session = session
        session.connected()
        return link

    def feed(self, index: int, data: bytes) -> None:
        link = self.links[index]
        if link.closed:
            self.links[index] = link = self.connect()
        assert link.session is not None
        link.session.data_received(data)

    def lose(self, index: int) -> None:
        link = self.links[index]
        link.closed = True
        assert link.session is not None
        link.session.connection_lost()
        self.links[index] = self.connect()


def _run_sessions(data: bytes, server: CommandServer, client_table: dict[int, type[Command]],
                  login: Any) -> None:
    clock: Clock = server.clock
    sessions = _Sessions(server, client_table)
    generation = 1
    with FailureWatch():
        for op, payload in records(data):
            if op == OP_CLOCK:
                clock.advance(payload[0] if payload else 1)
            elif op == OP_LOST:
                sessions.lose((payload[0] if payload else 0) & 3)
            elif op == OP_DIRECTORY:
                generation += 1
                server.hub.directory._apply(_snapshot(payload, generation))  # type: ignore[attr-defined]
            elif op == OP_LOGIN:
                which = (payload[0] if payload else 0) & 3
                token = GOOD_TOKEN if len(payload) < 2 or payload[1] & 1 else b"no"
                sessions.feed(which, login(USERS[which % 3], token))
            else:
                sessions.feed(op & 3, payload)
        for link in sessions.links:
            link.close()
        assert not server.sessions, "sessions outlived their connections"
        clock.advance(3600)


def _directory(clock: Clock) -> Directory:
    directory = Directory(None, clock, refresh_interval=0)  # type: ignore[arg-type]  # the view is set directly
    directory._apply(_snapshot(bytes([0b1111, 0b0111, 0b0011, 0b1010, 0xFF, 0xFF, 0xFF]), 1))
    return directory


def _settings() -> SessionSettings:
    # a rate limit low enough for a script to hit: the backpressure path (held commands) is exercised too
    return SessionSettings(keepalive_interval=30, idle_timeout=90, max_message_size=MAX_SIZE, rate_limit=20.0,
                           rate_burst=8)


def _chatd_login(userid: int, token: bytes) -> bytes:
    return chatd.Auth(userid, token).encode() + chatd.Hello(1).encode()


def _chatd_seeds() -> Iterator[bytes]:
    join = chatd.Join(1).encode() + chatd.Join(4).encode() + chatd.Join(9).encode()
    msg = chatd.RtMsg(1, 0, 0, 1, b"hello").encode() + chatd.RtMsg(1, 2, 0, 1, b"to 2").encode()
    call = chatd.InCall(1, 1).encode()
    yield build([(OP_LOGIN, b"\x00"), (OP_LOGIN, b"\x01"), (0, join), (1, chatd.Join(1).encode()), (0, msg),
                 (0, call), (1, call), (OP_CLOCK, b"\x05"), (OP_DIRECTORY, b"\x00\x00"), (OP_CLOCK, b"\x20"),
                 (0, chatd.Leave(1).encode()), (OP_LOST, b"\x01")])
    yield build([(OP_LOGIN, b"\x02\x00"), (2, msg)])
    yield build([(0, chatd.Hello(1).encode()), (1, chatd.Auth(1, b"ok").encode() + join)])
    yield build([(0, chatd.Auth(2, b"ok").encode()), (0, chatd.Hello(1).encode() + chatd.Hello(1).encode())])
    yield build([(OP_LOGIN, b"\x00"), (0, chatd.RtMsg(1, 0, 0, 1, b"x" * (MAX_SIZE + 5)).encode()), (0, b"\x07")])
    yield build([(OP_LOGIN, b"\x00"), (OP_CLOCK, b"\xff")])
    flood = chatd.RtMsg(1, 0, 0, 1, b"f").encode() * 40  # over the rate limit: held, then served as time passes
    yield build([(OP_LOGIN, b"\x00"), (OP_LOGIN, b"\x01"), (0, chatd.Join(1).encode()), (1, chatd.Join(1).encode()),
                 (0, flood), (OP_CLOCK, b"\x01"), (0, flood), (OP_LOST, b"\x00"), (OP_CLOCK, b"\x05")])


@target("chatd_session", _chatd_seeds)
def chatd_session(data: bytes) -> None:
    """chatd's server: four clients, the login order, JOIN/LEAVE/RTMSG/IN_CALL, a changing directory, timers.

    Contract: ``data_received`` never raises and no handler fails (the
    session turns a handler exception into a logged "internal error": that
    log is the finding); everything the server writes parses on a client; no
    session survives its connection.
    """
    clock = Clock()
    server = ChatdServer(_directory(clock), Validator(), _settings(), call_timeout=10.0, clock=clock)
    _run_sessions(data, server, chatd.SERVER_COMMANDS, _chatd_login)


def _statusd_login(userid: int, token: bytes) -> bytes:
    return statusd.Auth(userid, token).encode() + statusd.Hello(1, 1).encode()


def _statusd_seeds() -> Iterator[bytes]:
    yield build([(OP_LOGIN, b"\x00"), (OP_LOGIN, b"\x01"), (0, statusd.SetPres.of(3).encode()),
                 (1, statusd.SetPres.of(2, automatic=True).encode()), (OP_DIRECTORY, b"\x00\x00\x00\x00\x02"),
                 (OP_LOST, b"\x00"), (OP_CLOCK, b"\x60")])
    yield build([(0, statusd.SetPres(1).encode()), (1, statusd.Auth(3, b"no").encode())])
    yield build([(OP_LOGIN, b"\x02"), (2, statusd.Hello(1, 0x85).encode())])
    flood = b"".join(statusd.SetPres.of(1 + i % 4).encode() for i in range(40))
    yield build([(OP_LOGIN, b"\x00"), (OP_LOGIN, b"\x01"), (0, flood), (OP_CLOCK, b"\x01"), (1, flood),
                 (OP_LOST, b"\x01"), (OP_CLOCK, b"\x05")])


@target("statusd_session", _statusd_seeds)
def statusd_session(data: bytes) -> None:
    """statusd's server: four clients, HELLO/SETPRES, a changing directory of contacts, timers.

    Contract: as for chatd: no exception out of ``data_received``, no logged
    failure, every byte written parses on a client, no session left behind.
    """
    clock = Clock()
    server = StatusdServer(_directory(clock), Validator(), _settings(), clock=clock)
    _run_sessions(data, server, statusd.SERVER_COMMANDS, _statusd_login)
