"""The IRC backend's pure parts: legacy names, settings, charset fallback, the send rate limiter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transport_backends.irc.options import BadLegacyName, IRCSettings, decode_line, irc_lower, is_channel
from transport_backends.irc.session import TokenBucket
from twisted.internet.task import Clock

from transport.sdk import BackendConfigFile


def test_legacy_name_forms() -> None:
    s = IRCSettings(server="irc.example.org", port=6667)
    a = s.address("alice")
    assert (a.nick, a.host, a.port, a.tls) == ("alice", "irc.example.org", 6667, False)
    a = s.address("bob@irc.other.net")
    assert (a.nick, a.host, a.port, a.tls) == ("bob", "irc.other.net", 6667, False)
    a = s.address("bob@irc.other.net:7000")
    assert (a.host, a.port, a.tls) == ("irc.other.net", 7000, False)
    a = s.address("bob@irc.other.net:+6697")
    assert (a.host, a.port, a.tls) == ("irc.other.net", 6697, True)


@pytest.mark.parametrize("name", ["", "#chan", "9lives", "a b", "x@host:99999", "x@host:abc", "@host"])
def test_bad_legacy_names(name: str) -> None:
    with pytest.raises(BadLegacyName):
        IRCSettings(server="irc.example.org").address(name)


def test_no_server_anywhere() -> None:
    with pytest.raises(BadLegacyName, match="irc_server"):
        IRCSettings().address("alice")


def test_settings_from_config() -> None:
    config = BackendConfigFile.from_text(
        "[backend]\nirc_server = irc.example.org\nirc_port = 7000\nirc_tls = yes\nirc_send_rate = 0.5\n"
        "irc_password_mode = nickserv\nirc_fallback_encoding = cp1252\n")
    s = IRCSettings.from_config(config)
    assert (s.server, s.port, s.tls, s.send_rate, s.password_mode, s.fallback_encoding) == (
        "irc.example.org", 7000, True, 0.5, "nickserv", "cp1252")


@pytest.mark.parametrize("text", ["[backend]\nirc_port = x\n", "[backend]\nirc_password_mode = sasl\n",
                                  "[backend]\nirc_fallback_encoding = klingon\n"])
def test_bad_settings(text: str) -> None:
    with pytest.raises(ValueError):
        IRCSettings.from_config(BackendConfigFile.from_text(text))


def test_channels_and_case_folding() -> None:
    assert is_channel("#a") and is_channel("&b") and not is_channel("nick") and not is_channel("")
    assert irc_lower("Nick[A]\\~") == "nick{a}|^"


@given(st.binary(max_size=300))
def test_decoding_never_fails(raw: bytes) -> None:
    text = decode_line(raw, "latin-1")
    try:
        assert text == raw.decode("utf-8")
    except UnicodeDecodeError:
        assert text == raw.decode("latin-1")


def test_token_bucket_bursts_then_paces() -> None:
    clock = Clock()
    sent: list[str] = []
    bucket = TokenBucket(clock, rate=2.0, burst=3, send=sent.append)
    for i in range(7):
        bucket.put(str(i))
    assert sent == ["0", "1", "2"]  # the burst goes at once
    clock.advance(0.5)
    assert sent == ["0", "1", "2", "3"]  # then 2 per second, in order
    clock.advance(1.0)
    assert sent == ["0", "1", "2", "3", "4", "5"]
    clock.advance(0.5)
    assert sent == [str(i) for i in range(7)]
    clock.advance(10)
    for i in range(7, 10):
        bucket.put(str(i))  # the bucket refilled while idle
    assert sent[-3:] == ["7", "8", "9"]
    bucket.stop()
    assert not clock.getDelayedCalls()


class _RecordingBackend:
    """Stands where the IRCBackend is: records every send_* call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


def test_logout_during_irc_registration_closes_that_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """A LOGOUT (or a new LOGIN) while the IRC server has not welcomed us yet must not leave a ghost."""
    from transport_backends.irc import session as irc_session
    from twisted.internet import defer
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    transports: list[StringTransport] = []
    protocols: list = []

    def connect_protocol(endpoint, protocol):  # type: ignore[no-untyped-def]
        transport = StringTransport()
        transports.append(transport)
        protocols.append(protocol)
        protocol.makeConnection(transport)  # TCP is up; the IRC registration (NICK/USER) is under way
        return defer.succeed(protocol)

    monkeypatch.setattr(irc_session, "connectProtocol", connect_protocol)
    backend = _RecordingBackend()
    settings = IRCSettings(server="irc.example.org")
    reactor = MemoryReactorClock()
    session = irc_session.IRCSession(backend, "alice@x", settings.address("alice"), "", settings, reactor, reactor)
    session.join("#room", "alice", "")
    session.start()
    assert b"NICK alice" in transports[0].value()
    session.close("Logged out")
    assert transports[0].disconnecting
    conn = protocols[0]
    conn.lineReceived(b":irc.example.org 001 alice :Welcome")  # the welcome arrives anyway
    assert [name for name, _, _ in backend.calls if name == "send_connected"] == []
    assert b"JOIN" not in transports[0].value()


@pytest.mark.parametrize("mode", ["server", "nickserv"])
def test_irc_password_never_reaches_the_log(mode: str) -> None:
    """Every line sent is logged at debug level; the password lines are logged without the password."""
    from transport_backends.irc import session as irc_session
    from twisted.internet.testing import StringTransport
    from twisted.logger import globalLogPublisher

    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        settings = IRCSettings(server="irc.example.org", password_mode=mode, send_rate=0)
        clock = Clock()
        session = irc_session.IRCSession(_RecordingBackend(), "alice@x", settings.address("alice"),
                                         "hunter2-secret", settings, clock, clock)
        conn = irc_session.IRCConnection(session)
        transport = StringTransport()
        conn.makeConnection(transport)
        conn.lineReceived(b":irc.example.org 001 alice :Welcome")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert b"hunter2-secret" in transport.value()  # it does go to the server
    logged = [str(e.get("line", "")) for e in events if e.get("log_namespace") == "irc"]
    assert logged and not any("hunter2" in line for line in logged)
