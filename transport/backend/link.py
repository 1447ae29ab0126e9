"""The main instance's end of one backend connection: a thin Twisted protocol over the codec.

:class:`BackendLink` owns a :class:`~transport.backend.codec.FrameDecoder` and
hands every decoded :class:`~transport.backend.codec.Packet` to its *owner* (the
backend pool, through :class:`LinkOwner`). It works over any ``ITransport``:
a TCP connection accepted by :class:`BackendListenerFactory`, or a mux channel
carrying a remote backend (build a link with ``factory.buildProtocol(addr)`` and
call ``makeConnection(transport)``).

Hostile input: a frame announcing more than ``max_frame_size`` bytes closes the
link at once with an error naming the backend; a frame that does not parse is
logged (once per link and reason), counted and skipped, and the link stays up.
"""

from __future__ import annotations

from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet import protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from transport.backend.codec import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, FrameTooLarge, Packet, Payload, encode

log = Logger()


class LinkOwner(TypingProtocol):
    """What a :class:`BackendLink` reports to (the backend pool)."""

    def link_made(self, link: BackendLink) -> None: ...
    def packet_received(self, link: BackendLink, packet: Packet) -> None: ...
    def batch_done(self, link: BackendLink) -> None: ...
    def link_lost(self, link: BackendLink, reason: str) -> None: ...


class LinkCounters:
    """Totals over every link (served by the admin endpoint)."""

    frames_in = 0
    frames_out = 0
    frames_skipped = 0
    oversized = 0


COUNTERS = LinkCounters()


class BackendLink(protocol.Protocol):
    """One backend connection."""

    def __init__(self, owner: LinkOwner, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.owner = owner
        self.decoder = FrameDecoder(max_frame_size)
        #: "backend-N" once the pool knows which backend this is, else the peer address.
        self.name = "backend-?"
        #: Set by whoever attaches a link that is known not to come from a process this
        #: pool spawned (a mux channel from a backend host): never matched to a spawn.
        self.remote = False
        #: Set by the pool: the Backend this link belongs to.
        self.backend: Any = None
        self.closed = False
        self.close_reason = ""
        self._reported_errors: set[str] = set()
        # what the pool learns before it knows which backend this is
        self.pongs = 0
        self.stats_pid: int | None = None
        self.early: list[Packet] = []
        self.pinged_again = False
        self.bind_timer: Any = None
        self.stats_seen = False
        #: frames this link carried (per backend, for the metrics)
        self.frames_in = 0
        self.frames_out = 0

    def connectionMade(self) -> None:
        peer = self.transport.getPeer() if self.transport is not None else None
        host = getattr(peer, "host", None)
        self.name = f"backend@{host}:{getattr(peer, 'port', '')}" if host else f"backend@{peer}"
        self.owner.link_made(self)

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        decoder = self.decoder
        skipped = decoder.skipped
        try:
            packets = decoder.feed(data)
        except FrameTooLarge as e:
            COUNTERS.oversized += 1
            log.error("{name}: {error}; closing the link", name=self.name, error=str(e))
            self.close(f"oversized frame ({e.length} bytes)")
            return
        if decoder.skipped != skipped:
            COUNTERS.frames_skipped += decoder.skipped - skipped
            reason = decoder.last_error or "unparsable frame"
            if reason not in self._reported_errors and len(self._reported_errors) < 16:
                self._reported_errors.add(reason)
                log.warn("{name}: skipped a frame that does not parse ({reason}); further ones are counted",
                         name=self.name, reason=reason)
        COUNTERS.frames_in += len(packets)
        self.frames_in += len(packets)
        owner = self.owner
        for packet in packets:
            if self.closed:
                return
            owner.packet_received(self, packet)
        if not self.closed:
            owner.batch_done(self)

    def send(self, type_: int, payload: Payload | bytes = None) -> None:
        """Write one frame (nothing happens once the link is closed)."""
        if self.closed or self.transport is None:
            return
        COUNTERS.frames_out += 1
        self.frames_out += 1
        self.transport.write(encode(type_, payload))

    def close(self, reason: str) -> None:
        """Close the link now (unsent data is discarded)."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if self.transport is not None:
            abort = getattr(self.transport, "abortConnection", None)
            if abort is not None:
                abort()
            else:
                self.transport.loseConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        why = self.close_reason or reason.getErrorMessage()
        self.closed = True
        self.owner.link_lost(self, why)


class BackendListenerFactory(protocol.ServerFactory):
    """Builds a :class:`BackendLink` for each backend that connects.

    Public so that other transports (a mux channel carrying a remote backend)
    can attach links: ``link = factory.buildProtocol(addr); link.makeConnection(transport)``.
    """

    def __init__(self, owner: LinkOwner, max_frame_size: int | Any = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.owner = owner
        #: an int, or a callable returning the current limit (reloadable)
        self.max_frame_size = max_frame_size

    def buildProtocol(self, addr: Any) -> BackendLink:
        limit = self.max_frame_size() if callable(self.max_frame_size) else self.max_frame_size
        link = BackendLink(self.owner, limit)
        link.factory = self
        return link
