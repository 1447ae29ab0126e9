"""The gateway's service: storage, the backend pool, the core and the admin endpoint.

Built by :func:`transport.service.make_service` before the frontends, so that
``context.gateway`` is the :class:`~transport.core.gateway.Gateway` when their
``make_service`` runs. Start order: the registrations store (migrations), the
backend pool (listen, spawn ``start_backends``), the admin endpoint. Before this
service stops, the main instance has drained the gateway (:meth:`Gateway.drain`)
and stopped the frontends (:class:`transport.service.TransportRoot`). Stop order
is then the reverse: the admin endpoint closes, then the pool shuts backends down
(EXIT, SIGTERM, SIGKILL).
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from transport.backend.pool import BackendPool
from transport.core.gateway import Gateway

log = Logger()


class GatewayService(service.MultiService):
    """Owns the :class:`Gateway`, its :class:`BackendPool` and its store."""

    name = "gateway"

    def __init__(self, gateway: Gateway, pool: BackendPool, store: Any) -> None:
        super().__init__()
        self.gateway = gateway
        self.pool = pool
        self.store = store
        pool.setServiceParent(self)

    def startService(self) -> None:
        d: defer.Deferred[Any] = self.store.start()
        d.addErrback(lambda f: log.failure("the gateway store failed to start", f))
        super().startService()

    def stopService(self) -> defer.Deferred[None]:
        self.gateway.stop()  # first: no re-login may start while the pool shuts the backends down
        return super().stopService()  # type: ignore[no-any-return]


def make_service(context: Any) -> service.IService:
    """The gateway for *context* (a :class:`transport.service.ServiceContext`); sets ``context.gateway``."""
    from transport.admin.service import AdminService
    from transport.storage.gateway import GatewayStore

    config = context.config
    store = GatewayStore(context.database, config.get("database", "encryption_key"))
    pool = BackendPool(config, context.reactor)
    gateway = Gateway(config, store, pool, context.reactor)
    context.gateway = gateway
    context.registry["backend_pool"] = pool
    top = GatewayService(gateway, pool, store)
    AdminService(context, gateway, pool).setServiceParent(top)
    return top
