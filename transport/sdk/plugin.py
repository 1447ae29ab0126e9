"""``NetworkPlugin``: the base class of a Python backend.

A backend is one TCP connection to the main instance carrying length-prefixed
``WrapperMessage`` frames (see ``docs/backends.md``). This class is that
connection's Twisted protocol, built on the sans-I/O codec
(:mod:`transport.backend.codec`):

* every frame from the main instance is dispatched to a ``handle_*`` method
  that a backend overrides (the defaults log and do nothing);
* every frame a backend may send has a ``send_*`` method;
* the duties every backend shares are done here: PING is answered with PONG and
  STATS, EXIT and the end of the connection stop the backend, and so does the
  main instance going quiet (no PING for three ping intervals).

The plugin never exits the process itself: :attr:`NetworkPlugin.stopped` fires
with a :class:`Shutdown` once the connection is closed, and the runner
(:func:`transport.sdk.run`) stops the reactor with its exit code. That keeps the
class usable in tests with a ``StringTransport`` and a ``task.Clock``.

A minimal backend::

    class Hello(NetworkPlugin):
        def handle_login(self, login):
            self.send_connected(login.user)

        def handle_message(self, message):
            self.send_message(message.userName, message.buddyName, "hello!")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from transport.backend import transport_pb2 as pb
from transport.backend.codec import FrameDecoder, FrameTooLarge, Packet, Payload, encode, type_name
from transport.sdk.config import BackendConfigFile
from transport.sdk.context import BackendContext
from transport.sdk.memory import MemoryUsage, memory_usage

W = pb.WrapperMessage

#: Missed PING intervals after which a backend gives up on the main instance.
MISSED_PINGS_LIMIT = 3

_FILE_TRANSFER_TYPES = frozenset(
    (W.TYPE_FT_START, W.TYPE_FT_FINISH, W.TYPE_FT_DATA, W.TYPE_FT_PAUSE, W.TYPE_FT_CONTINUE)
)


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Why the backend stopped, and the exit code the process should use."""

    reason: str
    exit_code: int = 0


