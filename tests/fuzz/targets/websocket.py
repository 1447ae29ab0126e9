"""WebSocket frontend: the OriginChats JSON codec, and the sans-I/O command core with several connections."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock

from tests.fuzz.script import build, records
from tests.fuzz.targets import FailureWatch, target
from tests.fuzz.targets.syncdb import result, started
from transport.frontends.websocket.channels import LocalChannel
from transport.frontends.websocket.codec import ProtocolError, decode, encode
from transport.frontends.websocket.server import CLOSED, ChatServer, Settings
from transport.frontends.websocket.store import Store

MAX_SIZE = 4096
MAX_DEPTH = 8


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _codec_seeds() -> Iterator[bytes]:
    for text in ('{"cmd":"ping"}', '{"cmd":"login","username":"alice","password":"pw-alice","listener":"l1"}',
                 '{"cmd":"message_new","channel":"general","content":"hi","reply_to":"x"}', '[1,2]', '{"cmd":1}',
                 '{"cmd":"x","v":NaN}', '{"cmd":"x","v":1e400}', '[[[[[[[[[[]]]]]]]]]]', '{"cmd":"\\u00e9"}',
                 '{"cmd":"a","listener":' + '"' + "l" * 200 + '"}'):
        yield build([(0, text.encode())])


@target("websocket_codec", _codec_seeds)
def websocket_codec(data: bytes) -> None:
    """``codec.decode`` on each record (one WebSocket text message).

    Contract: raises only ``ProtocolError``. Invariants: a decoded command is a
    JSON object with a non-empty ``cmd`` of at most 64 characters and a
    string ``listener`` (or none); its fields encode back to JSON that decodes
    to the same command (non-finite numbers excepted: ``encode`` refuses them).
    """
    for _op, payload in records(data):
        try:
            command = decode(payload, MAX_SIZE, MAX_DEPTH)
        except ProtocolError:
            continue
        assert isinstance(command.cmd, str) and 0 < len(command.cmd) <= 64
        assert command.listener is None or isinstance(command.listener, str)
        if _finite(command.fields):
            again = decode(encode(command.fields), 1 << 20, MAX_DEPTH)
            assert again == command, (again, command)


# ---------------------------------------------------------------------------
# the command core

COMMANDS = sorted(name[4:] for name in dir(ChatServer) if name.startswith("cmd_")) + ["nope", ""]
KEYS = ["cmd", "channel", "content", "id", "reply_to", "start", "limit", "username", "password", "validator",
        "listener", "emoji", "room", "nickname", "buddy", "legacy_name", "extra", "ping", "peer_id", "muted"]
WORDS = ["general", "voice", "dm:echo", "room:lobby", "alice", "bob", "pw-alice", "pw-bob", "lobby", "echo", "",
         ":", "dm:", "room:", "x" * 40, "\u00e9\u4e2d\U0001f600", "0", "-1"]
USERS = [("alice", "pw-alice"), ("bob", "pw-bob"), ("carol", "pw-carol")]

KIND_TEXT = 0      # payload: raw text of one message
KIND_COMMAND = 1   # payload: a command built from the bytes (name, then typed fields)
KIND_BINARY = 2    # payload: a binary message (refused by the protocol)
KIND_LOST = 3      # the connection closes (a new one replaces it)
KIND_CLOCK = 4     # advance the clock by payload[0] seconds
KIND_LOGIN = 5     # register or log in as a user (payload[0] picks who, payload[1] & 1 register)
# op = kind << 2 | connection index (0..3)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    @property
    def left(self) -> bool:
        return self.pos < len(self.data)


def _value(r: _Reader, depth: int = 0) -> Any:
    kind = r.byte() % 8
    if kind == 0:
        return WORDS[r.byte() % len(WORDS)]
    if kind == 1:
        return r.take(r.byte() % 48).decode("utf-8", "replace")
    if kind == 2:
        return struct.unpack("<i", r.take(4).ljust(4, b"\0"))[0]
    if kind == 3:
        return bool(r.byte() & 1)
    if kind == 4:
        return None
    if kind == 5:
        return struct.unpack("<f", r.take(4).ljust(4, b"\0"))[0]
    if kind == 6 and depth < 3:
        return [_value(r, depth + 1) for _ in range(r.byte() % 4)]
    if kind == 7 and depth < 3:
        return {WORDS[r.byte() % len(WORDS)]: _value(r, depth + 1) for _ in range(r.byte() % 4)}
    return 0


def command_from(payload: bytes) -> bytes:
    """A JSON command built from *payload*: most bytes land on a field the server reads."""
    r = _Reader(payload)
    packet: dict[str, Any] = {"cmd": COMMANDS[r.byte() % len(COMMANDS)]}
    while r.left:
        packet[KEYS[r.byte() % len(KEYS)]] = _value(r)
    text = json.dumps(packet, allow_nan=True)  # NaN / Infinity on purpose: the codec must refuse them
    return text.encode("utf-8")


class FakePeer:
    """The transport under one connection: checks every packet the server sends."""

    def __init__(self, server: ChatServer) -> None:
        self.server = server
        self.packets: list[dict[str, Any]] = []
        self.closed = False
        self.paused = False
        self.conn = server.connection_made(self)

    def send(self, data: bytes) -> None:
        packet = json.loads(data)  # what the server sends is always JSON
        assert isinstance(packet, dict) and isinstance(packet.get("cmd"), str), packet
        if packet["cmd"] == "error":
            assert packet["val"] != "Internal server error", packet
        self.packets.append(packet)

    def close(self, code: int, reason: str) -> None:
        assert code == 1000 or 3000 <= code <= 4999, code  # what autobahn lets an application send
        self.closed = True
        self.server.connection_lost(self.conn)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


class StubGateway:
    """Accepts everything: the core's answers are not what this target fuzzes."""

    def session_opened(self, *args: Any) -> defer.Deferred[None]:
        return defer.succeed(None)

    def session_closed(self, *args: Any) -> defer.Deferred[None]:
        return defer.succeed(None)

    def register(self, *args: Any) -> defer.Deferred[None]:
        return defer.succeed(None)

    def unregister(self, *args: Any) -> defer.Deferred[bool]:
        return defer.succeed(True)

    def join_room(self, *args: Any) -> None:
        return None

    def leave_room(self, *args: Any) -> None:
        return None

    def send_message(self, *args: Any, **kwargs: Any) -> defer.Deferred[None]:
        return defer.succeed(None)

    def send_room_message(self, *args: Any, **kwargs: Any) -> defer.Deferred[None]:
        return defer.succeed(None)


