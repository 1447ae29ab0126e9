"""chatd and statusd servers on free loopback ports, for tests (see ``make_chatd_stack``).

``await make_chatd_stack(clock=None, **settings)`` (function scope) starts, on the real
reactor, a shared directory on a fresh SQLite file, a chatd and a statusd
server listening on TCP ports of 127.0.0.1 and a web site serving ``/chatd`` and
``/statusd`` as WebSockets. Timers (keepalive, idle timeout, call timeout) use
*clock* - pass a ``task.Clock`` to drive them. Returns a :class:`ChatdStack`;
everything is stopped afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.web import server as web_server

from transport.auth.tokens import HMACTokenValidator, issue_token
from transport.chatd.client import ChatdClient
from transport.chatd.directory import Directory
from transport.chatd.server import ChatdServer
from transport.chatd.session import SessionSettings
from transport.statusd.client import StatusdClient
from transport.statusd.server import StatusdServer
from transport.storage.database import Database, open_sqlite
from transport.web.site import WebRoot

__all__ = ["ChatdStack", "make_chatd_stack"]


@dataclass
class ChatdStack:
    reactor: Any
    database: Database
    directory: Directory
    chatd: ChatdServer
    statusd: StatusdServer
    secret: bytes
    chatd_port: int = 0
    statusd_port: int = 0
    web_port: int = 0
    ports: list[Any] = field(default_factory=list)
    clients: list[Any] = field(default_factory=list)

    @property
    def chatd_address(self) -> str:
        return f"tcp:host=127.0.0.1:port={self.chatd_port}"

    @property
    def statusd_address(self) -> str:
        return f"tcp:host=127.0.0.1:port={self.statusd_port}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.web_port}/{path}"

    def token(self, userid: int) -> bytes:
        return issue_token(self.secret, userid, ttl=3600, now=self.reactor.seconds())

    async def chatd_client(self, userid: int, address: str | None = None) -> ChatdClient:
        client = await ChatdClient.connect(self.reactor, address or self.chatd_address, userid, self.token(userid))
        self.clients.append(client)
        return client

    async def statusd_client(self, userid: int, presence: int, automatic: bool = False,
                             address: str | None = None) -> StatusdClient:
        client = await StatusdClient.connect(self.reactor, address or self.statusd_address, userid,
                                             self.token(userid), presence, automatic)
        self.clients.append(client)
        return client


@pytest.fixture
def make_chatd_stack(tmp_path: Path) -> Iterator[Callable[..., Coroutine[Any, Any, ChatdStack]]]:
    from twisted.internet import reactor

    stacks: list[ChatdStack] = []

    async def make(clock: Any = None, call_timeout: float = 10.0, **settings: Any) -> ChatdStack:
        database = open_sqlite(tmp_path / f"chatd-{len(stacks)}.sqlite3")
        database.start()
        directory = Directory(database, reactor, refresh_interval=0)
        secret = os.urandom(32)
        validator = HMACTokenValidator(secret, reactor)
        session_settings = SessionSettings(**settings)
        chatd = ChatdServer(directory, validator, session_settings, call_timeout, clock or reactor)
        statusd = StatusdServer(directory, validator, session_settings, clock or reactor)
        stack = ChatdStack(reactor, database, directory, chatd, statusd, secret)
        stacks.append(stack)
        await directory.start()
        endpoint = "tcp:0:interface=127.0.0.1"
        port = await serverFromString(reactor, endpoint).listen(chatd.stream_factory())
        stack.ports.append(port)
        stack.chatd_port = port.getHost().port
        port = await serverFromString(reactor, endpoint).listen(statusd.stream_factory())
        stack.ports.append(port)
        stack.statusd_port = port.getHost().port
        root = WebRoot()
        root.put_child("chatd", chatd.websocket_resource())
        root.put_child("statusd", statusd.websocket_resource())
        port = await serverFromString(reactor, endpoint).listen(web_server.Site(root))
        stack.ports.append(port)
        stack.web_port = port.getHost().port
        return stack

    yield make

    for stack in stacks:
        closing = [c.close() for c in stack.clients if not c.is_closed]
        closing += [defer.maybeDeferred(p.stopListening) for p in stack.ports]
        stack.chatd.disconnect_all()
        stack.statusd.disconnect_all()
        pytest_twisted.blockon(defer.DeferredList(closing))
        pytest_twisted.blockon(stack.database.close())