class NetworkPlugin(Protocol):
    """One backend's connection to the main instance; subclass and override ``handle_*``.

    *config* is the configuration file the backend was started with (its
    ``[service] ping_interval`` sets the watchdog); *clock* schedules the
    watchdog (the reactor by default, a ``task.Clock`` in tests);
    *initial_memory* is the resident memory reported as ``init_res`` in STATS.
    """

    log = Logger()

    def __init__(
        self,
        config: BackendConfigFile | None = None,
        *,
        clock: IReactorTime | None = None,
        initial_memory: MemoryUsage | None = None,
        backend_id: str = "",
        context: BackendContext | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor  # type: ignore[assignment]
        #: The command line and configuration the backend was started with.
        self.context = context if context is not None else BackendContext(config=config or BackendConfigFile())
        self.config = config if config is not None else self.context.config
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        self.backend_id = backend_id
        self.ping_interval = self.config.ping_interval
        self.initial_memory = initial_memory if initial_memory is not None else memory_usage()
        self.decoder = FrameDecoder(self.config.max_frame_size)
        #: Fires once, with a :class:`Shutdown`, when the connection is gone.
        self.stopped: Deferred[Shutdown] = Deferred()
        self.pings_received = 0
        self._watchdog: IDelayedCall | None = None
        self._shutdown: Shutdown | None = None
        self._finished = False
        self._warned_file_transfer = False
        self._skipped_seen = 0
        self._dispatch: dict[int, Callable[[Any], None]] = {
            W.TYPE_PING: lambda _payload: self._on_ping(),
            W.TYPE_LOGIN: self.handle_login,
            W.TYPE_LOGOUT: self.handle_logout,
            W.TYPE_CONV_MESSAGE: self.handle_message,
            W.TYPE_BUDDY_CHANGED: self.handle_buddy_changed,
            W.TYPE_BUDDY_REMOVED: self.handle_buddy_removed,
            W.TYPE_JOIN_ROOM: self.handle_join_room,
            W.TYPE_LEAVE_ROOM: self.handle_leave_room,
            W.TYPE_STATUS_CHANGED: self.handle_status_changed,
            W.TYPE_VCARD: self.handle_vcard,
            W.TYPE_BUDDY_TYPING: self.handle_typing,
            W.TYPE_BUDDY_TYPED: self.handle_typed,
            W.TYPE_BUDDY_STOPPED_TYPING: self.handle_stopped_typing,
            W.TYPE_ATTENTION: self.handle_attention,
            W.TYPE_ROOM_SUBJECT_CHANGED: self.handle_room_subject,
            W.TYPE_RAW_XML: self.handle_raw_xml,
            W.TYPE_BUDDIES: self.handle_buddies,
            W.TYPE_EXIT: lambda _payload: self.handle_exit(),
            W.TYPE_QUERY: self.handle_query,
            W.TYPE_API_VERSION: self.handle_api_version,
        }

    @classmethod
    def from_context(cls, context: BackendContext) -> Self:
        """Build the plugin for a process started by :func:`transport.sdk.run`."""
        return cls(
            context.config,
            clock=context.clock,
            initial_memory=context.initial_memory,
            backend_id=context.arguments.backend_id,
            context=context,
        )

    # ------------------------------------------------------------------
    # life cycle (Twisted protocol)

    def connectionMade(self) -> None:
        self.log.info("connected to the main instance (ping interval {interval:g} s)", interval=self.ping_interval)
        self._arm_watchdog()
        try:
            self.backend_connected()
        except Exception:
            self.log.failure("backend_connected() failed")

    def dataReceived(self, data: bytes) -> None:
        if self._shutdown is not None:
            return
        try:
            packets = self.decoder.feed(data)
        except FrameTooLarge as e:
            self.log.error("the main instance sent a frame too large: {error}", error=str(e))
            self.stop(f"protocol error: {e}", exit_code=1)
            return
        if self.decoder.skipped != self._skipped_seen:
            self.log.warn(
                "skipped {count} unparsable frame(s) from the main instance: {error}",
                count=self.decoder.skipped - self._skipped_seen,
                error=self.decoder.last_error,
            )
            self._skipped_seen = self.decoder.skipped
        for packet in packets:
            if self._shutdown is not None:
                break
            self.dispatch(packet)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._disarm_watchdog()
        shutdown = self._shutdown or Shutdown("the main instance closed the connection")
        self._shutdown = shutdown
        if not self._finished:
            self._finished = True
            self.log.info("stopping: {reason}", reason=shutdown.reason)
            try:
                self.backend_stopped(shutdown)
            except Exception:
                self.log.failure("backend_stopped() failed")
            self.stopped.callback(shutdown)

    def stop(self, reason: str, exit_code: int = 0) -> None:
        """Close the connection; :attr:`stopped` then fires with *reason* and *exit_code*."""
        if self._shutdown is not None:
            return
        self._shutdown = Shutdown(reason, exit_code)
        self._disarm_watchdog()
        if self.transport is not None:
            self.transport.loseConnection()
        else:
            self.connectionLost()

    @property
    def stopping(self) -> bool:
        return self._shutdown is not None

    def dispatch(self, packet: Packet) -> None:
        """Call the handler of one decoded packet; a failing handler is logged, not fatal."""
        handler = self._dispatch.get(packet.type)
        try:
            if handler is not None:
                handler(packet.payload)
            elif packet.type in _FILE_TRANSFER_TYPES:
                if not self._warned_file_transfer:
                    self._warned_file_transfer = True
                    self.log.info("ignoring legacy file transfer packets ({type})", type=packet.type_name)
            else:
                self.handle_unknown(packet)
        except Exception:
            self.log.failure("handler for {type} failed", type=packet.type_name)

    # ------------------------------------------------------------------
    # keep-alive

    def _arm_watchdog(self) -> None:
        delay = self.ping_interval * MISSED_PINGS_LIMIT
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.reset(delay)
        else:
            self._watchdog = self.clock.callLater(delay, self._ping_timeout)

    def _disarm_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None

    def _ping_timeout(self) -> None:
        self._watchdog = None
        self.log.error(
            "no PING from the main instance for {seconds:g} s ({n} intervals): giving up",
            seconds=self.ping_interval * MISSED_PINGS_LIMIT,
            n=MISSED_PINGS_LIMIT,
        )
        self.stop("ping timeout: the main instance went quiet", exit_code=1)

    def _on_ping(self) -> None:
        self.pings_received += 1
        self._arm_watchdog()
        self.handle_ping()

    # ------------------------------------------------------------------
    # hooks and handlers: override these

    def backend_connected(self) -> None:
        """Called once connected, before any packet: announce features here (:meth:`send_backend_config`)."""

    def backend_stopped(self, shutdown: Shutdown) -> None:
        """Called once when the connection is gone: close legacy connections here."""

    def handle_ping(self) -> None:
        """Answer PING: PONG, then STATS (the main instance expects both)."""
        self.send_pong()
        self.send_stats()

    def handle_exit(self) -> None:
        """TYPE_EXIT: the main instance wants this backend gone. Stops by default."""
        self.stop("EXIT received from the main instance")

    def handle_login(self, login: pb.Login) -> None:
        """TYPE_LOGIN: log ``login.user`` in as ``login.legacyName``; answer CONNECTED or DISCONNECTED."""
        self.log.warn("LOGIN not supported by this backend; refusing {user}", user=login.user)
        self.send_disconnected(login.user, pb.CONNECTION_ERROR_OTHER_ERROR, "login not implemented")

    def handle_logout(self, logout: pb.Logout) -> None:
        """TYPE_LOGOUT: log the user out of the legacy network."""

    def handle_message(self, message: pb.ConversationMessage) -> None:
        """TYPE_CONV_MESSAGE: the user sends ``message.message`` to ``message.buddyName`` (a buddy or a room).

        ``message.id`` is set when the sender wants a receipt: answer with :meth:`send_message_ack`.
        """

    def handle_buddy_changed(self, buddy: pb.Buddy) -> None:
        """TYPE_BUDDY_CHANGED: add or rename/regroup a buddy (``blocked`` set: block toggle).

        Spectrum 2 expects the resulting buddy back with :meth:`send_buddy_changed`.
        """

    def handle_buddy_removed(self, buddy: pb.Buddy) -> None:
        """TYPE_BUDDY_REMOVED: remove a buddy from the legacy contact list."""

    def handle_join_room(self, room: pb.Room) -> None:
        """TYPE_JOIN_ROOM: join; send the participants, the user itself last with ``PARTICIPANT_FLAG_ME``."""

    def handle_leave_room(self, room: pb.Room) -> None:
        """TYPE_LEAVE_ROOM: leave the room."""

    def handle_status_changed(self, status: pb.Status) -> None:
        """TYPE_STATUS_CHANGED: the user's presence changed (``status.status`` is a StatusType)."""

    def handle_vcard(self, vcard: pb.VCard) -> None:
        """TYPE_VCARD: routes to :meth:`handle_vcard_request` or :meth:`handle_vcard_update`."""
        if vcard.buddyName:
            self.handle_vcard_request(vcard)
        else:
            self.handle_vcard_update(vcard)

    def handle_vcard_request(self, vcard: pb.VCard) -> None:
        """A vCard of ``vcard.buddyName`` is wanted: answer with :meth:`send_vcard` echoing ``vcard.id``."""

    def handle_vcard_update(self, vcard: pb.VCard) -> None:
        """The user's own vCard changed (``nickname``, ``photo``)."""

    def handle_typing(self, buddy: pb.Buddy) -> None:
        """TYPE_BUDDY_TYPING: the user is composing a message to ``buddy.buddyName``."""

    def handle_typed(self, buddy: pb.Buddy) -> None:
        """TYPE_BUDDY_TYPED: the user paused typing."""

    def handle_stopped_typing(self, buddy: pb.Buddy) -> None:
        """TYPE_BUDDY_STOPPED_TYPING: the user is not typing any more."""

    def handle_attention(self, message: pb.ConversationMessage) -> None:
        """TYPE_ATTENTION: the user wants ``message.buddyName``'s attention."""

    def handle_room_subject(self, message: pb.ConversationMessage) -> None:
        """TYPE_ROOM_SUBJECT_CHANGED: the user sets the subject of room ``message.buddyName``."""

    def handle_raw_xml(self, xml: str) -> None:
        """TYPE_RAW_XML: a raw stanza (only sent to backends announcing ``features.rawxml``)."""

    def handle_buddies(self, buddies: pb.Buddies) -> None:
        """TYPE_BUDDIES: the stored roster at login (with ``features.send_buddies_on_login``)."""

    def handle_query(self, query: pb.BackendConfig) -> None:
        """TYPE_QUERY: an admin command; backends normally ignore it."""

    def handle_api_version(self, version: pb.APIVersion) -> None:
        """TYPE_API_VERSION: the main instance's protocol version (informative)."""

    def handle_unknown(self, packet: Packet) -> None:
        """A type this SDK has no handler for: ignored, as the protocol requires."""
        self.log.debug("ignoring {type}", type=packet.type_name)

    # ------------------------------------------------------------------
    # sending

    def send(self, type_: int, payload: Payload | bytes = None) -> None:
        """Send one frame; dropped (and logged) once the connection is closing."""
        if self.transport is None or self._shutdown is not None:
            self.log.debug("not connected; dropping {type}", type=type_name(type_))
            return
        self.transport.write(encode(type_, payload))

    def send_pong(self) -> None:
        self.send(W.TYPE_PONG)

    def send_stats(self) -> None:
        """STATS: resident, initial and shared memory in KiB, and the pid as id."""
        usage = memory_usage()
        self.send(
            W.TYPE_STATS,
            pb.Stats(
                res=usage.resident,
                init_res=self.initial_memory.resident,
                shared=usage.shared,
                id=str(os.getpid()),
            ),
        )

    def send_connected(self, user: str) -> None:
        """The user is logged in to the legacy network."""
        self.send(W.TYPE_CONNECTED, pb.Connected(user=user))

    def send_disconnected(self, user: str, error: int = pb.CONNECTION_ERROR_OTHER_ERROR, message: str = "") -> None:
        """Login failed or the legacy connection was lost; *error* is a ``CONNECTION_ERROR_*``."""
        payload = pb.Disconnected(user=user, error=error)
        if message:
            payload.message = message
        self.send(W.TYPE_DISCONNECTED, payload)

    def send_buddy_changed(
        self,
        user: str,
        buddy: str,
        *,
        alias: str | None = None,
        groups: Iterable[str] = (),
        status: int | None = None,
        status_message: str | None = None,
        icon_hash: str | None = None,
        blocked: bool | None = None,
    ) -> None:
        """A roster entry was added or changed; *status* is a ``STATUS_*`` value."""
        self.send(
            W.TYPE_BUDDY_CHANGED, self._buddy(user, buddy, alias, groups, status, status_message, icon_hash, blocked)
        )

    def send_buddy_removed(self, user: str, buddy: str) -> None:
        self.send(W.TYPE_BUDDY_REMOVED, pb.Buddy(userName=user, buddyName=buddy))

    def send_auth_request(self, user: str, buddy: str) -> None:
        """*buddy* asks to add the user to their contact list."""
        self.send(W.TYPE_AUTH_REQUEST, pb.Buddy(userName=user, buddyName=buddy))

    def send_message(
        self,
        user: str,
        buddy: str,
        message: str,
        *,
        nickname: str | None = None,
        xhtml: str | None = None,
        timestamp: str | None = None,
        headline: bool | None = None,
        id: str | None = None,
        pm: bool | None = None,
        carbon: bool | None = None,
        attachments: Iterable[pb.Attachment | Mapping[str, str]] = (),
    ) -> None:
        """A message from *buddy* (or in room *buddy*, said by *nickname*) to *user*.

        *timestamp* is ``YYYYMMDDTHHMMSS`` in UTC for delayed messages; *carbon*
        marks a copy of the user's own message sent from another client.
        """
        payload = self._conversation(user, buddy, message, nickname, xhtml, timestamp, headline, id, pm, carbon)
        for attachment in attachments:
            item = payload.attachment.add()
            if isinstance(attachment, pb.Attachment):
                item.CopyFrom(attachment)
            else:
                item.url = attachment["url"]
                if attachment.get("mimeType"):
                    item.mimeType = attachment["mimeType"]
                if attachment.get("description"):
                    item.description = attachment["description"]
        self.send(W.TYPE_CONV_MESSAGE, payload)

    def send_room_message(self, user: str, room: str, nickname: str, message: str, **options: Any) -> None:
        """A message said by *nickname* in *room* (shorthand for :meth:`send_message`)."""
        self.send_message(user, room, message, nickname=nickname, **options)

    def send_message_ack(self, user: str, buddy: str, id: str) -> None:
        """The legacy network accepted the user's message *id*: the main instance sends a receipt."""
        self.send(W.TYPE_CONV_MESSAGE_ACK, pb.ConversationMessage(userName=user, buddyName=buddy, message="", id=id))

    def send_attention(self, user: str, buddy: str, message: str = "") -> None:
        self.send(W.TYPE_ATTENTION, pb.ConversationMessage(userName=user, buddyName=buddy, message=message))

    def send_typing(self, user: str, buddy: str) -> None:
        """*buddy* is composing."""
        self.send(W.TYPE_BUDDY_TYPING, pb.Buddy(userName=user, buddyName=buddy))

    def send_typed(self, user: str, buddy: str) -> None:
        """*buddy* paused typing."""
        self.send(W.TYPE_BUDDY_TYPED, pb.Buddy(userName=user, buddyName=buddy))

    def send_stopped_typing(self, user: str, buddy: str) -> None:
        """*buddy* is not typing any more."""
        self.send(W.TYPE_BUDDY_STOPPED_TYPING, pb.Buddy(userName=user, buddyName=buddy))

    def send_participant_changed(
        self,
        user: str,
        room: str,
        nickname: str,
        *,
        flag: int = pb.PARTICIPANT_FLAG_NONE,
        status: int = pb.STATUS_ONLINE,
        status_message: str | None = None,
        newname: str | None = None,
        icon_hash: str | None = None,
        alias: str | None = None,
    ) -> None:
        """A room occupant joined, changed or left (``status=STATUS_NONE``); *flag* is a ``PARTICIPANT_FLAG_*`` mask."""
        payload = pb.Participant(userName=user, room=room, nickname=nickname, flag=flag, status=status)  # type: ignore[arg-type]
        _set_given(payload, statusMessage=status_message, newname=newname, iconHash=icon_hash, alias=alias)
        self.send(W.TYPE_PARTICIPANT_CHANGED, payload)

    def send_room_nickname_changed(self, user: str, room: str, nickname: str) -> None:
        """The user's own nickname in *room* is now *nickname*."""
        self.send(W.TYPE_ROOM_NICKNAME_CHANGED, pb.Room(userName=user, room=room, nickname=nickname))

    def send_room_subject_changed(self, user: str, room: str, subject: str, nickname: str | None = None) -> None:
        """The subject of *room* is *subject*, set by *nickname*."""
        payload = pb.ConversationMessage(userName=user, buddyName=room, message=subject)
        _set_given(payload, nickname=nickname)
        self.send(W.TYPE_ROOM_SUBJECT_CHANGED, payload)

    def send_vcard(
        self,
        user: str,
        buddy: str,
        id: int,
        *,
        fullname: str | None = None,
        nickname: str | None = None,
        photo: bytes | None = None,
    ) -> None:
        """The answer to a vCard request: *id* must be the request's id."""
        payload = pb.VCard(userName=user, buddyName=buddy, id=id)
        _set_given(payload, fullname=fullname, nickname=nickname, photo=photo)
        self.send(W.TYPE_VCARD, payload)

    def send_backend_config(self, config: str | Mapping[str, Mapping[str, object]]) -> None:
        """Announce features: INI text, or ``{"features": {"muc": 1}, "registration": {...}}``."""
        if not isinstance(config, str):
            lines: list[str] = []
            for section, keys in config.items():
                lines.append(f"[{section}]")
                for key, value in keys.items():
                    if isinstance(value, bool):
                        value = int(value)
                    lines.append(f"{key}={value}")
                lines.append("")
            config = "\n".join(lines)
        self.send(W.TYPE_BACKEND_CONFIG, pb.BackendConfig(config=config))

    def send_room_list(self, rooms: Iterable[str], names: Iterable[str] | None = None, user: str | None = None) -> None:
        """Rooms users can join (for *user* only when given); *names* are their display names."""
        room_list = list(rooms)
        payload = pb.RoomList(room=room_list, name=list(names) if names is not None else room_list)
        if user is not None:
            payload.user = user
        self.send(W.TYPE_ROOM_LIST, payload)

    def send_raw_xml(self, xml: str) -> None:
        """A raw stanza (only for backends announcing ``features.rawxml``)."""
        self.send(W.TYPE_RAW_XML, xml)

    def send_api_version(self, version: int) -> None:
        self.send(W.TYPE_API_VERSION, pb.APIVersion(version=version))

    # ------------------------------------------------------------------

    @staticmethod
    def _buddy(
        user: str,
        buddy: str,
        alias: str | None,
        groups: Iterable[str],
        status: int | None,
        status_message: str | None,
        icon_hash: str | None,
        blocked: bool | None,
    ) -> pb.Buddy:
        payload = pb.Buddy(userName=user, buddyName=buddy, group=list(groups))
        _set_given(payload, alias=alias, status=status, statusMessage=status_message, iconHash=icon_hash,
                   blocked=blocked)
        return payload

    @staticmethod
    def _conversation(
        user: str,
        buddy: str,
        message: str,
        nickname: str | None,
        xhtml: str | None,
        timestamp: str | None,
        headline: bool | None,
        id: str | None,
        pm: bool | None,
        carbon: bool | None,
    ) -> pb.ConversationMessage:
        payload = pb.ConversationMessage(userName=user, buddyName=buddy, message=message)
        _set_given(payload, nickname=nickname, xhtml=xhtml, timestamp=timestamp, headline=headline, id=id, pm=pm,
                   carbon=carbon)
        return payload


def _set_given(payload: Any, **fields: object) -> None:
    """Set the optional fields of *payload* that are not None (an unset optional field stays absent)."""
    for name, value in fields.items():
        if value is not None:
            setattr(payload, name, value)
