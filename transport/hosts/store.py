"""Persistent state of user hosts: memberships, friendship levels, settings stamps.

Three tables, all keyed by the user host's config name (``[host:NAME]``) and a
peer's online id (32 hex digits):

``hosts_members``
    one row per membership record: its :class:`EJoinState` (JoinRequested while
    the admin has not decided, JoinIsGranted, JoinDenied), the member's name and
    motto as last announced, and the message of an OFFER. LEAVE keeps the row;
    UNJOIN deletes it.
``hosts_friends``
    the admin's friendship level for a peer (:class:`EFriendState`); a peer
    without a row is Anonymous. Ignore marks a peer the admin ignores. Managed
    with ``transport-hosts friend``.
``hosts_settings``
    a digest of each host's announced settings and when they last changed
    (the announce's lastModifiedMs).

Every method returns a Deferred (the work runs in the database's threads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from transport.hosts.packets import EFriendState, EJoinState, OnlineId
from transport.storage.database import Database, Migration, Transaction

MIGRATIONS = [
    Migration("hosts", 1, [
        "CREATE TABLE hosts_members (host VARCHAR(128) NOT NULL, online_id CHAR(32) NOT NULL, "
        "join_state INTEGER NOT NULL, name VARCHAR(1024) NOT NULL DEFAULT '', "
        "motto VARCHAR(1024) NOT NULL DEFAULT '', message VARCHAR(4096) NOT NULL DEFAULT '', "
        "updated_ms {bigint} NOT NULL, PRIMARY KEY (host, online_id))",
        "CREATE TABLE hosts_friends (host VARCHAR(128) NOT NULL, online_id CHAR(32) NOT NULL, "
        "friend_state INTEGER NOT NULL, PRIMARY KEY (host, online_id))",
        "CREATE TABLE hosts_settings (host VARCHAR(128) PRIMARY KEY, digest VARCHAR(64) NOT NULL, "
        "modified_ms {bigint} NOT NULL)",
    ]),
]


@dataclass(frozen=True)
class Member:
    """One membership record."""

    online_id: OnlineId
    join_state: int
    name: str
    motto: str
    message: str
    updated_ms: int


def _member(row: tuple[Any, ...]) -> Member:
    return Member(OnlineId.from_hex(row[0]), int(row[1]), row[2], row[3], row[4], int(row[5]))


_MEMBER_COLUMNS = "online_id, join_state, name, motto, message, updated_ms"


class MembershipStore:
    """The hosts' tables in a :class:`Database`; call :meth:`migrate` once first."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def migrate(self) -> defer.Deferred[dict[str, int]]:
        return self.database.migrate(MIGRATIONS)

    # members -------------------------------------------------------------------

    def member(self, host: str, online_id: OnlineId) -> defer.Deferred[Member | None]:
        d = self.database.run_query(f"SELECT {_MEMBER_COLUMNS} FROM hosts_members WHERE host = ? AND online_id = ?",
                                    (host, online_id.hex()))
        return d.addCallback(lambda rows: _member(rows[0]) if rows else None)

    def members(self, host: str, states: tuple[int, ...] | None = None, start: OnlineId | None = None,
                limit: int | None = None) -> defer.Deferred[list[Member]]:
        """Membership records of *host* in online-id order: only *states* when given, from *start*
        (inclusive) on, at most *limit*."""
        sql = f"SELECT {_MEMBER_COLUMNS} FROM hosts_members WHERE host = ?"
        params: list[Any] = [host]
        if states:
            sql += " AND join_state IN (" + ", ".join("?" for _ in states) + ")"
            params += [int(s) for s in states]
        if start is not None:
            sql += " AND online_id >= ?"
            params.append(start.hex())
        sql += " ORDER BY online_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        d = self.database.run_query(sql, params)
        return d.addCallback(lambda rows: [_member(r) for r in rows])

    def count_members(self, host: str, state: int = EJoinState.JOIN_IS_GRANTED) -> defer.Deferred[int]:
        d = self.database.run_query("SELECT COUNT(*) FROM hosts_members WHERE host = ? AND join_state = ?",
                                    (host, int(state)))
        return d.addCallback(lambda rows: int(rows[0][0]))

    def set_member(self, host: str, online_id: OnlineId, join_state: int, name: str | None = None,
                   motto: str | None = None, message: str | None = None, now_ms: int = 0) -> defer.Deferred[None]:
        """Create or update a record; ``None`` keeps a field's stored value."""

        def txn_fn(txn: Transaction) -> None:
            txn.execute("SELECT name, motto, message FROM hosts_members WHERE host = ? AND online_id = ?",
                        (host, online_id.hex()))
            row = txn.fetchone()
            if row is None:
                txn.execute(f"INSERT INTO hosts_members (host, {_MEMBER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (host, online_id.hex(), int(join_state), name or "", motto or "", message or "",
                             now_ms))
            else:
                txn.execute("UPDATE hosts_members SET join_state = ?, name = ?, motto = ?, message = ?, "
                            "updated_ms = ? WHERE host = ? AND online_id = ?",
                            (int(join_state), row[0] if name is None else name, row[1] if motto is None else motto,
                             row[2] if message is None else message, now_ms, host, online_id.hex()))

        return self.database.run_interaction(txn_fn)

    def decide(self, host: str, online_id: OnlineId, grant: bool, now_ms: int = 0) -> defer.Deferred[bool]:
        """The admin's decision on a membership record; False when there is no such record."""
        state = EJoinState.JOIN_IS_GRANTED if grant else EJoinState.JOIN_DENIED
        d = self.database.run_operation(
            "UPDATE hosts_members SET join_state = ?, updated_ms = ? WHERE host = ? AND online_id = ?",
            (int(state), now_ms, host, online_id.hex()))
        return d.addCallback(lambda n: n > 0)

    def delete_member(self, host: str, online_id: OnlineId) -> defer.Deferred[bool]:
        d = self.database.run_operation("DELETE FROM hosts_members WHERE host = ? AND online_id = ?",
                                        (host, online_id.hex()))
        return d.addCallback(lambda n: n > 0)

    # friends --------------------------------------------------------------------

    def friend_state(self, host: str, online_id: OnlineId) -> defer.Deferred[int]:
        d = self.database.run_query("SELECT friend_state FROM hosts_friends WHERE host = ? AND online_id = ?",
                                    (host, online_id.hex()))
        return d.addCallback(lambda rows: int(rows[0][0]) if rows else int(EFriendState.ANONYMOUS))

    def set_friend_state(self, host: str, online_id: OnlineId, state: int) -> defer.Deferred[None]:
        def txn_fn(txn: Transaction) -> None:
            txn.execute("DELETE FROM hosts_friends WHERE host = ? AND online_id = ?", (host, online_id.hex()))
            if state != EFriendState.ANONYMOUS:
                txn.execute("INSERT INTO hosts_friends (host, online_id, friend_state) VALUES (?, ?, ?)",
                            (host, online_id.hex(), int(state)))

        return self.database.run_interaction(txn_fn)

    def friends(self, host: str) -> defer.Deferred[list[tuple[OnlineId, int]]]:
        d = self.database.run_query("SELECT online_id, friend_state FROM hosts_friends WHERE host = ? "
                                    "ORDER BY online_id", (host,))
        return d.addCallback(lambda rows: [(OnlineId.from_hex(r[0]), int(r[1])) for r in rows])

    # settings stamp -----------------------------------------------------------------

    def settings_modified(self, host: str, digest: str, now_ms: int) -> defer.Deferred[int]:
        """When *host*'s settings last changed: *now_ms* if *digest* differs from the stored one."""

        def txn_fn(txn: Transaction) -> int:
            txn.execute("SELECT digest, modified_ms FROM hosts_settings WHERE host = ?", (host,))
            row = txn.fetchone()
            if row is not None and row[0] == digest:
                return int(row[1])
            if row is None:
                txn.execute("INSERT INTO hosts_settings (host, digest, modified_ms) VALUES (?, ?, ?)",
                            (host, digest, now_ms))
            else:
                txn.execute("UPDATE hosts_settings SET digest = ?, modified_ms = ? WHERE host = ?",
                            (digest, now_ms, host))
            return now_ms

        return self.database.run_interaction(txn_fn)
