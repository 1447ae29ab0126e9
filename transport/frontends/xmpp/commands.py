"""XEP-0050 ad-hoc commands on the transport: per-user settings, and admin queries.

Every registered user has ``settings``: a form of booleans kept in the database
and passed to the backend with each LOGIN (Spectrum 2's per-user settings).
``stay_connected`` is also the frontend's: the legacy session outlives the
user's last XMPP client (see :meth:`transport.frontends.xmpp.login.Login.close_session`). JIDs listed in ``[service] admin_jid`` also
get the admin commands, answered by the same code as ``transportctl``:
``status``, ``online_users``, ``backends`` (each backend with its users) and
``crashed_backends``.
"""

from __future__ import annotations

import secrets
from typing import Any

from twisted.words.protocols.jabber import jid as jidmod
from twisted.words.xish import domish

from transport.frontends.xmpp import stanzas as st
from transport.frontends.xmpp.frontend import Target, XmppFrontend

#: setting -> (label, default)
USER_SETTINGS: dict[str, tuple[str, bool]] = {
    "stay_connected": ("Stay connected to the legacy network when all my clients are offline", False),
    "send_headlines": ("Deliver notifications as headline messages", False),
}
#: admin command node -> (name shown, transportctl command)
ADMIN_COMMANDS: dict[str, tuple[str, str]] = {
    "status": ("Gateway status", "status"),
    "online_users": ("Online users", "online_users"),
    "backends": ("Backends and their users", "online_users_per_backend"),
    "crashed_backends": ("Crashed backends", "crashed_backends"),
}


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


class Commands:
    def __init__(self, frontend: XmppFrontend) -> None:
        self.frontend = frontend
        frontend.route_iq("set", st.NS_COMMANDS, "command", self.execute)
        frontend.features.add(st.NS_COMMANDS)

    def _nodes(self, sender: jidmod.JID) -> dict[str, str]:
        nodes = {"settings": "Settings"}
        if self.frontend.is_admin(sender):
            nodes.update({node: name for node, (name, _) in ADMIN_COMMANDS.items()})
        return nodes

    def has_node(self, node: str, iq: domish.Element) -> bool:
        return node in self._nodes(jidmod.internJID(iq["from"]))

    def list_items(self, query: domish.Element, iq: domish.Element) -> None:
        for node, name in self._nodes(jidmod.internJID(iq["from"])).items():
            item = query.addElement("item")
            item["jid"], item["node"], item["name"] = self.frontend.domain, node, name

    def _reply(self, node: str, status: str, session: str = "") -> domish.Element:
        cmd = domish.Element((st.NS_COMMANDS, "command"))
        cmd["node"] = node
        cmd["status"] = status
        cmd["sessionid"] = session or secrets.token_hex(8)
        return cmd

    async def execute(self, iq: domish.Element, target: Target) -> domish.Element:
        if target.kind != "transport":
            raise st.StanzaFailure("item-not-found")
        sender = jidmod.internJID(iq["from"])
        command = iq.command
        node = command.getAttribute("node", "")
        if node not in self._nodes(sender):
            raise st.StanzaFailure("forbidden" if node in ADMIN_COMMANDS else "item-not-found")
        action = command.getAttribute("action", "execute")
        session = command.getAttribute("sessionid", "")[:64]
        if action == "cancel":
            return self._reply(node, "canceled", session)
        if node in ADMIN_COMMANDS:
            return await self._admin(node, session)
        return await self._settings(sender.userhost(), command, session)

    async def _admin(self, node: str, session: str) -> domish.Element:
        from transport.admin.commands import AdminCommands

        admin = AdminCommands(self.frontend.gateway, self.frontend.registry.get("backend_pool"))
        text = await admin.run(ADMIN_COMMANDS[node][1])
        reply = self._reply(node, "completed", session)
        form = reply.addElement((st.NS_DATA, "x"))
        form["type"] = "result"
        form.addElement("title", content=ADMIN_COMMANDS[node][0])
        field = form.addElement("field")
        field["var"], field["type"], field["label"] = "output", "text-multi", ADMIN_COMMANDS[node][0]
        for line in (text.splitlines() or [""]):
            field.addElement("value", content=line)
        return reply

    async def _settings(self, bare: str, command: domish.Element, session: str) -> domish.Element:
        store: Any = self.frontend.gateway.store
        record = await store.get_user(bare)
        if record is None:
            raise st.StanzaFailure("registration-required", "register with the transport first", "auth")
        submitted = st.child(command, st.NS_DATA, "x")
        if submitted is not None and submitted.getAttribute("type") == "submit":
            for field in submitted.elements(st.NS_DATA, "field"):
                var = field.getAttribute("var", "")
                if var in USER_SETTINGS:
                    value = "1" if _truthy(st.text_of(st.child(field, st.NS_DATA, "value"), 10)) else "0"
                    await store.set_setting(record.id, var, value)
                    known = self.frontend.users.get(bare)
                    if known is not None and known.settings is not None:
                        known.settings[var] = value
            reply = self._reply("settings", "completed", session)
            reply.addElement("note", content="Settings saved; they apply at your next login.")["type"] = "info"
            return reply
        current = await store.get_settings(record.id)
        reply = self._reply("settings", "executing", session)
        actions = reply.addElement("actions")
        actions["execute"] = "complete"
        actions.addElement("complete")
        form = reply.addElement((st.NS_DATA, "x"))
        form["type"] = "form"
        form.addElement("title", content="Settings")
        for var, (label, default) in USER_SETTINGS.items():
            field = form.addElement("field")
            field["var"], field["type"], field["label"] = var, "boolean", label
            value = current.get(var)
            field.addElement("value", content="1" if (_truthy(value) if value is not None else default) else "0")
        return reply


def install(frontend: XmppFrontend) -> Commands:
    return Commands(frontend)
