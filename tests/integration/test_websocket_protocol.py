"""The OriginChats protocol against a running server, with real WebSocket clients.

The frontend runs in the test's reactor on a free loopback port (real autobahn
resource, real SQLite database); the clients are autobahn WebSocket clients.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, reactor
from twisted.web import resource, server

from tests.browser.wsharness import WSClient, connected_user, start_server
from transport.frontends.websocket import tokens

pytestmark = pytest.mark.integration


@pytest.fixture
def ws_server(tmp_path):
    started: list[Any] = []

    @defer.inlineCallbacks
    def make(*overrides: str, **kw: Any) -> Any:
        srv = yield start_server(tmp_path / f"s{len(started)}", list(overrides), **kw)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        pytest_twisted.blockon(srv.stop())


@pytest_twisted.inlineCallbacks
def test_handshake_comes_first_with_a_fresh_validator_key(ws_server):
    srv = yield ws_server()
    a = yield WSClient.connect(srv.url)
    b = yield WSClient.connect(srv.url)
    ha = yield a.expect(skip=False)
    hb = yield b.expect(skip=False)
    assert ha["cmd"] == "handshake"
    val = ha["val"]
    assert set(val) >= {"server", "limits", "version", "validator_key", "capabilities", "auth_mode"}
    assert val["limits"]["post_content"] == 2000 and val["version"] == "1.1.0" and val["auth_mode"] == "cracked"
    assert val["validator_key"].startswith("originChats-")
    assert val["validator_key"] != hb["val"]["validator_key"]


@pytest_twisted.inlineCallbacks
def test_commands_before_auth_are_refused(ws_server):
    srv = yield ws_server()
    c = yield WSClient.connect(srv.url)
    yield c.expect("handshake")
    for cmd in ("channels_get", "message_new", "users_list"):
        answer = yield c.request({"cmd": cmd, "channel": "general", "content": "x"}, cmd="auth_error")
        assert answer == {"cmd": "auth_error", "val": "Authentication required"}
    pong = yield c.request({"cmd": "ping"}, cmd="pong")
    assert pong == {"cmd": "pong", "val": "pong"}


@pytest_twisted.inlineCallbacks
def test_register_login_and_errors(ws_server):
    srv = yield ws_server()
    c = yield WSClient.connect(srv.url)
    yield c.expect("handshake")
    c.send({"cmd": "register", "username": "Alice", "password": "pw-alice"})
    first = yield c.expect()
    ready = yield c.expect()
    assert first == {"cmd": "auth_success", "val": "Authentication successful"}
    assert ready["cmd"] == "ready" and ready["user"]["username"] == "alice" and ready["user"]["roles"] == ["user"]
    d = yield WSClient.connect(srv.url)
    yield d.expect("handshake")
    taken = yield d.request({"cmd": "register", "username": "alice", "password": "other-pw"}, cmd="auth_error")
    assert taken["val"] == "Username already taken"
    bad = yield d.request({"cmd": "login", "username": "alice", "password": "wrong-pw"}, cmd="auth_error")
    assert bad["val"] == "Invalid username or password"
    bad = yield d.request({"cmd": "login", "username": "a b", "password": "wrong-pw"}, cmd="auth_error")
    assert "Usernames" in bad["val"]
    d.send({"cmd": "login", "username": "alice", "password": "pw-alice"})
    ok = yield d.expect()
    assert ok["cmd"] == "auth_success"
    ready2 = yield d.expect("ready")
    # the token handed out in ready resumes a session with "auth"
    e = yield WSClient.connect(srv.url)
    yield e.expect("handshake")
    e.send({"cmd": "auth", "validator": ready2["validator"]})
    ok = yield e.expect()
    assert ok["cmd"] == "auth_success"


@pytest_twisted.inlineCallbacks
def test_too_many_failed_logins_close_the_connection(ws_server):
    srv = yield ws_server("websocket.max_auth_attempts=3")
    c = yield WSClient.connect(srv.url)
    yield c.expect("handshake")
    for _ in range(3):
        c.send({"cmd": "login", "username": "nobody", "password": "nothing"})
    code, _ = yield c.closed
    assert code == 4008


@pytest_twisted.inlineCallbacks
def test_validator_mode_with_hmac_tokens(ws_server, tmp_path):
    srv = yield ws_server("websocket.auth_mode=validator", "websocket.validator_secret=s3cret")
    c = yield WSClient.connect(srv.url)
    hello = yield c.expect("handshake")
    assert hello["val"]["auth_mode"] == "validator"
    refused = yield c.request({"cmd": "login", "username": "bob", "password": "xxxx"}, cmd="auth_error")
    assert "disabled" in refused["val"]
    refused = yield c.request({"cmd": "auth", "validator": "bob,0,forged"}, cmd="auth_error")
    assert refused["val"] == "Invalid authentication"
    c.send({"cmd": "auth", "validator": tokens.issue_token(b"s3cret", "bob")})
    ok = yield c.expect()
    ready = yield c.expect()
    assert ok["cmd"] == "auth_success" and ready["cmd"] == "ready" and ready["user"]["username"] == "bob"


class _Validator(resource.Resource):
    """A small identity service answering like OriginChats' (Rotur's) /validate."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, str]] = []

    def render_GET(self, request: Any) -> bytes:
        args = {k.decode(): v[0].decode() for k, v in request.args.items()}
        self.seen.append(args)
        request.setHeader(b"content-type", b"application/json")
        if args.get("v") == "good-token" and args.get("key", "").startswith("originChats-"):
            return json.dumps({"valid": True, "username": "Carol", "id": "USR:1"}).encode()
        if args.get("v") == "dave,sig":
            return json.dumps({"valid": True}).encode()
        return json.dumps({"valid": False}).encode()


