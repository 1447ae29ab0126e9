"""The out-of-the-box main instance: ``twistd -n transport`` with the echo backend serves the WebSocket
frontend and the web client; a real WebSocket client (the ``websockets`` package) registers, chats with
``echo``, and finds the local history again after a restart. A hypothesis-driven client throws random
JSON and bytes at the live server, which keeps serving everyone else.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.browser.processes import TwistdInstance

pytestmark = pytest.mark.integration
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def instance(tmp_path_factory) -> Iterator[TwistdInstance]:
    inst = TwistdInstance(tmp_path_factory.mktemp("twistd"), "[websocket]\nmax_invalid = 1000\n")
    inst.start()
    yield inst
    inst.stop()


def recv_until(ws: ClientConnection, predicate: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
    while True:
        packet = json.loads(ws.recv(timeout=timeout))
        if predicate(packet):
            return packet


@contextlib.contextmanager
def login(url: str, username: str | None, register: bool = False) -> Iterator[ClientConnection]:
    """A connection past the handshake, logged in (or registered) as *username* unless it is None."""
    with connect(url, open_timeout=TIMEOUT) as ws:
        hello = json.loads(ws.recv(timeout=TIMEOUT))
        assert hello["cmd"] == "handshake" and hello["val"]["auth_mode"] == "cracked"
        if username is not None:
            ws.send(json.dumps({"cmd": "register" if register else "login", "username": username,
                                "password": "pw-1234"}))
            not_ping = lambda p: p["cmd"] != "ping"  # noqa: E731 - the server pings every 30 s
            assert recv_until(ws, not_ping)["cmd"] == "auth_success"
            assert recv_until(ws, not_ping)["cmd"] == "ready"
        yield ws


def test_serves_the_web_client(instance: TwistdInstance) -> None:
    with urllib.request.urlopen(instance.http_url, timeout=TIMEOUT) as page:
        body = page.read().decode()
        assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="app.js">' in body
    with urllib.request.urlopen(instance.http_url + "app.js", timeout=TIMEOUT) as script:
        assert script.headers["content-type"].startswith("text/javascript")


def test_register_and_chat_with_echo_then_restart(instance: TwistdInstance) -> None:
    with login(instance.ws_url, "newcomer", register=True) as ws:
        recv_until(ws, lambda p: p["cmd"] == "gateway_status" and p["connected"])
        ws.send(json.dumps({"cmd": "message_new", "channel": "dm:echo", "content": "ping?"}))
        echoed = recv_until(ws, lambda p: p["cmd"] == "message_new" and p["message"]["user"] == "echo")
        assert echoed["message"]["content"] == "ping?"
        ws.send(json.dumps({"cmd": "message_new", "channel": "general", "content": "kept across restarts"}))
        recv_until(ws, lambda p: p["cmd"] == "message_new" and p["channel"] == "general")
    instance.stop()
    instance.start()
    with login(instance.ws_url, "newcomer", register=False) as ws:
        ws.send(json.dumps({"cmd": "messages_get", "channel": "general"}))
        history = recv_until(ws, lambda p: p["cmd"] == "messages_get")
        assert "kept across restarts" in [m["content"] for m in history["messages"]]
        ws.send(json.dumps({"cmd": "messages_get", "channel": "dm:echo"}))
        dm = recv_until(ws, lambda p: p["cmd"] == "messages_get")
        assert [m["user"] for m in dm["messages"]][-2:] == ["newcomer", "echo"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30)
commands = st.sampled_from(["auth", "login", "register", "channels_get", "messages_get", "message_new",
                            "message_edit", "message_delete", "typing", "message_react_add", "message_react_remove",
                            "users_list", "users_online", "voice_join", "voice_leave", "voice_mute", "voice_state",
                            "gateway_register", "gateway_join", "gateway_leave", "gateway_buddies", "gateway_open",
                            "gateway_rooms", "ping", "nonsense"])
frames = (
    st.binary(max_size=200).map(lambda b: ("bytes", b))
    | st.text(max_size=200).map(lambda t: ("text", t))
    | st.tuples(commands, st.dictionaries(st.sampled_from(["channel", "content", "id", "start", "limit", "emoji",
                                                           "peer_id", "room", "username", "password", "validator",
                                                           "reply_to", "listener", "legacy_name", "buddy"]),
                                          json_values, max_size=6)).map(
        lambda c: ("text", json.dumps(dict(c[1], cmd=c[0]))))
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(frames, min_size=1, max_size=8), st.booleans())
def test_fuzz_live_server(instance: TwistdInstance, batch: list[tuple[str, Any]], authenticate: bool) -> None:
    with login(instance.ws_url, "fuzzer" if authenticate and _fuzzer_exists(instance) else None) as ws:
        try:
            for _kind, payload in batch:
                ws.send(payload)
            ws.send(json.dumps({"cmd": "ping", "listener": "end"}))
            # every frame is answered or ignored, never fatal: the pong after them arrives
            recv_until(ws, lambda p: p.get("cmd") == "pong" and p.get("listener") == "end", timeout=30)
        except ConnectionClosed as e:  # a close is allowed only with the protocol's own codes
            code = e.rcvd.code if e.rcvd is not None else None
            assert code in (4008, 1009), f"connection ended unexpectedly: {e!r}"
    with login(instance.ws_url, "bystander", register=not _bystander[0]) as other:
        _bystander[0] = True
        other.send(json.dumps({"cmd": "channels_get"}))
        assert recv_until(other, lambda p: p["cmd"] in ("channels_get", "error"))["cmd"] == "channels_get"


_bystander = [False]
_fuzzer = [False]


def _fuzzer_exists(instance: TwistdInstance) -> bool:
    if not _fuzzer[0]:
        with login(instance.ws_url, "fuzzer", register=True):
            _fuzzer[0] = True
    return True


def test_out_of_the_box_defaults(tmp_path) -> None:
    """``twistd -n transport`` with no configuration file (only the port moved off 8080): cracked mode with
    registration, SQLite in ./state, the echo backend (the installed ``transport-backend-echo``)."""
    inst = TwistdInstance(tmp_path, defaults=True)
    inst.start()
    try:
        with login(inst.ws_url, "firsttimer", register=True) as ws:
            recv_until(ws, lambda p: p["cmd"] == "gateway_status" and p["connected"])
            ws.send(json.dumps({"cmd": "message_new", "channel": "dm:echo", "content": "out of the box"}))
            echoed = recv_until(ws, lambda p: p["cmd"] == "message_new" and p["message"]["user"] == "echo")
            assert echoed["message"]["content"] == "out of the box"
        assert (tmp_path / "state").is_dir()
    finally:
        inst.stop()
