"""XEP-0030 service discovery and XEP-0115 entity capabilities.

The transport answers disco#info with its ``[identity]`` (category ``gateway``,
type ``[service] protocol`` unless ``[identity] type`` says otherwise) and every
feature the handlers registered; a buddy JID answers as a client
(``client/pc``) with the chat features; a room JID as ``conference/text`` with
``http://jabber.org/protocol/muc``. disco#items on the transport lists the legacy
rooms (the latest ROOM_LIST) and, for the ``commands`` node, the ad-hoc commands.

The transport's presence carries a caps element whose ``ver`` is the XEP-0115
SHA-1 over the transport's identities and features, so clients can cache them.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from twisted.words.xish import domish

from transport.frontends.xmpp import stanzas as st
from transport.frontends.xmpp.frontend import Target, XmppFrontend


def caps_ver(identities: list[tuple[str, str, str]], features: set[str]) -> str:
    """XEP-0115 verification string (no data forms) for (category, type, name) *identities*."""
    parts = [f"{cat}/{typ}//{name}<" for cat, typ, name in sorted(identities)]
    parts += [f"{f}<" for f in sorted(features)]
    return base64.b64encode(hashlib.sha1("".join(parts).encode("utf-8")).digest()).decode("ascii")


class Disco:
    """Answers disco#info / disco#items and builds the caps element."""

    def __init__(self, frontend: XmppFrontend) -> None:
        self.frontend = frontend
        identity = frontend.config["identity"]
        self.identity = (identity["category"] or "gateway",
                         identity["type"] or frontend.config.get("service", "protocol"), identity["name"])
        self.node = frontend.settings["caps_node"]
        frontend.route_iq("get", st.NS_DISCO_INFO, "query", self.info)
        frontend.route_iq("get", st.NS_DISCO_ITEMS, "query", self.items)
        frontend.features.add(st.NS_CAPS)

    def identities(self) -> list[tuple[str, str, str]]:
        ids = [self.identity]
        if self.muc_enabled():
            ids.append(("conference", "text", self.identity[2] + " rooms"))
        return ids

    def muc_enabled(self) -> bool:
        features = getattr(self.frontend.gateway, "features", None)
        return bool(getattr(features, "muc", False)) or bool(self.frontend.room_list)

    def transport_features(self) -> set[str]:
        features = set(self.frontend.features)
        if self.muc_enabled():
            features.add(st.NS_MUC)
        return features

    def ver(self) -> str:
        return caps_ver(self.identities(), self.transport_features())

    def caps(self) -> domish.Element:
        c = domish.Element((st.NS_CAPS, "c"))
        c["hash"] = "sha-1"
        c["node"] = self.node
        c["ver"] = self.ver()
        return c

    def is_room(self, user: str, name: str) -> bool:
        known = self.frontend.users.get(user)
        if known is not None and (name in known.rooms or any(r == name for r, _ in known.rooms_listed)):
            return True
        return any(r == name for r, _ in self.frontend.room_list)

    def info(self, iq: domish.Element, target: Target) -> domish.Element:
        query = domish.Element((st.NS_DISCO_INFO, "query"))
        node = iq.query.getAttribute("node") if iq.query is not None else None
        if node:
            query["node"] = node
        user = iq["from"].split("/", 1)[0]
        if target.kind == "transport":
            if node and node not in (f"{self.node}#{self.ver()}", st.NS_COMMANDS):
                commands = self.frontend.handlers.get("commands")
                if commands is None or not commands.has_node(node, iq):
                    raise st.StanzaFailure("item-not-found")
            identities, features = self.identities(), self.transport_features()
        elif target.kind == "node":
            # a name can be a buddy and a room at once (room@transport/nick is the room)
            identities, features = [], set()
            known = self.frontend.users.get(user)
            room = self.is_room(user, target.name)
            if not room or (known is not None and target.name in known.buddies):
                identities.append(("client", "pc", target.name))
                features |= self.frontend.buddy_features
            if room:
                identities.append(("conference", "text", target.name))
                features |= {st.NS_DISCO_INFO, st.NS_MUC, "muc_persistent", "muc_open", "muc_nonanonymous"}
        else:
            identities = [("client", "pc", target.resource)]
            features = {st.NS_DISCO_INFO}
        for cat, typ, name in identities:
            ident = query.addElement("identity")
            ident["category"], ident["type"] = cat, typ
            if name:
                ident["name"] = name
        for feature in sorted(features):
            query.addElement("feature")["var"] = feature
        return query

    def items(self, iq: domish.Element, target: Target) -> domish.Element:
        query = domish.Element((st.NS_DISCO_ITEMS, "query"))
        node = iq.query.getAttribute("node") if iq.query is not None else None
        if node:
            query["node"] = node
        if target.kind != "transport":
            return query
        commands: Any = self.frontend.handlers.get("commands")
        if node == st.NS_COMMANDS:
            if commands is not None:
                commands.list_items(query, iq)
            return query
        if node:
            raise st.StanzaFailure("item-not-found")
        user = self.frontend.users.get(iq["from"].split("/", 1)[0])
        rooms = dict(self.frontend.room_list)
        if user is not None:
            rooms.update(dict(user.rooms_listed))
        limit = self.frontend.settings["max_rooms_listed"]
        for room, name in list(rooms.items())[:limit]:
            item = query.addElement("item")
            item["jid"] = self.frontend.buddy_jid(room)
            item["name"] = name or room
        item = query.addElement("item")
        item["jid"] = self.frontend.domain
        item["node"] = st.NS_COMMANDS
        item["name"] = "Commands"
        return query


def install(frontend: XmppFrontend) -> Disco:
    return Disco(frontend)
