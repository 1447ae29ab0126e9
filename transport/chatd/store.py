"""Rooms, room members and contact lists in the database (functions run inside one transaction).

Tables (created by :data:`MIGRATIONS`, applied when chatd or statusd starts and by
the admin CLI):

* ``chatd_rooms(chatid, name, is_open)`` - a room; ``is_open`` lets any
  authenticated user JOIN, otherwise only members may;
* ``chatd_members(chatid, userid)`` - room membership (also makes the members
  see each other's presence in statusd);
* ``statusd_contacts(userid, contact)`` - *contact* is in *userid*'s contact list,
  so *userid* sees *contact*'s presence;
* ``chatd_directory(name, generation)`` - bumped by every change above, so the
  running services notice changes made by the CLI in another process cheaply.

Ids are unsigned 64-bit on the wire and signed 64-bit in SQL: :func:`to_db` and
:func:`from_db` map between them (values from 2**63 are stored negative).
Every function takes a :class:`~transport.storage.database.Transaction`; run them
with ``database.run_interaction(fn, ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from transport.storage.database import Migration, Transaction

MIGRATIONS = [
    Migration("chatd", 1, [
        "CREATE TABLE chatd_rooms (chatid {bigint} PRIMARY KEY, name VARCHAR(255) NOT NULL DEFAULT '', "
        "is_open INTEGER NOT NULL DEFAULT 0)",
        "CREATE TABLE chatd_members (chatid {bigint} NOT NULL, userid {bigint} NOT NULL, "
        "PRIMARY KEY (chatid, userid))",
        "CREATE INDEX chatd_members_userid ON chatd_members (userid)",
        "CREATE TABLE chatd_directory (name VARCHAR(32) PRIMARY KEY, generation {bigint} NOT NULL)",
        "INSERT INTO chatd_directory (name, generation) VALUES ('directory', 1)",
    ]),
    Migration("statusd", 1, [
        "CREATE TABLE statusd_contacts (userid {bigint} NOT NULL, contact {bigint} NOT NULL, "
        "PRIMARY KEY (userid, contact))",
        "CREATE INDEX statusd_contacts_contact ON statusd_contacts (contact)",
    ]),
]

_U64 = 1 << 64
_I64 = 1 << 63


def to_db(value: int) -> int:
    """An unsigned 64-bit id as the signed integer SQL stores."""
    if not 0 <= value < _U64:
        raise ValueError(f"id {value} is not an unsigned 64-bit integer")
    return value - _U64 if value >= _I64 else value


def from_db(value: int) -> int:
    return int(value) + _U64 if value < 0 else int(value)


def check_id(value: int, what: str = "id") -> int:
    """*value* when it is a valid (non-zero, unsigned 64-bit) id, else ValueError."""
    if not 0 < value < _U64:
        raise ValueError(f"{what} must be 1 .. 2**64-1, not {value}")
    return value


@dataclass(frozen=True)
class RoomRecord:
    chatid: int
    name: str
    is_open: bool
    members: frozenset[int]


@dataclass(frozen=True)
class Snapshot:
    """Everything the services need, read in one transaction."""

    generation: int
    rooms: dict[int, RoomRecord]
    contacts: dict[int, frozenset[int]]


def _bump(txn: Transaction) -> None:
    txn.execute("UPDATE chatd_directory SET generation = generation + 1 WHERE name = 'directory'")


def generation(txn: Transaction) -> int:
    txn.execute("SELECT generation FROM chatd_directory WHERE name = 'directory'")
    row = txn.fetchone()
    return int(row[0]) if row else 0


def load(txn: Transaction) -> Snapshot:
    gen = generation(txn)
    txn.execute("SELECT chatid, name, is_open FROM chatd_rooms")
    rooms_raw = [(from_db(c), str(n), bool(o)) for c, n, o in txn.fetchall()]
    txn.execute("SELECT chatid, userid FROM chatd_members")
    members: dict[int, set[int]] = {}
    for c, u in txn.fetchall():
        members.setdefault(from_db(c), set()).add(from_db(u))
    txn.execute("SELECT userid, contact FROM statusd_contacts")
    contacts: dict[int, set[int]] = {}
    for u, c in txn.fetchall():
        contacts.setdefault(from_db(u), set()).add(from_db(c))
    rooms = {c: RoomRecord(c, n, o, frozenset(members.get(c, ()))) for c, n, o in rooms_raw}
    return Snapshot(gen, rooms, {u: frozenset(cs) for u, cs in contacts.items()})


def create_room(txn: Transaction, chatid: int, name: str = "", is_open: bool = False) -> bool:
    """Create a room; False when it exists already (then its name and openness are updated)."""
    check_id(chatid, "chatid")
    txn.execute("SELECT 1 FROM chatd_rooms WHERE chatid = ?", (to_db(chatid),))
    exists = txn.fetchone() is not None
    if exists:
        txn.execute("UPDATE chatd_rooms SET name = ?, is_open = ? WHERE chatid = ?",
                    (name, int(is_open), to_db(chatid)))
    else:
        txn.execute("INSERT INTO chatd_rooms (chatid, name, is_open) VALUES (?, ?, ?)",
                    (to_db(chatid), name, int(is_open)))
    _bump(txn)
    return not exists


def delete_room(txn: Transaction, chatid: int) -> bool:
    """Delete a room and its membership; False when there was no such room."""
    txn.execute("DELETE FROM chatd_members WHERE chatid = ?", (to_db(chatid),))
    txn.execute("DELETE FROM chatd_rooms WHERE chatid = ?", (to_db(chatid),))
    found = txn.rowcount > 0
    _bump(txn)
    return found


def list_rooms(txn: Transaction) -> list[RoomRecord]:
    snap = load(txn)
    return [snap.rooms[c] for c in sorted(snap.rooms)]


def add_members(txn: Transaction, chatid: int, userids: list[int]) -> int:
    """Add users to a room (which must exist); the number actually added."""
    txn.execute("SELECT 1 FROM chatd_rooms WHERE chatid = ?", (to_db(chatid),))
    if txn.fetchone() is None:
        raise KeyError(f"no room {chatid}")
    added = 0
    for userid in userids:
        check_id(userid, "userid")
        txn.execute("SELECT 1 FROM chatd_members WHERE chatid = ? AND userid = ?", (to_db(chatid), to_db(userid)))
        if txn.fetchone() is None:
            txn.execute("INSERT INTO chatd_members (chatid, userid) VALUES (?, ?)", (to_db(chatid), to_db(userid)))
            added += 1
    _bump(txn)
    return added


def remove_members(txn: Transaction, chatid: int, userids: list[int]) -> int:
    removed = 0
    for userid in userids:
        txn.execute("DELETE FROM chatd_members WHERE chatid = ? AND userid = ?", (to_db(chatid), to_db(userid)))
        removed += max(txn.rowcount, 0)
    _bump(txn)
    return removed


def add_contacts(txn: Transaction, userid: int, contacts: list[int], mutual: bool = False) -> int:
    """Put *contacts* in *userid*'s contact list (and *userid* in theirs when *mutual*)."""
    check_id(userid, "userid")
    pairs = [(userid, c) for c in contacts]
    if mutual:
        pairs += [(c, userid) for c in contacts]
    added = 0
    for owner, contact in pairs:
        check_id(contact, "contact")
        if owner == contact:
            continue
        txn.execute("SELECT 1 FROM statusd_contacts WHERE userid = ? AND contact = ?", (to_db(owner), to_db(contact)))
        if txn.fetchone() is None:
            txn.execute("INSERT INTO statusd_contacts (userid, contact) VALUES (?, ?)", (to_db(owner), to_db(contact)))
            added += 1
    _bump(txn)
    return added


def remove_contacts(txn: Transaction, userid: int, contacts: list[int], mutual: bool = False) -> int:
    pairs = [(userid, c) for c in contacts]
    if mutual:
        pairs += [(c, userid) for c in contacts]
    removed = 0
    for owner, contact in pairs:
        txn.execute("DELETE FROM statusd_contacts WHERE userid = ? AND contact = ?", (to_db(owner), to_db(contact)))
        removed += max(txn.rowcount, 0)
    _bump(txn)
    return removed


def list_contacts(txn: Transaction, userid: int) -> list[int]:
    txn.execute("SELECT contact FROM statusd_contacts WHERE userid = ?", (to_db(userid),))
    return sorted(from_db(c) for (c,) in txn.fetchall())
