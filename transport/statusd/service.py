"""statusd in the main instance: ``[statusd] enabled = true``.

Shares the directory (rooms, members, contacts) with chatd through
``context.registry["directory"]``; the server is published as
``context.registry["statusd"]``; ``/statusd`` is attached to the web root.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service

from transport.auth.tokens import HMACTokenValidator
from transport.chatd.directory import shared_directory
from transport.chatd.service import ListenerService, session_settings, token_secret
from transport.statusd.server import StatusdServer


def make_service(context: Any) -> service.IService:
    config = context.config
    values = config["statusd"]
    directory = shared_directory(context, values["refresh_interval"])
    validator = HMACTokenValidator(token_secret(config, "statusd"), context.reactor)
    server = StatusdServer(directory, validator, session_settings(values), context.reactor)
    context.registry["statusd"] = server
    if values["websocket"]:
        context.web_root.put_child("statusd", server.websocket_resource())
    portfile = config.resolve_path(values["portfile"]) if values["portfile"] else None
    return ListenerService("statusd", server, directory, values["listen"], context.reactor, portfile)
