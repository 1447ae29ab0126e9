"""The directory of rooms, members and contact lists that chatd and statusd share.

It lives in the database (:mod:`transport.chatd.store`) and is cached here in
memory, because every JOIN and every presence change consults it. The cache is
refreshed when a change is made through this object's API and, for changes made
by the admin CLI in another process, every ``refresh_interval`` seconds: a
single cheap query reads the generation counter and the tables are re-read only
when it moved. Listeners (chatd, statusd) are told after a refresh that changed
something, with the previous and the new view, so they can bring connected
clients up to date.

Who may see whom (statusd): *W* sees *U* when *U* is in *W*'s contact list, or
when both are members of a common room.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python import failure

from transport.chatd import store
from transport.chatd.store import RoomRecord, Snapshot
from transport.storage.database import Database

log = Logger()

Listener = Callable[["DirectoryView", "DirectoryView"], None]


class DirectoryView:
    """One consistent, immutable view of the directory, with the indexes the services need."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.generation = snapshot.generation
        self.rooms = snapshot.rooms
        self.contacts = snapshot.contacts
        rooms_of: dict[int, set[int]] = {}
        for room in self.rooms.values():
            for userid in room.members:
                rooms_of.setdefault(userid, set()).add(room.chatid)
        self.rooms_of = rooms_of
        contact_of: dict[int, set[int]] = {}
        for owner, contacts in self.contacts.items():
            for contact in contacts:
                contact_of.setdefault(contact, set()).add(owner)
        self.contact_of = contact_of

    @classmethod
    def empty(cls) -> DirectoryView:
        return cls(Snapshot(0, {}, {}))

    def room(self, chatid: int) -> RoomRecord | None:
        return self.rooms.get(chatid)

    def may_join(self, chatid: int, userid: int) -> bool:
        room = self.rooms.get(chatid)
        return room is not None and (room.is_open or userid in room.members)

    def room_peers(self, userid: int) -> set[int]:
        peers: set[int] = set()
        for chatid in self.rooms_of.get(userid, ()):
            peers |= self.rooms[chatid].members
        peers.discard(userid)
        return peers

    def visible_to(self, userid: int) -> set[int]:
        """The users whose presence *userid* may see."""
        seen = self.room_peers(userid)
        seen |= self.contacts.get(userid, frozenset())
        seen.discard(userid)
        return seen

    def watchers_of(self, userid: int) -> set[int]:
        """The users who may see *userid*'s presence."""
        watchers = self.room_peers(userid)
        watchers |= self.contact_of.get(userid, set())
        watchers.discard(userid)
        return watchers


