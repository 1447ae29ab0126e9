"""Builds the twistd service tree from the configuration.

``twistd -n transport -c transport.ini`` lands in :meth:`TransportServiceMaker.makeService`,
which loads the file (stopping with ``file:line`` on any error) and calls
:func:`make_service`. The tree is::

    MultiService
     ├─ DatabaseService            opens the database (migrations run per component)
     ├─ WebSiteService             [service] web_port: web client, WebSocket paths, status, metrics
     ├─ gateway (core + backends)  see transport.core / transport.backend
     ├─ frontends                  [xmpp] / [websocket] enabled
     └─ side services              [chatd] [statusd] [hosts] [mux] enabled

Each optional part lives in ``transport/<part>/service.py`` and exposes
``make_service(context: ServiceContext) -> IService``; this module only decides
which parts run. Parts share what they need through :class:`ServiceContext`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from twisted.application import service
from twisted.application.service import IServiceMaker
from twisted.internet import defer
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer

from transport import config as configuration
from transport.storage.database import Database, open_from_config
from transport.web.site import WebRoot, WebSiteService

#: (config section, module) of the parts that run when ``[section] enabled``.
OPTIONAL_PARTS = (
    ("xmpp", "transport.frontends.xmpp.service"),
    ("websocket", "transport.frontends.websocket.service"),
    ("chatd", "transport.chatd.service"),
    ("statusd", "transport.statusd.service"),
    ("hosts", "transport.hosts.service"),
    ("mux", "transport.mux.service"),
)


@dataclass
class ServiceContext:
    """What the parts of one main instance share."""

    config: configuration.Config
    reactor: Any
    database: Database
    web_root: WebRoot
    #: The gateway core (``transport.core``), once built; frontends use it.
    gateway: Any = None
    #: Named objects parts publish for each other (e.g. "statusd" for chatd's room peers).
    registry: dict[str, Any] = field(default_factory=dict)


class DatabaseService(service.Service):
    """Owns the database handle: started first, closed last."""

    name = "database"

    def __init__(self, database: Database) -> None:
        self.database = database

    def startService(self) -> None:
        self.database.start()
        super().startService()

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return self.database.close()


def make_service(config: configuration.Config, reactor: Any = None) -> service.MultiService:
    """The whole main instance described by *config*."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor
        reactor = default_reactor
    top = service.MultiService()
    config.state_dir.mkdir(parents=True, exist_ok=True)
    database = open_from_config(config, reactor)
    DatabaseService(database).setServiceParent(top)
    web_root = WebRoot()
    context = ServiceContext(config=config, reactor=reactor, database=database, web_root=web_root)
    gateway_module = importlib.import_module("transport.core.service")
    gateway_module.make_service(context).setServiceParent(top)
    for section, module in OPTIONAL_PARTS:
        if config[section]["enabled"]:
            importlib.import_module(module).make_service(context).setServiceParent(top)
    # operations (transport.ops): readiness, reload (SIGHUP), /metrics, /status
    importlib.import_module("transport.ops.service").make_service(context).setServiceParent(top)
    if config.get("service", "web_port"):
        WebSiteService(config.get("service", "web_port"), web_root, reactor).setServiceParent(top)
    return top


class Options(usage.Options):
    synopsis = "[-c transport.ini] [section.key=value ...]"
    optParameters = [["config", "c", None, "configuration file (default: every default)"]]

    def parseArgs(self, *overrides: str) -> None:
        self["overrides"] = list(overrides)


@implementer(IServiceMaker, IPlugin)
class TransportServiceMaker:
    tapname = "transport"
    description = "Transport gateway: backends, XMPP and WebSocket frontends, side services"
    options = Options

    def makeService(self, options: Options) -> service.IService:
        try:
            config = configuration.load(options["config"], options.get("overrides", ()))
        except configuration.ConfigError as e:
            raise SystemExit(f"transport: configuration error: {e}") from None
        # the log observer from [logging] and twistd's -l/-n (transport.ops.logs)
        from transport.ops.service import twistd_root

        return twistd_root(make_service(config), config, options)
