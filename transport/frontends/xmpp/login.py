"""Presence to the transport: sessions, logins and the transport's own presence.

Each available resource of a registered user is one gateway session (the
resource is the session id). The first one logs the user in to the legacy
network; every presence change goes to the gateway, which combines the
resources with the core's presence rule (an explicit choice wins, idle
presences - XEP-0319 ``<idle/>`` - only count when chattier) into one
STATUS_CHANGED; the last unavailable resource logs the user out.

When the component (re)connects, the transport probes every registered user:
the users' servers answer with the presence of each available resource, which
logs them in again. Resources the gateway still had from before that do not
show up within ``[xmpp] session_grace`` seconds are closed.

CONNECTED makes the transport available to the user (with XEP-0115 caps);
DISCONNECTED sends the backend's explanation as a message and makes the
transport unavailable with it as status; while the gateway logs a user in again
after a backend crash the transport shows ``xa``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import jid as jidmod
from twisted.words.xish import domish

from transport.core import events as ev
from transport.core import presence as pr
from transport.frontends.xmpp import stanzas as st
from transport.frontends.xmpp.frontend import STAY_SESSION, Target, XmppFrontend, XmppUser

log = Logger()


class Login:
    def __init__(self, frontend: XmppFrontend) -> None:
        self.frontend = frontend
        self._grace: IDelayedCall | None = None
        #: sessions being opened: (bare JID, resource) -> who waits for them
        self._opening: dict[tuple[str, str], list[defer.Deferred[Any]]] = {}
        frontend.on_presence(self.presence)
        frontend.on_event(ev.Connected, self.connected)
        frontend.on_event(ev.Disconnected, self.disconnected)
        frontend.on_event(ev.Reconnecting, self.reconnecting)

    # ------------------------------------------------------------------ the transport's presence

    def transport_presence(self, user: XmppUser, to: str | None = None) -> domish.Element:
        if user.connected:
            p = st.presence(to or user.jid, self.frontend.domain)
        else:
            p = st.presence(to or user.jid, self.frontend.domain, "unavailable", status=user.status)
        if user.connected:
            disco = self.frontend.handlers.get("disco")
            if disco is not None:
                p.addChild(disco.caps())
        return p

    # ------------------------------------------------------------------ stanzas

    def presence(self, stanza: domish.Element, sender: jidmod.JID, target: Target) -> bool:
        type_ = stanza.getAttribute("type")
        if target.kind == "occupant" or type_ in ("subscribe", "subscribed", "unsubscribe", "unsubscribed"):
            return False
        bare = sender.userhost()
        if type_ == "probe":
            self.answer_probe(bare, target)
            return True
        if target.kind != "transport":
            return True  # presence to a buddy (broadcast or directed): the legacy network has no use for it
        if type_ in ("unavailable", "error"):
            known = self.frontend.users.get(bare)
            if known is not None:
                if sender.resource:
                    self.close_session(known, sender.resource)
                else:
                    # the server answered our probe: none of the user's resources is online (it restarted?)
                    for resource in list(known.resources):
                        self.close_session(known, resource)
            return True
        if type_ is not None or not sender.resource:
            return True
        show = st.text_of(st.child(stanza, None, "show"), 10).strip() or None
        status = st.text_of(st.child(stanza, None, "status"), 2000)
        automatic = st.child(stanza, st.NS_IDLE, "idle") is not None
        d = self.resource_available(bare, sender.resource, st.show_to_value(show), status, automatic)
        d.addCallbacks(lambda _: self._client_details(stanza, sender), lambda f: None)
        return True

    def _client_details(self, stanza: domish.Element, sender: jidmod.JID) -> None:
        """What a registered user's presence says about their client (avatar hash, caps)."""
        vcard = self.frontend.handlers.get("vcard")
        if vcard is not None:
            vcard.user_presence(stanza, sender.userhost())
        roster = self.frontend.handlers.get("roster")
        if roster is not None:
            roster.client_caps(stanza, sender)

    def answer_probe(self, bare: str, target: Target) -> None:
        known = self.frontend.users.get(bare)
        if target.kind == "transport":
            if known is None:
                self.frontend.send(st.presence(bare, self.frontend.domain, "unavailable"))
            else:
                self.frontend.send(self.transport_presence(known, bare))
            return
        roster = self.frontend.handlers.get("roster")
        if roster is not None and known is not None and target.name in known.buddies and known.connected:
            self.frontend.send(roster.buddy_presence(known, known.buddies[target.name]))
        else:
            self.frontend.send(st.presence(bare, self.frontend.buddy_jid(target.name), "unavailable"))

    def resource_available(self, bare: str, resource: str, value: int, status: str,
                           automatic: bool) -> defer.Deferred[Any]:
        """Resource *resource* of *bare* is available; fires once the gateway opened its session."""
        user = self.frontend.user(bare)
        gateway = self.frontend.gateway
        if resource in user.unconfirmed:
            # the resource answered the probe after a reconnection: its client may have reconnected too
            # and missed the transport's, the buddies' and the rooms' presences
            user.unconfirmed.discard(resource)
            self._present(user, resource)
            muc = self.frontend.handlers.get("muc")
            if muc is not None:
                muc.resource_back(user, resource)
        if resource in user.resources:
            if user.resources[resource] == (value, status):
                return defer.succeed(None)
            user.resources[resource] = (value, status)
            d: defer.Deferred[Any] = gateway.presence_changed(bare, resource, value, status, automatic)
            return d.addErrback(self._failed, "presence change", bare)
        user.resources[resource] = (value, status)
        d = gateway.session_opened(self.frontend, bare, resource, value, status, automatic)
        d.addCallback(self._opened, user, resource)
        d.addErrback(self._open_failed, user, resource)
        waiters: list[defer.Deferred[Any]] = []
        self._opening[(bare, resource)] = waiters

        def done(result: Any) -> None:
            self._opening.pop((bare, resource), None)
            for waiter in waiters:
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(result)

        waiter = self.when_open(bare, resource)
        d.addBoth(done)
        return waiter

    def when_open(self, bare: str, resource: str) -> defer.Deferred[Any]:
        """Fires when the session of *resource* is open (at once if it is); fails if it could not be."""
        waiters = self._opening.get((bare, resource))
        if waiters is None:
            return defer.succeed(None)
        d: defer.Deferred[Any] = defer.Deferred()
        waiters.append(d)
        return d

    def _opened(self, state: Any, user: XmppUser, resource: str) -> Any:
        if getattr(state, "state", "") == "online" and not user.connected:
            user.connected = True
        if user.staying and resource != STAY_SESSION:
            # back with a real client: the placeholder session is not needed any more
            user.staying = False
            self.frontend.gateway.session_closed(user.jid, STAY_SESSION)
        if user.settings is None:
            self._load_settings(user)
        if user.connected:
            # a new resource: the transport and the buddies are there already
            self._present(user, resource)
        muc = self.frontend.handlers.get("muc")
        if muc is not None and user.rejoin:
            muc.rejoin(user, resource)
        return state

    def _present(self, user: XmppUser, resource: str) -> None:
        """Send the transport's and the buddies' presence to one resource."""
        self.frontend.send(self.transport_presence(user, user.full(resource)))
        roster = self.frontend.handlers.get("roster")
        if roster is not None and user.connected:
            for buddy in user.buddies.values():
                self.frontend.send(roster.buddy_presence(user, buddy, user.full(resource)))

    def _open_failed(self, failure: Failure, user: XmppUser, resource: str) -> Failure:
        user.resources.pop(resource, None)
        if not user.resources and not user.connected and not user.buddies and not user.rooms:
            # not registered (or the store failed): keep nothing about a JID anyone can make up
            if self.frontend.users.get(user.jid) is user:
                del self.frontend.users[user.jid]
        from transport.core.gateway import NotRegistered

        if failure.check(NotRegistered):
            log.debug("presence from {user}, who is not registered", user=user.jid)
        else:
            log.failure("opening a session for {user}", failure, user=user.jid)
        return failure

    def _failed(self, failure: Failure, what: str, user: str) -> None:
        log.warn("{what} of {user} failed: {reason}", what=what, user=user, reason=failure.getErrorMessage())

    def _load_settings(self, user: XmppUser) -> None:
        store = self.frontend.gateway.store
        d = store.get_user(user.jid)
        d.addCallback(lambda record: store.get_settings(record.id) if record is not None else {})
        d.addCallback(lambda settings: setattr(user, "settings", dict(settings)))
        d.addErrback(lambda f: log.warn("settings of {user}: {e}", user=user.jid, e=f.getErrorMessage()))

    def close_session(self, user: XmppUser, resource: str) -> None:
        """End the session of *resource* (its rooms are joined again if the user comes back soon).

        The last resource of a user with the ``stay_connected`` setting leaves a placeholder session
        (presence xa) instead, so the legacy session goes on; messages then go to the bare JID, where the
        user's server keeps them until a client comes back.
        """
        if resource not in user.resources:
            return
        del user.resources[resource]
        user.unconfirmed.discard(resource)
        muc = self.frontend.handlers.get("muc")
        if muc is not None:
            muc.resource_gone(user, resource)
        gateway = self.frontend.gateway
        stay = (not user.resources and user.connected and not user.staying
                and (user.settings or {}).get("stay_connected") == "1")
        if stay:
            user.staying = True
            d = gateway.session_opened(self.frontend, user.jid, STAY_SESSION, pr.XA, "")
            d.addErrback(lambda f: log.warn("keeping {user} connected: {e}", user=user.jid, e=f.getErrorMessage()))
            d.addBoth(lambda _: gateway.session_closed(user.jid, resource))
            return
        gateway.session_closed(user.jid, resource)
        if not user.resources and not user.staying:
            user.connected = False

    def end_stay(self, user: XmppUser) -> None:
        """Close the placeholder session (unregistration)."""
        if user.staying:
            user.staying = False
            self.frontend.gateway.session_closed(user.jid, STAY_SESSION)

    # ------------------------------------------------------------------ component (re)connection

    def component_up(self) -> None:
        """The link is (again) authenticated: probe every registered user."""
        for user in self.frontend.users.values():
            user.unconfirmed = set(user.resources)
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        self._grace = self.frontend.clock.callLater(self.frontend.settings["session_grace"], self.expire)
        d = self.frontend.gateway.store.all_users()
        d.addCallback(self._probe)
        d.addErrback(lambda f: log.failure("listing registered users to probe", f))

    def _probe(self, records: list[Any]) -> None:
        # The store holds every frontend's users: only accounts (bare JIDs with a node, not this
        # transport's own) are XMPP users; a WebSocket user id such as "alice" would be probed as a domain.
        jids = []
        for record in records:
            try:
                parsed = jidmod.internJID(record.jid)
            except st.JID_ERRORS:
                continue
            if parsed.user and not parsed.resource and parsed.host != self.frontend.domain:
                jids.append(record.jid)
        log.info("probing {n} registered XMPP users", n=len(jids))
        for bare in jids:
            self.frontend.send(st.presence(bare, self.frontend.domain, "probe"))

    def expire(self) -> None:
        """Close the sessions that did not answer the probe in time."""
        self._grace = None
        for user in list(self.frontend.users.values()):
            for resource in list(user.unconfirmed):
                log.info("{user}/{resource} did not come back after the reconnection: closing it",
                         user=user.jid, resource=resource)
                self.close_session(user, resource)

    def stop(self) -> None:
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        self._grace = None

    # ------------------------------------------------------------------ events

    def connected(self, event: ev.Connected) -> None:
        user = self.frontend.user(event.user)
        user.connected = True
        user.status = ""
        self.frontend.send(self.transport_presence(user))

    def disconnected(self, event: ev.Disconnected) -> None:
        user = self.frontend.user(event.user)
        user.connected = False
        text = event.message or "disconnected from the legacy network"
        user.status = text
        self.frontend.send(st.message(user.jid, self.frontend.domain, "chat", f"Disconnected: {text}"))
        for buddy in user.buddies.values():
            self.frontend.send(st.presence(user.jid, self.frontend.buddy_jid(buddy.name), "unavailable"))
        self.frontend.send(self.transport_presence(user))

    def reconnecting(self, event: ev.Reconnecting) -> None:
        user = self.frontend.user(event.user)
        status = f"Reconnecting to the legacy network (attempt {event.attempt})"
        self.frontend.send(st.presence(user.jid, self.frontend.domain, value=pr.XA, status=status))


def install(frontend: XmppFrontend) -> Login:
    return Login(frontend)
