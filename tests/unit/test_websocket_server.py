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


class FlakyStore(Store):
    """The real store, whose message writes fail while ``down`` (an outage of the database, at unit level)."""

    def __init__(self, database: Any) -> None:
        super().__init__(database)
        self.down = False
        self.last: Any = None

    def add_message(self, message: StoredMessage, legacy_id: str = "", keep: int = 0,
                    if_absent: bool = False) -> Any:
        from twisted.internet import defer

        if self.down:
            self.last = defer.fail(ConnectionError("the database is down"))
        else:
            self.last = super().add_message(message, legacy_id, keep, if_absent)
        return self.last


class FakeGateway:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    async def send_message(self, user: str, buddy: str, body: str, id: str = "") -> None:
        self.sent.append((user, buddy, body))


@pytest_twisted.ensureDeferred
async def test_database_down_legacy_messages_shown_and_stored_later_local_ones_refused(database) -> None:
    from transport.core import events as ev
    from transport.frontends.websocket.server import LegacyState

    clock = Clock()
    store = FlakyStore(database)
    await store.migrate()
    chat = ChatServer(Settings(), store, [LocalChannel("general")], clock, hasher=_fast_hash, checker=_fast_check)
    chat.mark_ready()
    chat.start()
    gateway = FakeGateway()
    chat.gateway = gateway
    conn, peer = await user(chat, "alice")
    chat.legacy["alice"] = LegacyState(connected=True)
    store.down = True
    # from the legacy network: shown at once, with an id made in memory
    chat.deliver(ev.MessageReceived(user="alice", buddy="bob", body="hello from bob", id="L1"))
    shown = [p for p in peer.sent if p["cmd"] == "message_new"]
    assert len(shown) == 1 and shown[0]["channel"] == "dm:bob" and shown[0]["message"]["user"] == "bob"
    assert len(shown[0]["message"]["id"]) == 36
    # to the legacy network: sent and accepted, history later
    await chat.data_received(conn, json.dumps({"cmd": "message_new", "channel": "dm:bob", "content": "hi bob",
                                               "listener": "l1"}))
    assert gateway.sent == [("alice", "bob", "hi bob")]
    assert peer.sent[-1]["cmd"] == "message_new" and peer.sent[-1]["listener"] == "l1"
    # a local channel: the history is the contract, so the sender gets an error
    await chat.data_received(conn, json.dumps({"cmd": "message_new", "channel": "general", "content": "lost?",
                                               "listener": "l2"}))
    assert peer.sent[-1]["cmd"] == "error" and peer.sent[-1]["listener"] == "l2"
    assert "could not be stored" in peer.sent[-1]["val"]
    counters = chat.counters()
    assert counters["history_queued"] == 2 and counters["history_outages"] == 1
    assert counters["local_store_refusals"] == 1
    clock.advance(1)  # first retry: still down, the delay doubles
    assert chat.history.pending and chat.history.delay == 2.0
    store.down = False
    clock.advance(2)
    while chat.history.pending:
        await store.last
    assert chat.counters()["history_flushed"] == 2 and chat.history.delay == 1.0
    await chat.data_received(conn, json.dumps({"cmd": "messages_get", "channel": "dm:bob"}))
    history = peer.sent[-1]["messages"]
    assert [(m["user"], m["content"]) for m in history] == [("bob", "hello from bob"), ("alice", "hi bob")]
    assert history[0]["id"] == shown[0]["message"]["id"]
    await chat.data_received(conn, json.dumps({"cmd": "messages_get", "channel": "general"}))
    assert peer.sent[-1]["messages"] == []
    # written once even when a retry repeats a write that had committed
    await store.add_message(StoredMessage(history[0]["id"], "dm:bob", "bob", "again", 1.0, owner="alice"),
                            if_absent=True)
    chat.stop()


@pytest_twisted.ensureDeferred
async def test_history_queue_is_bounded(database) -> None:
    from transport.frontends.websocket.history import HistoryQueue

    clock = Clock()
    store = FlakyStore(database)
    await store.migrate()
    store.down = True
    queue = HistoryQueue(store, clock, limit=2)
    for i in range(3):
        queue.write(StoredMessage(f"m{i}", "dm:bob", "bob", str(i), 1.0, owner="alice"))
    assert [m.id for m, _, _ in queue.pending] == ["m1", "m2"] and queue.dropped == 1
    assert queue.counters()["history_outages"] == 1
    queue.stop()
    assert not clock.getDelayedCalls()
