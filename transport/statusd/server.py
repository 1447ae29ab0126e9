"""statusd: each user's presence across their clients, and who is told about it.

:class:`PresenceHub` is the domain (no I/O). A client is part of its user's
presence from its HELLO on. The combination of a user's clients is the gateway
core's rule (:class:`transport.core.presence.PresenceAggregate`): a value the
user chose (MSB clear) becomes the presence as specified; a value set by an idle
timer (MSB set) only makes the presence the maximum over the user's clients; a
disconnect leaves the maximum over the remaining clients, or 0.

Who is told: a change of *U*'s presence is sent as ``PRES U value`` to every
client of every connected user who may see *U* (contacts, room peers: see
:mod:`transport.chatd.directory`) and as ``PRES 0 value`` to *U*'s own clients.
A client that sent SETPRES always gets ``PRES 0 effective`` back, even when the
effective presence did not change, so it learns what took effect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from transport.chatd.directory import Directory, DirectoryView
from transport.chatd.session import CommandServer, CommandSession, Link, SessionSettings
from transport.chatd.wire import Command, ErrorCode
from transport.core.presence import OFFLINE, PresenceAggregate
from transport.statusd.codec import Hello, Pres, SetPres, server_connection

log = Logger()


class StatusClient:
    """One statusd connection that said HELLO."""

    __slots__ = ("userid", "send", "__weakref__")

    def __init__(self, userid: int, send: Callable[[bytes], None]) -> None:
        self.userid = userid
        self.send = send


class UserPresence:
    __slots__ = ("aggregate", "clients")

    def __init__(self) -> None:
        self.aggregate = PresenceAggregate()
        self.clients: list[StatusClient] = []


class PresenceHub:
    """The connected users of one statusd and their presence."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.users: dict[int, UserPresence] = {}
        directory.add_listener(self.directory_changed)

    def presence(self, userid: int) -> int:
        state = self.users.get(userid)
        return state.aggregate.value if state is not None else OFFLINE

    def hello(self, client: StatusClient, value: int, automatic: bool) -> None:
        """The client logged in with its presence: send it the dump, tell the others if that changed anything."""
        state = self.users.get(client.userid)
        if state is None:
            state = self.users[client.userid] = UserPresence()
        old = state.aggregate.value
        new = state.aggregate.set(client, value, automatic)
        state.clients.append(client)
        dump = bytearray()
        for userid in sorted(self.directory.view.visible_to(client.userid)):
            presence = self.presence(userid)
            if presence != OFFLINE:
                dump += Pres(userid, presence).encode()
        dump += Pres(0, new).encode()
        client.send(bytes(dump))
        if new != old:
            self._broadcast(client.userid, new, skip=client)

    def set_presence(self, client: StatusClient, value: int, automatic: bool = False) -> None:
        state = self.users[client.userid]
        old = state.aggregate.value
        new = state.aggregate.set(client, value, automatic)
        if new != old:
            self._broadcast(client.userid, new)
        else:
            client.send(Pres(0, new).encode())

    def disconnect(self, client: StatusClient) -> None:
        state = self.users.get(client.userid)
        if state is None or client not in state.clients:
            return
        state.clients.remove(client)
        old = state.aggregate.value
        new = state.aggregate.remove(client)
        if not state.clients:
            del self.users[client.userid]
        if new != old:
            self._broadcast(client.userid, new)

    def _broadcast(self, userid: int, value: int, skip: StatusClient | None = None) -> None:
        data = Pres(userid, value).encode()
        users = self.users
        for watcher in self.directory.view.watchers_of(userid):
            state = users.get(watcher)
            if state is not None:
                for other in state.clients:
                    other.send(data)
        own = users.get(userid)
        if own is not None:
            mine = Pres(0, value).encode()
            for other in own.clients:
                if other is not skip:
                    other.send(mine)

    def directory_changed(self, old: DirectoryView, new: DirectoryView) -> None:
        """Contacts or rooms changed: connected users learn the presence of users they may now see (PRES value)
        and forget those they may no longer see (PRES 0)."""
        affected: set[int] = set()
        for owner in set(old.contacts) | set(new.contacts):
            if old.contacts.get(owner) != new.contacts.get(owner):
                affected.add(owner)
        for chatid in set(old.rooms) | set(new.rooms):
            before, after = old.rooms.get(chatid), new.rooms.get(chatid)
            if (before.members if before else frozenset()) != (after.members if after else frozenset()):
                affected |= before.members if before else frozenset()
                affected |= after.members if after else frozenset()
        for userid in affected:
            state = self.users.get(userid)
            if state is None:
                continue
            was, now = old.visible_to(userid), new.visible_to(userid)
            data = bytearray()
            for other in sorted(now - was):
                presence = self.presence(other)
                if presence != OFFLINE:
                    data += Pres(other, presence).encode()
            for other in sorted(was - now):
                if self.presence(other) != OFFLINE:
                    data += Pres(other, OFFLINE).encode()
            if data:
                for client in state.clients:
                    client.send(bytes(data))


class StatusdSession(CommandSession):
    server: StatusdServer

    def __init__(self, server: StatusdServer, link: Link) -> None:
        super().__init__(server, link, server_connection(server.settings.max_message_size))
        self.client: StatusClient | None = None

    def handle(self, command: Command) -> None:
        hub = self.server.hub
        if isinstance(command, Hello):
            assert self.userid is not None
            self.client = StatusClient(self.userid, self.send_bytes)
            hub.hello(self.client, command.value, command.automatic)
        elif isinstance(command, SetPres):
            assert self.client is not None
            hub.set_presence(self.client, command.value, command.automatic)
        else:
            self.error(ErrorCode.PROTOCOL, f"unexpected command {type(command).__name__}", fatal=True)

    def lost(self) -> None:
        if self.client is not None:
            self.server.hub.disconnect(self.client)
            self.client = None


class StatusdServer(CommandServer):
    """statusd: give it the directory, a token validator and settings."""

    name = "statusd"

    def __init__(self, directory: Directory, validator: Any, settings: SessionSettings | None = None,
                 clock: Any = None) -> None:
        super().__init__(settings or SessionSettings(), validator, clock)
        self.hub = PresenceHub(directory)

    def make_session(self, link: Link) -> StatusdSession:
        return StatusdSession(self, link)
