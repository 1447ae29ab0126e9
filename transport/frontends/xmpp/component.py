"""The XEP-0114 link to the XMPP server: connect, authenticate, reconnect, send.

The gateway connects to the server's component port as ``[service] jid`` and
proves it knows ``[service] password`` with the ``<handshake/>`` of XEP-0114
(Twisted's :class:`~twisted.words.protocols.jabber.component.ConnectComponentAuthenticator`).
Twisted's own ``XmlStreamFactory`` would reconnect every second forever, also
when the server refuses the secret; here a :class:`~twisted.application.internet.ClientService`
reconnects with capped exponential backoff and jitter, and a connection only
counts as made once the handshake succeeded. A stream error that means "this
configuration can never work" (a wrong secret, a component domain the server
does not know) stops the link for good, logged at critical level.

Every stanza leaves through :meth:`ComponentLink.send`, which sets ``from`` to
the component's domain when a handler forgot to. While the link is down, stanzas
wait in a bounded queue and go out after the next handshake; beyond the bound
they are discarded and counted (``dropped``).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.application import internet, service
from twisted.internet import defer, endpoints, protocol, task
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import component, xmlstream
from twisted.words.xish import domish

from transport.frontends.xmpp.stanzas import loggable

log = Logger()

#: Stream errors before the handshake that a retry cannot fix.
FATAL_CONDITIONS = frozenset({"not-authorized", "host-unknown", "improper-addressing", "invalid-namespace"})


class ComponentAuthFailed(Exception):
    """The server refused the component (wrong secret or unknown domain)."""


def backoff_delay(attempt: int, initial: float, maximum: float, jitter: float,
                  rand: Callable[[], float] = random.random) -> float:
    """Delay before reconnection *attempt* (1, 2, ...): doubling from *initial*, capped, plus jitter.

    >>> backoff_delay(1, 1.0, 60.0, 0.0), backoff_delay(3, 1.0, 60.0, 0.0), backoff_delay(30, 1.0, 60.0, 0.0)
    (1.0, 4.0, 60.0)
    >>> backoff_delay(1, 1.0, 60.0, 0.5, rand=lambda: 1.0)
    1.5
    """
    base = min(maximum, initial * 2.0 ** min(attempt - 1, 64))
    return base * (1.0 + jitter * rand())


class _StreamFactory(protocol.Factory):
    """Builds one XmlStream per connection, its ``authenticated`` Deferred firing after the handshake."""

    def __init__(self, link: ComponentLink) -> None:
        self.link = link

    def buildProtocol(self, addr: Any) -> xmlstream.XmlStream:
        xs = xmlstream.XmlStream(component.ConnectComponentAuthenticator(self.link.jid, self.link.secret))
        xs.factory = self
        self.link.attach(xs)
        return xs


class ComponentLink(service.Service):
    """The component's connection to the XMPP server (see the module docstring).

    *on_stanza* gets every element the server sends after the handshake;
    *on_up* / *on_down* are called when the link is authenticated / lost;
    *on_fatal* with the reason when the server refused the component.
    """

    name = "xmpp-component-link"

    def __init__(self, jid: str, secret: str, endpoint: str, reactor: Any,
                 on_stanza: Callable[[domish.Element], None],
                 on_up: Callable[[], None] = lambda: None,
                 on_down: Callable[[], None] = lambda: None,
                 on_fatal: Callable[[str], None] = lambda reason: None,
                 initial_delay: float = 1.0, max_delay: float = 60.0, jitter: float = 0.2,
                 max_pending: int = 5000, rand: Callable[[], float] = random.random,
                 keepalive: float = 60.0) -> None:
        self.jid = jid
        self.secret = secret
        self.endpoint_description = endpoint
        self.reactor = reactor
        self.on_stanza = on_stanza
        self.on_up = on_up
        self.on_down = on_down
        self.on_fatal = on_fatal
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.jitter = jitter
        self.max_pending = max_pending
        self.rand = rand
        self.keepalive = keepalive
        self._keepalive: task.LoopingCall | None = None
        self.xs: xmlstream.XmlStream | None = None
        self.connected = False
        self.failed: str | None = None
        self.pending: deque[domish.Element] = deque()
        #: stanzas discarded because the pending queue was full
        self.dropped = 0
        self.sent = 0
        self.received = 0
        self.connections = 0
        self._client: internet.ClientService | None = None
        #: streams not authenticated yet -> fired after the handshake (the ClientService waits for it)
        self._waiting: dict[xmlstream.XmlStream, defer.Deferred[None]] = {}

    # ------------------------------------------------------------------ life cycle

    def startService(self) -> None:
        super().startService()
        endpoint = endpoints.clientFromString(self.reactor, self.endpoint_description)
        self._client = internet.ClientService(
            endpoint, _StreamFactory(self),
            retryPolicy=lambda attempt: backoff_delay(attempt, self.initial_delay, self.max_delay, self.jitter,
                                                      self.rand),
            clock=self.reactor, prepareConnection=self._until_authenticated)
        self._client.startService()

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        client, self._client = self._client, None
        if self.xs is not None and self.connected:
            try:
                self.xs.sendFooter()
            except Exception:  # the transport may already be gone
                pass
        if client is None or not client.running:
            return defer.succeed(None)
        d: defer.Deferred[None] = client.stopService()
        return d

    # ------------------------------------------------------------------ stream events

    def attach(self, xs: xmlstream.XmlStream) -> None:
        """Wire a new stream's events to this link (called by the factory)."""
        self._waiting[xs] = defer.Deferred()
        xs.addObserver(xmlstream.STREAM_AUTHD_EVENT, self._authenticated, xs=xs)
        xs.addObserver(xmlstream.STREAM_ERROR_EVENT, self._stream_error, xs=xs)
        xs.addObserver(xmlstream.INIT_FAILED_EVENT, self._init_failed, xs=xs)
        xs.addObserver(xmlstream.STREAM_END_EVENT, self._stream_end, xs=xs)

    def _until_authenticated(self, xs: Any) -> defer.Deferred[None]:
        # the ClientService hands us its proxy of the protocol
        d = self._waiting.get(getattr(xs, "_protocol", xs))
        return d if d is not None else defer.succeed(None)

    def _authenticated(self, _: Any, xs: xmlstream.XmlStream) -> None:
        self.xs = xs
        self.connected = True
        self.connections += 1
        xs.addObserver("/*", self._received)
        log.info("XMPP component {jid} connected to {endpoint}", jid=self.jid, endpoint=self.endpoint_description)
        d = self._waiting.pop(xs, None)
        if d is not None:
            d.callback(None)
        if self.keepalive > 0:
            # whitespace keeps NATs and firewalls from dropping an idle link, and finds a dead one
            self._keepalive = task.LoopingCall(self._send_whitespace, xs)
            self._keepalive.clock = self.reactor
            self._keepalive.start(self.keepalive, now=False)
        while self.pending and self.connected:
            xs.send(self.pending.popleft())
        try:
            self.on_up()
        except Exception:
            log.failure("handling the component's connection")

    def _received(self, element: domish.Element) -> None:
        if element.uri != component.NS_COMPONENT_ACCEPT and element.uri is not None:
            return
        self.received += 1
        try:
            self.on_stanza(element)
        except Exception:
            log.failure("handling a stanza from the XMPP server: {xml}", xml=loggable(element, 500))

    def _stream_error(self, reason: Failure, xs: xmlstream.XmlStream) -> None:
        condition = getattr(reason.value, "condition", "")
        text = getattr(reason.value, "text", "") or ""
        if xs in self._waiting and condition in FATAL_CONDITIONS:
            self.failed = (f"the XMPP server refused the component {self.jid!r}: {condition}"
                           + (f" ({text})" if text else "")
                           + " - check [service] jid and password against the server's component configuration")
            log.critical("XMPP component configuration error: {reason}", reason=self.failed)
            client, self._client = self._client, None
            if client is not None:
                client.stopService()
            try:
                self.on_fatal(self.failed)
            except Exception:
                log.failure("handling the component's fatal error")
        else:
            log.warn("XMPP server sent a stream error: {condition} {text}", condition=condition, text=text)

    def _init_failed(self, reason: Failure, xs: xmlstream.XmlStream) -> None:
        log.warn("XMPP component handshake failed: {reason}", reason=reason.getErrorMessage())

    def _stream_end(self, reason: Any, xs: xmlstream.XmlStream) -> None:
        d = self._waiting.pop(xs, None)
        if d is not None:
            # not authenticated yet: the ClientService counts it as a failed attempt
            d.errback(ComponentAuthFailed(self.failed or "the connection closed before the handshake"))
        if xs is not self.xs:
            return
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        self._keepalive = None
        self.xs = None
        was_connected, self.connected = self.connected, False
        if was_connected:
            log.warn("XMPP component {jid} lost its connection", jid=self.jid)
            try:
                self.on_down()
            except Exception:
                log.failure("handling the component's disconnection")

    # ------------------------------------------------------------------ sending

    @staticmethod
    def _send_whitespace(xs: xmlstream.XmlStream) -> None:
        if xs.transport is not None:
            xs.transport.write(b" ")

    def send(self, stanza: domish.Element) -> None:
        """Send *stanza* (``from`` defaults to the component), or keep it until the link is up."""
        if not stanza.getAttribute("from"):
            stanza["from"] = self.jid
        if self.connected and self.xs is not None:
            self.sent += 1
            self.xs.send(stanza)
            return
        if len(self.pending) >= self.max_pending:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warn("XMPP component disconnected: {n} stanzas discarded so far", n=self.dropped)
            return
        self.pending.append(stanza)
