"""What the gateway tells frontends: one small frozen dataclass per event.

The core turns every frame a backend sends about a user into one of these and
hands it to :meth:`transport.core.interfaces.IFrontend.deliver` of every
frontend on which that user has at least one session. Every event names the
user first (the frontend's opaque user id, for XMPP the bare JID); an event
with ``user == ""`` concerns everyone (a global :class:`RoomList`).

The events mirror Spectrum 2's backend→main messages (see
``specs/backend-protocol.md``), translated into the core's vocabulary:
presence values come from :mod:`transport.core.presence` (not
``pbnetwork.StatusType``), timestamps are ``datetime`` objects in UTC, chat
states are the words ``"composing"``, ``"paused"`` and ``"active"``.

Three events come from the gateway itself rather than a backend frame:
:class:`Reconnecting` (the user's backend crashed and a new login is under
way), :class:`MessageFailed` (a message the user sent and the gateway had
accepted cannot be delivered) and :class:`MessageAcked` for receipts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

#: Chat states (XEP-0085 names); the backend protocol knows these three.
TypingState = Literal["composing", "paused", "active"]


@dataclass(frozen=True, slots=True)
class Buddy:
    """A roster entry as the legacy network describes it.

    ``presence`` is a :mod:`transport.core.presence` value (0 = offline).
    ``groups`` is empty when the backend did not say (frontends keep what they had).
    ``blocked`` is ``None`` when the backend did not say.
    """

    name: str
    alias: str = ""
    groups: tuple[str, ...] = ()
    presence: int = 0
    status_message: str = ""
    icon_hash: str = ""
    blocked: bool | None = None


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file shared in a message: its URL, with optional MIME type and description."""

    url: str
    mime_type: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class VCard:
    """A buddy's (or the user's own) vCard, as far as the protocol carries it."""

    user: str
    buddy: str
    fullname: str = ""
    nickname: str = ""
    photo: bytes = b""


class Event:
    """Base class of the events; ``user`` is always the first field."""

    __slots__ = ()
    user: str


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """The user is logged in to the legacy network (first login or re-login)."""

    user: str


@dataclass(frozen=True, slots=True)
class Disconnected(Event):
    """The legacy session ended or could not start.

    ``error`` is a ``pbnetwork.ConnectionError`` number (0 network error,
    2 authentication failed, ..., 16 other); ``message`` is the backend's text
    or the gateway's explanation (e.g. "no backend could log you in").
    The user's sessions stay open; a new available presence logs in again.
    """

    user: str
    error: int = 0
    message: str = ""


@dataclass(frozen=True, slots=True)
class Reconnecting(Event):
    """The backend serving the user went away; the gateway is logging the user in again.

    ``attempt`` counts from 1 up to ``[service] login_attempts``. Messages the
    user sends meanwhile are queued and delivered after the next
    :class:`Connected` (or answered with :class:`MessageFailed`).
    """

    user: str
    attempt: int = 1
    reason: str = ""


@dataclass(frozen=True, slots=True)
class BuddyChanged(Event):
    """A roster entry was added or changed (presence, alias, groups, icon, blocking)."""

    user: str
    buddy: Buddy


@dataclass(frozen=True, slots=True)
class BuddyRemoved(Event):
    """A roster entry was removed on the legacy network."""

    user: str
    buddy_name: str


@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    """A message from a buddy, or in a room (``buddy`` is then the room, ``nickname`` the speaker).

    ``pm`` marks a private message from a room participant; ``carbon`` a copy of
    a message the user sent from another legacy client; ``headline`` a
    notification rather than a chat message. ``timestamp`` is set for delayed
    (history) messages.
    """

    user: str
    buddy: str
    body: str
    nickname: str = ""
    xhtml: str = ""
    timestamp: datetime | None = None
    headline: bool = False
    id: str = ""
    pm: bool = False
    carbon: bool = False
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class MessageAcked(Event):
    """The legacy network accepted the user's message *id* (a delivery receipt)."""

    user: str
    buddy: str
    id: str


@dataclass(frozen=True, slots=True)
class MessageFailed(Event):
    """A message the gateway had accepted (queued) could not be delivered.

    ``id`` is the id the frontend gave to :meth:`Gateway.send_message` (may be
    empty); ``body`` lets frontends without ids tell the sender what was lost.
    """

    user: str
    buddy: str
    id: str
    reason: str
    body: str = ""


@dataclass(frozen=True, slots=True)
class Typing(Event):
    """A buddy's chat state: ``"composing"``, ``"paused"`` or ``"active"`` (stopped)."""

    user: str
    buddy: str
    state: TypingState


@dataclass(frozen=True, slots=True)
class Attention(Event):
    """A buddy asks for the user's attention (a "buzz"), with an optional text."""

    user: str
    buddy: str
    body: str = ""


@dataclass(frozen=True, slots=True)
class AuthRequest(Event):
    """Someone on the legacy network asks to add the user to their contacts."""

    user: str
    buddy: str


@dataclass(frozen=True, slots=True)
class ParticipantChanged(Event):
    """A room participant joined, changed or left (``presence`` 0 = left).

    ``flags`` is the ``pbnetwork.ParticipantFlag`` bitmask (1 moderator,
    2 nickname conflict, 4 banned, 8 not authorized, 16 this is the user,
    32 kicked, 64 room not found). The user's own entry (flag 16) comes last
    after a join. ``newname`` is set when the participant changed nickname.
    """

    user: str
    room: str
    nickname: str
    flags: int = 0
    presence: int = 0
    status_message: str = ""
    newname: str = ""
    icon_hash: str = ""
    alias: str = ""


@dataclass(frozen=True, slots=True)
class RoomNicknameChanged(Event):
    """The user's own nickname in *room* is now *nickname*."""

    user: str
    room: str
    nickname: str


@dataclass(frozen=True, slots=True)
class RoomSubjectChanged(Event):
    """The subject of *room* was set, by *nickname* when known."""

    user: str
    room: str
    subject: str
    nickname: str = ""


@dataclass(frozen=True, slots=True)
class RoomList(Event):
    """Rooms the legacy network offers, as ``(id, name)`` pairs; ``user == ""`` means for everyone."""

    user: str
    rooms: tuple[tuple[str, str], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class RawXml(Event):
    """A raw XMPP stanza from a backend that announced ``features.rawxml``."""

    user: str
    xml: str


@dataclass(frozen=True, slots=True)
class VCardReceived(Event):
    """A vCard the backend sent without a pending request (answers to
    :meth:`Gateway.request_vcard` come back as that Deferred's result instead)."""

    user: str
    vcard: VCard


#: Every event class, for frontends that dispatch on type.
ALL_EVENTS: tuple[type[Event], ...] = (
    Connected, Disconnected, Reconnecting, BuddyChanged, BuddyRemoved, MessageReceived, MessageAcked,
    MessageFailed, Typing, Attention, AuthRequest, ParticipantChanged, RoomNicknameChanged,
    RoomSubjectChanged, RoomList, RawXml, VCardReceived,
)
