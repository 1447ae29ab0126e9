"""The WebSocket frontend's tables: accounts, messages and reactions.

Local channels' messages have ``owner = ''``; the history of a user's legacy
conversations (private channels) is kept under ``owner = <username>`` so that
``messages_get`` works there too. Everything goes through
:class:`transport.storage.database.Database` (a thread pool; Deferred results).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer

from transport.storage.database import Database, Migration, Transaction

MIGRATIONS = [
    Migration("websocket", 1, [
        "CREATE TABLE ws_users (username VARCHAR(64) PRIMARY KEY, password_hash VARCHAR(256), "
        "roles TEXT NOT NULL, cracked INTEGER NOT NULL DEFAULT 0, created_ms {bigint} NOT NULL)",
        "CREATE TABLE ws_messages (seq {pk}, id VARCHAR(64) NOT NULL UNIQUE, owner VARCHAR(64) NOT NULL, "
        "channel VARCHAR(320) NOT NULL, author VARCHAR(320) NOT NULL, content TEXT NOT NULL, "
        "sent_ms {bigint} NOT NULL, edited_ms {bigint}, reply_id VARCHAR(64), reply_author VARCHAR(320), "
        "legacy_id VARCHAR(128))",
        "CREATE INDEX ws_messages_channel ON ws_messages (owner, channel, seq)",
        "CREATE TABLE ws_reactions (message_id VARCHAR(64) NOT NULL, emoji VARCHAR(64) NOT NULL, "
        "username VARCHAR(64) NOT NULL, PRIMARY KEY (message_id, emoji, username))",
    ]),
]


@dataclass
class Account:
    """A user known to this frontend."""

    username: str
    roles: list[str]
    cracked: bool = False
    password_hash: str | None = None


@dataclass
class StoredMessage:
    """One message of a channel's history, as OriginChats clients see it."""

    id: str
    channel: str
    user: str
    content: str
    timestamp: float
    edited: float | None = None
    reply_to: dict[str, str] | None = None
    reactions: dict[str, list[str]] = field(default_factory=dict)
    owner: str = ""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "user": self.user, "content": self.content,
                               "timestamp": self.timestamp, "type": "message", "pinned": False}
        if self.reply_to:
            out["reply_to"] = dict(self.reply_to)
        if self.edited is not None:
            out["edited"] = True
            out["edited_at"] = self.edited
        if self.reactions:
            out["reactions"] = {emoji: list(users) for emoji, users in self.reactions.items()}
        return out


_COLUMNS = "id, owner, channel, author, content, sent_ms, edited_ms, reply_id, reply_author"


def _message(row: Sequence[Any]) -> StoredMessage:
    reply = {"id": row[7], "user": row[8] or ""} if row[7] else None
    return StoredMessage(id=row[0], owner=row[1], channel=row[2], user=row[3], content=row[4],
                         timestamp=int(row[5]) / 1000.0, edited=None if row[6] is None else int(row[6]) / 1000.0,
                         reply_to=reply)


