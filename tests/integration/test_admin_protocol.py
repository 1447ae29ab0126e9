"""The admin endpoint's protocol core and transportctl's endpoint parsing (no process needed)."""

from __future__ import annotations

import json
import socket

import pytest
from twisted.internet.testing import StringTransport

from transport.admin.commands import AdminCommands
from transport.admin.protocol import AdminProtocol, BadRequest, parse_request
from transport.cli.ctl import client_address


def test_parse_request():
    r = parse_request(b'{"command": "register", "args": ["a@b", "a", "pw"], "token": "t"}')
    assert (r.command, r.args, r.token) == ("register", ("a@b", "a", "pw"), "t")
    assert parse_request(b"register a@b 'a b'").args == ("a@b", "a b")
    for bad in (b"{", b'{"command": 1}', b'{"command": "x", "args": [1]}', b"", b"'unclosed"):
        with pytest.raises(BadRequest):
            parse_request(bad)
    with pytest.raises(BadRequest):
        parse_request(b"status", plain_allowed=False)


def test_client_address():
    assert client_address("unix:/run/t/admin.sock:mode=600:lockfile=1") == (socket.AF_UNIX, "/run/t/admin.sock")
    assert client_address("unix:address=/x\\:y.sock") == (socket.AF_UNIX, "/x:y.sock")
    assert client_address("tcp:9999:interface=127.0.0.1") == (socket.AF_INET, ("127.0.0.1", 9999))
    assert client_address("tcp:port=9999:interface=\\:\\:") == (socket.AF_INET6, ("::1", 9999))
    with pytest.raises(ValueError):
        client_address("ssl:9999")


class _Gateway:
    """Only what the commands below read (uptime / help / unknown need nothing)."""


def _protocol(token=""):
    p = AdminProtocol(AdminCommands(_Gateway(), None, started_at=100.0, clock=lambda: 142.5), token)
    t = StringTransport()
    p.makeConnection(t)
    return p, t


def _answers(t):
    return [json.loads(line) for line in t.value().splitlines()]


def test_token_and_line_limits():
    p, t = _protocol("secret")
    p.dataReceived(b'{"command": "uptime", "token": "secret"}\n')
    assert _answers(t) == [{"ok": True, "output": "42"}]
    t.clear()
    p.dataReceived(b'{"command": "uptime", "token": "nope"}\n')
    assert _answers(t) == [{"ok": False, "error": "unauthorized"}] and t.disconnecting
    p, t = _protocol()
    p.dataReceived(b"x" * (70 * 1024))
    assert _answers(t)[0]["ok"] is False and t.disconnecting
    p, t = _protocol()
    p.dataReceived(b"frobnicate\nhelp\n")
    first, second = _answers(t)
    assert "unknown command" in first["error"] and "online_users_per_backend" in second["output"]


def test_crashed_backends_count_is_the_total_since_start():
    """The pool keeps the last 1000 crash records; the count is every crash since start."""
    from types import SimpleNamespace

    pool = SimpleNamespace(crashes=[object()] * 1000, crashes_total=1234)
    commands = AdminCommands(_Gateway(), pool)
    assert commands.cmd_crashed_backends_count() == "1234"


def test_network_admin_endpoint_needs_a_token():
    """The admin commands register users: only a UNIX socket may go without admin_token."""
    from transport import config as configuration

    with pytest.raises(configuration.ConfigError, match="admin_token"):
        configuration.load_text("[service]\nadmin_socket = tcp:9099:interface=127.0.0.1\n", "t.ini")
    with pytest.raises(configuration.ConfigError, match="t.ini:2"):
        configuration.load_text("[service]\nadmin_socket = systemd:domain=INET:index=0\n", "t.ini")
    for ini in ("[service]\nadmin_socket = tcp:9099\nadmin_token = s3cret\n",
                "[service]\nadmin_socket = unix:/run/t/admin.sock:mode=600\n",
                "[service]\nadmin_socket = systemd:domain=UNIX:index=0\n", ""):
        configuration.load_text(ini, "t.ini")
