"""Real WebSocket peers for the WebSocket frontend's tests.

* :func:`start_server` runs the frontend in this process (the test's reactor) on a
  free loopback port, with a real database and the real autobahn resource.
* :class:`WSClient` is a real autobahn (Twisted) WebSocket client that queues what
  it receives; :meth:`WSClient.expect` waits (with a timeout, on the reactor) for
  the next packet, optionally skipping packets of other commands.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, endpoints, reactor
from twisted.internet.interfaces import IListeningPort
from twisted.web import server

from transport import config as configuration
from transport.frontends.websocket import service as ws_service
from transport.storage.database import Database, open_sqlite
from transport.web.site import WebRoot

DEFAULT_TIMEOUT = 20.0


@dataclass
class Context:
    config: Any
    reactor: Any
    database: Database
    web_root: WebRoot
    gateway: Any = None
    registry: dict[str, Any] | None = None


@dataclass
class RunningServer:
    port: int
    service: Any
    listening: IListeningPort
    database: Database
    context: Context

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def chat(self) -> Any:
        return self.service.chat

    @defer.inlineCallbacks
    def stop(self, close_database: bool = True) -> Any:
        yield defer.maybeDeferred(self.service.stopService)
        yield defer.maybeDeferred(self.listening.stopListening)
        if close_database:
            yield self.database.close()


@defer.inlineCallbacks
def start_server(state_dir: Path, overrides: list[str] | tuple[str, ...] = (), database: Database | None = None,
                 gateway: Any = None) -> Any:
    """The frontend on a free port, its tables migrated; fires with a :class:`RunningServer`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    config = configuration.load_text("", None, [f"service.state_dir={state_dir}", "websocket.enabled=true",
                                                *overrides])
    if database is None:
        database = open_sqlite(state_dir / "ws.sqlite3")
        database.start()
    root = WebRoot()
    context = Context(config, reactor, database, root, gateway, {})
    svc: Any = ws_service.make_service(context)
    svc.startService()
    yield svc.chat.store.migrate()  # the service migrates too; wait until it is done
    while not svc.chat.ready:
        d: defer.Deferred[None] = defer.Deferred()
        reactor.callLater(0.01, d.callback, None)
        yield d
    endpoint = endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1")
    listening = yield endpoint.listen(server.Site(root))
    return RunningServer(listening.getHost().port, svc, listening, database, context)


class _Protocol(WebSocketClientProtocol):
    client: WSClient

    def onOpen(self) -> None:
        self.client._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.client._received(json.loads(payload.decode("utf-8")))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.client._closed_with(code, reason)


class WSClient:
    """A WebSocket client that queues packets; see the module docstring."""

    def __init__(self) -> None:
        self.packets: deque[dict[str, Any]] = deque()
        self._waiters: list[defer.Deferred[None]] = []
        self.protocol: _Protocol | None = None
        self.opened: defer.Deferred[WSClient] = defer.Deferred()
        self.closed: defer.Deferred[tuple[int | None, str | None]] = defer.Deferred()
        self.close_code: int | None = None
        self.is_closed = False

    @classmethod
    def connect(cls, url: str, max_size: int = 0) -> defer.Deferred[WSClient]:
        client = cls()
        factory = WebSocketClientFactory(url)
        if max_size:
            factory.setProtocolOptions(maxMessagePayloadSize=max_size, maxFramePayloadSize=max_size)

        def build() -> _Protocol:
            proto = _Protocol()
            proto.factory = factory
            proto.client = client
            return proto
        factory.protocol = build  # type: ignore[assignment]
        host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
        endpoint = endpoints.TCP4ClientEndpoint(reactor, host, int(port), timeout=10)
        d = endpoint.connect(factory)
        d.addErrback(client.opened.errback)
        return client.opened

    # events from the protocol
    def _opened(self, proto: _Protocol) -> None:
        self.protocol = proto
        self.opened.callback(self)

    def _received(self, packet: dict[str, Any]) -> None:
        self.packets.append(packet)
        self._wake()

    def _closed_with(self, code: int | None, reason: str | None) -> None:
        self.is_closed = True
        self.close_code = code
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"closed before opening: {code} {reason}"))
        if not self.closed.called:
            self.closed.callback((code, reason))
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.callback(None)

    # API
    def send(self, packet: dict[str, Any]) -> None:
        self.send_raw(json.dumps(packet))

    def send_raw(self, data: str | bytes, binary: bool = False) -> None:
        assert self.protocol is not None
        payload = data.encode("utf-8") if isinstance(data, str) else data
        self.protocol.sendMessage(payload, isBinary=binary)

    def close(self) -> defer.Deferred[tuple[int | None, str | None]]:
        if self.protocol is not None and not self.is_closed:
            self.protocol.sendClose(1000)
        return self.closed

    @defer.inlineCallbacks
    def expect(self, cmd: str | None = None, timeout: float = DEFAULT_TIMEOUT, skip: bool = True) -> Any:
        """The next packet (of command *cmd*; others are dropped when *skip*)."""
        deadline = reactor.seconds() + timeout
        while True:
            while self.packets:
                packet = self.packets.popleft()
                if cmd is None or packet.get("cmd") == cmd:
                    return packet
                if not skip:
                    raise AssertionError(f"expected {cmd!r}, got {packet!r}")
            if self.is_closed:
                raise AssertionError(f"connection closed ({self.close_code}) while waiting for {cmd!r}")
            remaining = deadline - reactor.seconds()
            if remaining <= 0:
                raise AssertionError(f"no {cmd or 'packet'!r} within {timeout} s")
            waiter: defer.Deferred[None] = defer.Deferred()
            self._waiters.append(waiter)
            timer = reactor.callLater(remaining, lambda w=waiter: w.called or w.callback(None))
            yield waiter
            if timer.active():
                timer.cancel()

    @defer.inlineCallbacks
    def quiet(self, duration: float = 0.3) -> Any:
        """Packets that arrive within *duration* seconds (to check that nothing else came)."""
        d: defer.Deferred[None] = defer.Deferred()
        reactor.callLater(duration, d.callback, None)
        yield d
        out = list(self.packets)
        self.packets.clear()
        return out

    @defer.inlineCallbacks
    def request(self, packet: dict[str, Any], cmd: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Send *packet* and wait for the answer (by default a packet of the same command or an error)."""
        self.send(packet)
        wanted = cmd or packet["cmd"]
        while True:
            answer = yield self.expect(timeout=timeout)
            if answer.get("cmd") in (wanted, "error", "auth_error", "rate_limit"):
                return answer


@defer.inlineCallbacks
def connected_user(url: str, username: str, password: str = "secret-pw", register: bool = True) -> Any:
    """A client registered (or logged in) as *username*, past ``ready``."""
    client = yield WSClient.connect(url)
    yield client.expect("handshake")
    client.send({"cmd": "register" if register else "login", "username": username, "password": password})
    answer = yield client.expect()
    while answer["cmd"] == "ping":  # the server's periodic ping may come first
        answer = yield client.expect()
    assert answer["cmd"] == "auth_success", answer
    ready = yield client.expect("ready")
    client.ready = ready
    return client
