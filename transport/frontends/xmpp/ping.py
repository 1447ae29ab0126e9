"""XEP-0199 ping and XEP-0092 software version, on the transport and on buddy JIDs.

A ping to a buddy is answered by the transport (legacy networks have no
equivalent); it tells a client that the gateway is there.
"""

from __future__ import annotations

import platform

from twisted.words.xish import domish

import transport
from transport.frontends.xmpp import stanzas as st
from transport.frontends.xmpp.frontend import Target, XmppFrontend


class PingVersion:
    def __init__(self, frontend: XmppFrontend) -> None:
        self.frontend = frontend
        frontend.route_iq("get", st.NS_PING, "ping", self.ping)
        frontend.route_iq("get", st.NS_VERSION, "query", self.version)
        frontend.features.update({st.NS_PING, st.NS_VERSION})
        frontend.buddy_features.add(st.NS_PING)

    def ping(self, iq: domish.Element, target: Target) -> None:
        return None

    def version(self, iq: domish.Element, target: Target) -> domish.Element:
        if target.kind != "transport":
            raise st.StanzaFailure("service-unavailable")
        query = domish.Element((st.NS_VERSION, "query"))
        query.addElement("name", content=self.frontend.config.get("identity", "name") or "Transport")
        query.addElement("version", content=transport.__version__)
        query.addElement("os", content=platform.system())
        return query


def install(frontend: XmppFrontend) -> PingVersion:
    return PingVersion(frontend)
