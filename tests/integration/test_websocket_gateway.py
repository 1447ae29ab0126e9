"""Legacy conversations as private channels, end to end: WebSocket client -> frontend -> gateway ->
real echo backend process -> back.

The gateway (real backend pool spawning ``python -m transport_backends.echo``)
and the frontend run in the test's reactor; the client is a real WebSocket client.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer

from tests.browser.wsharness import WSClient, connected_user, start_server

pytestmark = pytest.mark.integration


@pytest.fixture
def echo_stack(tmp_path, gateway_factory):
    made = []

    @defer.inlineCallbacks
    def make(*overrides: str):
        gw = yield gateway_factory()
        srv = yield start_server(tmp_path / "ws", list(overrides), gateway=gw.gateway)
        made.append(srv)
        return gw, srv

    yield make
    for srv in made:
        pytest_twisted.blockon(srv.stop())


@defer.inlineCallbacks
def _until(client: WSClient, predicate, timeout: float = 60.0):
    while True:
        packet = yield client.expect(timeout=timeout)
        if predicate(packet):
            return packet


@pytest_twisted.inlineCallbacks
def test_chat_with_echo_buddy(echo_stack):
    gw, srv = yield echo_stack()
    alice = yield connected_user(srv.url, "alice")
    status = yield _until(alice, lambda p: p["cmd"] == "gateway_status" and p["connected"])
    assert status["registered"] is True
    buddy = yield _until(alice, lambda p: p["cmd"] == "gateway_buddy" and p["buddy"]["name"] == "echo")
    assert buddy["buddy"]["presence"] == "online" and buddy["buddy"]["channel"] == "dm:echo"
    chans = yield alice.request({"cmd": "channels_get"})
    dm = [c for c in chans["val"] if c["name"] == "dm:echo"][0]
    assert dm["private"] is True and dm["gateway"]["kind"] == "dm" and dm["display_name"] == "Echo"
    second = yield connected_user(srv.url, "alice", register=False)  # both connections of alice see the echo
    other = yield connected_user(srv.url, "bob")  # bob must not see alice's conversation
    sent = yield alice.request({"cmd": "message_new", "channel": "dm:echo", "content": "hello echo"})
    assert sent["message"]["user"] == "alice"
    alice.send({"cmd": "typing", "channel": "dm:echo"})
    # the echo's answer and its chat state, in either order (the message is stored before it is shown)
    seen: dict[str, dict] = {}
    while len(seen) < 2:
        packet = yield alice.expect()
        if packet["cmd"] in ("typing", "message_new") and packet.get("channel") == "dm:echo":
            author = packet["user"] if packet["cmd"] == "typing" else packet["message"]["user"]
            if author == "echo":
                seen[packet["cmd"]] = packet
    echoed = seen["message_new"]
    assert echoed["message"]["content"] == "hello echo"
    on_second = yield _until(second, lambda p: p["cmd"] == "message_new" and p["message"]["user"] == "echo")
    assert on_second["message"]["id"] == echoed["message"]["id"]
    leaked = yield other.quiet(0.3)
    assert not [p for p in leaked if str(p.get("channel", "")).startswith("dm:")]
    refused = yield other.request({"cmd": "messages_get", "channel": "dm:echo"})
    assert refused["messages"] == []  # bob's own (empty) conversation, not alice's
    history = yield alice.request({"cmd": "messages_get", "channel": "dm:echo"})
    assert [(m["user"], m["content"]) for m in history["messages"]] == [("alice", "hello echo"), ("echo", "hello echo")]
    no_edit = yield alice.request({"cmd": "message_edit", "channel": "dm:echo", "id": sent["message"]["id"],
                                   "content": "x"})
    assert no_edit["cmd"] == "error"
    buddies = yield alice.request({"cmd": "gateway_buddies"})
    assert buddies["connected"] is True and [b["name"] for b in buddies["buddies"]] == ["echo"]


@pytest_twisted.inlineCallbacks
def test_legacy_rooms_register_and_leave(echo_stack):
    gw, srv = yield echo_stack("websocket.gateway_auto_register=false")
    carol = yield connected_user(srv.url, "carol")
    status = yield carol.expect("gateway_status")
    assert status["registered"] is False
    refused = yield carol.request({"cmd": "gateway_join", "room": "echo"})
    assert refused["cmd"] == "error"
    reg = yield carol.request({"cmd": "gateway_register", "legacy_name": "carol", "password": ""})
    assert reg["val"] == "Registered"
    yield _until(carol, lambda p: p["cmd"] == "gateway_status" and p["connected"])
    joined = yield carol.request({"cmd": "gateway_join", "room": "lobby", "nickname": "caro"})
    assert joined == {"cmd": "gateway_join", "room": "lobby", "channel": "room:lobby"}
    yield _until(carol, lambda p: p["cmd"] == "gateway_participant" and p["self"])
    carol.send({"cmd": "message_new", "channel": "room:lobby", "content": "anyone?"})
    mine = yield _until(carol, lambda p: p["cmd"] == "message_new")
    assert mine["message"]["user"] == "carol"
    echoed = yield _until(carol, lambda p: p["cmd"] == "message_new")
    assert echoed["channel"] == "room:lobby" and echoed["message"]["user"] == "echo"
    assert echoed["message"]["content"].endswith("anyone?")
    rooms = yield carol.request({"cmd": "gateway_rooms"})
    assert rooms["rooms"][0]["room"] == "lobby" and "echo" in rooms["rooms"][0]["participants"]
    left = yield carol.request({"cmd": "gateway_leave", "room": "lobby"})
    assert left["channel"] == "room:lobby"
    gone = yield carol.request({"cmd": "message_new", "channel": "room:lobby", "content": "hello?"})
    assert gone == {"cmd": "error", "val": "You are not in this room", "src": "message_new"}
    out = yield carol.request({"cmd": "gateway_unregister"})
    assert out["val"] == "Unregistered"
