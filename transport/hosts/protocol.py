"""The Twisted adapter: one TLS connection carrying host packets, for servers and clients alike.

:class:`PeerConnection` is thin: it frames bytes with :class:`PacketDecoder`,
learns the peer's online id from its TLS certificate, refuses packets whose
source id is not that identity, and hands packets to a :class:`PacketHandler`
(the network host, a user host, or the client API). A malformed or forged
packet closes that one connection and is logged once; nobody else notices.

Listening and connecting use endpoint strings for the stream underneath
(``tcp:4620:interface=127.0.0.1``, ``unix:...``); TLS with the local identity
is layered on top by :func:`listen` and :func:`connect`.
"""

from __future__ import annotations

from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IHandshakeListener, IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from transport.hosts.identity import Identity, peer_online_id
from transport.hosts.packets import Announce, MalformedPacket, OnlineId, Packet, PacketDecoder, encode

log = Logger()

#: Packets a peer may have waiting for its handler before it counts as flooding.
MAX_QUEUED_PACKETS = 256


class PacketHandler(TypingProtocol):
    """What a :class:`PeerConnection` reports to."""

    def connection_made(self, conn: PeerConnection) -> None: ...

    def packet_received(self, conn: PeerConnection, packet: Packet) -> defer.Deferred[None] | None: ...

    def connection_lost(self, conn: PeerConnection) -> None: ...


@implementer(IHandshakeListener)
class PeerConnection(Protocol):
    """One peer over TLS.

    After the handshake each side sends an :class:`Announce` (name, motto,
    url); the peer's is kept in :attr:`peer_announce`. Packets are handled one
    at a time, in order: a handler may return a Deferred, and the next packet
    waits for it.
    """

    def __init__(self, handler: PacketHandler, identity: Identity, announce: Announce,
                 expected_peer: OnlineId | None = None, reactor: Any = None,
                 handshake_timeout: float = 30.0) -> None:
        self.handler = handler
        self.identity = identity
        self.local_id = identity.online_id
        self._announce = announce
        self.expected_peer = expected_peer
        self.peer_id: OnlineId | None = None
        self.peer_announce: Announce | None = None
        self._decoder = PacketDecoder()
        self._queue: defer.Deferred[None] = defer.succeed(None)
        self._queued = 0
        self._closed = False
        self._reactor = reactor
        self._handshake_timeout = handshake_timeout
        self._timeout_call: Any = None
        self.ready: defer.Deferred[PeerConnection] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()
        #: Free for the handler's per-connection state.
        self.state: dict[str, Any] = {}
        #: Set by the factory when over its connection limit.
        self.refuse = False
        #: Whether someone waits on :attr:`ready` (a client): servers' failures there are not errors.
        self.is_client = False

    # twisted.internet.protocol.Protocol ------------------------------------------

    def connectionMade(self) -> None:
        if self.refuse:
            log.warn("hosts: refusing {peer}: too many connections", peer=self._peer_text())
            self.abort()
            return
        if self._reactor is not None:
            self._timeout_call = self._reactor.callLater(self._handshake_timeout, self._handshake_timed_out)

    def _handshake_timed_out(self) -> None:
        self._timeout_call = None
        log.info("hosts: peer {peer} did not complete the TLS handshake in time", peer=self._peer_text())
        self.abort()

    def handshakeCompleted(self) -> None:
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.cancel()
        self._timeout_call = None
        self.peer_id = peer_online_id(self.transport)
        if self.peer_id is None:
            log.info("hosts: peer without a certificate; closing")
            self.abort()
            return
        if self.expected_peer and self.peer_id != self.expected_peer:
            log.warn("hosts: peer is {peer}, expected {expected}; closing", peer=self.peer_id,
                     expected=self.expected_peer)
            if not self.ready.called:
                self.ready.errback(WrongPeer(f"peer is {self.peer_id}, expected {self.expected_peer}"))
            self.peer_id = None  # never handed to the handler
            self.abort()
            return
        self.send(self._announce)
        self.handler.connection_made(self)
        if not self.ready.called:
            self.ready.callback(self)

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            packets = self._decoder.receive_data(data)
        except MalformedPacket as e:
            log.warn("hosts: malformed packet from {peer}: {why}; closing", peer=self._peer_text(), why=str(e))
            self.abort()
            return
        for packet in packets:
            # A server takes the peer's identity from its certificate; a client
            # receives relayed packets (src = the original sender) from its host.
            if self.peer_id is None or (not self.is_client and packet.src != self.peer_id):
                log.warn("hosts: packet {type} from {peer} claims source {src}; closing",
                         type=type(packet).__name__, peer=self._peer_text(), src=packet.src)
                self.abort()
                return
            if isinstance(packet, Announce) and self.peer_announce is None:
                self.peer_announce = packet
            self._queued += 1
            if self._queued > MAX_QUEUED_PACKETS:
                log.warn("hosts: {peer} sends faster than it is served; closing", peer=self._peer_text())
                self.abort()
                return
            self._queue.addCallback(self._dispatch, packet)

    def _dispatch(self, _: object, packet: Packet) -> defer.Deferred[None] | None:
        self._queued -= 1
        if self._closed:
            return None
        try:
            result = self.handler.packet_received(self, packet)
        except Exception:
            log.failure("hosts: handling {type} from {peer}", type=type(packet).__name__, peer=self._peer_text())
            self.abort()
            return None
        if isinstance(result, defer.Deferred):
            return result.addErrback(self._handler_failed, packet)
        return None

    def _handler_failed(self, failure: Failure, packet: Packet) -> None:
        log.failure("hosts: handling {type} from {peer}", failure, type=type(packet).__name__,
                    peer=self._peer_text())
        self.abort()

    def connectionLost(self, reason: Failure | None = None) -> None:
        if reason is None:
            reason = Failure(ConnectionError("connection lost"))
        self._closed = True
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.cancel()
        if not self.ready.called:
            if self.is_client:
                self.ready.errback(reason)
            else:
                self.ready.callback(self)
        if self.peer_id is not None:
            self.handler.connection_lost(self)
        self.lost.callback(None)

    # ----------------------------------------------------------------------------

    @property
    def connected_and_ready(self) -> bool:
        return not self._closed and self.peer_id is not None

    def send(self, packet: Packet) -> None:
        if self._closed or self.transport is None:
            return
        self.transport.write(encode(packet))

    def send_encoded(self, data: bytes) -> None:
        """Send an already encoded packet (see :func:`transport.hosts.packets.readdress`)."""
        if self._closed or self.transport is None:
            return
        self.transport.write(data)

    def close(self) -> None:
        if not self._closed and self.transport is not None:
            self.transport.loseConnection()

    def abort(self) -> None:
        self._closed = True
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _peer_text(self) -> str:
        peer = self.transport.getPeer() if self.transport is not None else None
        ident = self.peer_id.hex() if self.peer_id else "?"
        return f"{ident}@{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"


