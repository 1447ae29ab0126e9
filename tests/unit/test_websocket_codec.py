"""The OriginChats frame codec, rate limiter, permissions, tokens and password hashes (no I/O)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from transport.frontends.websocket import auth, codec, tokens
from transport.frontends.websocket.channels import Permissions
from transport.frontends.websocket.ratelimit import RateLimiter


def test_decode_command_and_listener() -> None:
    c = codec.decode(b'{"cmd":"message_new","channel":"general","content":"hi","listener":"l1"}')
    assert c.cmd == "message_new" and c.get("channel") == "general" and c.listener == "l1"


@pytest.mark.parametrize("data, message", [
    (b"not json", "Invalid JSON"),
    (b"[1,2]", "Expected a JSON object"),
    (b'{"cmd": 5}', "Missing or invalid cmd"),
    (b'{"x": 1}', "Missing or invalid cmd"),
    (b'{"cmd": "a", "v": NaN}', "Invalid JSON"),
    (b"\xff\xfe", "Invalid UTF-8"),
    (b'{"cmd": "a", "listener": 7}', "Invalid listener"),
    (b'{"cmd":"a","x":' + b"[" * 40 + b"]" * 40 + b"}", "JSON nested too deeply"),
    (b'{"cmd":"' + b"a" * 70000 + b'"}', "Message too large"),
])
def test_decode_refuses(data: bytes, message: str) -> None:
    with pytest.raises(codec.ProtocolError) as e:
        codec.decode(data)
    assert e.value.message == message


def test_depth_ignores_brackets_in_strings() -> None:
    text = json.dumps({"cmd": "x", "content": "[" * 100})
    assert codec.decode(text).get("content") == "[" * 100


def test_field_checks_type_and_length() -> None:
    c = codec.Command("message_new", {"cmd": "message_new", "content": "x" * 10, "n": True, "limit": 5})
    assert codec.field(c, "content", str, max_length=10) == "x" * 10
    with pytest.raises(codec.ProtocolError, match="too long"):
        codec.field(c, "content", str, max_length=9)
    with pytest.raises(codec.ProtocolError, match="wrong type"):
        codec.field(c, "n", int)  # JSON true is not a number
    with pytest.raises(codec.ProtocolError, match="required"):
        codec.field(c, "channel", str)
    assert codec.field(c, "limit", int) == 5


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_decode_never_fails_unexpectedly(data: bytes) -> None:
    try:
        codec.decode(data, max_size=1000, max_depth=8)
    except codec.ProtocolError:
        pass


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=5), st.text(min_size=1, max_size=20))
def test_encode_decode_round_trip(fields: dict, cmd: str) -> None:
    packet = dict(fields, cmd=cmd)
    packet.pop("listener", None)
    decoded = codec.decode(codec.encode(packet), max_depth=64)
    assert decoded.fields == packet and decoded.cmd == cmd


def test_rate_limit_burst_and_cooldown() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, per_minute=60, burst=10, burst_window=10.0, cooldown=30.0)
    for _ in range(10):
        assert limiter.check("alice") is None
        clock.advance(0.5)
    refused = limiter.check("alice")
    assert refused is not None and refused.length_ms == 30000
    assert limiter.check("bob") is None  # per user
    clock.advance(29)
    again = limiter.check("alice")
    assert again is not None and 0 < again.length_ms <= 1000
    clock.advance(1.01)
    assert limiter.check("alice") is None


def test_rate_limit_per_minute() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, per_minute=60, burst=100, burst_window=10.0, cooldown=30.0)
    for _ in range(60):
        assert limiter.check("a") is None
        clock.advance(0.5)
    refused = limiter.check("a")
    assert refused is not None and "per minute" in refused.reason
    clock.advance(120)
    limiter.prune()
    assert len(limiter) == 0


def test_permissions_first_match_wins_and_owner_bypasses() -> None:
    p = Permissions({"send": ("!muted", "user"), "view": ("user",), "delete": ("admin",)})
    assert p.allows("send", ["user"])
    assert not p.allows("send", ["user", "muted"])
    assert not p.allows("send", ["guest"])
    assert p.allows("delete", ["owner"]) and p.allows("send", ["owner", "muted"])
    assert not p.allows("react", ["user"])  # no rule: denied


def test_tokens() -> None:
    token = tokens.issue_token(b"k", "Alice", ttl=60, now=1000)
    assert token.startswith("alice,1060,")
    assert tokens.verify_token(b"k", token, now=1059) == "alice"
    assert tokens.verify_token(b"k", token, now=1061) is None
    assert tokens.verify_token(b"x", token, now=1000) is None
    forged = token.replace("alice", "mallory")
    assert tokens.verify_token(b"k", forged, now=1000) is None
    assert tokens.verify_token(b"k", "a,b", now=0) is None
    with pytest.raises(ValueError):
        tokens.issue_token(b"k", "no spaces allowed")


def test_token_cli_uses_the_state_dir_secret(tmp_path, capsys) -> None:
    ini = tmp_path / "t.ini"
    ini.write_text(f"[service]\nstate_dir = {tmp_path}\n")
    assert tokens.main(["-c", str(ini), "token", "bob"]) == 0
    token = capsys.readouterr().out.strip()
    secret = (tmp_path / "websocket.secret").read_bytes().strip()
    assert tokens.verify_token(secret, token) == "bob"
    assert (tmp_path / "websocket.secret").stat().st_mode & 0o777 == 0o600


def test_password_hash() -> None:
    stored = auth.hash_password_sync("hunter22")
    assert stored.startswith("scrypt$16384$8$1$")
    assert auth.check_password_sync("hunter22", stored)
    assert not auth.check_password_sync("hunter23", stored)
    assert not auth.check_password_sync("x", "garbage")
    assert auth.hash_password_sync("hunter22") != stored  # salted