@pytest_twisted.inlineCallbacks
def test_validator_mode_with_the_http_validator(ws_server):
    validator = _Validator()
    port = yield endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(server.Site(validator))
    try:
        url = f"http://127.0.0.1:{port.getHost().port}/validate"
        srv = yield ws_server("websocket.auth_mode=validator", f"websocket.validator_url={url}")
        c = yield WSClient.connect(srv.url)
        hello = yield c.expect("handshake")
        bad = yield c.request({"cmd": "auth", "validator": "bad-token"}, cmd="auth_error")
        assert bad["val"] == "Invalid authentication"
        c.send({"cmd": "auth", "validator": "good-token"})
        ok = yield c.expect()
        ready = yield c.expect()
        assert ok["cmd"] == "auth_success" and ready["user"]["username"] == "carol"
        assert validator.seen[-1] == {"key": hello["val"]["validator_key"], "v": "good-token"}
        d = yield WSClient.connect(srv.url)
        yield d.expect("handshake")
        d.send({"cmd": "auth", "validator": "dave,sig"})  # no username in the answer: taken from the token
        yield d.expect("auth_success")
        ready = yield d.expect("ready")
        assert ready["user"]["username"] == "dave"
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_user_connect_and_disconnect_only_on_first_and_last_connection(ws_server):
    srv = yield ws_server()
    watcher = yield connected_user(srv.url, "watcher")
    yield watcher.expect("user_connect")  # its own
    a1 = yield connected_user(srv.url, "alice")
    joined = yield watcher.expect("user_connect")
    assert joined["user"] == {"username": "alice", "roles": ["user"], "color": "#8e9297"}
    a2 = yield connected_user(srv.url, "alice", register=False)
    yield a1.close()
    yield a2.request({"cmd": "ping"}, cmd="pong")
    rest = yield watcher.quiet(0.3)
    assert [p["cmd"] for p in rest if p["cmd"].startswith("user_")] == []  # no second connect, no disconnect
    online = yield watcher.request({"cmd": "users_online"})
    assert sorted(u["username"] for u in online["users"]) == ["alice", "watcher"]
    yield a2.close()
    left = yield watcher.expect("user_disconnect")
    assert left == {"cmd": "user_disconnect", "username": "alice"}


