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

Stop order (SIGTERM, SIGINT, ``twistd`` shutdown; :class:`TransportRoot`), so that every message a
frontend accepted is delivered or answered with an error (``docs/reliability.md``):

1. the gateway *drains* (:meth:`transport.core.gateway.Gateway.drain`) while everything still runs:
   new messages get the frontend's error, queued ones fail, the ones written to a backend get up to
   ``[service] shutdown_grace`` seconds to be confirmed and fail after that (``MessageFailed``,
   which the frontends, still connected, turn into errors to their senders);
2. frontends, side services, the web site and operations stop (links close);
3. the gateway stops its backends (EXIT, SIGTERM, SIGKILL);
4. the database closes.

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
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer

from transport import config as configuration
from transport.storage.database import Database, open_from_config
from transport.web.site import WebRoot, WebSiteService

log = Logger()

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


class TransportRoot(service.MultiService):
    """The main instance's services, stopped in the order the module documentation gives."""

    def __init__(self, context: ServiceContext) -> None:
        super().__init__()
        self.context = context

    def stopService(self) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        gateway = self.context.gateway
        if gateway is not None:
            try:
                await gateway.drain(self.context.config.get("service", "shutdown_grace"))
            except Exception:
                log.failure("draining the gateway")
        service.Service.stopService(self)
        last = [s for s in (self.namedServices.get("gateway"), self.namedServices.get("database")) if s is not None]
        first = [s for s in reversed(list(self)) if not any(s is x for x in last)]
        await defer.DeferredList([defer.maybeDeferred(s.stopService) for s in first])
        for s in last:
            try:
                await defer.maybeDeferred(s.stopService)
            except Exception:
                log.failure("stopping {name}", name=s.name)


def make_service(config: configuration.Config, reactor: Any = None) -> service.MultiService:
    """The whole main instance described by *config*."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor
        reactor = default_reactor
    config.state_dir.mkdir(parents=True, exist_ok=True)
    database = open_from_config(config, reactor)
    web_root = WebRoot()
    context = ServiceContext(config=config, reactor=reactor, database=database, web_root=web_root)
    top = TransportRoot(context)
    DatabaseService(database).setServiceParent(top)
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
