"""chatd's server: sessions that speak chatd over any transport, backed by a :class:`ChatHub`."""

from __future__ import annotations

from typing import Any

from transport.chatd.codec import ClientId, Hello, InCall, Join, Leave, RtMsg, server_connection
from transport.chatd.directory import Directory
from transport.chatd.rooms import ChatClient, ChatHub
from transport.chatd.session import CommandServer, CommandSession, Link, SessionSettings
from transport.chatd.wire import Command, ErrorCode


class ChatdSession(CommandSession):
    server: ChatdServer

    def __init__(self, server: ChatdServer, link: Link) -> None:
        super().__init__(server, link, server_connection(server.settings.max_message_size))
        self.client: ChatClient | None = None

    def handle(self, command: Command) -> None:
        hub = self.server.hub
        if isinstance(command, Hello):
            assert self.userid is not None
            self.client = hub.connect(self.userid, self.send_bytes)
            self.send(ClientId(self.client.client_id))
            return
        client = self.client
        assert client is not None  # the connection lets nothing else through before HELLO
        violation = None
        if isinstance(command, RtMsg):
            violation = hub.rtmsg(client, command)
        elif isinstance(command, InCall):
            violation = hub.in_call(client, command)
        elif isinstance(command, Join):
            hub.join(client, command.chatid)
        elif isinstance(command, Leave):
            hub.leave(client, command.chatid)
        else:
            self.error(ErrorCode.PROTOCOL, f"unexpected command {type(command).__name__}", fatal=True)
        if violation is not None:
            self.error(violation.code, violation.text, violation.fatal)

    def lost(self) -> None:
        if self.client is not None:
            self.server.hub.disconnect(self.client)
            self.client = None


class ChatdServer(CommandServer):
    """chatd: give it a directory, a token validator and settings; listen with :meth:`stream_factory`
    or serve :meth:`websocket_resource`."""

    name = "chatd"

    def __init__(self, directory: Directory, validator: Any, settings: SessionSettings | None = None,
                 call_timeout: float = 10.0, clock: Any = None) -> None:
        super().__init__(settings or SessionSettings(), validator, clock)
        self.hub = ChatHub(directory, self.clock, call_timeout)

    def make_session(self, link: Link) -> ChatdSession:
        return ChatdSession(self, link)
