"""The legacy roster in the user's XMPP roster: buddies, subscriptions, buddy presence.

BUDDY_CHANGED for a buddy the transport has not announced yet sends a
subscription request from the buddy's JID with the alias as XEP-0172 nick (or,
when the user's client announced XEP-0144 roster item exchange in its caps, a
``<x xmlns='http://jabber.org/protocol/rosterx'>`` suggestion with the groups);
then, and for every later change, the buddy's presence with show, status and the
XEP-0153 avatar hash. BUDDY_REMOVED sends unsubscribe + unsubscribed.
AUTH_REQUEST sends a subscription request.

In the other direction, a subscription request from the user to a buddy JID adds
the buddy on the legacy network, and unsubscribing removes it.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.words.protocols.jabber import jid as jidmod
from twisted.words.xish import domish

from transport.core import events as ev
from transport.core import presence as pr
from transport.frontends.xmpp import stanzas as st
from transport.frontends.xmpp.frontend import Target, XmppFrontend, XmppUser

log = Logger()
NS_ROSTERX = "http://jabber.org/protocol/rosterx"
#: caps versions remembered
MAX_CAPS = 1000


class Roster:
    def __init__(self, frontend: XmppFrontend) -> None:
        self.frontend = frontend
        #: XEP-0115 ver -> whether that client supports XEP-0144
        self.rosterx_by_ver: dict[str, bool] = {}
        frontend.on_presence(self.subscription)
        frontend.on_event(ev.BuddyChanged, self.buddy_changed)
        frontend.on_event(ev.BuddyRemoved, self.buddy_removed)
        frontend.on_event(ev.AuthRequest, self.auth_request)

    def client_caps(self, stanza: domish.Element, sender: jidmod.JID) -> None:
        """Learn from a user's presence (XEP-0115 caps) whether their client takes XEP-0144 roster items."""
        caps = st.child(stanza, st.NS_CAPS, "c")
        user = self.frontend.users.get(sender.userhost())
        if caps is None or user is None:
            return
        ver = caps.getAttribute("ver", "")[:100]
        if ver in self.rosterx_by_ver:
            user.rosterx = user.rosterx or self.rosterx_by_ver[ver]
            return
        if len(self.rosterx_by_ver) >= MAX_CAPS:
            self.rosterx_by_ver.clear()
        self.rosterx_by_ver[ver] = False
        iq = domish.Element((None, "iq"))
        iq["type"], iq["to"], iq["from"] = "get", sender.full(), self.frontend.domain
        query = iq.addElement((st.NS_DISCO_INFO, "query"))
        query["node"] = f"{caps.getAttribute('node', '')}#{ver}"[:300]
        d = self.frontend.request(iq)
        d.addCallback(self._caps_info, ver, user)
        d.addErrback(lambda f: None)  # a client that does not answer keeps subscription requests

    def _caps_info(self, result: domish.Element, ver: str, user: XmppUser) -> None:
        query = st.child(result, st.NS_DISCO_INFO, "query")
        features = {f.getAttribute("var") for f in query.elements() if f.name == "feature"} if query else set()
        supported = NS_ROSTERX in features
        self.rosterx_by_ver[ver] = supported
        user.rosterx = user.rosterx or supported

    def buddy_presence(self, user: XmppUser, buddy: ev.Buddy, to: str | None = None) -> domish.Element:
        frm = self.frontend.buddy_jid(buddy.name)
        if buddy.presence == pr.OFFLINE or not user.connected:
            return st.presence(to or user.jid, frm, "unavailable", status=buddy.status_message)
        p = st.presence(to or user.jid, frm, value=buddy.presence, status=buddy.status_message)
        update = p.addElement((st.NS_VCARD_UPDATE, "x"))
        if buddy.icon_hash:
            update.addElement("photo", content=buddy.icon_hash)
        if buddy.alias:
            p.addElement((st.NS_NICK, "nick"), content=buddy.alias)
        return p

    # ------------------------------------------------------------------ events

    def buddy_changed(self, event: ev.BuddyChanged) -> None:
        user = self.frontend.user(event.user)
        buddy = event.buddy
        user.buddies[buddy.name] = buddy
        jid = self.frontend.buddy_jid(buddy.name)
        if jid == self.frontend.domain:
            log.warn("buddy {name!r} of {user} has no possible JID", name=buddy.name[:80], user=user.jid)
            return
        if buddy.name not in user.announced:
            user.announced.add(buddy.name)
            if user.rosterx:
                m = st.message(user.jid, self.frontend.domain, type="")
                x = m.addElement((NS_ROSTERX, "x"))
                item = x.addElement("item")
                item["action"], item["jid"], item["name"] = "add", jid, buddy.alias or buddy.name
                for group in buddy.groups:
                    item.addElement("group", content=group)
                self.frontend.send(m)
            else:
                p = st.presence(user.jid, jid, "subscribe")
                p.addElement((st.NS_NICK, "nick"), content=buddy.alias or buddy.name)
                self.frontend.send(p)
        self.frontend.send(self.buddy_presence(user, buddy))

    def buddy_removed(self, event: ev.BuddyRemoved) -> None:
        user = self.frontend.user(event.user)
        user.buddies.pop(event.buddy_name, None)
        user.announced.discard(event.buddy_name)
        jid = self.frontend.buddy_jid(event.buddy_name)
        for type_ in ("unavailable", "unsubscribe", "unsubscribed"):
            self.frontend.send(st.presence(user.jid, jid, type_))

    def auth_request(self, event: ev.AuthRequest) -> None:
        self.frontend.send(st.presence(event.user, self.frontend.buddy_jid(event.buddy), "subscribe"))

    # ------------------------------------------------------------------ subscriptions from the user

    def subscription(self, stanza: domish.Element, sender: jidmod.JID, target: Target) -> bool:
        type_ = stanza.getAttribute("type")
        if type_ not in ("subscribe", "subscribed", "unsubscribe", "unsubscribed") or target.kind == "occupant":
            return False
        bare = sender.userhost()
        if target.kind == "transport":
            if type_ == "subscribe":
                d = self.frontend.gateway.store.get_user(bare)
                d.addCallback(self._transport_subscription, bare)
                d.addErrback(lambda f: log.failure("subscription of {user}", f, user=bare))
            return True
        name = target.name
        buddy_jid = self.frontend.buddy_jid(name)
        user = self.frontend.users.get(bare)
        gateway = self.frontend.gateway
        if type_ == "subscribe":
            self.frontend.send(st.presence(bare, buddy_jid, "subscribed"))
            if user is not None:
                user.announced.add(name)
                if name in user.buddies:
                    self.frontend.send(self.buddy_presence(user, user.buddies[name]))
                else:
                    gateway.update_buddy(bare, name)
        elif type_ == "subscribed":
            if user is not None and name not in user.buddies:
                user.announced.add(name)
                gateway.update_buddy(bare, name)
        else:
            if user is not None and name in user.buddies:
                del user.buddies[name]
                user.announced.discard(name)
                gateway.remove_buddy(bare, name)
            if type_ == "unsubscribe":
                self.frontend.send(st.presence(bare, buddy_jid, "unsubscribed"))
        return True

    def _transport_subscription(self, record: object, bare: str) -> None:
        if record is None:
            if not self.frontend.config.get("registration", "auto_register"):
                self.frontend.send(st.presence(bare, self.frontend.domain, "unsubscribed"))
                return
            # registered at the first login: ask for the user's presence, which brings that login
            self.frontend.send(st.presence(bare, self.frontend.domain, "subscribed"))
            self.frontend.send(st.presence(bare, self.frontend.domain, "subscribe"))
            return
        self.frontend.send(st.presence(bare, self.frontend.domain, "subscribed"))
        user = self.frontend.users.get(bare)
        if user is not None:
            login = self.frontend.handlers["login"]
            self.frontend.send(login.transport_presence(user))


def install(frontend: XmppFrontend) -> Roster:
    return Roster(frontend)
