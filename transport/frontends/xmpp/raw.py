"""Raw XML stanzas from backends that announced ``[features] rawxml`` (TYPE_RAW_XML).

Such a backend speaks XMPP itself for what the protocol has no frame for. Its
stanza is parsed (a single ``<message/>``, ``<presence/>`` or ``<iq/>``, at most
``MAX_RAW`` characters), addressed only to the user it was sent for (the ``to``
must be that user's JID) and from the transport's domain or a JID under it
(``from`` defaults to the domain); anything else is dropped and logged.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.words.protocols.jabber import jid as jidmod
from twisted.words.xish import domish

from transport.core import events as ev
from transport.frontends.xmpp import stanzas as st
from transport.frontends.xmpp.frontend import XmppFrontend

log = Logger()
MAX_RAW = 256 * 1024


def parse_stanza(text: str) -> domish.Element | None:
    """One stanza from *text* in the component namespace; None when it is not exactly one well-formed stanza."""
    out: list[domish.Element] = []
    stream = domish.elementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = out.append
    stream.DocumentEndEvent = lambda: None
    try:
        stream.parse(b"<stream xmlns='jabber:component:accept'>")
        stream.parse(text.encode("utf-8"))
    except (domish.ParserError, UnicodeError, ValueError):
        return None
    if len(out) != 1 or out[0].name not in ("message", "presence", "iq"):
        return None
    return out[0]


class RawStanzas:
    def __init__(self, frontend: XmppFrontend) -> None:
        self.frontend = frontend
        frontend.on_event(ev.RawXml, self.raw)

    def raw(self, event: ev.RawXml) -> None:
        stanza = parse_stanza(event.xml[:MAX_RAW + 1]) if len(event.xml) <= MAX_RAW else None
        if stanza is None:
            log.warn("raw XML from the backend for {user} is not one stanza: dropped", user=event.user)
            return
        try:
            to = jidmod.internJID(stanza.getAttribute("to", ""))
            frm = jidmod.internJID(stanza.getAttribute("from") or self.frontend.domain)
        except st.JID_ERRORS:
            log.warn("raw XML from the backend for {user} has a bad address: dropped", user=event.user)
            return
        if to.userhost() != event.user or frm.host != self.frontend.domain:
            log.warn("raw XML from the backend for {user} is addressed to {to} from {frm}: dropped",
                     user=event.user, to=to.full(), frm=frm.full())
            return
        stanza["from"] = frm.full()
        self.frontend.send(stanza)


def install(frontend: XmppFrontend) -> RawStanzas:
    return RawStanzas(frontend)
