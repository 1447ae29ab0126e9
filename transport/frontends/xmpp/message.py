"""One-to-one messages, XEP-0184 receipts, XEP-0085 chat states and XEP-0224 attention.

A ``<message type='chat'>`` (or normal) to a buddy JID becomes CONV_MESSAGE;
when it asks for a receipt (``<request xmlns='urn:xmpp:receipts'/>``) its id
travels along, and the backend's CONV_MESSAGE_ACK comes back as
``<received id=…/>`` to the resource that sent it. While the user's backend
session is (re)starting the gateway queues the message; when its queue is full
the sender gets ``resource-constraint`` (type ``wait``), when the user is not
logged in ``recipient-unavailable``, and a queued message that finally could not
be delivered comes back as an error message with the original id - never silence.

Messages from the backend reach the user's bare JID from the buddy's JID:
``timestamp`` → XEP-0203 ``<delay/>``, ``xhtml`` → XEP-0071, ``headline`` →
``type='headline'``, attachments → XEP-0066 ``jabber:x:oob`` (the URL is added
to the body too, for clients without OOB). Chat states and attention go both ways.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import jid as jidmod
from twisted.words.xish import domish

from transport.core import events as ev
from transport.frontends.xmpp import stanzas as st
from transport.frontends.xmpp.frontend import MAX_RECEIPTS, Target, XmppFrontend

log = Logger()

MAX_BODY = 64 * 1024
CHAT_STATES = {"composing": "composing", "paused": "paused", "active": "active"}


class Messages:
    def __init__(self, frontend: XmppFrontend) -> None:
        self.frontend = frontend
        frontend.on_message(self.message)
        frontend.on_event(ev.MessageReceived, self.received)
        frontend.on_event(ev.MessageAcked, self.acked)
        frontend.on_event(ev.MessageFailed, self.failed)
        frontend.on_event(ev.Typing, self.typing)
        frontend.on_event(ev.Attention, self.attention_received)
        features = {st.NS_RECEIPTS, st.NS_CHATSTATES, st.NS_ATTENTION, st.NS_XHTML_IM, st.NS_OOB}
        frontend.features.update(features)
        frontend.buddy_features.update(features)

    # ------------------------------------------------------------------ from the user

    def message(self, stanza: domish.Element, sender: jidmod.JID, target: Target) -> bool:
        type_ = stanza.getAttribute("type", "normal")
        if type_ == "groupchat" or target.kind == "occupant":
            return False
        user = sender.userhost()
        if type_ == "error":
            return True
        if target.kind == "transport":
            return True  # messages to the transport itself carry nothing for the legacy network
        name = target.name
        gateway = self.frontend.gateway
        body_el = st.child(stanza, None, "body")
        body = st.text_of(body_el, MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise st.StanzaFailure("not-acceptable", f"messages are limited to {MAX_BODY} characters", "modify")
        state = next((c.name for c in stanza.elements() if c.uri == st.NS_CHATSTATES and c.name in CHAT_STATES),
                     None)
        attention = st.child(stanza, st.NS_ATTENTION, "attention") is not None
        if attention:
            d = gateway.attention(user, name, body)
            d.addErrback(self._send_failed, stanza)
            return True
        if body_el is not None and body:
            wants_receipt = st.child(stanza, st.NS_RECEIPTS, "request") is not None
            msg_id = stanza.getAttribute("id", "")[:256] if wants_receipt else ""
            xhtml = ""
            html = st.child(stanza, st.NS_XHTML_IM, "html")
            if html is not None:
                xbody = st.child(html, st.NS_XHTML, "body")
                if xbody is not None:
                    xhtml = xbody.toXml()[:MAX_BODY]
            known = self.frontend.users.get(user)
            if msg_id and known is not None:
                known.receipts[msg_id] = sender.full()
                while len(known.receipts) > MAX_RECEIPTS:
                    known.receipts.popitem(last=False)
            d = gateway.send_message(user, name, body, id=msg_id, xhtml=xhtml)
            d.addErrback(self._send_failed, stanza)
        if state is not None:
            try:
                gateway.typing(user, name, state)
            except Exception:
                log.failure("chat state from {user}", user=user)
        return True

    def _send_failed(self, failure: Failure, stanza: domish.Element) -> None:
        from transport.core.gateway import NotConnected, QueueFull, ShuttingDown

        if failure.check(ShuttingDown):
            self.frontend.send_error(stanza, "service-unavailable", "the gateway is stopping; try again later",
                                     "wait")
        elif failure.check(QueueFull):
            self.frontend.send_error(stanza, "resource-constraint", "too many messages are waiting for the "
                                     "legacy network; try again later", "wait")
        elif failure.check(NotConnected):
            self.frontend.send_error(stanza, "recipient-unavailable", "you are not logged in to the legacy network",
                                     "wait")
        else:
            log.failure("sending a message", failure)
            self.frontend.send_error(stanza, "internal-server-error")

    # ------------------------------------------------------------------ to the user

    def received(self, event: ev.MessageReceived) -> None:
        muc = self.frontend.handlers.get("muc")
        if muc is not None and muc.takes(event):
            return
        buddy = self.frontend.buddy_jid(event.buddy)
        m = self.build(event.user, buddy, event)
        self.frontend.send(m)

    def build(self, to: str, frm: str, event: ev.MessageReceived, type_: str = "chat") -> domish.Element:
        body = event.body
        urls = [a.url for a in event.attachments if a.url]
        for url in urls:
            if url not in body:
                body = f"{body}\n{url}" if body else url
        if event.carbon:
            body = f"(sent from another client) {body}"
        m = st.message(to, frm, "headline" if event.headline else type_, body, event.id or None)
        if event.xhtml:
            html = st.xhtml_im(event.xhtml)
            if html is not None:
                m.addChild(html)
        for attachment in event.attachments:
            if attachment.url:
                oob = m.addElement((st.NS_OOB, "x"))
                oob.addElement("url", content=attachment.url)
                if attachment.description:
                    oob.addElement("desc", content=attachment.description)
        if event.timestamp is not None:
            m.addChild(st.delay(event.timestamp, self.frontend.domain))
        if not event.headline and type_ == "chat":
            m.addElement((st.NS_CHATSTATES, "active"))
        return m

    def acked(self, event: ev.MessageAcked) -> None:
        user = self.frontend.users.get(event.user)
        to = event.user
        if user is not None:
            to = user.receipts.pop(event.id, event.user)
        m = st.message(to, self.frontend.buddy_jid(event.buddy), "chat")
        m.addElement((st.NS_RECEIPTS, "received"))["id"] = event.id
        self.frontend.send(m)

    def failed(self, event: ev.MessageFailed) -> None:
        user = self.frontend.users.get(event.user)
        to = event.user
        if user is not None and event.id:
            to = user.receipts.pop(event.id, event.user)
        original = st.message(self.frontend.buddy_jid(event.buddy), to, "chat", None, event.id or None)
        reply = st.error_reply(original, "recipient-unavailable", f"not delivered: {event.reason}", "wait")
        if event.body:
            # the original text comes back with the error, so that the user knows which message it was
            reply.addElement("body", content=event.body)
        self.frontend.send(reply)

    def typing(self, event: ev.Typing) -> None:
        m = st.message(event.user, self.frontend.buddy_jid(event.buddy), "chat")
        m.addElement((st.NS_CHATSTATES, CHAT_STATES.get(event.state, "active")))
        m.addElement((st.NS_HINTS, "no-store"))
        self.frontend.send(m)

    def attention_received(self, event: ev.Attention) -> None:
        m = st.message(event.user, self.frontend.buddy_jid(event.buddy), "headline", event.body or None)
        m.addElement((st.NS_ATTENTION, "attention"))
        self.frontend.send(m)


def install(frontend: XmppFrontend) -> Any:
    return Messages(frontend)
