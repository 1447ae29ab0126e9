"""Storage: one :class:`Database` handle (SQLite or PostgreSQL) and the stores built on it.

See ``docs/storage.md``. :mod:`transport.storage.database` is the engine layer
(thread pool, migrations), :mod:`transport.storage.gateway` the gateway core's
registrations, settings, buddies and rooms, :mod:`transport.storage.crypto` the
encryption at rest of the secrets kept there.
"""

from transport.storage.database import (
    Database,
    Migration,
    Transaction,
    open_from_config,
    open_postgresql,
    open_sqlite,
)
from transport.storage.gateway import BuddyRecord, GatewayStore, IGatewayStore, RoomRecord, UserRecord

__all__ = [
    "BuddyRecord", "Database", "GatewayStore", "IGatewayStore", "Migration", "RoomRecord", "Transaction",
    "UserRecord", "open_from_config", "open_postgresql", "open_sqlite",
]
