"""The XMPP frontend's service: the component link plus the frontend, registered with the gateway.

Runs when ``[xmpp] enabled = true``. Connects to ``[service] server``:``port`` as
the component ``[service] jid`` with ``[service] password``. Publishes itself as
``context.registry["xmpp"]`` (counters for the status page and metrics).
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.words.xish import domish

from transport.frontends.xmpp import stanzas as st
from transport.frontends.xmpp.component import ComponentLink
from transport.frontends.xmpp.frontend import XmppFrontend

log = Logger()


class XmppService(service.MultiService):
    """The component link and the frontend of one main instance."""

    name = "xmpp"

    def __init__(self, context: Any) -> None:
        super().__init__()
        config = context.config
        self.reactor = context.reactor
        settings = config["xmpp"]
        self.exit_on_auth_failure = settings["exit_on_auth_failure"]
        if context.gateway is None:
            raise RuntimeError("the XMPP frontend needs the gateway core")
        self.frontend = XmppFrontend(context.gateway, config, context.reactor, send=self._send,
                                     registry=context.registry)
        context.gateway.add_frontend(self.frontend)
        host = endpoints.quoteStringArgument(config.get("service", "server"))
        endpoint = f"tcp:host={host}:port={config.get('service', 'port')}:timeout=30"
        self.link = ComponentLink(
            config.get("service", "jid"), config.get("service", "password"), endpoint, context.reactor,
            on_stanza=self.frontend.stanza_received, on_up=self.frontend.handlers["login"].component_up,
            on_fatal=self._fatal, initial_delay=settings["reconnect_initial_delay"],
            max_delay=settings["reconnect_max_delay"], jitter=settings["reconnect_jitter"],
            max_pending=settings["max_pending_stanzas"], keepalive=settings["keepalive_interval"])
        self.link.setServiceParent(self)
        context.registry["xmpp"] = self

    def _send(self, stanza: domish.Element) -> None:
        self.link.send(stanza)

    def _fatal(self, reason: str) -> None:
        if self.exit_on_auth_failure:
            log.critical("stopping: the XMPP component cannot work with this configuration ({reason})",
                         reason=reason)
            self.reactor.callLater(0, self._stop_reactor)

    def _stop_reactor(self) -> None:
        if self.reactor.running:
            self.reactor.stop()

    def counters(self) -> dict[str, int]:
        """Counters for the status page and the metrics endpoint."""
        out = dict(self.frontend.counters)
        out.update({"stanzas_dropped": self.link.dropped, "connections": self.link.connections,
                    "connected": int(self.link.connected),
                    "users": sum(1 for u in self.frontend.users.values() if u.resources)})
        return out

    def stopService(self) -> defer.Deferred[None]:
        login = self.frontend.handlers["login"]
        login.stop()
        self.frontend.stop()
        if self.link.connected:
            for user in self.frontend.users.values():
                if user.resources:
                    for name in user.buddies:
                        self.frontend.send(st.presence(user.jid, self.frontend.buddy_jid(name), "unavailable"))
                    self.frontend.send(st.presence(user.jid, self.frontend.domain, "unavailable",
                                                   status="The gateway is shutting down"))
        d: defer.Deferred[None] = super().stopService()  # type: ignore[assignment]
        return d


def make_service(context: Any) -> service.IService:
    """The XMPP frontend for *context* (a :class:`transport.service.ServiceContext`)."""
    return XmppService(context)