@pytest_twisted.inlineCallbacks
def test_global_events_reach_only_viewers_and_listener_only_the_sender(ws_server):
    srv = yield ws_server("websocket.channels=general:text,staff:text", "websocket.admins=boss",
                          "websocket-channel:staff.view=admin", "websocket-channel:staff.send=admin")
    boss = yield connected_user(srv.url, "boss")
    pleb = yield connected_user(srv.url, "pleb")
    chans = yield pleb.request({"cmd": "channels_get"})
    assert [c["name"] for c in chans["val"]] == ["general"]
    chans = yield boss.request({"cmd": "channels_get"})
    assert [c["name"] for c in chans["val"]] == ["general", "staff"]
    denied = yield pleb.request({"cmd": "message_new", "channel": "staff", "content": "hi"})
    assert denied == {"cmd": "error", "val": "Access denied to this channel", "src": "message_new"}
    mine = yield boss.request({"cmd": "message_new", "channel": "staff", "content": "secret", "listener": "L1"})
    assert mine["listener"] == "L1" and mine["global"] is True and mine["message"]["content"] == "secret"
    leaked = yield pleb.quiet(0.3)
    assert not [p for p in leaked if p.get("channel") == "staff"]
    boss.send({"cmd": "message_new", "channel": "general", "content": "hello all", "listener": "L2"})
    seen = yield pleb.expect("message_new")
    assert seen["message"]["content"] == "hello all" and "listener" not in seen
    own = yield boss.expect("message_new")
    assert own["listener"] == "L2"


@pytest_twisted.inlineCallbacks
def test_content_limits_and_rate_limit(ws_server):
    srv = yield ws_server()
    c = yield connected_user(srv.url, "speedy")
    too_long = yield c.request({"cmd": "message_new", "channel": "general", "content": "x" * 2001})
    assert too_long["cmd"] == "error" and too_long["src"] == "message_new" and "too long" in too_long["val"]
    ok = yield c.request({"cmd": "message_new", "channel": "general", "content": "x" * 2000})
    assert ok["cmd"] == "message_new"
    for i in range(9):
        answer = yield c.request({"cmd": "message_new", "channel": "general", "content": f"m{i}"})
        assert answer["cmd"] == "message_new"
    limited = yield c.request({"cmd": "message_new", "channel": "general", "content": "eleventh"})
    assert limited["cmd"] == "rate_limit" and limited["length"] == 30000 and limited["reason"]
    history = yield c.request({"cmd": "messages_get", "channel": "general"})
    assert "eleventh" not in [m["content"] for m in history["messages"]]


@pytest_twisted.inlineCallbacks
def test_messages_get_pages_oldest_first_and_caps_at_200(ws_server):
    srv = yield ws_server("websocket.rate_limit_burst=1000", "websocket.rate_limit_per_minute=1000")
    c = yield connected_user(srv.url, "writer")
    for i in range(230):
        c.send({"cmd": "message_new", "channel": "general", "content": f"n{i}"})
    for _ in range(230):
        yield c.expect("message_new")
    page = yield c.request({"cmd": "messages_get", "channel": "general", "limit": 500})
    assert [m["content"] for m in page["messages"]] == [f"n{i}" for i in range(30, 230)]
    default = yield c.request({"cmd": "messages_get", "channel": "general"})
    assert len(default["messages"]) == 100
    older = yield c.request({"cmd": "messages_get", "channel": "general", "start": page["messages"][0]["id"],
                             "limit": 20})
    assert [m["content"] for m in older["messages"]] == [f"n{i}" for i in range(10, 30)]
    skipped = yield c.request({"cmd": "messages_get", "channel": "general", "start": 5, "limit": 3})
    assert [m["content"] for m in skipped["messages"]] == ["n222", "n223", "n224"]


