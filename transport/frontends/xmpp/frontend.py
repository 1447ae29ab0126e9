"""The XMPP frontend: stanzas in, gateway calls out; gateway events in, stanzas out.

:class:`XmppFrontend` is the :class:`~transport.core.interfaces.IFrontend` the
gateway delivers events to. It owns what the XMPP side must remember about each
user (:class:`XmppUser`: resources, buddies already announced, joined rooms)
and routes every stanza the :class:`~transport.frontends.xmpp.component.ComponentLink`
receives to the handler for its concern - one module each, registered here:

* :mod:`.disco` (XEP-0030, XEP-0115), :mod:`.ping` (XEP-0199, XEP-0092),
* :mod:`.register` (XEP-0077, XEP-0100), :mod:`.login` (presence, sessions, probes),
* :mod:`.roster` (subscriptions, buddies), :mod:`.message` (chat, XEP-0184/0085/0224),
* :mod:`.vcard` (vcard-temp, XEP-0153), :mod:`.muc` (XEP-0045), :mod:`.commands` (XEP-0050),
* :mod:`.raw` (raw stanzas of backends with ``features.rawxml``).

Handlers are thin: they translate and call the gateway. Hostile or broken input
is answered with a stanza error (iq, message) or ignored (presence), and logged
at debug level; an exception in a handler becomes ``internal-server-error`` for
that stanza only.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import jid as jidmod
from twisted.words.xish import domish
from zope.interface import implementer

from transport.core import events as ev
from transport.core.interfaces import IFrontend
from transport.frontends.xmpp import stanzas as st
from transport.frontends.xmpp.escaping import EscapeError, escape_node, unescape_node

log = Logger()

IqHandler = Callable[[domish.Element, "Target"], Any]
EventHandler = Callable[[Any], None]

#: Receipts remembered per user (message id -> sending resource).
MAX_RECEIPTS = 256
#: Session id that keeps a ``stay_connected`` user logged in while none of their resources is online
#: (a tab cannot be part of a real resource: resourceprep forbids control characters).
STAY_SESSION = "\tstay-connected"


def as_deferred(fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
    """Call *fn* (plain, Deferred-returning or ``async def``) and get a Deferred of its result."""
    try:
        result = fn(*args)
    except Exception:
        return defer.fail()
    if inspect.iscoroutine(result):
        return defer.ensureDeferred(result)
    if isinstance(result, defer.Deferred):
        return result
    return defer.succeed(result)


def _answers(sender: jidmod.JID, asked: jidmod.JID) -> bool:
    """Whether an iq answer from *sender* may be the answer of *asked* (its account's server answers for a
    bare JID)."""
    if asked.resource is None:
        return sender.userhost() == asked.userhost()
    return sender.full() == asked.full()


@dataclass
class XmppRoom:
    """A legacy room some resources of the user joined."""

    name: str
    nickname: str
    password: str = ""
    #: resources in the room (MUC presence goes to each)
    resources: set[str] = field(default_factory=set)
    #: resources waiting for their self-presence
    joining: set[str] = field(default_factory=set)
    joined: bool = False
    participants: dict[str, ev.ParticipantChanged] = field(default_factory=dict)
    subject: tuple[str, str] | None = None
    #: joined again by the gateway for the user (rooms it stored, after a restart of the main instance), not
    #: by a presence of theirs: the user's resources are taken as its occupants
    restored: bool = False


@dataclass
class XmppUser:
    """One user (bare JID) as the XMPP side knows them."""

    jid: str
    #: resource -> (presence value, status message)
    resources: dict[str, tuple[int, str]] = field(default_factory=dict)
    connected: bool = False
    status: str = ""
    buddies: dict[str, ev.Buddy] = field(default_factory=dict)
    #: buddies whose subscription request was already sent
    announced: set[str] = field(default_factory=set)
    rooms: dict[str, XmppRoom] = field(default_factory=dict)
    rooms_listed: tuple[tuple[str, str], ...] = ()
    receipts: OrderedDict[str, str] = field(default_factory=OrderedDict)
    #: resources not yet seen again since the component reconnected
    unconfirmed: set[str] = field(default_factory=set)
    #: whether a client supports XEP-0144 (by caps ver)
    rosterx: bool = False
    #: rooms to join again at the next session: room -> (nickname, password, when the last resource went
    #: away without leaving the room); see ``[xmpp] rejoin_window``
    rejoin: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    #: the user's ad-hoc settings (None until read from the store at their first session)
    settings: dict[str, str] | None = None
    #: the legacy session is kept with no resource online (the ``stay_connected`` setting)
    staying: bool = False

    def full(self, resource: str) -> str:
        return f"{self.jid}/{resource}"


@dataclass(frozen=True)
class Target:
    """What a stanza's ``to`` names on the transport.

    ``kind`` is ``"transport"`` (the domain), ``"node"`` (``name@domain``: a buddy or a
    room, the handler decides) or ``"occupant"`` (``name@domain/resource``).
    """

    kind: str
    name: str = ""
    resource: str = ""


@implementer(IFrontend)
class XmppFrontend:
    """See the module docstring. *settings* is the ``[xmpp]`` section, *config* the whole configuration."""

    name = "xmpp"

    def __init__(self, gateway: Any, config: Any, clock: Any, send: Callable[[domish.Element], None] | None = None,
                 registry: dict[str, Any] | None = None) -> None:
        self.gateway = gateway
        self.config = config
        self.settings = config["xmpp"]
        self.clock = clock
        self.domain: str = config.get("service", "jid")
        self._send = send or (lambda stanza: None)
        self.registry = registry if registry is not None else {}
        self.users: dict[str, XmppUser] = {}
        self.room_list: tuple[tuple[str, str], ...] = ()
        self.counters: dict[str, int] = {"stanzas_in": 0, "stanzas_out": 0, "errors_sent": 0, "bad_stanzas": 0}
        self._iq: dict[tuple[str, str, str], IqHandler] = {}
        self._message_handlers: list[Callable[[domish.Element, jidmod.JID, Target], bool]] = []
        self._presence_handlers: list[Callable[[domish.Element, jidmod.JID, Target], bool]] = []
        self._events: dict[type, list[EventHandler]] = {}
        self.features: set[str] = {st.NS_DISCO_INFO, st.NS_DISCO_ITEMS}
        self.buddy_features: set[str] = {st.NS_DISCO_INFO}
        #: our iq requests waiting for an answer: id -> (the JID asked, the Deferred)
        self._pending_iqs: dict[str, tuple[jidmod.JID, defer.Deferred[domish.Element]]] = {}
        self._iq_counter = 0
        self.handlers: dict[str, Any] = {}
        self._install_handlers()

    def _install_handlers(self) -> None:
        from transport.frontends.xmpp import (
            commands,
            disco,
            login,
            message,
            muc,
            ping,
            raw,
            register,
            roster,
            vcard,
        )

        for module in (disco, ping, register, login, roster, message, vcard, muc, commands, raw):
            handler = module.install(self)
            self.handlers[module.__name__.rsplit(".", 1)[1]] = handler

    # ------------------------------------------------------------------ registration of handlers

    def route_iq(self, type_: str, uri: str, name: str, handler: IqHandler) -> None:
        """*handler(iq, target)* answers ``<iq type=type_>`` whose payload is ``{uri}name``.

        It returns the result payload (an element), None (empty result), or a Deferred
        of either, or raises / fails with :class:`~.stanzas.StanzaFailure`.
        """
        self._iq[(type_, uri, name)] = handler

    def on_message(self, handler: Callable[[domish.Element, jidmod.JID, Target], bool]) -> None:
        """*handler(stanza, sender, target)* returns True when it took the message."""
        self._message_handlers.append(handler)

    def on_presence(self, handler: Callable[[domish.Element, jidmod.JID, Target], bool]) -> None:
        """*handler(stanza, sender, target)* returns True when it took the presence."""
        self._presence_handlers.append(handler)

    def on_event(self, event_type: type, handler: EventHandler) -> None:
        self._events.setdefault(event_type, []).append(handler)

    # ------------------------------------------------------------------ addressing

    def buddy_jid(self, name: str, resource: str = "") -> str:
        """The JID of legacy contact (or room) *name*; the transport itself when it cannot be escaped."""
        try:
            node = escape_node(name)
        except EscapeError:
            return self.domain
        return f"{node}@{self.domain}/{resource}" if resource else f"{node}@{self.domain}"

    def target_of(self, to: jidmod.JID) -> Target | None:
        """Parse a ``to`` address on this component (None: another domain)."""
        if to.host != self.domain:
            return None
        if to.user is None:
            return Target("transport", "", to.resource or "")
        return Target("occupant" if to.resource else "node", unescape_node(to.user), to.resource or "")

    def user(self, bare: str) -> XmppUser:
        known = self.users.get(bare)
        if known is None:
            known = self.users[bare] = XmppUser(bare)
        return known

    def is_admin(self, sender: jidmod.JID) -> bool:
        admins = self.config.get("service", "admin_jid")
        return sender.userhost() in admins or sender.full() in admins

    # ------------------------------------------------------------------ sending

    def send(self, stanza: domish.Element) -> None:
        """Send a stanza (``from`` defaults to the transport's domain)."""
        if not stanza.getAttribute("from"):
            stanza["from"] = self.domain
        self.counters["stanzas_out"] += 1
        self._send(stanza)

    def send_error(self, stanza: domish.Element, condition: str, text: str = "", type: str | None = None) -> None:
        """Answer *stanza* with an error (never an error to an error)."""
        if stanza.getAttribute("type") == "error" or stanza.getAttribute("type") == "result":
            return
        self.counters["errors_sent"] += 1
        self.send(st.error_reply(stanza, condition, text, type))

    def request(self, iq: domish.Element, timeout: float = 30.0) -> defer.Deferred[domish.Element]:
        """Send ``<iq/>`` *iq* and fire with the answer (an error answer fails with StanzaFailure)."""
        self._iq_counter += 1
        iq_id = f"tr{self._iq_counter}"
        iq["id"] = iq_id
        d: defer.Deferred[domish.Element] = defer.Deferred()
        self._pending_iqs[iq_id] = (jidmod.internJID(iq.getAttribute("to", "")), d)
        timer = self.clock.callLater(timeout, self._iq_timeout, iq_id)

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        d.addBoth(done)
        self.send(iq)
        return d

    def stop(self) -> None:
        """The frontend stops: our iq requests will get no answer (their timers must not outlive us)."""
        pending, self._pending_iqs = self._pending_iqs, {}
        for _, d in pending.values():
            d.errback(st.StanzaFailure("remote-server-timeout", "the transport is stopping"))

    def _iq_timeout(self, iq_id: str) -> None:
        pending = self._pending_iqs.pop(iq_id, None)
        if pending is not None:
            pending[1].errback(st.StanzaFailure("remote-server-timeout"))

    # ------------------------------------------------------------------ inbound stanzas

    def stanza_received(self, stanza: domish.Element) -> None:
        """Entry point for every element the component link receives."""
        self.counters["stanzas_in"] += 1
        kind = stanza.name
        if kind not in ("iq", "message", "presence"):
            return
        if not stanza.getAttribute("from"):
            # a server stamps 'from' on everything it routes to a component: without it (a broken server) there
            # is no one to address an error to (internJID('') would raise RuntimeError)
            self.counters["bad_stanzas"] += 1
            log.warn("dropped <{kind}/> without a 'from' address: {xml}", kind=kind, xml=st.loggable(stanza, 200))
            return
        try:
            sender = jidmod.internJID(stanza.getAttribute("from"))
            if not stanza.getAttribute("to"):
                raise jidmod.InvalidFormat("no 'to' address")
            to = jidmod.internJID(stanza.getAttribute("to"))
        except st.JID_ERRORS:
            self.counters["bad_stanzas"] += 1
            if kind != "presence":
                self.send_error(stanza, "jid-malformed")
            return
        if sender.user is None and sender.host == self.domain:
            return  # our own stanza bounced back
        target = self.target_of(to)
        if target is None:
            if kind != "presence":
                self.send_error(stanza, "item-not-found")
            return
        if kind == "iq":
            self._iq_received(stanza, sender, target)
        elif kind == "message":
            self._dispatch(self._message_handlers, stanza, sender, target)
        else:
            self._dispatch(self._presence_handlers, stanza, sender, target)

    def _dispatch(self, handlers: list[Callable[[domish.Element, jidmod.JID, Target], bool]],
                  stanza: domish.Element, sender: jidmod.JID, target: Target) -> None:
        try:
            for handler in handlers:
                if handler(stanza, sender, target):
                    return
        except st.StanzaFailure as e:
            if stanza.name != "presence" or e.condition in ("conflict", "not-authorized", "item-not-found",
                                                              "not-acceptable", "registration-required"):
                self.send_error(stanza, e.condition, e.text, e.type)
        except Exception:
            log.failure("handling {kind} from {sender}", kind=stanza.name, sender=sender.full())
            if stanza.name == "message":
                self.send_error(stanza, "internal-server-error")

    def _iq_received(self, iq: domish.Element, sender: jidmod.JID, target: Target) -> None:
        type_ = iq.getAttribute("type")
        if type_ in ("result", "error"):
            iq_id = iq.getAttribute("id", "")
            pending = self._pending_iqs.get(iq_id)
            # only the entity we asked may answer (our ids are predictable: anyone could send a forged answer)
            if pending is not None and _answers(sender, pending[0]):
                d = self._pending_iqs.pop(iq_id)[1]
                if type_ == "result":
                    d.callback(iq)
                else:
                    err = next((c for c in iq.elements() if c.name == "error"), None)
                    condition = "undefined-condition"
                    if err is not None:
                        for c in err.elements():
                            if c.uri == st.NS_STANZAS and c.name != "text":
                                condition = c.name
                                break
                    d.errback(st.StanzaFailure(condition))
            return
        if type_ not in ("get", "set") or not iq.getAttribute("id"):
            self.send_error(iq, "bad-request")
            return
        payload = next(iter(iq.elements()), None)
        if payload is None:
            self.send_error(iq, "bad-request", "no payload")
            return
        handler = self._iq.get((type_, payload.uri or "", payload.name))
        if handler is None:
            self.send_error(iq, "service-unavailable")
            return
        d = as_deferred(handler, iq, target)
        d.addCallbacks(lambda result: self.send(st.iq_result(iq, result)),
                       lambda failure: self._iq_failed(failure, iq))

    def _iq_failed(self, failure: Failure, iq: domish.Element) -> None:
        e = failure.value
        if isinstance(e, st.StanzaFailure):
            self.send_error(iq, e.condition, e.text, e.type)
            return
        log.failure("answering {xml}", failure, xml=st.loggable(iq, 300))
        self.send_error(iq, "internal-server-error")

    # ------------------------------------------------------------------ events from the gateway

    def deliver(self, event: Any) -> None:
        """IFrontend: translate a gateway event into stanzas."""
        for handler in self._events.get(type(event), ()):
            handler(event)
