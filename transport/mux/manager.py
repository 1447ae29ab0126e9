"""``ConnectionManager``: channels to devices, one TLS connection per device.

    manager = ConnectionManager(DeviceIdentity.load("state/mux"))
    manager.on_channel_request(lambda peer, name: name.startswith("file://"))
    manager.on_channel_ready(lambda channel: channel.attach(FileReceiver()))
    yield manager.listen("tcp:7400")

    channel = yield manager.connect_device(bob_id, "tcp:bob.example:7400", "file://one")
    channel.attach(FileSender(path))

The first ``connect_device`` to a device dials it over TLS (mutual
certificates; the peer's device id must be the one asked for) and opens a
channel; later calls to the same device reuse that connection and cost one
request/answer exchange. Connections the device made to us count as well.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cryptography import x509
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IListeningPort, IStreamClientEndpoint, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from transport.mux.channel import ChannelSocket, attach_factory
from transport.mux.identity import DeviceIdentity, TrustPolicy, client_creator, normalize_device_id, server_creator
from transport.mux.protocol import (
    DEFAULT_BEACON_INTERVAL,
    DEFAULT_BEACON_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_BUFFERED,
    MultiplexedSocket,
)

RequestCallback = Callable[[str, str], "bool | defer.Deferred[bool]"]
ReadyCallback = Callable[[ChannelSocket], None]


class _SocketFactory(Factory):
    noisy = False

    def __init__(self, manager: ConnectionManager, is_client: bool) -> None:
        self.manager = manager
        self.is_client = is_client

    def buildProtocol(self, addr: Any) -> MultiplexedSocket:
        return self.manager._new_socket(self.is_client)


class ConnectionManager:
    """Connections to devices and the channels over them (see the module docstring).

    ``account_ca``: when set, peers' certificates must chain to it.
    ``trusted_devices``: when set, only these device ids may connect to us
    (outgoing connections are always pinned to the device dialled).
    ``clock``: timers (beacons, the handshake timeout); defaults to the reactor.
    ``handshake_timeout``: seconds a new connection gets to complete its TLS handshake.
    """

    log = Logger()

    def __init__(self, identity: DeviceIdentity, *, reactor: Any = None, clock: Any = None,
                 account_ca: x509.Certificate | None = None,
                 trusted_devices: Iterable[str] | None = None, beacon_interval: float = DEFAULT_BEACON_INTERVAL,
                 beacon_timeout: float = DEFAULT_BEACON_TIMEOUT, max_buffered: int = DEFAULT_MAX_BUFFERED,
                 handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.identity = identity
        self.device_id = identity.device_id
        self.reactor = reactor
        #: timers (beacons, pull producers); the reactor unless a test injects a task.Clock
        self.clock = clock if clock is not None else reactor
        self.account_ca = account_ca
        self.trusted_devices = (frozenset(normalize_device_id(d) for d in trusted_devices)
                                if trusted_devices is not None else None)
        self.beacon_interval = beacon_interval
        self.beacon_timeout = beacon_timeout
        self.max_buffered = max_buffered
        self.handshake_timeout = handshake_timeout
        self._request_cb: RequestCallback | None = None
        self._ready_cb: ReadyCallback | None = None
        self._sockets: set[MultiplexedSocket] = set()
        self._by_device: dict[str, MultiplexedSocket] = {}
        self._connecting: dict[str, list[defer.Deferred[MultiplexedSocket]]] = {}
        #: totals since start (see :meth:`counters`)
        self.totals = {"connections": 0, "refused": 0, "closed_with_error": 0, "channels_opened": 0,
                       "bytes_in": 0, "bytes_out": 0, "unknown_frames": 0}

    # --- callbacks -------------------------------------------------------------

    def on_channel_request(self, callback: RequestCallback) -> None:
        """``callback(peer_device_id, name)`` decides incoming requests (bool or Deferred[bool]).

        Without a callback every incoming request is declined.
        """
        self._request_cb = callback

    def on_channel_ready(self, callback: ReadyCallback) -> None:
        """``callback(channel)`` receives each channel the peer opened and we accepted."""
        self._ready_cb = callback

    # --- listening and connecting -------------------------------------------------

    def server_factory(self) -> TLSMemoryBIOFactory:
        """A TLS server factory for incoming device connections (for an endpoint's ``listen``)."""
        policy = TrustPolicy(account_ca=self.account_ca, trusted_devices=self.trusted_devices)
        return TLSMemoryBIOFactory(server_creator(self.identity, policy), False, _SocketFactory(self, False),
                                   clock=self.reactor)

    def listen(self, endpoint: str | IStreamServerEndpoint) -> defer.Deferred[IListeningPort]:
        """Accept device connections on *endpoint* (an endpoint string such as ``tcp:7400``)."""
        server: IStreamServerEndpoint = (endpoints.serverFromString(self.reactor, endpoint)
                                         if isinstance(endpoint, str) else endpoint)
        return server.listen(self.server_factory())

    def connection_to(self, device_id: str) -> MultiplexedSocket | None:
        """The live connection to *device_id*, if any."""
        return self._by_device.get(normalize_device_id(device_id))

    def connect(self, device_id: str, endpoint: str | IStreamClientEndpoint, *,
                hostname: str | None = None) -> defer.Deferred[MultiplexedSocket]:
        """The connection to *device_id*: the existing one, or a new one dialled at *endpoint*.

        The peer must prove it is *device_id*; *hostname*, when given, must also
        be named by its certificate (service_identity) and is sent as SNI.
        """
        device = normalize_device_id(device_id)
        existing = self._by_device.get(device)
        if existing is not None and existing.is_connected:
            return defer.succeed(existing)
        d: defer.Deferred[MultiplexedSocket] = defer.Deferred()
        waiting = self._connecting.get(device)
        if waiting is not None:
            waiting.append(d)
            return d
        self._connecting[device] = [d]
        client: IStreamClientEndpoint = (endpoints.clientFromString(self.reactor, endpoint)
                                         if isinstance(endpoint, str) else endpoint)
        policy = TrustPolicy(account_ca=self.account_ca, expected_device=device, hostname=hostname)
        factory = TLSMemoryBIOFactory(client_creator(self.identity, policy), True, _SocketFactory(self, True),
                                      clock=self.reactor)
        dialled: defer.Deferred[Any] = client.connect(factory)

        def connected(tls: Any) -> defer.Deferred[MultiplexedSocket]:
            return tls.wrappedProtocol.handshake_done  # type: ignore[no-any-return]

        dialled.addCallback(connected)

        def done(result: Any) -> None:
            for w in self._connecting.pop(device, []):
                w.callback(result) if isinstance(result, MultiplexedSocket) else w.errback(result)

        dialled.addBoth(done)
        return d

    def connect_device(self, device_id: str, endpoint: str | IStreamClientEndpoint, name: str, *,
                       hostname: str | None = None) -> defer.Deferred[ChannelSocket]:
        """A new channel *name* to *device_id*, over the existing connection or a new one."""
        d: defer.Deferred[Any] = self.connect(device_id, endpoint, hostname=hostname)
        return d.addCallback(lambda sock: sock.open_channel(name))

    def connect_protocol(self, device_id: str, endpoint: str | IStreamClientEndpoint, name: str, factory: Factory,
                         *, hostname: str | None = None) -> defer.Deferred[Any]:
        """Open a channel and run a protocol from *factory* over it; fires with the protocol."""
        d = self.connect_device(device_id, endpoint, name, hostname=hostname)
        return d.addCallback(lambda channel: attach_factory(channel, factory))

    # --- closing and listing ----------------------------------------------------------

    def close_connections_with(self, device_id: str) -> defer.Deferred[None]:
        """Close every connection with *device_id* (their channels end with ConnectionLost)."""
        device = normalize_device_id(device_id)
        closing = [s.closed for s in list(self._sockets) if s.peer_device == device and s.is_connected]
        for s in list(self._sockets):
            if s.peer_device == device:
                s.close()
        return defer.gatherResults(closing).addCallback(lambda _: None)

    def close_all(self) -> defer.Deferred[None]:
        closing = [s.closed for s in list(self._sockets) if s.is_connected]
        for s in list(self._sockets):
            s.close()
        return defer.gatherResults(closing).addCallback(lambda _: None)

    def send_beacons(self) -> defer.Deferred[list[bool]]:
        """Check every connection is alive (call after a connectivity change).

        Fires with one bool per connection: answered, or timed out (that connection is then closed).
        """
        return defer.gatherResults([s.send_beacon() for s in list(self._sockets) if s.is_connected])

    def counters(self) -> dict[str, float]:
        """Numbers for the metrics endpoint (``transport_part_value{part="mux",name=...}``)."""
        live = [s for s in self._sockets if s.is_connected]
        out: dict[str, float] = {k: float(v) for k, v in self.totals.items()}
        out["bytes_in"] += sum(s.bytes_in for s in live)
        out["bytes_out"] += sum(s.bytes_out for s in live)
        out["unknown_frames"] += sum(s.mux.unknown_frames for s in live)
        out["connections_open"] = float(len(live))
        out["channels_open"] = float(sum(len(s.channels) for s in live))
        return out

    def connections(self) -> list[dict[str, Any]]:
        """Every live connection with its channels (id, name, bytes in/out, created)."""
        return [s.info() for s in sorted(self._sockets, key=lambda s: s.created) if s.is_connected]

    # --- internals -------------------------------------------------------------------

    def _new_socket(self, is_client: bool) -> MultiplexedSocket:
        sock = MultiplexedSocket(
            is_client, self.clock, reactor=self.reactor, decide=self._decide, ready=self._ready, local_device=self.device_id,
            beacon_interval=self.beacon_interval, beacon_timeout=self.beacon_timeout, max_buffered=self.max_buffered,
            handshake_timeout=self.handshake_timeout,
        )
        self._sockets.add(sock)

        def verified(s: MultiplexedSocket) -> MultiplexedSocket:
            assert s.peer_device is not None
            self.totals["connections"] += 1
            current = self._by_device.get(s.peer_device)
            if current is None or not current.is_connected:
                self._by_device[s.peer_device] = s
            self.log.info("mux: connected to device {peer} ({role})", peer=s.peer_device,
                          role="outgoing" if is_client else "incoming")
            return s

        def refused(f: Any) -> Any:
            self.totals["refused"] += 1
            self.log.warn("mux: connection refused or lost before verification: {e}", e=f.getErrorMessage())
            return f

        sock.handshake_done.addCallbacks(verified, refused)
        if not is_client:
            sock.handshake_done.addErrback(lambda f: None)  # nobody waits on an incoming handshake

        def gone(result: Any) -> Any:
            self._sockets.discard(sock)
            if sock.peer_device is not None:
                self.totals["bytes_in"] += sock.bytes_in
                self.totals["bytes_out"] += sock.bytes_out
                self.totals["unknown_frames"] += sock.mux.unknown_frames
                self.totals["channels_opened"] += sock.channels_opened
                if not sock.lost_cleanly:
                    self.totals["closed_with_error"] += 1
            if sock.peer_device is not None and self._by_device.get(sock.peer_device) is sock:
                del self._by_device[sock.peer_device]
                for other in self._sockets:  # another connection to the same device takes over
                    if other.peer_device == sock.peer_device and other.is_connected:
                        self._by_device[sock.peer_device] = other
                        break
            return result  # later waiters on ``closed`` still get the cause

        sock.closed.addBoth(gone)
        return sock

    def _decide(self, sock: MultiplexedSocket, name: str) -> bool | defer.Deferred[bool]:
        if self._request_cb is None or sock.peer_device is None:
            return False
        return self._request_cb(sock.peer_device, name)

    def _ready(self, channel: ChannelSocket) -> None:
        if self._ready_cb is None:
            channel.loseConnection()
            return
        self._ready_cb(channel)