@pytest_twisted.inlineCallbacks
def test_edit_delete_reactions_and_replies(ws_server):
    srv = yield ws_server("websocket.admins=mod")
    alice = yield connected_user(srv.url, "alice")
    bob = yield connected_user(srv.url, "bob")
    mod = yield connected_user(srv.url, "mod")
    sent = yield alice.request({"cmd": "message_new", "channel": "general", "content": "original"})
    mid = sent["message"]["id"]
    refused = yield bob.request({"cmd": "message_edit", "channel": "general", "id": mid, "content": "hacked"})
    assert refused == {"cmd": "error", "val": "You can only edit your own messages", "src": "message_edit"}
    edited = yield alice.request({"cmd": "message_edit", "channel": "general", "id": mid, "content": "changed"})
    assert edited == {"cmd": "message_edit", "id": mid, "content": "changed", "channel": "general", "global": True}
    seen = yield bob.expect("message_edit")
    assert seen["content"] == "changed"
    reply = yield bob.request({"cmd": "message_new", "channel": "general", "content": "re", "reply_to": mid})
    assert reply["message"]["reply_to"] == {"id": mid, "user": "alice"}
    reacted = yield bob.request({"cmd": "message_react_add", "channel": "general", "id": mid, "emoji": "👍"})
    assert reacted["from"] == "bob" and reacted["emoji"] == "👍"
    again = yield bob.request({"cmd": "message_react_add", "channel": "general", "id": mid, "emoji": "👍"})
    assert again["cmd"] == "error"
    history = yield alice.request({"cmd": "messages_get", "channel": "general"})
    first = history["messages"][0]
    assert first["content"] == "changed" and first["edited"] is True and first["reactions"] == {"👍": ["bob"]}
    removed = yield bob.request({"cmd": "message_react_remove", "channel": "general", "id": mid, "emoji": "👍"})
    assert removed["cmd"] == "message_react_remove"
    denied = yield bob.request({"cmd": "message_delete", "channel": "general", "id": mid})
    assert denied["cmd"] == "error"
    deleted = yield mod.request({"cmd": "message_delete", "channel": "general", "id": mid})
    assert deleted == {"cmd": "message_delete", "id": mid, "channel": "general", "global": True}
    yield bob.expect("message_delete")  # the broadcast of mod's delete
    own = yield bob.request({"cmd": "message_delete", "channel": "general", "id": reply["message"]["id"]})
    assert own["cmd"] == "message_delete" and own["id"] == reply["message"]["id"]
    history = yield alice.request({"cmd": "messages_get", "channel": "general"})
    assert history["messages"] == []


@pytest_twisted.inlineCallbacks
def test_typing_is_broadcast_to_others(ws_server):
    srv = yield ws_server()
    a = yield connected_user(srv.url, "alice")
    b = yield connected_user(srv.url, "bob")
    a.send({"cmd": "typing", "channel": "general"})
    t = yield b.expect("typing")
    assert t == {"cmd": "typing", "user": "alice", "channel": "general", "global": True}
    yield a.expect("typing")  # the sender gets it last
    bad = yield a.request({"cmd": "typing", "channel": "nope"})
    assert bad == {"cmd": "error", "val": "Invalid channel name", "src": "typing"}


@pytest_twisted.inlineCallbacks
def test_voice_channels(ws_server):
    srv = yield ws_server()
    a = yield connected_user(srv.url, "alice")
    b = yield connected_user(srv.url, "bob")
    c = yield connected_user(srv.url, "carol")
    not_voice = yield a.request({"cmd": "voice_join", "channel": "general", "peer_id": "p"})
    assert not_voice["val"] == "This is not a voice channel"
    joined = yield a.request({"cmd": "voice_join", "channel": "lounge", "peer_id": "peer-a"})
    assert joined == {"cmd": "voice_join", "channel": "lounge", "participants": []}
    own = yield a.expect("voice_user_joined")  # every viewer hears of it, the joiner too
    assert own["user"]["peer_id"] == "peer-a"
    seen = yield c.expect("voice_user_joined")
    assert seen["user"] == {"id": "alice", "username": "alice", "muted": False}  # viewer: no peer_id
    b.send({"cmd": "voice_join", "channel": "lounge", "peer_id": "peer-b"})
    answer = yield b.expect("voice_join")
    assert answer["participants"] == [{"id": "alice", "username": "alice", "muted": False, "peer_id": "peer-a"}]
    to_a = yield a.expect("voice_user_joined")
    assert to_a["user"]["peer_id"] == "peer-b"  # participant: with peer_id
    to_c = yield c.expect("voice_user_joined")
    assert "peer_id" not in to_c["user"]
    muted = yield b.request({"cmd": "voice_mute"})
    assert muted == {"cmd": "voice_mute", "channel": "lounge", "muted": True}
    upd = yield a.expect("voice_user_updated")
    assert upd["user"]["muted"] is True and upd["user"]["peer_id"] == "peer-b"
    state = yield c.request({"cmd": "voice_state", "channel": "lounge"})
    assert [(p["username"], "peer_id" in p) for p in state["participants"]] == [("alice", False), ("bob", False)]
    chans = yield a.request({"cmd": "channels_get"})
    lounge = [ch for ch in chans["val"] if ch["name"] == "lounge"][0]
    assert lounge["voice_state"] == [{"username": "bob", "muted": True}]
    yield b.close()
    left = yield a.expect("voice_user_left")
    assert left == {"cmd": "voice_user_left", "channel": "lounge", "username": "bob", "global": True}
    out = yield a.request({"cmd": "voice_leave"})
    assert out == {"cmd": "voice_leave", "channel": "lounge"}
    again = yield a.request({"cmd": "voice_leave"})
    assert again["val"] == "You are not in a voice channel"


