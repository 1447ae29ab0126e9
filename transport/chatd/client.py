"""Python client API for chatd (Twisted), over TCP/TLS endpoint strings or ``ws://`` / ``wss://`` URLs.

Example (inside a running reactor)::

    client = await ChatdClient.connect(reactor, "tcp:host=127.0.0.1:port=7080", userid, token)
    print(client.client_id)
    if await client.join(chatid) == JOIN_OK:
        client.send_rtmsg(chatid, msgtype=1, data=b"hello")   # to everyone in the room
        message = await client.next(RtMsgDelivery)
    client.close()

Everything the server sends is queued per command class; :meth:`CommandClient.next`
takes the oldest one of a class (waiting for it), :meth:`CommandClient.pending`
counts them. KEEPALIVE is answered automatically (and queued too).
"""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, protocol
from twisted.internet.endpoints import clientFromString
from twisted.python.failure import Failure

from transport.chatd.codec import (
    JOIN_OK,
    ClientId,
    Hello,
    InCall,
    InCallFlag,
    Join,
    JoinResult,
    Leave,
    Left,
    RtMsg,
    RtMsgDelivery,
    client_connection,
)
from transport.chatd.wire import (
    AUTH_OK,
    Auth,
    AuthResult,
    ClientConnection,
    Command,
    Error,
    KeepAlive,
    Oversized,
    UnknownOpcode,
)

C = TypeVar("C", bound=Command)

DEFAULT_TIMEOUT = 30.0


class AuthenticationFailed(Exception):
    """The server refused the token."""


class ConnectionClosed(Exception):
    """The connection closed while waiting for the server."""


class CommandClient:
    """The part of a chatd or statusd client that does not depend on the protocol."""

    def __init__(self, reactor: Any, connection: ClientConnection, answer_keepalive: bool = True) -> None:
        self.reactor = reactor
        self.connection = connection
        self.answer_keepalive = answer_keepalive
        self.link: Any = None
        self.is_closed = False
        self.closed: defer.Deferred[None] = defer.Deferred()
        self._queues: dict[type, defer.DeferredQueue[Any]] = {}
        self.keepalives = 0

    # transport side ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        for item in self.connection.receive_data(data):
            if isinstance(item, UnknownOpcode | Oversized):
                self.close()
                return
            if isinstance(item, KeepAlive):
                self.keepalives += 1
                if self.answer_keepalive:
                    self.send(KeepAlive())
            self.dispatch(item)

    def connection_lost(self) -> None:
        if self.is_closed and self.closed.called:
            return
        self.is_closed = True
        for queue in self._queues.values():
            for waiter in list(queue.waiting):
                queue.waiting.remove(waiter)
                waiter.errback(ConnectionClosed())
        if not self.closed.called:
            self.closed.callback(None)

    # API ------------------------------------------------------------------------------------

    def dispatch(self, command: Command) -> None:
        self.queue(type(command)).put(command)

    def queue(self, cls: type) -> defer.DeferredQueue[Any]:
        q = self._queues.get(cls)
        if q is None:
            q = self._queues[cls] = defer.DeferredQueue()
        return q

    def next(self, cls: type[C], timeout: float | None = DEFAULT_TIMEOUT) -> defer.Deferred[C]:
        """The oldest received command of class *cls* (waiting up to *timeout* seconds)."""
        q = self.queue(cls)
        if self.is_closed and not q.pending:
            return defer.fail(ConnectionClosed())
        d: defer.Deferred[C] = q.get()
        if timeout is not None and not d.called:
            d.addTimeout(timeout, self.reactor)
        return d

    def pending(self, cls: type) -> int:
        """How many commands of class *cls* are queued, unread."""
        q = self._queues.get(cls)
        return len(q.pending) if q is not None else 0

    def drain(self, cls: type[C]) -> list[C]:
        """Take every queued command of class *cls*."""
        q = self._queues.get(cls)
        if q is None:
            return []
        items, q.pending = list(q.pending), []
        return items

    def send(self, command: Command) -> None:
        self.send_bytes(self.connection.send(command))

    def send_bytes(self, data: bytes) -> None:
        if not self.is_closed and self.link is not None:
            self.link.write(data)

    def close(self) -> defer.Deferred[None]:
        """Close the connection; the result fires once it is closed."""
        if not self.is_closed and self.link is not None:
            self.is_closed = True
            self.link.close()
        d: defer.Deferred[None] = defer.Deferred()

        def fire(result: Any) -> Any:
            d.callback(None)
            return result

        self.closed.addBoth(fire)
        return d

    async def _login(self, auth: Auth, hello: Command, timeout: float | None) -> None:
        self.send_bytes(auth.encode() + hello.encode())
        try:
            result = await self.next(AuthResult, timeout)
        except ConnectionClosed:
            raise AuthenticationFailed("the server closed the connection before answering AUTH") from None
        if result.result != AUTH_OK:
            self.close()
            raise AuthenticationFailed(f"AUTH refused (result {result.result})")


