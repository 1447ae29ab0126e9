"""Namespaces and small stanza builders shared by the XMPP handlers."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

from twisted.words.protocols.jabber import error
from twisted.words.protocols.jabber import jid as jidmod
from twisted.words.xish import domish

from transport.core import presence as pr

#: What parsing an address can raise: Twisted's own error, bad encodings, and (from nameprep on a domain
#: with an empty label such as ``b..c``) IndexError. Catch this tuple wherever an address from the wire is parsed.
JID_ERRORS: tuple[type[Exception], ...] = (jidmod.InvalidFormat, UnicodeError, IndexError)

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_CAPS = "http://jabber.org/protocol/caps"
NS_REGISTER = "jabber:iq:register"
NS_GATEWAY = "jabber:iq:gateway"
NS_DATA = "jabber:x:data"
NS_PING = "urn:xmpp:ping"
NS_VERSION = "jabber:iq:version"
NS_RECEIPTS = "urn:xmpp:receipts"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_ATTENTION = "urn:xmpp:attention:0"
NS_VCARD = "vcard-temp"
NS_VCARD_UPDATE = "vcard-temp:x:update"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_DELAY = "urn:xmpp:delay"
NS_XHTML_IM = "http://jabber.org/protocol/xhtml-im"
NS_XHTML = "http://www.w3.org/1999/xhtml"
NS_OOB = "jabber:x:oob"
NS_NICK = "http://jabber.org/protocol/nick"
NS_IDLE = "urn:xmpp:idle:1"
NS_HINTS = "urn:xmpp:hints"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

_SHOW_TO_VALUE = {None: pr.ONLINE, "": pr.ONLINE, "chat": pr.FREE_FOR_CHAT, "away": pr.AWAY, "xa": pr.XA,
                  "dnd": pr.DND}
_VALUE_TO_SHOW = {pr.FREE_FOR_CHAT: "chat", pr.AWAY: "away", pr.XA: "xa", pr.DND: "dnd"}


class StanzaFailure(Exception):
    """Raised by handlers: answer the stanza with this XMPP error."""

    def __init__(self, condition: str, text: str = "", type: str | None = None) -> None:
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text
        self.type = type


def child(element: domish.Element, uri: str | None, name: str) -> domish.Element | None:
    """The first child element *name* in namespace *uri* (None: any namespace), or None."""
    for c in element.elements():
        if c.name == name and (uri is None or c.uri == uri):
            return c
    return None


def text_of(element: domish.Element | None, limit: int = 65536) -> str:
    """The text of *element* ('' when None), bounded to *limit* characters."""
    if element is None:
        return ""
    return str(element)[:limit]


def show_to_value(show: str | None) -> int:
    """Presence value for an XMPP ``<show/>`` (no show = online; unknown words count as online)."""
    return _SHOW_TO_VALUE.get(show, pr.ONLINE)


def value_to_show(value: int) -> str | None:
    """The ``<show/>`` for a presence value (None for plain online)."""
    if value > pr.FREE_FOR_CHAT:
        return "chat"
    return _VALUE_TO_SHOW.get(value)


def presence(to: str, frm: str, type: str | None = None, value: int = pr.ONLINE, status: str = "") -> domish.Element:
    """A ``<presence/>``; *value* becomes ``<show/>`` for available presences."""
    p = domish.Element((None, "presence"))
    p["to"] = to
    p["from"] = frm
    if type:
        p["type"] = type
    elif value:
        show = value_to_show(value)
        if show:
            p.addElement("show", content=show)
    if status:
        p.addElement("status", content=status)
    return p


def message(to: str, frm: str, type: str = "chat", body: str | None = None, id: str | None = None) -> domish.Element:
    m = domish.Element((None, "message"))
    m["to"] = to
    m["from"] = frm
    if type:
        m["type"] = type
    if id:
        m["id"] = id
    if body is not None:
        m.addElement("body", content=body)
    return m


def _answer(stanza: domish.Element, name: str, type: str) -> domish.Element:
    """An answer *name* of *type* to *stanza*: to/from swapped, the same id."""
    reply = domish.Element((None, name))
    reply["type"] = type
    if stanza.getAttribute("from"):
        reply["to"] = stanza["from"]
    if stanza.getAttribute("to"):
        reply["from"] = stanza["to"]
    if stanza.getAttribute("id"):
        reply["id"] = stanza["id"]
    return reply


def error_reply(stanza: domish.Element, condition: str, text: str = "", type: str | None = None) -> domish.Element:
    """The error answer to *stanza* (to/from swapped, same id and name)."""
    reply = _answer(stanza, stanza.name, "error")
    reply.addChild(error.StanzaError(condition, type=type, text=text or None).getElement())
    return reply


def loggable(stanza: domish.Element, limit: int = 300) -> str:
    """*stanza* as XML for a log line, unless it carries a password (XEP-0077 registration, a form's
    ``password`` or ``text-private`` field): then only its name and addresses."""
    for el in _descendants(stanza):
        if el.name == "password" or (el.name == "field" and (el.getAttribute("type") == "text-private"
                                                             or el.getAttribute("var") == "password")):
            attrs = " ".join(f"{k}={stanza.getAttribute(k)!r}" for k in ("type", "id", "from", "to")
                             if stanza.getAttribute(k))
            return f"<{stanza.name} {attrs}> (content withheld: it carries a password)"
    return stanza.toXml()[:limit]


def _descendants(element: domish.Element) -> Any:
    for c in element.elements():
        yield c
        yield from _descendants(c)


def iq_result(stanza: domish.Element, payload: domish.Element | None = None) -> domish.Element:
    reply = _answer(stanza, "iq", "result")
    if payload is not None:
        reply.addChild(payload)
    return reply


def delay(stamp: datetime, frm: str) -> domish.Element:
    """XEP-0203 ``<delay/>``."""
    d = domish.Element((NS_DELAY, "delay"))
    d["stamp"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    d["from"] = frm
    return d


def _from_etree(node: Any) -> domish.Element:
    tag = node.tag
    uri, name = (tag[1:].split("}", 1) if tag.startswith("{") else (None, tag))
    el = domish.Element((uri, name))
    for key, value in node.attrib.items():
        if not key.startswith("{"):
            el[key] = value
    if node.text:
        el.addContent(node.text)
    for sub in node:
        el.addChild(_from_etree(sub))
        if sub.tail:
            el.addContent(sub.tail)
    return el


def xhtml_im(markup: str) -> domish.Element | None:
    """XEP-0071 ``<html/>`` for a backend's XHTML (a ``<body>`` or its content); None when not well-formed."""
    text = markup.strip()
    if not text.startswith("<body"):
        text = f'<body xmlns="{NS_XHTML}">{text}</body>'
    elif "xmlns" not in text[:200]:
        text = text.replace("<body", f'<body xmlns="{NS_XHTML}"', 1)
    try:
        parsed = ET.fromstring(text)
    except ET.ParseError:
        return None
    html = domish.Element((NS_XHTML_IM, "html"))
    body = _from_etree(parsed)
    if body.uri != NS_XHTML or body.name != "body":
        return None
    html.addChild(body)
    return html
