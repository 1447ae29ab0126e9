"""The XEP-0114 link: Twisted's real XmlStream over a StringTransport, the server's side typed in by hand."""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.words.xish import domish

from transport.frontends.xmpp.component import ComponentAuthFailed, ComponentLink, _StreamFactory

HEADER = (b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' "
          b"from='transport.example.org' id='s1d'>")


class Recorder:
    def __init__(self) -> None:
        self.stanzas: list[domish.Element] = []
        self.up = 0
        self.down = 0
        self.fatal: list[str] = []


def make_link(max_pending: int = 3) -> tuple[ComponentLink, Recorder]:
    rec = Recorder()

    def up() -> None:
        rec.up += 1

    def down() -> None:
        rec.down += 1

    link = ComponentLink("transport.example.org", "s3cret", "tcp:host=127.0.0.1:port=5347", task.Clock(),
                         on_stanza=rec.stanzas.append, on_up=up, on_down=down, on_fatal=rec.fatal.append,
                         max_pending=max_pending)
    return link, rec


def connect(link: ComponentLink) -> tuple[Any, StringTransport]:
    xs = _StreamFactory(link).buildProtocol(None)
    transport = StringTransport()
    xs.makeConnection(transport)
    return xs, transport


def message(to: str) -> domish.Element:
    m = domish.Element((None, "message"))
    m["to"] = to
    m.addElement("body", content="hi")
    return m


def test_handshake_then_queued_stanzas_go_out_with_from() -> None:
    link, rec = make_link(max_pending=2)
    for i in range(3):  # not connected yet: two are kept, one is counted as dropped
        link.send(message(f"user{i}@example.org"))
    assert len(link.pending) == 2 and link.dropped == 1
    xs, transport = connect(link)
    assert b"transport.example.org" in transport.value()  # stream header to the component's domain
    transport.clear()
    xs.dataReceived(HEADER)
    digest = hashlib.sha1(b"s1d" + b"s3cret").hexdigest()  # XEP-0114's handshake
    assert transport.value() == f"<handshake>{digest}</handshake>".encode()
    transport.clear()
    xs.dataReceived(b"<handshake/>")
    assert link.connected and rec.up == 1
    out = transport.value().decode()
    assert out.count("<message") == 2 and out.count("from='transport.example.org'") == 2
    assert "user0@example.org" in out and "user2" not in out
    link.send(message("user9@example.org"))
    assert "user9@example.org" in transport.value().decode()
    transport.clear()
    link.reactor.advance(60)  # whitespace keepalive on an idle link
    assert transport.value() == b" "
    xs.dataReceived(b"<iq type='get' id='1' from='a@example.org/r' to='transport.example.org'>"
                    b"<ping xmlns='urn:xmpp:ping'/></iq>")
    assert [s.name for s in rec.stanzas] == ["iq"]
    xs.connectionLost(None)
    assert not link.connected and rec.down == 1
    assert link._keepalive is None and not link.reactor.getDelayedCalls()
    link.send(message("later@example.org"))
    assert len(link.pending) == 1  # kept for the next connection


def test_a_refused_secret_is_fatal_and_stops_the_link() -> None:
    link, rec = make_link()
    xs, transport = connect(link)
    waiting = link._until_authenticated(xs)
    failures: list[Any] = []
    waiting.addErrback(failures.append)
    xs.dataReceived(HEADER)
    xs.dataReceived(b"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                    b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Given token does not match</text>"
                    b"</stream:error>")
    assert link.failed is not None and "not-authorized" in link.failed and "password" in link.failed
    assert rec.fatal == [link.failed]
    assert transport.disconnecting
    xs.connectionLost(None)
    assert failures and failures[0].check(ComponentAuthFailed)
    assert rec.up == 0 and rec.down == 0


def test_a_conflict_is_not_fatal() -> None:
    link, rec = make_link()
    xs, transport = connect(link)
    waiting = link._until_authenticated(xs)
    waiting.addErrback(lambda f: None)
    xs.dataReceived(HEADER)
    xs.dataReceived(b"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
    assert link.failed is None and rec.fatal == []