class ChatdClient(CommandClient):
    """A chatd client: login, rooms, RTMSG, IN_CALL. :attr:`in_call` holds the last flag seen per room."""

    def __init__(self, reactor: Any, answer_keepalive: bool = True) -> None:
        super().__init__(reactor, client_connection(), answer_keepalive)
        self.userid = 0
        self.client_id = 0
        self.in_call: dict[int, int] = {}

    @classmethod
    async def connect(cls, reactor: Any, address: str, userid: int, token: bytes, client_version: int = 1,
                      timeout: float | None = DEFAULT_TIMEOUT, path: str = "/chatd") -> ChatdClient:
        """Connect to *address* (endpoint string or ws URL), AUTH, HELLO; :attr:`client_id` is then set."""
        client = cls(reactor)
        await open_link(reactor, address, client, timeout)
        await client._login(Auth(userid, token), Hello(client_version), timeout)
        client.userid = userid
        client.client_id = (await client.next(ClientId, timeout)).client_id
        return client

    def dispatch(self, command: Command) -> None:
        if isinstance(command, InCallFlag):
            self.in_call[command.chatid] = command.status
        super().dispatch(command)

    async def join(self, chatid: int, timeout: float | None = DEFAULT_TIMEOUT) -> int:
        """JOIN; the result (``JOIN_OK`` = 0). The room's flag follows as an :class:`InCallFlag`."""
        self.send(Join(chatid))
        while True:
            result = await self.next(JoinResult, timeout)
            if result.chatid == chatid:
                return result.result

    async def leave(self, chatid: int, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.send(Leave(chatid))
        while (await self.next(Left, timeout)).chatid != chatid:
            pass

    def send_rtmsg(self, chatid: int, userid: int = 0, clientid: int = 0, msgtype: int = 0, data: bytes = b"") -> None:
        """RTMSG: ``(0, 0)`` to everyone in the room, ``(U, 0)`` to U's clients, ``(U, C)`` to one client."""
        self.send(RtMsg(chatid, userid, clientid, msgtype, data))

    def heartbeat(self, chatid: int, in_call: bool = True) -> None:
        """IN_CALL: status 1 (send every 2-5 s while in a call) or 0 (left the call)."""
        self.send(InCall(chatid, 1 if in_call else 0))


__all__ = ["JOIN_OK", "AuthenticationFailed", "ChatdClient", "CommandClient", "ConnectionClosed", "Error",
           "InCallFlag", "JoinResult", "Left", "RtMsgDelivery", "open_link"]


# ---------------------------------------------------------------------------
# transports


class _StreamClientProtocol(protocol.Protocol):
    def __init__(self, client: CommandClient) -> None:
        self.client = client

    def connectionMade(self) -> None:
        self.client.link = self

    def dataReceived(self, data: bytes) -> None:
        self.client.data_received(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.client.connection_lost()

    def write(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def close(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]


class _StreamClientFactory(protocol.Factory):
    def __init__(self, client: CommandClient) -> None:
        self.client = client

    def buildProtocol(self, addr: Any) -> _StreamClientProtocol:
        return _StreamClientProtocol(self.client)


class _WebSocketClientLink(WebSocketClientProtocol):  # type: ignore[misc]
    def onOpen(self) -> None:
        client: CommandClient = self.factory.command_client
        client.link = self
        opened: defer.Deferred[None] = self.factory.opened
        if not opened.called:
            opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.command_client.data_received(payload)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        opened: defer.Deferred[None] = self.factory.opened
        if not opened.called:
            opened.errback(ConnectionClosed(f"WebSocket closed: {code} {reason}"))
        self.factory.command_client.connection_lost()

    def write(self, data: bytes) -> None:
        if self.state == WebSocketClientProtocol.STATE_OPEN:
            self.sendMessage(data, isBinary=True)

    def close(self) -> None:
        if self.state == WebSocketClientProtocol.STATE_OPEN:
            self.sendClose(code=1000)
        else:
            self.dropConnection(abort=True)


class _WebSocketClientFactory(WebSocketClientFactory):  # type: ignore[misc]
    command_client: CommandClient

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.opened: defer.Deferred[None] = defer.Deferred()


async def open_link(reactor: Any, address: str, client: CommandClient, timeout: float | None = DEFAULT_TIMEOUT) -> None:
    """Connect *client* to *address*: a client endpoint string (``tcp:host=H:port=P``, ``tls:...``) or a
    ``ws://host:port/path`` / ``wss://`` URL."""
    if address.startswith(("ws://", "wss://")):
        url = urlsplit(address)
        port = url.port or (443 if url.scheme == "wss" else 80)
        kind = "tls" if url.scheme == "wss" else "tcp"
        endpoint = clientFromString(reactor, f"{kind}:host={url.hostname}:port={port}")
        factory = _WebSocketClientFactory(address)
        factory.protocol = _WebSocketClientLink
        factory.command_client = client
        factory.setProtocolOptions(autoPingInterval=0)
        d = endpoint.connect(factory)
        if timeout is not None:
            d.addTimeout(timeout, reactor)
        await d
        opened: defer.Deferred[None] = factory.opened
        if timeout is not None:
            opened.addTimeout(timeout, reactor)
        await opened
        return
    endpoint = clientFromString(reactor, address)
    d2 = endpoint.connect(_StreamClientFactory(client))
    if timeout is not None:
        d2.addTimeout(timeout, reactor)
    await d2
