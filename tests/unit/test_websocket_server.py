"""The protocol core (ChatServer) with in-memory peers, a task.Clock and the real store on both engines."""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
from twisted.internet.task import Clock

from transport.frontends.websocket.channels import LocalChannel
from transport.frontends.websocket.server import ChatServer, Settings
from transport.frontends.websocket.store import Store, StoredMessage


class MemoryPeer:
    """Collects what the server sends; remembers how it was closed."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.paused = False

    def send(self, data: bytes) -> None:
        self.sent.append(json.loads(data))

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def cmds(self) -> list[str]:
        return [p["cmd"] for p in self.sent]


async def _fast_hash(password: str) -> str:
    return "plain$" + password


async def _fast_check(password: str, stored: str) -> bool:
    return stored == "plain$" + password


async def make_server(database: Any, clock: Clock, **settings: Any) -> ChatServer:
    store = Store(database)
    await store.migrate()
    chat = ChatServer(Settings(**settings), store, [LocalChannel("general"), LocalChannel("lounge", "voice")], clock,
                      hasher=_fast_hash, checker=_fast_check)
    chat.mark_ready()
    chat.start()
    return chat


async def user(chat: ChatServer, name: str) -> tuple[Any, MemoryPeer]:
    peer = MemoryPeer()
    conn = chat.connection_made(peer)
    await chat.data_received(conn, json.dumps({"cmd": "register", "username": name, "password": "pass"}))
    assert peer.cmds()[:3] == ["handshake", "auth_success", "ready"], peer.sent
    return conn, peer


@pytest_twisted.ensureDeferred
async def test_server_ping_every_interval_and_auth_timeout(database) -> None:
    clock = Clock()
    chat = await make_server(database, clock, ping_interval=30.0, auth_timeout=60.0)
    conn, peer = await user(chat, "alice")
    idle = MemoryPeer()
    chat.connection_made(idle)
    clock.advance(30)
    assert peer.sent[-1] == {"cmd": "ping"} and idle.sent[-1] == {"cmd": "ping"}
    clock.advance(30)
    assert {"cmd": "auth_error", "val": "Authentication timed out"} in idle.sent and idle.closed[0] == 4008
    assert peer.closed is None
    chat.stop()


@pytest_twisted.ensureDeferred
async def test_rate_limit_cooldown_follows_the_clock(database) -> None:
    clock = Clock()
    chat = await make_server(database, clock)
    conn, peer = await user(chat, "bob")
    for i in range(10):
        await chat.data_received(conn, json.dumps({"cmd": "message_new", "channel": "general", "content": str(i)}))
    await chat.data_received(conn, json.dumps({"cmd": "message_new", "channel": "general", "content": "x"}))
    assert peer.sent[-1]["cmd"] == "rate_limit" and peer.sent[-1]["length"] == 30000
    clock.advance(15)
    await chat.data_received(conn, json.dumps({"cmd": "typing", "channel": "general"}))  # typing: its own bucket
    assert peer.sent[-1]["cmd"] == "typing"
    await chat.data_received(conn, json.dumps({"cmd": "message_new", "channel": "general", "content": "x"}))
    assert peer.sent[-1] == {"cmd": "rate_limit", "reason": "cooldown", "length": 15000}
    clock.advance(15)
    await chat.data_received(conn, json.dumps({"cmd": "message_new", "channel": "general", "content": "again"}))
    assert peer.sent[-1]["cmd"] == "message_new"
    chat.stop()


@pytest_twisted.ensureDeferred
async def test_commands_of_a_connection_are_answered_in_order(database) -> None:
    clock = Clock()
    chat = await make_server(database, clock, rate_burst=100, rate_per_minute=100)
    conn, peer = await user(chat, "carol")
    pending = [chat.data_received(conn, json.dumps({"cmd": "message_new", "channel": "general", "content": f"{i}"}))
               for i in range(80)]
    assert peer.paused  # back-pressure: more than 64 waiting
    for d in pending:
        await d
    assert not peer.paused
    contents = [p["message"]["content"] for p in peer.sent if p["cmd"] == "message_new"]
    assert contents == [str(i) for i in range(80)]
    chat.stop()


@pytest_twisted.ensureDeferred
async def test_store_trims_legacy_history_and_lists_conversations(database) -> None:
    store = Store(database)
    await store.migrate()
    for i in range(7):
        await store.add_message(StoredMessage(f"id{i}", "dm:echo", "echo", f"m{i}", 1000.0 + i, owner="alice"),
                                keep=5)
    await store.add_message(StoredMessage("other", "dm:bob", "bob", "hi", 2000.0, owner="alice"))
    await store.add_message(StoredMessage("x", "general", "alice", "public", 2000.0))
    kept = await store.get_messages("alice", "dm:echo", 0, 100)
    assert [m.content for m in kept] == ["m2", "m3", "m4", "m5", "m6"]
    assert await store.conversations("alice") == ["dm:bob", "dm:echo"]
    assert await store.get_messages("bob", "dm:echo") == []
    assert await store.add_reaction("id6", "⭐", "alice") and not await store.add_reaction("id6", "⭐", "alice")
    assert (await store.get_messages("alice", "dm:echo", "id6", 1))[0].id == "id5"
