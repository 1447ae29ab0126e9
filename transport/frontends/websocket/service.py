"""The WebSocket frontend's service: the chat server, its web resources and its life cycle.

``make_service(context)`` builds the :class:`.server.ChatServer`, mounts the
WebSocket endpoint at ``/<[websocket] path>`` and the web client at ``/`` of
the web port, registers the server with the gateway as a frontend, and on
start applies the frontend's migrations before serving commands.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from .auth import HmacValidator, HttpValidator, IValidator
from .channels import channels_from_config
from .resource import static_resource, websocket_resource
from .server import ChatServer, Settings
from .store import Store
from .tokens import load_secret

log = Logger()


class WebSocketFrontendService(service.Service):
    """Migrates the store, then starts the chat server; closes every connection on stop."""

    name = "websocket"

    def __init__(self, chat: ChatServer) -> None:
        self.chat = chat

    def startService(self) -> None:
        super().startService()
        d = self.chat.store.migrate()
        d.addCallback(lambda _: self.chat.mark_ready())
        d.addErrback(lambda f: log.failure("WebSocket frontend: migrating its tables failed", f))
        self.chat.start()

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        self.chat.stop()
        return None


def build_chat_server(context: Any) -> ChatServer:
    """The chat server described by ``context.config`` (also used by tests and benchmarks)."""
    config = context.config
    settings = Settings.from_config(config)
    secret = load_secret(config)
    validator: IValidator | None = None
    if settings.auth_mode == "validator":
        url = config["websocket"]["validator_url"]
        if url:
            validator = HttpValidator(url, config["websocket"]["validator_timeout"], context.reactor)
        else:
            validator = HmacValidator(secret, context.reactor)
    return ChatServer(settings, Store(context.database), channels_from_config(config), context.reactor,
                      validator=validator, gateway=context.gateway, secret=secret)


def make_service(context: Any) -> service.IService:
    config = context.config
    chat = build_chat_server(context)
    if context.gateway is not None:
        context.gateway.add_frontend(chat)
    registry = getattr(context, "registry", None)
    if registry is not None:
        registry["websocket"] = chat  # counters() for the metrics
    section = config["websocket"]
    context.web_root.put_child(section["path"].strip("/"), websocket_resource(chat, section["max_message_size"],
                                                                   section["ping_timeout"], context.reactor))
    if section["web_client"]:
        context.web_root.set_index(static_resource())
    return WebSocketFrontendService(chat)