class Directory:
    """The shared directory: start it, read :attr:`view`, change it through the async API."""

    def __init__(self, database: Database, clock: Any = None, refresh_interval: float = 5.0) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.database = database
        self.clock = clock
        self.refresh_interval = refresh_interval
        self.view = DirectoryView.empty()
        self._listeners: list[Listener] = []
        self._start_waiters: list[defer.Deferred[None]] = []
        self._start_outcome: Any = None
        self._start_done = False
        self._loop: task.LoopingCall | None = None
        self._refreshing = False
        self._next_waiters: list[defer.Deferred[None]] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # life cycle -----------------------------------------------------------------------

    def start(self) -> defer.Deferred[None]:
        """Apply the schema, load the directory, start the periodic refresh (once; later calls share it)."""
        waiter: defer.Deferred[None] = defer.Deferred()
        if self._start_done:
            _fire(waiter, self._start_outcome)
            return waiter
        self._start_waiters.append(waiter)
        if len(self._start_waiters) == 1:
            d = self.database.migrate(store.MIGRATIONS)
            d.addCallback(lambda _: self.refresh())
            d.addCallback(self._start_loop)
            d.addBoth(self._started)
        return waiter

    def _started(self, outcome: Any) -> None:
        self._start_outcome = outcome
        self._start_done = True
        waiters, self._start_waiters = self._start_waiters, []
        for waiter in waiters:
            _fire(waiter, outcome)

    def _start_loop(self, _: Any) -> None:
        if self.refresh_interval > 0:
            self._loop = task.LoopingCall(self._periodic)
            self._loop.clock = self.clock
            self._loop.start(self.refresh_interval, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _periodic(self) -> defer.Deferred[None]:
        d = self.refresh(only_if_changed=True)
        d.addErrback(lambda f: log.failure("directory refresh failed", f))
        return d

    # refresh -----------------------------------------------------------------------------

    def refresh(self, only_if_changed: bool = False) -> defer.Deferred[None]:
        """Re-read the directory; fires once a read that started after this call has been applied.

        Reads are serialized: a refresh asked for while one runs waits for the
        next read (one for all such callers).
        """
        waiter: defer.Deferred[None] = defer.Deferred()
        if self._refreshing:
            self._next_waiters.append(waiter)
            return waiter
        self._read_now(only_if_changed, [waiter])
        return waiter

    def _read_now(self, only_if_changed: bool, waiters: list[defer.Deferred[None]]) -> None:
        self._refreshing = True
        d = self.database.run_interaction(self._read, self.view.generation if only_if_changed else None)
        d.addCallback(self._apply)

        def done(outcome: Any) -> None:
            self._refreshing = False
            for waiter in waiters:
                _fire(waiter, outcome)
            if self._next_waiters:
                later, self._next_waiters = self._next_waiters, []
                self._read_now(True, later)

        d.addBoth(done)

    @staticmethod
    def _read(txn: store.Transaction, known: int | None) -> Snapshot | None:
        if known is not None and store.generation(txn) == known:
            return None
        return store.load(txn)

    def _apply(self, snapshot: Snapshot | None) -> None:
        if snapshot is None or snapshot.generation == self.view.generation and self.view.generation:
            return
        old, new = self.view, DirectoryView(snapshot)
        self.view = new
        for listener in list(self._listeners):
            try:
                listener(old, new)
            except Exception:
                log.failure("directory listener failed")

    # the Python API: each call commits, then refreshes the cache --------------------------------

    def _change(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        d = self.database.run_interaction(fn, *args, **kwargs)

        def refreshed(result: Any) -> defer.Deferred[Any]:
            r = self.refresh()
            r.addCallback(lambda _: result)
            return r

        d.addCallback(refreshed)
        return d

    def create_room(self, chatid: int, name: str = "", is_open: bool = False) -> defer.Deferred[bool]:
        return self._change(store.create_room, chatid, name, is_open)

    def delete_room(self, chatid: int) -> defer.Deferred[bool]:
        return self._change(store.delete_room, chatid)

    def add_members(self, chatid: int, userids: list[int]) -> defer.Deferred[int]:
        return self._change(store.add_members, chatid, list(userids))

    def remove_members(self, chatid: int, userids: list[int]) -> defer.Deferred[int]:
        return self._change(store.remove_members, chatid, list(userids))

    def add_contacts(self, userid: int, contacts: list[int], mutual: bool = False) -> defer.Deferred[int]:
        return self._change(store.add_contacts, userid, list(contacts), mutual)

    def remove_contacts(self, userid: int, contacts: list[int], mutual: bool = False) -> defer.Deferred[int]:
        return self._change(store.remove_contacts, userid, list(contacts), mutual)


def _fire(waiter: defer.Deferred[None], outcome: Any) -> None:
    """Fire *waiter* with None, or with *outcome* when it is a Failure."""
    if isinstance(outcome, failure.Failure):
        waiter.errback(outcome)
    else:
        waiter.callback(None)


def shared_directory(context: Any, refresh_interval: float) -> Directory:
    """The one Directory of this process (``context.registry["directory"]``), created by the first part asking."""
    directory = context.registry.get("directory")
    if directory is None:
        directory = Directory(context.database, context.reactor, refresh_interval)
        context.registry["directory"] = directory
    return directory
