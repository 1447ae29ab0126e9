"""vcard-temp (XEP-0054) of buddies and of the user, XEP-0153 avatar hashes.

A vCard request to a buddy JID asks the backend (VCARD with a fresh id); the
answer becomes the iq result (FN, NICKNAME, PHOTO with its MIME type guessed
from the image's first bytes). A backend that does not answer within
``[xmpp] vcard_timeout`` seconds produces ``remote-server-timeout``.

The user's own vCard reaches the legacy network two ways: a vcard-temp ``set``
sent to the transport, or - as clients publish avatars with XEP-0153 - a new
photo hash in the user's presence, after which the transport fetches the
user's vCard from their server and passes nickname and photo on.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.xish import domish

from transport.core import events as ev
from transport.frontends.xmpp import stanzas as st
from transport.frontends.xmpp.frontend import Target, XmppFrontend

log = Logger()
MAX_PHOTO = 512 * 1024


def image_type(data: bytes) -> str:
    """MIME type of an image from its magic bytes (``image/png`` when unknown)."""
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data.startswith(b"GIF8"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"


def vcard_element(card: ev.VCard) -> domish.Element:
    v = domish.Element((st.NS_VCARD, "vCard"))
    if card.fullname:
        v.addElement("FN", content=card.fullname)
    if card.nickname:
        v.addElement("NICKNAME", content=card.nickname)
    if card.photo:
        photo = v.addElement("PHOTO")
        photo.addElement("TYPE", content=image_type(card.photo))
        photo.addElement("BINVAL", content=base64.b64encode(card.photo).decode("ascii"))
    return v


def parse_vcard(v: domish.Element) -> tuple[str, bytes]:
    """(nickname, photo) of a vcard-temp element."""
    nickname = st.text_of(st.child(v, None, "NICKNAME"), 200).strip() or st.text_of(st.child(v, None, "FN"),
                                                                                     200).strip()
    photo = b""
    p = st.child(v, None, "PHOTO")
    if p is not None:
        binval = st.text_of(st.child(p, None, "BINVAL"), MAX_PHOTO * 2)
        try:
            photo = base64.b64decode("".join(binval.split()), validate=True)[:MAX_PHOTO]
        except (binascii.Error, ValueError):
            photo = b""
    return nickname, photo


class VCards:
    def __init__(self, frontend: XmppFrontend) -> None:
        self.frontend = frontend
        self.photo_hashes: dict[str, str] = {}
        frontend.route_iq("get", st.NS_VCARD, "vCard", self.get)
        frontend.route_iq("set", st.NS_VCARD, "vCard", self.set)
        frontend.features.add(st.NS_VCARD)
        frontend.buddy_features.add(st.NS_VCARD)

    async def get(self, iq: domish.Element, target: Target) -> domish.Element:
        if target.kind == "transport":
            name = self.frontend.config.get("identity", "name")
            return vcard_element(ev.VCard("", "", fullname=name, nickname=name))
        if target.kind != "node":
            raise st.StanzaFailure("service-unavailable")
        from transport.core.gateway import NotConnected, VCardTimeout

        user = iq["from"].split("/", 1)[0]
        d = self.frontend.gateway.request_vcard(user, target.name)
        d.addTimeout(self.frontend.settings["vcard_timeout"], self.frontend.clock)
        try:
            card = await d
        except (VCardTimeout, defer.TimeoutError):
            raise st.StanzaFailure("remote-server-timeout", "the legacy network did not send the vCard",
                                   "wait") from None
        except NotConnected:
            raise st.StanzaFailure("recipient-unavailable", "you are not logged in to the legacy network",
                                   "wait") from None
        return vcard_element(card)

    def set(self, iq: domish.Element, target: Target) -> None:
        if target.kind != "transport":
            raise st.StanzaFailure("not-allowed", "only your own vCard can be set (send it to the transport)")
        user = iq["from"].split("/", 1)[0]
        nickname, photo = parse_vcard(iq.vCard)
        self.frontend.gateway.set_own_vcard(user, nickname, photo)
        return None

    def user_presence(self, stanza: domish.Element, bare: str) -> None:
        """A user's available presence: fetch their vCard when its XEP-0153 photo hash changed."""
        update = st.child(stanza, st.NS_VCARD_UPDATE, "x")
        if update is None:
            return
        photo = st.child(update, None, "photo")
        if photo is None:
            return  # the client does not know (yet)
        digest = st.text_of(photo, 100).strip()
        if self.photo_hashes.get(bare) == digest:
            return
        self.photo_hashes[bare] = digest
        iq = domish.Element((None, "iq"))
        iq["type"], iq["to"], iq["from"] = "get", bare, self.frontend.domain
        iq.addElement((st.NS_VCARD, "vCard"))
        d = self.frontend.request(iq)
        d.addCallback(self._own_vcard, bare)
        d.addErrback(lambda f: log.debug("no vCard from {user}: {e}", user=bare, e=f.getErrorMessage()))

    def _own_vcard(self, result: domish.Element, bare: str) -> Any:
        v = st.child(result, st.NS_VCARD, "vCard")
        if v is None:
            return None
        nickname, photo = parse_vcard(v)
        self.frontend.gateway.set_own_vcard(bare, nickname, photo)
        return None


def install(frontend: XmppFrontend) -> VCards:
    return VCards(frontend)
