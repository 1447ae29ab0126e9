"""chatd in the main instance: ``[chatd] enabled = true``.

:func:`make_service` builds a :class:`ListenerService` that, when started,
listens on ``[chatd] listen`` (a port that cannot be had stops start-up) and
loads the shared directory (applying the schema); clients' commands wait until
it is loaded. The WebSocket endpoint ``/chatd`` is attached to the web root at once.
The server is published as ``context.registry["chatd"]`` and the directory as
``context.registry["directory"]`` (statusd uses the same one).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from transport.auth.tokens import HMACTokenValidator, load_secret
from transport.chatd.directory import Directory, shared_directory
from transport.chatd.server import ChatdServer
from transport.chatd.session import CommandServer, SessionSettings

log = Logger()


def token_secret(config: Any, section: str) -> bytes:
    """The token secret of *section* (chatd or statusd): the key's value, else the secret file's contents."""
    values = config[section]
    path = config.resolve_path(values["token_secret_file"], config.state_dir) if values["token_secret_file"] else None
    return load_secret(values["token_secret"], path)


def session_settings(values: Mapping[str, Any]) -> SessionSettings:
    return SessionSettings(keepalive_interval=values["keepalive_interval"], idle_timeout=values["idle_timeout"],
                           max_message_size=values["max_message_size"], max_send_buffer=values["max_send_buffer"],
                           rate_limit=values["rate_limit"], rate_burst=values["rate_burst"])


class ListenerService(service.Service):
    """Listens with a CommandServer on an endpoint string and loads the directory; clients' commands wait
    (bounded) until the directory is loaded. :attr:`ready` fires then."""

    def __init__(self, name: str, server: CommandServer, directory: Directory, endpoint: str, reactor: Any,
                 portfile: Path | None = None) -> None:
        self.name = name
        self.server = server
        self.directory = directory
        self.endpoint = endpoint
        self.reactor = reactor
        self.portfile = portfile
        self.port: IListeningPort | None = None
        self.ready: defer.Deferred[None] = defer.Deferred()

    def startService(self) -> None:
        """Listen at once (a port that cannot be had stops start-up), and hold clients' commands until the
        directory is loaded."""
        super().startService()
        self.server.hold()
        if self.endpoint:
            outcome: list[Any] = []

            def got(result: Any) -> Any:
                outcome.append(result)
                return result

            d = serverFromString(self.reactor, self.endpoint).listen(self.server.stream_factory())
            d.addBoth(got)
            if outcome and isinstance(outcome[0], Failure):
                d.addErrback(lambda _: None)  # raised below instead
                outcome[0].raiseException()
            d.addCallbacks(self._listening, self._failed)  # at once for TCP/TLS, later for slower endpoints
        d2 = self.directory.start()
        d2.addCallbacks(lambda _: self._opened(), self._failed)

    def _opened(self) -> None:
        self.server.open()
        if not self.ready.called:
            self.ready.callback(None)

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        number = port.getHost().port  # type: ignore[attr-defined]
        log.info("{name} listening on port {port}", name=self.name, port=number)
        if self.portfile is not None:
            self.portfile.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.portfile.with_suffix(self.portfile.suffix + ".tmp")
            tmp.write_text(f"{number}\n")
            tmp.replace(self.portfile)
        return port

    def _failed(self, failure: Failure) -> None:
        log.failure("{name} could not start", failure, name=self.name)
        if not self.ready.called:
            self.ready.errback(failure)
            self.ready.addErrback(lambda _: None)

    @property
    def port_number(self) -> int:
        """The TCP port listened on (after :attr:`ready`)."""
        assert self.port is not None
        return int(self.port.getHost().port)  # type: ignore[attr-defined]

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        self.directory.stop()
        self.server.disconnect_all()
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()  # type: ignore[no-any-return]
        return None


def make_service(context: Any) -> service.IService:
    config = context.config
    values = config["chatd"]
    directory = shared_directory(context, values["refresh_interval"])
    validator = HMACTokenValidator(token_secret(config, "chatd"), context.reactor)
    server = ChatdServer(directory, validator, session_settings(values), values["call_timeout"], context.reactor)
    context.registry["chatd"] = server
    if values["websocket"]:
        context.web_root.put_child("chatd", server.websocket_resource())
    portfile = config.resolve_path(values["portfile"]) if values["portfile"] else None
    return ListenerService("chatd", server, directory, values["listen"], context.reactor, portfile)
