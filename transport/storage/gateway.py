"""What the gateway core keeps: registrations, per-user settings, buddies, joined rooms.

:class:`GatewayStore` sits on a :class:`~transport.storage.database.Database`
(SQLite or PostgreSQL) and returns Deferreds; every query runs in the
database's threads, never on the reactor.

Tables (component ``gateway``, see :data:`MIGRATIONS`): ``gateway_users``,
``gateway_settings``, ``gateway_buddies``, ``gateway_rooms`` and
``gateway_meta`` (the encryption salt and key check).

Legacy passwords and room passwords are encrypted at rest (AES-GCM, key derived
with scrypt, see :mod:`transport.storage.crypto`) when an encryption key is
given; without one they are stored as plain text. A database whose secrets were
encrypted refuses to start without the key or with another key
(:class:`~transport.storage.crypto.WrongEncryptionKey`). Setting a key on a
database with plain-text secrets encrypts them at the next start.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import Interface, implementer

from transport.storage.crypto import PREFIX, EncryptionError, SecretBox, is_encrypted, new_salt
from transport.storage.database import Database, Migration, Transaction

__all__ = [
    "BuddyRecord", "EncryptionError", "GatewayStore", "IGatewayStore", "MIGRATIONS", "RoomRecord", "UserRecord",
]

log = Logger()
T = TypeVar("T")

COMPONENT = "gateway"

MIGRATIONS: list[Migration] = [
    Migration(COMPONENT, 1, (
        """CREATE TABLE gateway_users (
            id {pk},
            jid VARCHAR(3071) NOT NULL UNIQUE,
            legacy_name TEXT NOT NULL,
            password TEXT NOT NULL DEFAULT '',
            extra TEXT NOT NULL DEFAULT '')""",
        """CREATE TABLE gateway_settings (
            user_id {bigint} NOT NULL REFERENCES gateway_users (id) ON DELETE CASCADE,
            name VARCHAR(255) NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (user_id, name))""",
        """CREATE TABLE gateway_buddies (
            user_id {bigint} NOT NULL REFERENCES gateway_users (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            alias TEXT NOT NULL DEFAULT '',
            groups_json TEXT NOT NULL DEFAULT '[]',
            subscription VARCHAR(16) NOT NULL DEFAULT 'both',
            flags INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (user_id, name))""",
        """CREATE TABLE gateway_rooms (
            user_id {bigint} NOT NULL REFERENCES gateway_users (id) ON DELETE CASCADE,
            room TEXT NOT NULL,
            nickname TEXT NOT NULL,
            password TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (user_id, room))""",
        """CREATE TABLE gateway_meta (
            name VARCHAR(64) PRIMARY KEY,
            value TEXT NOT NULL)""",
    )),
]


@dataclass(frozen=True)
class UserRecord:
    """A registration: the frontend id (bare JID) and the legacy account."""

    id: int
    jid: str
    legacy_name: str
    password: str
    extra: str = ""


@dataclass(frozen=True)
class BuddyRecord:
    """One contact of a user's legacy roster."""

    name: str
    alias: str = ""
    groups: tuple[str, ...] = ()
    subscription: str = "both"
    flags: int = 0


@dataclass(frozen=True)
class RoomRecord:
    """A room the user had joined, to rejoin after a restart."""

    room: str
    nickname: str
    password: str = ""


class IGatewayStore(Interface):
    """The gateway core's storage (implemented by :class:`GatewayStore`). Every method returns a Deferred."""

    def start() -> defer.Deferred[None]:
        """Apply the schema migrations and set up encryption; other calls wait for it."""

    def get_user(jid: str) -> defer.Deferred[UserRecord | None]:
        """The registration of *jid*, or None."""

    def get_user_by_id(user_id: int) -> defer.Deferred[UserRecord | None]:
        """The registration with this id, or None."""

    def register_user(jid: str, legacy_name: str, password: str, extra: str = "") -> defer.Deferred[UserRecord]:
        """Register *jid*, or update its registration."""

    def unregister_user(jid: str) -> defer.Deferred[bool]:
        """Remove the registration with its settings, buddies and rooms; whether there was one."""

    def all_users() -> defer.Deferred[list[UserRecord]]:
        """Every registration, by id."""

    def get_settings(user_id: int) -> defer.Deferred[dict[str, str]]:
        """The user's settings."""

    def set_setting(user_id: int, key: str, value: str) -> defer.Deferred[None]:
        """Set one setting."""

    def get_buddies(user_id: int) -> defer.Deferred[list[BuddyRecord]]:
        """The user's buddies, by name."""

    def upsert_buddy(user_id: int, buddy: BuddyRecord) -> defer.Deferred[None]:
        """Add or replace a buddy."""

    def remove_buddy(user_id: int, name: str) -> defer.Deferred[bool]:
        """Remove a buddy; whether it existed."""

    def get_rooms(user_id: int) -> defer.Deferred[list[RoomRecord]]:
        """The rooms the user is in, by room name."""

    def add_room(user_id: int, room: str, nickname: str, password: str = "") -> defer.Deferred[None]:
        """Remember a joined room (replaces the nickname/password of a known one)."""

    def remove_room(user_id: int, room: str) -> defer.Deferred[bool]:
        """Forget a room; whether it was known."""


def _user_context(jid: str) -> bytes:
    return b"transport:user-password:" + jid.encode("utf-8", "surrogatepass")


def _room_context(user_id: int, room: str) -> bytes:
    return f"transport:room-password:{user_id}:".encode() + room.encode("utf-8", "surrogatepass")


@implementer(IGatewayStore)
class GatewayStore:
    """The gateway's registrations, settings, buddies and rooms in *database*.

    *encryption_key* is ``[database] encryption_key``: when non-empty, legacy
    and room passwords are stored encrypted. Call :meth:`start` once; calls
    made while it runs wait for it, calls made before it fail.
    """

    def __init__(self, database: Database, encryption_key: str = "") -> None:
        self.database = database
        self._key = encryption_key
        self._box: SecretBox | None = None
        self._state = "new"  # new -> starting -> ready | failed
        self._waiters: list[defer.Deferred[None]] = []
        self._failure: BaseException | None = None

    @property
    def encrypted(self) -> bool:
        """Whether secrets are written encrypted."""
        return self._box is not None

    # life cycle --------------------------------------------------------------

    def start(self) -> defer.Deferred[None]:
        """Migrate the schema and set up encryption (see the module docstring)."""
        if self._state != "new":
            return self._ready()
        self._state = "starting"
        d: defer.Deferred[Any] = self.database.migrate(MIGRATIONS)
        d.addCallback(lambda _versions: self.database.run_interaction(self._setup_encryption))
        d.addCallbacks(self._started, self._start_failed)
        return d

    def _started(self, box: SecretBox | None) -> None:
        self._box = box
        self._state = "ready"
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _start_failed(self, failure: Any) -> Any:
        self._state = "failed"
        self._failure = failure.value
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(failure)
        return failure

    def _ready(self) -> defer.Deferred[None]:
        if self._state == "ready":
            return defer.succeed(None)
        if self._state == "starting":
            waiter: defer.Deferred[None] = defer.Deferred()
            self._waiters.append(waiter)
            return waiter
        if self._state == "failed":
            return defer.fail(self._failure or RuntimeError("GatewayStore failed to start"))
        return defer.fail(RuntimeError("GatewayStore.start() was not called"))

    def _run(self, fn: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        if self._state == "ready":
            return self.database.run_interaction(fn, *args)
        d = self._ready()
        d.addCallback(lambda _: self.database.run_interaction(fn, *args))
        return d  # type: ignore[return-value]

    def _setup_encryption(self, txn: Transaction) -> SecretBox | None:
        txn.execute("SELECT name, value FROM gateway_meta WHERE name IN ('kdf_salt', 'key_check')")
        meta = {name: value for name, value in txn.fetchall()}
        if not self._key:
            if "key_check" in meta:
                raise EncryptionError("this database holds encrypted passwords but [database] encryption_key "
                                      "is not set")
            return None
        if "kdf_salt" not in meta:
            salt = new_salt()
            box = SecretBox(self._key, salt)
            # ON CONFLICT: another instance starting at the same moment may win; its salt is used then.
            for name, value in (("kdf_salt", base64.b64encode(salt).decode("ascii")),
                                ("key_check", box.check_value())):
                txn.execute("INSERT INTO gateway_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                            (name, value))
            txn.execute("SELECT name, value FROM gateway_meta WHERE name IN ('kdf_salt', 'key_check')")
            meta = {name: value for name, value in txn.fetchall()}
            if base64.b64decode(meta["kdf_salt"]) == salt:
                log.info("database encryption set up (new key salt)")
            else:
                box = SecretBox(self._key, base64.b64decode(meta["kdf_salt"]))
        else:
            box = SecretBox(self._key, base64.b64decode(meta["kdf_salt"]))
        box.verify(meta["key_check"])
        self._encrypt_plaintext(txn, box)
        return box

    @staticmethod
    def _encrypt_plaintext(txn: Transaction, box: SecretBox) -> None:
        """Encrypt the secrets written while no key was configured."""
        txn.execute("SELECT id, jid, password FROM gateway_users WHERE password <> ''")
        users = [(uid, jid, pw) for uid, jid, pw in txn.fetchall() if not is_encrypted(pw)]
        for uid, jid, pw in users:
            txn.execute("UPDATE gateway_users SET password = ? WHERE id = ?", (box.encrypt(pw, _user_context(jid)), uid))
        txn.execute("SELECT user_id, room, password FROM gateway_rooms WHERE password <> ''")
        rooms = [(uid, room, pw) for uid, room, pw in txn.fetchall() if not is_encrypted(pw)]
        for uid, room, pw in rooms:
            txn.execute("UPDATE gateway_rooms SET password = ? WHERE user_id = ? AND room = ?",
                        (box.encrypt(pw, _room_context(int(uid), room)), uid, room))
        if users or rooms:
            log.info("encrypted {users} legacy and {rooms} room passwords stored in plain text",
                     users=len(users), rooms=len(rooms))

    # secrets --------------------------------------------------------------------------

    def _seal(self, plaintext: str, context: bytes) -> str:
        if self._box is None or plaintext == "":
            if is_encrypted(plaintext):
                # stored as it is, it would read back as a ciphertext: every later read
                # of the row (all_users() included, for everyone) would fail
                raise EncryptionError(f"a password beginning with {PREFIX!r} can only be stored with "
                                      "[database] encryption_key set")
            return plaintext
        return self._box.encrypt(plaintext, context)

    def _open(self, stored: str, context: bytes) -> str:
        if not is_encrypted(stored):
            return stored
        if self._box is None:  # start() refuses this case; a row written by another process
            raise EncryptionError("an encrypted password was found but [database] encryption_key is not set")
        return self._box.decrypt(stored, context)

    def _user(self, row: tuple[Any, ...]) -> UserRecord:
        uid, jid, legacy_name, password, extra = row
        return UserRecord(int(uid), jid, legacy_name, self._open(password, _user_context(jid)), extra)

    # users ---------------------------------------------------------------------------------

    _USER_COLUMNS = "id, jid, legacy_name, password, extra"

    def get_user(self, jid: str) -> defer.Deferred[UserRecord | None]:
        """The registration of *jid* (as the frontend gives it, normally a bare JID), or None."""
        def get(txn: Transaction) -> UserRecord | None:
            txn.execute(f"SELECT {self._USER_COLUMNS} FROM gateway_users WHERE jid = ?", (jid,))
            row = txn.fetchone()
            return None if row is None else self._user(row)
        return self._run(get)

    def get_user_by_id(self, user_id: int) -> defer.Deferred[UserRecord | None]:
        """The registration with this id, or None."""
        def get(txn: Transaction) -> UserRecord | None:
            txn.execute(f"SELECT {self._USER_COLUMNS} FROM gateway_users WHERE id = ?", (user_id,))
            row = txn.fetchone()
            return None if row is None else self._user(row)
        return self._run(get)

    def register_user(self, jid: str, legacy_name: str, password: str, extra: str = "") -> defer.Deferred[UserRecord]:
        """Register *jid*, or update its registration (same id).

        When an existing registration changes to another legacy name, its
        buddies and rooms (which belonged to the old legacy account) are
        removed; its settings are kept.
        """
        def register(txn: Transaction) -> UserRecord:
            txn.execute("SELECT id, legacy_name FROM gateway_users WHERE jid = ?", (jid,))
            old = txn.fetchone()
            txn.execute(
                "INSERT INTO gateway_users (jid, legacy_name, password, extra) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (jid) DO UPDATE SET legacy_name = excluded.legacy_name, "
                "password = excluded.password, extra = excluded.extra",
                (jid, legacy_name, self._seal(password, _user_context(jid)), extra))
            txn.execute("SELECT id FROM gateway_users WHERE jid = ?", (jid,))
            found = txn.fetchone()
            assert found is not None
            uid = int(found[0])
            if old is not None and old[1] != legacy_name:
                txn.execute("DELETE FROM gateway_buddies WHERE user_id = ?", (uid,))
                txn.execute("DELETE FROM gateway_rooms WHERE user_id = ?", (uid,))
            return UserRecord(uid, jid, legacy_name, password, extra)
        return self._run(register)

    def unregister_user(self, jid: str) -> defer.Deferred[bool]:
        """Remove the registration of *jid* with its settings, buddies and rooms; whether it existed."""
        def unregister(txn: Transaction) -> bool:
            txn.execute("SELECT id FROM gateway_users WHERE jid = ?", (jid,))
            row = txn.fetchone()
            if row is None:
                return False
            uid = int(row[0])
            for table in ("gateway_settings", "gateway_buddies", "gateway_rooms"):
                txn.execute(f"DELETE FROM {table} WHERE user_id = ?", (uid,))
            txn.execute("DELETE FROM gateway_users WHERE id = ?", (uid,))
            return True
        return self._run(unregister)

    def all_users(self) -> defer.Deferred[list[UserRecord]]:
        """Every registration, ordered by id."""
        def all_(txn: Transaction) -> list[UserRecord]:
            txn.execute(f"SELECT {self._USER_COLUMNS} FROM gateway_users ORDER BY id")
            return [self._user(row) for row in txn.fetchall()]
        return self._run(all_)

    def count_users(self) -> defer.Deferred[int]:
        """How many registrations there are."""
        def count(txn: Transaction) -> int:
            txn.execute("SELECT COUNT(*) FROM gateway_users")
            row = txn.fetchone()
            return int(row[0]) if row else 0
        return self._run(count)

    # settings --------------------------------------------------------------------------------

    def get_settings(self, user_id: int) -> defer.Deferred[dict[str, str]]:
        """The user's settings as a dict."""
        def get(txn: Transaction) -> dict[str, str]:
            txn.execute("SELECT name, value FROM gateway_settings WHERE user_id = ?", (user_id,))
            return {name: value for name, value in txn.fetchall()}
        return self._run(get)

    def set_setting(self, user_id: int, key: str, value: str) -> defer.Deferred[None]:
        """Set the user's setting *key* to *value*."""
        def set_(txn: Transaction) -> None:
            txn.execute("INSERT INTO gateway_settings (user_id, name, value) VALUES (?, ?, ?) "
                        "ON CONFLICT (user_id, name) DO UPDATE SET value = excluded.value", (user_id, key, value))
        return self._run(set_)

    def remove_setting(self, user_id: int, key: str) -> defer.Deferred[bool]:
        """Remove the user's setting *key* (back to its default); whether it was set."""
        def remove(txn: Transaction) -> bool:
            txn.execute("DELETE FROM gateway_settings WHERE user_id = ? AND name = ?", (user_id, key))
            return txn.rowcount > 0
        return self._run(remove)

    # buddies -----------------------------------------------------------------------------------

    def get_buddies(self, user_id: int) -> defer.Deferred[list[BuddyRecord]]:
        """The user's buddies, ordered by name (code points)."""
        def get(txn: Transaction) -> list[BuddyRecord]:
            txn.execute("SELECT name, alias, groups_json, subscription, flags FROM gateway_buddies "
                        "WHERE user_id = ?", (user_id,))
            buddies = [BuddyRecord(name, alias, tuple(json.loads(groups)), subscription, int(flags))
                       for name, alias, groups, subscription, flags in txn.fetchall()]
            buddies.sort(key=lambda b: b.name)
            return buddies
        return self._run(get)

    def upsert_buddy(self, user_id: int, buddy: BuddyRecord) -> defer.Deferred[None]:
        """Add *buddy* to the user's roster, or replace the buddy of that name."""
        groups = json.dumps(list(buddy.groups), ensure_ascii=False)

        def upsert(txn: Transaction) -> None:
            txn.execute(
                "INSERT INTO gateway_buddies (user_id, name, alias, groups_json, subscription, flags) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, name) DO UPDATE SET alias = excluded.alias, "
                "groups_json = excluded.groups_json, subscription = excluded.subscription, flags = excluded.flags",
                (user_id, buddy.name, buddy.alias, groups, buddy.subscription, int(buddy.flags)))
        return self._run(upsert)

    def remove_buddy(self, user_id: int, name: str) -> defer.Deferred[bool]:
        """Remove the buddy *name*; whether it existed."""
        def remove(txn: Transaction) -> bool:
            txn.execute("DELETE FROM gateway_buddies WHERE user_id = ? AND name = ?", (user_id, name))
            return txn.rowcount > 0
        return self._run(remove)

    # rooms ---------------------------------------------------------------------------------------

    def get_rooms(self, user_id: int) -> defer.Deferred[list[RoomRecord]]:
        """The rooms to rejoin for the user, ordered by room name (code points)."""
        def get(txn: Transaction) -> list[RoomRecord]:
            txn.execute("SELECT room, nickname, password FROM gateway_rooms WHERE user_id = ?", (user_id,))
            rooms = [RoomRecord(room, nickname, self._open(password, _room_context(user_id, room)))
                     for room, nickname, password in txn.fetchall()]
            rooms.sort(key=lambda r: r.room)
            return rooms
        return self._run(get)

    def add_room(self, user_id: int, room: str, nickname: str, password: str = "") -> defer.Deferred[None]:
        """Remember that the user joined *room* as *nickname* (replaces an earlier entry)."""
        def add(txn: Transaction) -> None:
            txn.execute(
                "INSERT INTO gateway_rooms (user_id, room, nickname, password) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (user_id, room) DO UPDATE SET nickname = excluded.nickname, "
                "password = excluded.password",
                (user_id, room, nickname, self._seal(password, _room_context(user_id, room))))
        return self._run(add)

    def remove_room(self, user_id: int, room: str) -> defer.Deferred[bool]:
        """Forget *room* (the user left it); whether it was known."""
        def remove(txn: Transaction) -> bool:
            txn.execute("DELETE FROM gateway_rooms WHERE user_id = ? AND room = ?", (user_id, room))
            return txn.rowcount > 0
        return self._run(remove)
