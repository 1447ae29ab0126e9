"""The IRC backend: each user's account is an IRC connection; channels are rooms.

Run by the main instance as ``transport-backend-irc`` (or
``python -m transport_backends.irc``) with the standard backend arguments. See
``docs/irc.md`` for the legacy-name forms, the ``[backend] irc_*`` keys and how
IRC maps onto the gateway (rooms, private messages, away, topics, nick clashes).
"""

from __future__ import annotations

from typing import Any

from transport_backends.irc.options import BadLegacyName, IRCSettings, irc_lower, is_channel
from transport_backends.irc.session import IRCSession

from transport.sdk import BackendContext, NetworkPlugin, pb, run

__all__ = ["IRCBackend", "main"]


class IRCBackend(NetworkPlugin):
    """Maps the backend protocol onto one IRC connection per user."""

    def __init__(self, *args: Any, reactor: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.reactor = reactor
        self.settings = IRCSettings.from_config(self.config)
        self.sessions: dict[str, IRCSession] = {}

    @classmethod
    def from_context(cls, context: BackendContext) -> IRCBackend:
        return cls(context.config, clock=context.clock, initial_memory=context.initial_memory,
                   backend_id=context.arguments.backend_id, context=context)

    def backend_connected(self) -> None:
        self.send_backend_config({"features": {"muc": 1, "receipts": 1},
                                  "registration": {"needPassword": 0}})

    # the main instance's requests --------------------------------------------------

    def handle_login(self, login: pb.Login) -> None:
        old = self.sessions.pop(login.user, None)
        if old is not None:
            old.close("Reconnecting")
        try:
            address = self.settings.address(login.legacyName)
        except BadLegacyName as e:
            self.send_disconnected(login.user, pb.CONNECTION_ERROR_INVALID_USERNAME, str(e))
            return
        session = IRCSession(self, login.user, address, login.password, self.settings, self.clock, self.reactor)
        self.sessions[login.user] = session
        session.start()

    def session_failed(self, session: IRCSession, error: int, message: str) -> None:
        """Login failed (or the password was refused): tell the main instance, forget the session."""
        user = session.user
        if self.sessions.get(user) is session:
            del self.sessions[user]
        session.close("Login failed")
        self.send_disconnected(user, error, message)

    def handle_logout(self, logout: pb.Logout) -> None:
        session = self.sessions.pop(logout.user, None)
        if session is not None:
            session.close()

    def handle_message(self, message: pb.ConversationMessage) -> None:
        session = self.sessions.get(message.userName)
        if session is None:
            problem = "you are not connected to IRC (log in again)"
        else:
            problem = session.say(message.buddyName, message.message, id=message.id,
                                  nickname=message.nickname, pm=message.pm)
        if problem:
            # Never silently: the user learns the message was not sent, and why.
            target = message.buddyName.partition("/")[0] if is_channel(message.buddyName) else message.buddyName
            self.send_message(message.userName, target, f"[not delivered: {problem}]", headline=True)

    def handle_join_room(self, room: pb.Room) -> None:
        session = self.sessions.get(room.userName)
        if session is not None:
            session.join(room.room, room.nickname, room.password)

    def handle_leave_room(self, room: pb.Room) -> None:
        session = self.sessions.get(room.userName)
        if session is not None:
            session.leave(room.room)

    def handle_room_subject(self, message: pb.ConversationMessage) -> None:
        session = self.sessions.get(message.userName)
        if session is not None:
            session.set_topic(message.buddyName, message.message)

    def handle_status_changed(self, status: pb.Status) -> None:
        session = self.sessions.get(status.userName)
        if session is not None:
            session.set_status(status.status, status.statusMessage)

    def handle_vcard_request(self, vcard: pb.VCard) -> None:
        session = self.sessions.get(vcard.userName)
        if session is not None:
            session.request_vcard(vcard.buddyName, vcard.id)

    def handle_buddy_changed(self, buddy: pb.Buddy) -> None:
        session = self.sessions.get(buddy.userName)
        if session is not None and not is_channel(buddy.buddyName):
            session._ensure_buddy(buddy.buddyName)

    def handle_buddy_removed(self, buddy: pb.Buddy) -> None:
        session = self.sessions.get(buddy.userName)
        if session is not None:
            session.buddies.pop(irc_lower(buddy.buddyName), None)

    def backend_stopped(self, shutdown: Any) -> None:
        # EXIT, the main instance gone, or its pings gone: say goodbye on IRC.
        for session in list(self.sessions.values()):
            session.close("Gateway shutting down")
        self.sessions.clear()


def main() -> None:
    run(IRCBackend, prog="transport-backend-irc")
