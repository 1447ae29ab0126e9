"""XEP-0077 in-band registration with the transport, and XEP-0100's ``jabber:iq:gateway``.

A user registers by sending the transport the legacy account: ``username``
(the legacy name), ``password`` and, when the backend asked for one in
BACKEND_CONFIG (``extraField``), an extra field - as plain XEP-0077 fields or
as a XEP-0004 form. The gateway applies the ``[registration]`` policy and
stores the registration (the legacy password encrypted when
``[database] encryption_key`` is set). After a registration the transport asks
to see the user's presence (``subscribe``), which is how it learns when to log
the user in. ``<remove/>`` unregisters: the legacy session ends, and the
transport and every buddy JID leave the user's roster.

``jabber:iq:gateway`` translates a legacy name into the JID of that contact.
"""

from __future__ import annotations

from typing import Any

from twisted.words.xish import domish

from transport.frontends.xmpp import stanzas as st
from transport.frontends.xmpp.frontend import Target, XmppFrontend


class Registration:
    def __init__(self, frontend: XmppFrontend) -> None:
        self.frontend = frontend
        frontend.route_iq("get", st.NS_REGISTER, "query", self.get)
        frontend.route_iq("set", st.NS_REGISTER, "query", self.set)
        frontend.route_iq("get", st.NS_GATEWAY, "query", self.gateway_get)
        frontend.route_iq("set", st.NS_GATEWAY, "query", self.gateway_set)
        frontend.features.update({st.NS_REGISTER, st.NS_GATEWAY})

    @property
    def store(self) -> Any:
        return self.frontend.gateway.store

    def extra_fields(self) -> tuple[str, ...]:
        features = getattr(self.frontend.gateway, "features", None)
        return tuple(getattr(features, "extra_fields", ()))[:1]

    # ------------------------------------------------------------------ XEP-0077

    async def get(self, iq: domish.Element, target: Target) -> domish.Element:
        if target.kind != "transport":
            raise st.StanzaFailure("service-unavailable")
        user = iq["from"].split("/", 1)[0]
        record = await self.store.get_user(user)
        query = domish.Element((st.NS_REGISTER, "query"))
        protocol = self.frontend.config.get("service", "protocol")
        query.addElement("instructions", content=f"Enter your {protocol} account: its name and password.")
        if record is not None:
            query.addElement("registered")
        query.addElement("username", content=record.legacy_name if record else "")
        query.addElement("password")
        form = query.addElement((st.NS_DATA, "x"))
        form["type"] = "form"
        form.addElement("title", content=f"Registration with the {protocol} gateway")
        form.addElement("instructions", content=f"Enter your {protocol} account.")
        self._field(form, "username", "text-single", "Legacy name", record.legacy_name if record else "", True)
        self._field(form, "password", "text-private", "Password", "", False)
        for name in self.extra_fields():
            self._field(form, name, "text-single", name, record.extra if record else "", False)
        return query

    @staticmethod
    def _field(form: domish.Element, var: str, type_: str, label: str, value: str, required: bool) -> None:
        field = form.addElement("field")
        field["var"], field["type"], field["label"] = var, type_, label
        if value:
            field.addElement("value", content=value)
        if required:
            field.addElement("required")

    @staticmethod
    def _values(query: domish.Element) -> dict[str, str]:
        values: dict[str, str] = {}
        form = st.child(query, st.NS_DATA, "x")
        if form is not None and form.getAttribute("type") in ("submit", None):
            for field in form.elements(st.NS_DATA, "field"):
                var = field.getAttribute("var")
                if var:
                    values[var] = st.text_of(st.child(field, st.NS_DATA, "value"), 1024).strip()
        for el in query.elements():
            if el.uri == st.NS_REGISTER and el.name in ("username", "password", "remove", "misc", "text"):
                values.setdefault(el.name, st.text_of(el, 1024).strip())
        return values

    async def set(self, iq: domish.Element, target: Target) -> None:
        if target.kind != "transport":
            raise st.StanzaFailure("service-unavailable")
        user = iq["from"].split("/", 1)[0]
        query = iq.query
        values = self._values(query)
        if "remove" in values:
            await self.unregister(user)
            return None
        legacy = values.get("username", "")
        if not legacy:
            raise st.StanzaFailure("not-acceptable", "the legacy name (username) is required", "modify")
        extra = ""
        for name in self.extra_fields():
            extra = values.get(name, "")
        from transport.core.gateway import RegistrationRefused

        try:
            await self.frontend.gateway.register(user, legacy, values.get("password", ""), extra)
        except RegistrationRefused as e:
            public = self.frontend.config.get("registration", "enable_public_registration")
            raise st.StanzaFailure("not-allowed" if not public else "not-acceptable", str(e), "cancel") from None
        # ask for the user's presence: that is how the transport learns when to log them in
        self.frontend.send(st.presence(user, self.frontend.domain, "subscribe"))
        return None

    async def unregister(self, user: str) -> None:
        record = await self.store.get_user(user)
        if record is None:
            raise st.StanzaFailure("registration-required", "you are not registered", "auth")
        stored = await self.store.get_buddies(record.id)
        known = self.frontend.users.pop(user, None)
        names = {b.name for b in stored}
        if known is not None:
            names.update(known.buddies)
            names.update(known.announced)
            for room in known.rooms.values():
                for resource in room.resources:
                    self.frontend.send(st.presence(known.full(resource),
                                                   self.frontend.buddy_jid(room.name, room.nickname), "unavailable"))
        await self.frontend.gateway.unregister(user)
        if known is not None:
            for resource in list(known.resources):
                self.frontend.gateway.session_closed(user, resource)
            self.frontend.handlers["login"].end_stay(known)
        for name in sorted(names):
            buddy = self.frontend.buddy_jid(name)
            for type_ in ("unavailable", "unsubscribe", "unsubscribed"):
                self.frontend.send(st.presence(user, buddy, type_))
        for type_ in ("unavailable", "unsubscribe", "unsubscribed"):
            self.frontend.send(st.presence(user, self.frontend.domain, type_))

    # ------------------------------------------------------------------ XEP-0100 jabber:iq:gateway

    def gateway_get(self, iq: domish.Element, target: Target) -> domish.Element:
        if target.kind != "transport":
            raise st.StanzaFailure("service-unavailable")
        query = domish.Element((st.NS_GATEWAY, "query"))
        protocol = self.frontend.config.get("service", "protocol")
        query.addElement("desc", content=f"Enter the {protocol} name of the contact you would like to add.")
        query.addElement("prompt", content="Legacy name")
        return query

    def gateway_set(self, iq: domish.Element, target: Target) -> domish.Element:
        if target.kind != "transport":
            raise st.StanzaFailure("service-unavailable")
        name = st.text_of(st.child(iq.query, st.NS_GATEWAY, "prompt"), 3000).strip()
        if not name:
            raise st.StanzaFailure("bad-request", "empty legacy name", "modify")
        jid = self.frontend.buddy_jid(name)
        if jid == self.frontend.domain:
            raise st.StanzaFailure("not-acceptable", "this name cannot be a JID", "modify")
        query = domish.Element((st.NS_GATEWAY, "query"))
        query.addElement("jid", content=jid)
        query.addElement("prompt", content=jid)
        return query


def install(frontend: XmppFrontend) -> Registration:
    return Registration(frontend)
