"""The thin Twisted/autobahn layer: WebSocket connections in, :class:`.server.ChatServer` calls out.

:func:`websocket_resource` is a twisted.web resource (autobahn's
``WebSocketResource``) to put on the web root; :func:`static_resource` serves
the bundled web client. All protocol decisions live in :mod:`.server`.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from twisted.web import resource, static

from .server import ChatServer, Connection

log = Logger()


class ChatProtocol(WebSocketServerProtocol):
    """One client: hands text messages to the chat server, sends what it says."""

    factory: ChatFactory
    connection: Connection | None = None

    def onOpen(self) -> None:
        self.connection = self.factory.chat.connection_made(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.connection is not None:
            self.factory.chat.data_received(self.connection, payload, binary=isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.connection is not None:
            self.factory.chat.connection_lost(self.connection)
            self.connection = None

    # the Peer interface of ChatServer
    def send(self, data: bytes) -> None:
        if self.state == WebSocketServerProtocol.STATE_OPEN:
            # A broadcast hands the same bytes object to every viewer: frame it once.
            cached = self.factory.last_prepared
            if cached is None or cached[0] is not data:
                cached = self.factory.last_prepared = (data, self.factory.prepareMessage(data, isBinary=False))
            self.sendPreparedMessage(cached[1])

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resume_reading(self) -> None:
        if self.transport is not None:
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def close(self, code: int, reason: str) -> None:
        if self.state == WebSocketServerProtocol.STATE_OPEN:
            self.sendClose(code, reason)
        if self.connection is not None:
            # stop serving it at once; the TCP close follows the closing handshake
            self.factory.chat.connection_lost(self.connection)
            self.connection = None


class ChatFactory(WebSocketServerFactory):
    protocol = ChatProtocol  # type: ignore[assignment]

    def __init__(self, chat: ChatServer, max_message_size: int, ping_timeout: float = 0.0,
                 reactor: Any = None) -> None:
        super().__init__(reactor=reactor)
        self.chat = chat
        self.last_prepared: tuple[bytes, Any] | None = None
        options: dict[str, Any] = {"maxMessagePayloadSize": max_message_size,
                                   "maxFramePayloadSize": max_message_size,
                                   "openHandshakeTimeout": 30, "closeHandshakeTimeout": 5, "failByDrop": False,
                                   "perMessageCompressionAccept": lambda offers: None}
        if ping_timeout > 0:
            options.update(autoPingInterval=ping_timeout / 2, autoPingTimeout=ping_timeout / 2)
        self.setProtocolOptions(**options)


def websocket_resource(chat: ChatServer, max_message_size: int, ping_timeout: float = 0.0,
                       reactor: Any = None) -> resource.Resource:
    """The resource serving the OriginChats protocol (mount it at ``[websocket] path``)."""
    factory = ChatFactory(chat, max_message_size, ping_timeout, reactor)
    factory.startFactory()
    ws: resource.Resource = WebSocketResource(factory)  # type: ignore[assignment]
    return ws


def static_dir() -> FilePath[str]:
    """Where the web client's files are (package data ``static/``)."""
    return FilePath(str(resources.files(__package__).joinpath("static")))


class _Files(static.File):
    def directoryListing(self) -> resource.Resource:
        return resource.NoResource()


class WebClient(resource.Resource):
    """The web client: ``/`` is index.html, other paths its files (never a directory listing)."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.files = _Files(directory)
        self.files.contentTypes.update({".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                                        ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"})
        self.index = _Files(directory + "/index.html")
        self.index.contentTypes = self.files.contentTypes

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        if path in (b"", b"index.html"):
            return self.index
        return self.files.getChildWithDefault(path, request)

    def render(self, request: Any) -> bytes:
        result: bytes = self.index.render(request)
        return result


def static_resource() -> resource.Resource:
    return WebClient(static_dir().path)