async def _hash(password: str) -> str:
    return "plain$" + password


async def _check(password: str, stored: str) -> bool:
    return stored == "plain$" + password


def _login(payload: bytes) -> bytes:
    name, password = USERS[(payload[0] if payload else 0) % len(USERS)]
    cmd = "register" if len(payload) > 1 and payload[1] & 1 else "login"
    return json.dumps({"cmd": cmd, "username": name, "password": password}).encode()


def _server_seeds() -> Iterator[bytes]:
    def cmd(conn: int, packet: dict[str, Any]) -> tuple[int, bytes]:
        return KIND_TEXT << 2 | conn, json.dumps(packet).encode()

    login_a = (KIND_LOGIN << 2 | 0, b"\x00\x01")
    login_b = (KIND_LOGIN << 2 | 1, b"\x01\x01")
    yield build([login_a, login_b,
                 cmd(0, {"cmd": "message_new", "channel": "general", "content": "hello", "listener": "l"}),
                 cmd(1, {"cmd": "messages_get", "channel": "general"}), cmd(0, {"cmd": "channels_get"}),
                 cmd(1, {"cmd": "users_online"}), cmd(0, {"cmd": "typing", "channel": "general"}),
                 cmd(0, {"cmd": "voice_join", "channel": "voice", "peer_id": "p1"}),
                 cmd(1, {"cmd": "voice_join", "channel": "voice", "peer_id": "p2"}),
                 cmd(0, {"cmd": "voice_mute", "channel": "voice"}), (KIND_LOST << 2 | 0, b""),
                 cmd(1, {"cmd": "gateway_join", "room": "lobby"}),
                 cmd(1, {"cmd": "message_new", "channel": "room:lobby", "content": "to the room"}),
                 cmd(1, {"cmd": "message_new", "channel": "dm:echo", "content": "to echo"}),
                 cmd(1, {"cmd": "users_list"}), (KIND_CLOCK << 2, b"\x3c")])
    yield build([cmd(0, {"cmd": "channels_get"}), cmd(0, {"cmd": "ping"}), (KIND_BINARY << 2, b"\x00"),
                 (KIND_TEXT << 2, b"{"), (KIND_LOGIN << 2, b"\x00\x00"), (KIND_CLOCK << 2, b"\xff")])
    yield build([login_a, cmd(0, {"cmd": "message_new", "channel": "general", "content": "a"}),
                 (KIND_COMMAND << 2, b"\x00" * 8), cmd(0, {"cmd": "message_react_add", "id": "x", "emoji": "+1",
                                                           "channel": "general"})])
    yield build([login_a] + [cmd(0, {"cmd": "message_new", "channel": "general", "content": str(i)})
                             for i in range(15)])


@target("websocket_server", _server_seeds)
def websocket_server(data: bytes) -> None:
    """``ChatServer.data_received`` with four connections, a synchronous SQLite store and a stub gateway.

    Contract: ``data_received`` never raises and its Deferred fires with no
    failure; no command ends in "Internal server error" (the server's answer
    to an unexpected exception, which it also logs); every packet sent is a
    JSON object with a ``cmd``; close codes are ones autobahn may send; once
    every connection is gone no user, account, voice member or timer is left.
    """
    clock = Clock()
    store = Store(started())
    result(store.migrate())
    channels = [LocalChannel("general"), LocalChannel("voice", type="voice")]
    settings = Settings(max_message_size=MAX_SIZE, max_json_depth=MAX_DEPTH, post_content=200, rate_burst=8)
    server = ChatServer(settings, store, channels, clock, gateway=StubGateway(), secret=b"s" * 32,
                        hasher=_hash, checker=_check)
    server.mark_ready()
    with FailureWatch():
        peers = [FakePeer(server) for _ in range(4)]
        for op, payload in records(data):
            kind, index = op >> 2, op & 3
            peer = peers[index]
            if peer.closed:
                peer = peers[index] = FakePeer(server)
            done: defer.Deferred[None] | None = None
            if kind == KIND_COMMAND:
                done = server.data_received(peer.conn, command_from(payload))
            elif kind == KIND_BINARY:
                done = server.data_received(peer.conn, payload, binary=True)
            elif kind == KIND_LOST:
                peer.closed = True
                server.connection_lost(peer.conn)
            elif kind == KIND_CLOCK:
                clock.advance(payload[0] if payload else 1)
            elif kind == KIND_LOGIN:
                done = server.data_received(peer.conn, _login(payload))
            else:
                done = server.data_received(peer.conn, payload)
            if done is not None:
                result(done)
        for peer in peers:
            if not peer.closed:
                server.connection_lost(peer.conn)
        assert not server.connections and not server.users and not server.accounts, "state left behind"
        assert all(not members for members in server.voice.values()), server.voice
        assert all(peer.conn.state == CLOSED for peer in peers)
        clock.advance(3600)
    result(store.db.close())