class WrongPeer(Exception):
    """The server's online id is not the one expected."""


class PeerFactory(Factory):
    """Builds :class:`PeerConnection` objects for one handler and identity."""

    noisy = False

    def __init__(self, handler: PacketHandler, identity: Identity, announce: Announce,
                 expected_peer: OnlineId | None = None, reactor: Any = None,
                 handshake_timeout: float = 30.0, max_connections: int = 0) -> None:
        self.handler = handler
        self.identity = identity
        self.announce = announce
        self.expected_peer = expected_peer
        self.reactor = reactor
        self.handshake_timeout = handshake_timeout
        self.max_connections = max_connections
        self.connections: set[PeerConnection] = set()
        self.is_client = False

    def buildProtocol(self, addr: Any) -> PeerConnection:
        conn = PeerConnection(self.handler, self.identity, self.announce, self.expected_peer, self.reactor,
                              self.handshake_timeout)
        conn.is_client = self.is_client
        conn.refuse = bool(self.max_connections and len(self.connections) >= self.max_connections)
        conn.factory = self
        self.connections.add(conn)
        conn.lost.addCallback(lambda _: self.connections.discard(conn))
        return conn


def listen(reactor: Any, endpoint: str, factory: PeerFactory) -> defer.Deferred[IListeningPort]:
    """Listen on the stream *endpoint* with TLS (the factory's identity) on top."""
    tls = TLSMemoryBIOFactory(factory.identity.server_creator(), False, factory)
    return endpoints.serverFromString(reactor, endpoint).listen(tls)


def connect(reactor: Any, endpoint: str, handler: PacketHandler, identity: Identity, announce: Announce,
            expected_peer: OnlineId | None = None, timeout: float = 30.0) -> defer.Deferred[PeerConnection]:
    """Connect to the stream *endpoint* with TLS; fires with the connection once both sides announced ours."""
    factory = PeerFactory(handler, identity, announce, expected_peer, reactor, timeout)
    factory.is_client = True
    tls_endpoint = endpoints.wrapClientTLS(identity.client_creator(), endpoints.clientFromString(reactor, endpoint))
    d: defer.Deferred[Any] = tls_endpoint.connect(factory)

    def connected(tls_protocol: Any) -> defer.Deferred[PeerConnection]:
        conn: PeerConnection = getattr(tls_protocol, "wrappedProtocol", tls_protocol)
        return conn.ready

    d.addCallback(connected)
    return d


def url_to_endpoint(url: str) -> str:
    """``ptop://HOST:PORT`` (the announced url) as a client endpoint string."""
    if not url.startswith("ptop://"):
        raise ValueError(f"not a host url (ptop://HOST:PORT): {url!r}")
    rest = url[len("ptop://"):].split("/", 1)[0]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"not a host url (ptop://HOST:PORT): {url!r}")
    host = host.strip("[]")
    return f"tcp:host={host.replace(':', chr(92) + ':')}:port={port}"