@pytest_twisted.inlineCallbacks
def test_users_list(ws_server):
    srv = yield ws_server("websocket.owner=root")
    root = yield connected_user(srv.url, "root")
    yield connected_user(srv.url, "zed")
    users = yield root.request({"cmd": "users_list"})
    by_name = {u["username"]: u for u in users["users"]}
    assert by_name["root"]["roles"][0] == "owner" and by_name["root"]["color"] == "#e67e22"
    assert by_name["zed"]["status"]["status"] == "online" and by_name["zed"]["cracked"] is True


@pytest_twisted.inlineCallbacks
def test_hostile_frames_get_errors_and_the_connection_survives(ws_server):
    srv = yield ws_server("websocket.max_message_size=4096")
    c = yield connected_user(srv.url, "mallory")
    other = yield connected_user(srv.url, "innocent")
    for raw in ("not json", "[]", '{"cmd": 1}', '{"cmd":"' + "x" * 100 + '"}', "{" * 50):
        c.send_raw(raw)
        err = yield c.expect("error")
        assert err["cmd"] == "error" and "val" in err and "src" in err
    c.send_raw(b"\x00\x01", binary=True)
    err = yield c.expect("error")
    assert err["val"] == "Binary frames are not supported"
    unknown = yield c.request({"cmd": "format_disk"})
    assert unknown == {"cmd": "error", "val": "Unknown command: format_disk", "src": "format_disk"}
    wrong = yield c.request({"cmd": "message_new", "channel": ["general"], "content": 5})
    assert wrong["src"] == "message_new"
    limit = yield c.request({"cmd": "messages_get", "channel": "general", "limit": "many"})
    assert limit["cmd"] == "error"
    ok = yield c.request({"cmd": "channels_get"})
    assert ok["cmd"] == "channels_get"
    c.send_raw("x" * 10000)  # over max_message_size: the WebSocket layer closes with 1009
    code, _ = yield c.closed
    assert code == 1009
    alive = yield other.request({"cmd": "channels_get"})
    assert alive["cmd"] == "channels_get"


@pytest_twisted.inlineCallbacks
def test_a_flood_of_bad_frames_closes_only_that_connection(ws_server):
    srv = yield ws_server("websocket.max_invalid=5")
    c = yield connected_user(srv.url, "flooder")
    other = yield connected_user(srv.url, "bystander")
    for _ in range(5):
        c.send_raw("garbage")
    code, _ = yield c.closed
    assert code == 4008
    alive = yield other.request({"cmd": "ping"}, cmd="pong")
    assert alive["val"] == "pong"


@pytest_twisted.inlineCallbacks
def test_history_survives_a_restart(tmp_path, database):
    srv = yield start_server(tmp_path / "a", database=database)
    c = yield connected_user(srv.url, "keeper")
    sent = yield c.request({"cmd": "message_new", "channel": "general", "content": "remember me"})
    yield c.request({"cmd": "message_react_add", "channel": "general", "id": sent["message"]["id"], "emoji": "⭐"})
    yield c.close()
    yield srv.stop(close_database=False)
    srv2 = yield start_server(tmp_path / "b", database=database)
    try:
        c2 = yield connected_user(srv2.url, "keeper", register=False)
        history = yield c2.request({"cmd": "messages_get", "channel": "general"})
        assert [(m["content"], m["reactions"]) for m in history["messages"]] == [("remember me", {"⭐": ["keeper"]})]
    finally:
        yield srv2.stop(close_database=False)
