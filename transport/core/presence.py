"""Presence values and the rule that turns many sessions into one presence.

This is the single implementation shared by statusd (one user, many clients)
and the gateway (one user, many XMPP resources and WebSocket connections, one
STATUS_CHANGED to the backend). The rule is MEGAchat's draft, made exact:

* a value set **by the user** (explicit choice) becomes the user's presence
  as specified, even when another session is chattier;
* a value set **automatically** (an idle timer) only updates that session, and
  the user's presence becomes the maximum over all sessions ("most chatty wins");
* when a session goes away the presence is the maximum over those left, or
  :data:`OFFLINE` when none is left.

The draft's example:

>>> p = PresenceAggregate()
>>> p.set("A", FREE_FOR_CHAT)
5
>>> p.set("B", ONLINE)
4
>>> p.set("A", AWAY, automatic=True)
4
>>> p.remove("B")
3
>>> p.remove("A")
0
"""

from __future__ import annotations

from collections.abc import Hashable

#: Presence values, increasing with "chattiness". 0 is produced only by the
#: server (offline, or invisible); 1-127 are the application's.
OFFLINE = 0
DND = 1
XA = 2
AWAY = 3
ONLINE = 4
FREE_FOR_CHAT = 5
MAX_VALUE = 127

NAMES = {OFFLINE: "offline", DND: "dnd", XA: "xa", AWAY: "away", ONLINE: "online", FREE_FOR_CHAT: "chat"}

# pbnetwork.StatusType numbers (see proto/transport.proto).
STATUS_ONLINE, STATUS_AWAY, STATUS_FFC, STATUS_XA, STATUS_DND, STATUS_NONE, STATUS_INVISIBLE = range(7)

_FROM_STATUS = {STATUS_DND: DND, STATUS_XA: XA, STATUS_AWAY: AWAY, STATUS_ONLINE: ONLINE, STATUS_FFC: FREE_FOR_CHAT,
                STATUS_NONE: OFFLINE, STATUS_INVISIBLE: OFFLINE}
_TO_STATUS = {DND: STATUS_DND, XA: STATUS_XA, AWAY: STATUS_AWAY, ONLINE: STATUS_ONLINE, FREE_FOR_CHAT: STATUS_FFC,
              OFFLINE: STATUS_NONE}


def from_status_type(status: int) -> int:
    """Presence value for a ``pbnetwork.StatusType`` (NONE and INVISIBLE → 0)."""
    return _FROM_STATUS.get(status, ONLINE)


def to_status_type(value: int) -> int:
    """``pbnetwork.StatusType`` for a presence value; values above 5 count as free-for-chat."""
    if value > FREE_FOR_CHAT:
        return STATUS_FFC
    return _TO_STATUS.get(value, STATUS_NONE)


def check_value(value: int) -> int:
    """*value* if it is a presence a client may set (0-127), else ValueError."""
    if not 0 <= value <= MAX_VALUE:
        raise ValueError(f"presence {value} is outside 0..{MAX_VALUE}")
    return value


class PresenceAggregate:
    """One user's sessions and the presence that results from them.

    Sessions are keyed by any hashable (a client id, a resource, a connection).
    Each call returns the user's effective presence after it; :attr:`value` holds
    it too. Callers compare with the previous value to decide whether to broadcast.
    """

    __slots__ = ("_sessions", "value")

    def __init__(self) -> None:
        self._sessions: dict[Hashable, int] = {}
        self.value = OFFLINE

    def set(self, session: Hashable, value: int, automatic: bool = False) -> int:
        """Session *session* now has *value*, chosen by the user or set by an idle timer."""
        self._sessions[session] = check_value(value)
        self.value = max(self._sessions.values()) if automatic else value
        return self.value

    def remove(self, session: Hashable) -> int:
        """Session *session* is gone."""
        self._sessions.pop(session, None)
        self.value = max(self._sessions.values(), default=OFFLINE)
        return self.value

    def sessions(self) -> dict[Hashable, int]:
        """Each session's own value (a copy)."""
        return dict(self._sessions)

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session: Hashable) -> bool:
        return session in self._sessions
