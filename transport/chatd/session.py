"""Twisted adapters shared by chatd and statusd: one session per connected client, over TCP/TLS or WebSocket.

A :class:`CommandServer` owns the settings, the clock, the token validator and
the sessions; subclasses (chatd's and statusd's servers) make the sessions and
give them their protocol's meaning. The transports are thin:

* :class:`StreamProtocol` - a TCP or TLS stream (any ``serverFromString``
  endpoint), with a bounded send backlog: a client that stops reading while the
  server has more than ``max_send_buffer`` bytes queued for it is dropped;
* :class:`WebSocketLink` - an autobahn WebSocket; every binary message carries
  one or more commands, every server write is one binary message.

A :class:`CommandSession` feeds the bytes to its sans-I/O
:class:`~transport.chatd.wire.ServerConnection`, runs the token validator on
AUTH (holding back the commands pipelined after it until the answer), sends
KEEPALIVE every ``keepalive_interval`` and disconnects a client that sent nothing
for ``idle_timeout`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import protocol
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from transport.auth.tokens import validate
from transport.chatd.wire import (
    AUTH_OK,
    AUTH_REFUSED,
    Auth,
    AuthResult,
    Command,
    Error,
    ErrorCode,
    KeepAlive,
    ServerConnection,
    Violation,
)

log = Logger()

#: Seconds a closing connection gets to flush what was sent to it before it is aborted.
CLOSE_GRACE = 10.0

#: Commands that may wait for a client (token check, rate limit) before it is disconnected for sending too much.
MAX_HELD = 10000


class Link(Protocol):
    """What a session needs from its transport."""

    peer: str

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


@dataclass(frozen=True)
class SessionSettings:
    keepalive_interval: float = 30.0
    idle_timeout: float = 90.0
    max_message_size: int = 64 * 1024
    max_send_buffer: int = 4 * 1024 * 1024
    #: Commands per second a client may send (token bucket of ``rate_burst``); 0 = no limit. Over the rate the
    #: server stops reading from the client until it may go on: backpressure, not an error.
    rate_limit: float = 0.0
    rate_burst: int = 100


class CommandServer:
    """Sessions of one service (chatd or statusd) and the transports that carry them."""

    name = "command"

    def __init__(self, settings: SessionSettings, validator: Any, clock: Any = None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.settings = settings
        self.validator = validator
        self.clock = clock
        self.sessions: set[CommandSession] = set()
        #: False until :meth:`open`: bytes from clients wait (bounded) until the directory is loaded.
        self.accepting = True

    def hold(self) -> None:
        """Keep clients' commands waiting until :meth:`open` (used while the directory loads)."""
        self.accepting = False

    def open(self) -> None:
        """Process what clients sent meanwhile, and everything from now on."""
        self.accepting = True
        for session in list(self.sessions):
            session.resume()

    def make_session(self, link: Link) -> CommandSession:  # pragma: no cover - abstract
        raise NotImplementedError

    def stream_factory(self) -> protocol.Factory:
        """A Factory for ``endpoint.listen`` (TCP, TLS, UNIX...)."""
        return StreamFactory(self)

    def websocket_resource(self) -> WebSocketResource:
        """A twisted.web resource that upgrades to a binary WebSocket carrying this protocol."""
        factory = WebSocketServerFactory()
        factory.protocol = WebSocketLink
        factory.command_server = self  # type: ignore[attr-defined]
        # A message may carry several commands; each is bounded by max_message_size.
        limit = 4 * self.settings.max_message_size + 4096
        factory.setProtocolOptions(maxMessagePayloadSize=limit, maxFramePayloadSize=limit, autoPingInterval=0)
        return WebSocketResource(factory)

    def disconnect_all(self) -> None:
        for session in list(self.sessions):
            session.link.close()