class Store:
    """Queries on the frontend's tables; every method returns a Deferred."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def migrate(self) -> defer.Deferred[dict[str, int]]:
        return self.db.migrate(MIGRATIONS)

    # accounts -----------------------------------------------------------------------

    def get_account(self, username: str) -> defer.Deferred[Account | None]:
        def run(txn: Transaction) -> Account | None:
            txn.execute("SELECT username, roles, cracked, password_hash FROM ws_users WHERE username = ?",
                        (username,))
            row = txn.fetchone()
            if row is None:
                return None
            return Account(row[0], list(json.loads(row[1])), bool(row[2]), row[3])
        return self.db.run_interaction(run)

    def create_account(self, account: Account, now_ms: int) -> defer.Deferred[bool]:
        """Insert *account*; False when the username is taken."""
        def run(txn: Transaction) -> bool:
            txn.execute("SELECT 1 FROM ws_users WHERE username = ?", (account.username,))
            if txn.fetchone() is not None:
                return False
            txn.execute("INSERT INTO ws_users (username, password_hash, roles, cracked, created_ms) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (account.username, account.password_hash, json.dumps(account.roles),
                         1 if account.cracked else 0, now_ms))
            return True
        return self.db.run_interaction(run)

    def ensure_account(self, username: str, roles: list[str], now_ms: int) -> defer.Deferred[Account]:
        """The account of a validated user, created with *roles* at first sight."""
        def run(txn: Transaction) -> Account:
            txn.execute("SELECT username, roles, cracked, password_hash FROM ws_users WHERE username = ?",
                        (username,))
            row = txn.fetchone()
            if row is not None:
                return Account(row[0], list(json.loads(row[1])), bool(row[2]), row[3])
            txn.execute("INSERT INTO ws_users (username, password_hash, roles, cracked, created_ms) "
                        "VALUES (?, NULL, ?, 0, ?)", (username, json.dumps(roles), now_ms))
            return Account(username, list(roles), False, None)
        return self.db.run_interaction(run)

    def set_roles(self, username: str, roles: list[str]) -> defer.Deferred[int]:
        return self.db.run_operation("UPDATE ws_users SET roles = ? WHERE username = ?",
                                     (json.dumps(roles), username))

    def all_accounts(self, limit: int = 1000) -> defer.Deferred[list[Account]]:
        def run(txn: Transaction) -> list[Account]:
            txn.execute("SELECT username, roles, cracked FROM ws_users ORDER BY username LIMIT ?", (limit,))
            return [Account(r[0], list(json.loads(r[1])), bool(r[2])) for r in txn.fetchall()]
        return self.db.run_interaction(run)

    # messages -----------------------------------------------------------------------

    def add_message(self, message: StoredMessage, legacy_id: str = "", keep: int = 0,
                    if_absent: bool = False) -> defer.Deferred[None]:
        """Append *message*; with *keep* > 0 only the newest *keep* of that channel are kept. With *if_absent*
        a message whose id is already stored is left alone (a retried write that had committed after all)."""
        def run(txn: Transaction) -> None:
            if if_absent:
                txn.execute("SELECT 1 FROM ws_messages WHERE id = ?", (message.id,))
                if txn.fetchone() is not None:
                    return
            reply = message.reply_to or {}
            txn.execute(f"INSERT INTO ws_messages ({_COLUMNS}, legacy_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (message.id, message.owner, message.channel, message.user, message.content,
                         int(round(message.timestamp * 1000)),
                         None if message.edited is None else int(round(message.edited * 1000)),
                         reply.get("id"), reply.get("user"), legacy_id or None))
            if keep > 0:
                txn.execute("SELECT seq FROM ws_messages WHERE owner = ? AND channel = ? ORDER BY seq DESC "
                            "LIMIT 1 OFFSET ?", (message.owner, message.channel, keep))
                row = txn.fetchone()
                if row is not None:
                    txn.execute("DELETE FROM ws_reactions WHERE message_id IN (SELECT id FROM ws_messages "
                                "WHERE owner = ? AND channel = ? AND seq <= ?)", (message.owner, message.channel, row[0]))
                    txn.execute("DELETE FROM ws_messages WHERE owner = ? AND channel = ? AND seq <= ?",
                                (message.owner, message.channel, row[0]))
        return self.db.run_interaction(run)

    def get_message(self, owner: str, channel: str, message_id: str) -> defer.Deferred[StoredMessage | None]:
        def run(txn: Transaction) -> StoredMessage | None:
            txn.execute(f"SELECT {_COLUMNS} FROM ws_messages WHERE id = ? AND owner = ? AND channel = ?",
                        (message_id, owner, channel))
            row = txn.fetchone()
            return None if row is None else _message(row)
        return self.db.run_interaction(run)

    def get_messages(self, owner: str, channel: str, start: int | str = 0,
                     limit: int = 100) -> defer.Deferred[list[StoredMessage]]:
        """Up to *limit* messages, oldest first: skipping the *start* newest (int), or older than message *start*
        (str; an unknown id gives an empty page)."""
        def run(txn: Transaction) -> list[StoredMessage]:
            if isinstance(start, str):
                txn.execute("SELECT seq FROM ws_messages WHERE id = ? AND owner = ? AND channel = ?",
                            (start, owner, channel))
                row = txn.fetchone()
                if row is None:
                    return []
                txn.execute(f"SELECT {_COLUMNS} FROM ws_messages WHERE owner = ? AND channel = ? AND seq < ? "
                            "ORDER BY seq DESC LIMIT ?", (owner, channel, row[0], limit))
            else:
                txn.execute(f"SELECT {_COLUMNS} FROM ws_messages WHERE owner = ? AND channel = ? "
                            "ORDER BY seq DESC LIMIT ? OFFSET ?", (owner, channel, limit, start))
            messages = [_message(r) for r in reversed(txn.fetchall())]
            _load_reactions(txn, messages)
            return messages
        return self.db.run_interaction(run)

    def edit_message(self, message_id: str, content: str, edited_ms: int) -> defer.Deferred[int]:
        return self.db.run_operation("UPDATE ws_messages SET content = ?, edited_ms = ? WHERE id = ?",
                                     (content, edited_ms, message_id))

    def delete_message(self, message_id: str) -> defer.Deferred[None]:
        def run(txn: Transaction) -> None:
            txn.execute("DELETE FROM ws_reactions WHERE message_id = ?", (message_id,))
            txn.execute("DELETE FROM ws_messages WHERE id = ?", (message_id,))
        return self.db.run_interaction(run)

    def conversations(self, owner: str, limit: int = 500) -> defer.Deferred[list[str]]:
        """The private channels of *owner* that have history."""
        def run(txn: Transaction) -> list[str]:
            txn.execute("SELECT channel, MAX(seq) AS last FROM ws_messages WHERE owner = ? GROUP BY channel "
                        "ORDER BY last DESC LIMIT ?", (owner, limit))
            return [r[0] for r in txn.fetchall()]
        return self.db.run_interaction(run)

    # reactions -----------------------------------------------------------------------

    def add_reaction(self, message_id: str, emoji: str, username: str) -> defer.Deferred[bool]:
        """False when *username* had already reacted with *emoji*."""
        def run(txn: Transaction) -> bool:
            txn.execute("SELECT 1 FROM ws_reactions WHERE message_id = ? AND emoji = ? AND username = ?",
                        (message_id, emoji, username))
            if txn.fetchone() is not None:
                return False
            txn.execute("INSERT INTO ws_reactions (message_id, emoji, username) VALUES (?, ?, ?)",
                        (message_id, emoji, username))
            return True
        return self.db.run_interaction(run)

    def remove_reaction(self, message_id: str, emoji: str, username: str) -> defer.Deferred[int]:
        return self.db.run_operation("DELETE FROM ws_reactions WHERE message_id = ? AND emoji = ? AND username = ?",
                                     (message_id, emoji, username))

    def count_reaction_kinds(self, message_id: str) -> defer.Deferred[int]:
        def run(txn: Transaction) -> int:
            txn.execute("SELECT COUNT(DISTINCT emoji) FROM ws_reactions WHERE message_id = ?", (message_id,))
            row = txn.fetchone()
            return int(row[0]) if row else 0
        return self.db.run_interaction(run)


def _load_reactions(txn: Transaction, messages: Iterable[StoredMessage]) -> None:
    by_id = {m.id: m for m in messages}
    ids = list(by_id)
    for i in range(0, len(ids), 100):
        chunk = ids[i:i + 100]
        txn.execute("SELECT message_id, emoji, username FROM ws_reactions WHERE message_id IN ({}) "
                    "ORDER BY message_id, emoji, username".format(", ".join("?" * len(chunk))), chunk)
        for message_id, emoji, username in txn.fetchall():
            by_id[message_id].reactions.setdefault(emoji, []).append(username)