class CommandSession:
    """One client of a :class:`CommandServer`; subclasses implement :meth:`handle` and the hooks."""

    def __init__(self, server: CommandServer, link: Link, connection: ServerConnection) -> None:
        self.server = server
        self.link = link
        self.connection = connection
        self.userid: int | None = None
        self.closed = False
        #: Decoded events not handled yet: waiting for the token check or for the rate limit.
        self._queue: list[Command | Violation] = []
        self._auth_pending = False
        self._throttle: IDelayedCall | None = None
        self._tokens = float(server.settings.rate_burst)
        self._refilled = server.clock.seconds()
        self._keepalive: IDelayedCall | None = None
        self._idle: IDelayedCall | None = None
        self._abort: IDelayedCall | None = None
        self._early: list[bytes] = []
        self._early_size = 0

    # transport side ---------------------------------------------------------------

    def connected(self) -> None:
        self.server.sessions.add(self)
        clock, settings = self.server.clock, self.server.settings
        if settings.keepalive_interval > 0:
            self._keepalive = clock.callLater(settings.keepalive_interval, self._send_keepalive)
        if settings.idle_timeout > 0:
            self._idle = clock.callLater(settings.idle_timeout, self._idle_out)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self._idle is not None and self._idle.active():
            self._idle.reset(self.server.settings.idle_timeout)
        if not self.server.accepting or self._early:
            self._early.append(data)
            self._early_size += len(data)
            if self._early_size > 4 * self.server.settings.max_message_size:
                self._early = []
                self.error(ErrorCode.OVERLOAD, "too much data before the service was ready", fatal=True)
            return
        self._process(self.connection.receive_data(data))

    def resume(self) -> None:
        """The server opened: process what arrived before."""
        early, self._early, self._early_size = self._early, [], 0
        for data in early:
            if self.closed:
                return
            self._process(self.connection.receive_data(data))

    def connection_lost(self) -> None:
        if self.closed and self not in self.server.sessions:
            return
        self.closed = True
        self.connection.close()
        self.server.sessions.discard(self)
        for call in (self._keepalive, self._idle, self._abort, self._throttle):
            if call is not None and call.active():
                call.cancel()
        self._queue = []
        self.lost()

    # sending ------------------------------------------------------------------------

    def send(self, command: Command) -> None:
        if not self.closed:
            self.link.write(command.encode())

    def send_bytes(self, data: bytes) -> None:
        if not self.closed:
            self.link.write(data)

    def error(self, code: int, text: str, fatal: bool = False) -> None:
        """Send ERROR; when *fatal*, disconnect after it (the stream is not read any further)."""
        self.send(Error.of(code, text))
        if fatal:
            log.info("{service}: {peer} disconnected: {text}", service=self.server.name, peer=self.link.peer,
                     text=text)
            self.close()

    def close(self) -> None:
        """Close after what was sent is flushed; a peer that does not read is cut off after CLOSE_GRACE."""
        if not self.closed:
            self.connection.close()
            self.closed = True
            self._abort = self.server.clock.callLater(CLOSE_GRACE, self.link.abort)
            self.link.close()

    # events ----------------------------------------------------------------------------

    def _process(self, events: list[Command | Violation]) -> None:
        if self._queue:
            self._queue.extend(events)
            if len(self._queue) > MAX_HELD:
                self._queue = []
                self.error(ErrorCode.OVERLOAD, "too many commands waiting", fatal=True)
                return
            self._drain()
        else:
            self._run(events)

    def _drain(self) -> None:
        queue, self._queue = self._queue, []
        self._run(queue)

    def _run(self, events: list[Command | Violation]) -> None:
        """Handle *events* in order until one has to wait (token check, rate limit); queue the rest."""
        for index, event in enumerate(events):
            if self.closed:
                return
            if self._auth_pending or self._throttle is not None or (
                    not isinstance(event, Violation) and not self._take_token()):
                self._queue[:0] = events[index:]
                return
            if isinstance(event, Violation):
                self.error(event.code, event.text, event.fatal)
            elif isinstance(event, Auth):
                if not event.userid:
                    self._auth_done(False, event.userid)
                    continue
                self._auth_pending = True
                d = validate(self.server.validator, event.userid, event.token)
                d.addCallback(self._auth_done, event.userid)
                d.addErrback(self._unexpected)
            elif isinstance(event, KeepAlive):
                pass
            else:
                try:
                    self.handle(event)
                except Exception:
                    log.failure("{service}: error handling {event}", service=self.server.name, event=event)
                    self.error(ErrorCode.PROTOCOL, "internal error", fatal=True)

    def _take_token(self) -> bool:
        """Rate limit: True when the client may have one more command now; else pause reading until it may."""
        rate = self.server.settings.rate_limit
        if rate <= 0:
            return True
        now = self.server.clock.seconds()
        self._tokens = min(float(self.server.settings.rate_burst), self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.link.pause_reading()
        self._throttle = self.server.clock.callLater((1 - self._tokens) / rate, self._unthrottle)
        return False

    def _unthrottle(self) -> None:
        self._throttle = None
        if not self.closed:
            self.link.resume_reading()
            self._drain()

    def _auth_done(self, ok: bool, userid: int) -> None:
        self._auth_pending = False
        if self.closed:
            return
        if not ok:
            self._queue = []
            self.send(AuthResult(AUTH_REFUSED))
            log.info("{service}: {peer} refused: bad token for user {userid}", service=self.server.name,
                     peer=self.link.peer, userid=userid)
            self.close()
            return
        self.userid = userid
        self.send(AuthResult(AUTH_OK))
        self.authenticated()
        self._drain()

    def _unexpected(self, failure: Failure) -> None:
        log.failure("{service}: session failed", failure, service=self.server.name)
        self.close()

    def _send_keepalive(self) -> None:
        if self.closed:
            return
        self.send(KeepAlive())
        self._keepalive = self.server.clock.callLater(self.server.settings.keepalive_interval, self._send_keepalive)

    def _idle_out(self) -> None:
        if not self.closed:
            log.info("{service}: {peer} silent for {seconds} s, disconnected", service=self.server.name,
                     peer=self.link.peer, seconds=self.server.settings.idle_timeout)
            self.close()

    # for subclasses ------------------------------------------------------------------------

    def authenticated(self) -> None:
        """The token was accepted (:attr:`userid` is set)."""

    def handle(self, command: Command) -> None:  # pragma: no cover - abstract
        """A command after login (HELLO included), in order."""
        raise NotImplementedError

    def lost(self) -> None:
        """The connection is gone; forget the client."""


# ---------------------------------------------------------------------------
# TCP / TLS


@implementer(IPushProducer)
class StreamProtocol(protocol.Protocol):
    """A stream transport for one session (TCP, TLS, or any stream endpoint)."""

    def __init__(self, server: CommandServer) -> None:
        self.server = server
        self.session: CommandSession | None = None
        self.peer = "?"
        self._paused = False
        self._backlog = 0

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.peer = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self.session = self.server.make_session(self)
        self.session.connected()

    def dataReceived(self, data: bytes) -> None:
        if self.session is not None:
            self.session.data_received(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self.session is not None:
            self.session.connection_lost()

    # Link
    def write(self, data: bytes) -> None:
        if self._paused:
            self._backlog += len(data)
            if self._backlog > self.server.settings.max_send_buffer:
                log.info("{service}: {peer} does not read; dropped", service=self.server.name, peer=self.peer)
                self.abort()
                return
        self.transport.write(data)  # type: ignore[union-attr]

    def close(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def abort(self) -> None:
        self.transport.abortConnection()  # type: ignore[union-attr]

    def pause_reading(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def resume_reading(self) -> None:
        self.transport.resumeProducing()  # type: ignore[union-attr]

    # IPushProducer: the transport tells us when its buffer is full.
    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._backlog = 0

    def stopProducing(self) -> None:
        pass


class StreamFactory(protocol.Factory):
    noisy = False

    def __init__(self, server: CommandServer) -> None:
        self.server = server

    def buildProtocol(self, addr: Any) -> StreamProtocol:
        return StreamProtocol(self.server)


# ---------------------------------------------------------------------------
# WebSocket


@implementer(IPushProducer)
class _SendBackpressure:
    """The producer a WebSocket link registers on its TCP/TLS transport, to learn when the client stops reading."""

    def __init__(self) -> None:
        self.paused = False
        self.backlog = 0

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.backlog = 0

    def stopProducing(self) -> None:
        pass


class WebSocketLink(WebSocketServerProtocol):  # type: ignore[misc]
    """A WebSocket transport for one session: binary messages only.

    Like :class:`StreamProtocol`, a client that stops reading while more than
    ``max_send_buffer`` bytes are queued for it is dropped. The transport was
    twisted.web's (whose HTTP channel is still its producer): the link takes that
    place, the HTTP channel has nothing more to do on this connection.
    """

    session: CommandSession | None = None
    _backpressure: _SendBackpressure | None = None

    def onOpen(self) -> None:
        server: CommandServer = self.factory.command_server
        if self.transport is not None:
            backpressure = _SendBackpressure()
            try:
                if getattr(self.transport, "producer", None) is not None or \
                        getattr(self.transport, "_producer", None) is not None:
                    self.transport.unregisterProducer()  # type: ignore[attr-defined]
                self.transport.registerProducer(backpressure, True)  # type: ignore[attr-defined]
            except Exception:  # a transport that does not take a producer: no backpressure, as before
                log.failure("{service}: WebSocket send backpressure unavailable", service=server.name)
            else:
                self._backpressure = backpressure
        self.session = server.make_session(self)  # type: ignore[arg-type]  # autobahn's peer is a str once open
        self.session.connected()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is None:
            return
        if not isBinary:
            self.session.error(ErrorCode.NOT_BINARY, "commands travel in binary messages", fatal=True)
            return
        self.session.data_received(payload)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        if self.session is not None:
            self.session.connection_lost()

    # Link
    def write(self, data: bytes) -> None:
        if self.state != WebSocketServerProtocol.STATE_OPEN:
            return
        backpressure = self._backpressure
        if backpressure is not None and backpressure.paused:
            backpressure.backlog += len(data)
            if backpressure.backlog > self.factory.command_server.settings.max_send_buffer:
                server = self.factory.command_server
                log.info("{service}: {peer} does not read; dropped", service=server.name, peer=self.peer)
                self.abort()
                return
        self.sendMessage(data, isBinary=True)

    def close(self) -> None:
        if self.state == WebSocketServerProtocol.STATE_OPEN:
            self.sendClose(code=1000)

    def abort(self) -> None:
        self.dropConnection(abort=True)

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resume_reading(self) -> None:
        if self.transport is not None:
            self.transport.resumeProducing()  # type: ignore[attr-defined]
