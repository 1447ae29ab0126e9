"""The gateway: users, their sessions, presence, routing between frontends and backends.

Frontends get the :class:`Gateway` as ``context.gateway``. User ids are opaque
strings chosen by the frontends (the XMPP frontend uses bare JIDs); a user has
one *session* per frontend connection (an XMPP resource, a WebSocket).

Life of a user
==============
* :meth:`Gateway.session_opened` for the first session of a registered user
  sends LOGIN (through the backend pool, which picks or spawns a backend);
  :class:`~transport.core.events.Connected` follows when the backend says so.
* Every session has its own presence; :class:`transport.core.presence.PresenceAggregate`
  turns them into the one presence sent with STATUS_CHANGED (only when it changes).
* :meth:`Gateway.session_closed` for the last session sends LOGOUT.
* When the backend serving a user goes away, the user is logged in again
  elsewhere (``[service] login_attempts``, delay ``login_retry_delay`` doubling
  per attempt); frontends get :class:`~transport.core.events.Reconnecting`.

Messages are never dropped silently: while the user is not connected (logging
in, reconnecting) they are queued, at most ``[service] max_queued_per_user`` per
user (beyond: :class:`QueueFull`), and sent in order after CONNECTED. A message
written to a backend stays *unconfirmed* until the backend acknowledged it
(CONV_MESSAGE_ACK, when it announced ``features.receipts``) or answered a PING
sent after it; when the backend dies first, unconfirmed messages go back to the
front of the queue and are sent again after the re-login. A queued message that
cannot be delivered in the end produces :class:`~transport.core.events.MessageFailed`.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from transport.backend import transport_pb2 as pb
from transport.backend.codec import Packet
from transport.core import events as ev
from transport.core import presence as pr
from transport.core.features import BackendFeatures, parse_backend_config
from transport.core.interfaces import IFrontend
from transport.storage.crypto import EncryptionError

log = Logger()
W = pb.WrapperMessage

#: Prefix of the message ids the gateway makes up (never shown to frontends).
_WIRE_PREFIX = "gw-"

#: Seconds a vCard request waits for the backend's answer.
VCARD_TIMEOUT = 40.0

#: Seconds between two looks at the unconfirmed messages while :meth:`Gateway.drain` waits.
DRAIN_POLL = 0.05

#: Seconds without a refused message after which :meth:`Gateway.drain` takes the frontends' links as settled.
DRAIN_QUIET = 0.3

_RAW_TO = re.compile(r"""\sto\s*=\s*["']([^"'/]{1,3071})""")


class GatewayError(Exception):
    """Base class of the errors the gateway's Deferreds fail with."""


class NotRegistered(GatewayError):
    """The user has no registration (and auto-registration is off)."""


class RegistrationRefused(GatewayError):
    """The registration policy (``[registration]``) refuses this registration; ``str()`` says why."""


class QueueFull(GatewayError):
    """The user's message queue is full (``[service] max_queued_per_user``)."""


class NotConnected(GatewayError):
    """The user has no legacy session (no session open, or the backend disconnected them)."""


class ShuttingDown(NotConnected):
    """The main instance is stopping: it takes no new messages (a :class:`NotConnected`)."""


class UnknownSession(GatewayError):
    """The session id was never opened (or already closed) for this user."""


class VCardTimeout(GatewayError):
    """The backend did not answer a vCard request in time."""


# user states
OFFLINE = "offline"            #: no session
LOGGING_IN = "logging_in"      #: LOGIN sent (or waiting for a backend), no answer yet
ONLINE = "online"              #: CONNECTED received
RECONNECTING = "reconnecting"  #: the backend went away; a re-login is scheduled
DISCONNECTED = "disconnected"  #: sessions open, but the backend disconnected the user


@dataclass
class Session:
    """One frontend connection of a user."""

    frontend: Any
    session_id: str
    presence: int
    status_message: str = ""


@dataclass
class JoinedRoom:
    """A room the user is in, remembered to rejoin it after a backend crash."""

    room: str
    nickname: str
    password: str = ""


@dataclass
class _Outgoing:
    """A frame waiting for the user's backend (queued) or for its confirmation (unconfirmed)."""

    type: int
    payload: Any
    buddy: str = ""
    body: str = ""
    frontend_id: str = ""
    #: set when sent: the pool's confirmation mark (backend, pong count needed).
    mark: Any = None
    wire_id: str = ""


@dataclass(frozen=True)
class UserState:
    """A read-only snapshot of one user, for frontends, the admin endpoint and tests."""

    user: str
    state: str
    sessions: dict[str, str]
    presence: int
    status_message: str
    backend: str | None
    queued: int
    unconfirmed: int
    rooms: tuple[str, ...]
    attempt: int


class GatewayUser:
    """A user known to the running gateway (one with sessions, or logging out)."""

    def __init__(self, jid: str, record: Any) -> None:
        self.jid = jid
        self.record = record
        self.sessions: dict[str, Session] = {}
        self.aggregate = pr.PresenceAggregate()
        self.status_message = ""
        self.state = OFFLINE
        self.attempt = 0
        self.timer: IDelayedCall | None = None
        self.queue: deque[_Outgoing] = deque()
        self.unconfirmed: deque[_Outgoing] = deque()
        self.rooms: dict[str, JoinedRoom] = {}
        #: the store writes of room joins and leaves, chained so that they are applied in order
        self.room_writes: defer.Deferred[Any] = defer.succeed(None)
        self.buddies: dict[str, ev.Buddy] = {}
        self.sent_status: tuple[int, str] | None = None

    def frontends(self) -> list[Any]:
        seen: list[Any] = []
        for s in self.sessions.values():
            if not any(f is s.frontend for f in seen):
                seen.append(s.frontend)
        return seen

    def cancel_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


@dataclass
class GatewayCounters:
    """Totals since start (served by the admin endpoint and the metrics)."""

    messages_from_frontend: int = 0
    messages_to_frontend: int = 0
    logins: int = 0
    relogins: int = 0
    messages_failed: int = 0
    events_delivered: int = 0
    frontend_errors: int = 0
    extra: dict[str, int] = field(default_factory=dict)
    #: messages_to_frontend per frontend name (a message to a user with sessions on two frontends counts twice)
    messages_to_frontend_by: dict[str, int] = field(default_factory=dict)


class Gateway:
    """The core of the main instance.

    *config* is the loaded :class:`transport.config.Config`; *store* a
    :class:`transport.storage.gateway.GatewayStore` (or anything with its
    Deferred methods); *router* the backend side
    (:class:`transport.core.interfaces.IBackendRouter`, the backend pool);
    *clock* an ``IReactorTime`` (``task.Clock`` in tests).
    """

    def __init__(self, config: Any, store: Any, router: Any, clock: IReactorTime) -> None:
        self.config = config
        self.store = store
        self.router = router
        self.clock = clock
        self.frontends: list[Any] = []
        self.users: dict[str, GatewayUser] = {}
        self.counters = GatewayCounters()
        self.features = BackendFeatures()
        #: The last global room list a backend sent (user "" RoomList).
        self.room_list: tuple[tuple[str, str], ...] = ()
        self.started_at = clock.seconds()
        #: Seconds :meth:`request_vcard` waits for the backend.
        self.vcard_timeout = VCARD_TIMEOUT
        self._vcard_ids = itertools.count(1)
        self._vcards: dict[int, tuple[str, str, defer.Deferred[ev.VCard], IDelayedCall]] = {}
        self._wire_ids = itertools.count(1)
        self._feature_listeners: list[Callable[[BackendFeatures], None]] = []
        self._stopping = False
        #: set by :meth:`drain`: new messages fail with :class:`ShuttingDown`, no login starts
        self._draining = False
        self._last_refusal = 0.0
        router.start_routing(self)

    def drain(self, grace: float) -> defer.Deferred[None]:
        """First step of a shutdown, while frontends and backends still run: settle every accepted message.

        From now on new messages fail with :class:`ShuttingDown` and no login starts. Queued
        messages (their user has no legacy session) fail at once; messages written to a backend
        get up to *grace* seconds to be confirmed (a PING goes to every backend to ask), and the
        ones still unconfirmed then fail too: every failure is a
        :class:`~transport.core.events.MessageFailed` the frontends turn into an error to the
        sender. Fires when no message is waiting any more and the frontends' links have been
        quiet (no message refused) for :data:`DRAIN_QUIET` seconds - what was in flight on them
        got its error - or after *grace* seconds at the latest.
        """
        self._draining = True
        for user in self.users.values():
            if user.state in (LOGGING_IN, RECONNECTING):
                user.cancel_timer()  # no retry: logins will not be sent any more
        started = self.clock.seconds()
        deadline = started + max(grace, 0.0)
        done: defer.Deferred[None] = defer.Deferred()
        ask = getattr(self.router, "confirm_all", None)
        if ask is not None and any(u.unconfirmed for u in self.users.values()):
            ask()

        def check() -> None:
            for user in list(self.users.values()):
                self._fail_queue(user, "the gateway is stopping")
            waiting = [u for u in self.users.values() if u.unconfirmed]
            now = self.clock.seconds()
            busy = waiting or now - max(self._last_refusal, started) < DRAIN_QUIET
            if busy and now < deadline:
                self.clock.callLater(DRAIN_POLL, check)
                return
            for user in waiting:
                self._fail_unconfirmed(user, "the gateway stopped before the legacy network confirmed it")
            if not done.called:
                done.callback(None)

        check()
        return done

    def _fail_unconfirmed(self, user: GatewayUser, reason: str) -> None:
        user.queue.extendleft(reversed(user.unconfirmed))
        user.unconfirmed.clear()
        self._fail_queue(user, reason)

    def stop(self) -> None:
        """The main instance stops: cancel the re-login, login and vCard timers; start no more logins."""
        self._stopping = True
        for user in self.users.values():
            user.cancel_timer()
        vcards, self._vcards = self._vcards, {}
        for _user, buddy, d, timer in vcards.values():
            if timer.active():
                timer.cancel()
            d.errback(VCardTimeout(f"no vCard for {buddy}: the gateway is stopping"))

    # ------------------------------------------------------------------ settings

    def _setting(self, key: str) -> Any:
        return self.config.get("service", key)

    def _registration(self, key: str) -> Any:
        return self.config.get("registration", key)

    # ------------------------------------------------------------------ frontends

    def add_frontend(self, frontend: Any) -> None:
        """Register *frontend* (an :class:`IFrontend`) so it can open sessions and receive events."""
        if not IFrontend.providedBy(frontend):
            raise TypeError(f"{frontend!r} does not provide IFrontend")
        if any(f.name == frontend.name for f in self.frontends):
            raise ValueError(f"a frontend named {frontend.name!r} is already registered")
        self.frontends.append(frontend)

    def on_features(self, listener: Callable[[BackendFeatures], None]) -> None:
        """Call *listener* with :attr:`features` whenever a backend announces (new) features."""
        self._feature_listeners.append(listener)

    def _deliver(self, event: ev.Event, frontends: Iterable[Any] | None = None) -> None:
        if frontends is None:
            user = self.users.get(event.user)
            targets = self.frontends if event.user == "" else (user.frontends() if user else [])
        else:
            targets = list(frontends)
        for frontend in targets:
            try:
                frontend.deliver(event)
            except Exception:
                self.counters.frontend_errors += 1
                log.failure("frontend {name} failed to handle {event}", name=getattr(frontend, "name", "?"),
                            event=type(event).__name__)
            else:
                if isinstance(event, ev.MessageReceived):
                    by = self.counters.messages_to_frontend_by
                    name = getattr(frontend, "name", "?")
                    by[name] = by.get(name, 0) + 1
        self.counters.events_delivered += 1

    # ------------------------------------------------------------------ registration

    def register(self, user: str, legacy_name: str, password: str, extra: str = "",
                 admin: bool = False) -> defer.Deferred[Any]:
        """Register *user* with legacy credentials; fires with the store's ``UserRecord``.

        The ``[registration]`` policy applies (public registration on, user id
        matching ``username_mask``, legacy name matching ``allowed_usernames``,
        a password when ``require_password`` or the backend's ``needPassword``
        says so); *admin* registrations (transportctl) skip the first rule.
        Fails with :class:`RegistrationRefused`. Registering again replaces the
        legacy credentials.
        """
        reason = self._refusal(user, legacy_name, password, admin)
        if reason:
            return defer.fail(RegistrationRefused(reason))
        return defer.ensureDeferred(self._register(user, legacy_name, password, extra))

    def _refusal(self, user: str, legacy_name: str, password: str, admin: bool) -> str:
        if not user:
            return "empty user id"
        if not legacy_name:
            return "empty legacy name"
        if not admin and not self._registration("enable_public_registration"):
            return "public registration is disabled"
        mask = self._registration("username_mask")
        if mask and not re.fullmatch(mask, user):
            return f"user id {user!r} is not allowed here"
        allowed = self._registration("allowed_usernames")
        if allowed and not re.fullmatch(allowed, legacy_name):
            return f"legacy name {legacy_name!r} is not allowed"
        if not password and self._registration("require_password"):
            return "a password is required"
        return ""

    async def _register(self, user: str, legacy_name: str, password: str, extra: str) -> Any:
        try:
            record = await self.store.register_user(user, legacy_name, password, extra)
        except EncryptionError as e:  # a password the store cannot keep (see GatewayStore._seal)
            raise RegistrationRefused(str(e)) from None
        known = self.users.get(user)
        if known is not None:
            known.record = record
        return record

    def unregister(self, user: str) -> defer.Deferred[bool]:
        """Remove *user*'s registration (and log them out); fires with whether one existed."""
        return defer.ensureDeferred(self._unregister(user))

    async def _unregister(self, user: str) -> bool:
        known = self.users.get(user)
        if known is not None and known.state != OFFLINE:
            self._fail_queue(known, "unregistered")
            self._logout(known)
            self._deliver(ev.Disconnected(user, pb.CONNECTION_ERROR_OTHER_ERROR, "unregistered"))
            known.state = DISCONNECTED
        removed = bool(await self.store.unregister_user(user))
        if known is not None:
            known.record = None
        return removed

    # ------------------------------------------------------------------ sessions and presence

    def session_opened(self, frontend: Any, user: str, session_id: str, presence: int,
                       status_message: str = "", automatic: bool = False) -> defer.Deferred[UserState]:
        """A client connected through *frontend*; fires with the user's :class:`UserState`.

        The first session of a user logs them in to the legacy network (the
        :class:`~transport.core.events.Connected` event follows). Fails with
        :class:`NotRegistered` when the user is not registered and
        ``[registration] auto_register`` is off. Opening a session id that is
        already open updates its presence.
        """
        pr.check_value(presence)
        return defer.ensureDeferred(self._session_opened(frontend, user, session_id, presence, status_message,
                                                         automatic))

    async def _session_opened(self, frontend: Any, user: str, session_id: str, presence: int,
                              status_message: str, automatic: bool) -> UserState:
        known = self.users.get(user)
        record = known.record if known is not None and known.record is not None else None
        if record is None:
            record = await self.store.get_user(user)
            if record is None:
                if not self._registration("auto_register"):
                    raise NotRegistered(user)
                legacy = user.split("@", 1)[0] if "@" in user else user
                record = await self.store.register_user(user, legacy, "", "")
        known = self.users.get(user)  # may have appeared while we waited for the store
        if known is None:
            known = self.users[user] = GatewayUser(user, record)
        known.record = record
        known.sessions[session_id] = Session(frontend, session_id, presence, status_message)
        self._apply_presence(known, session_id, presence, status_message, automatic)
        if known.state in (OFFLINE, DISCONNECTED):
            self._start_login(known)
        return self.user_state(user)

    def presence_changed(self, user: str, session_id: str, presence: int, status_message: str = "",
                         automatic: bool = False) -> defer.Deferred[None]:
        """A session's presence changed (*automatic*: by an idle timer, not the user).

        At most one STATUS_CHANGED goes to the backend, and only when the
        user's aggregated presence or status message changed. A user the
        backend had disconnected is logged in again by a presence above offline.
        """
        known = self.users.get(user)
        if known is None or session_id not in known.sessions:
            return defer.fail(UnknownSession(f"{user}/{session_id}"))
        try:
            pr.check_value(presence)
        except ValueError as e:
            return defer.fail(e)
        session = known.sessions[session_id]
        session.presence = presence
        session.status_message = status_message
        self._apply_presence(known, session_id, presence, status_message, automatic)
        if known.state == DISCONNECTED and known.aggregate.value > pr.OFFLINE and known.record is not None:
            self._start_login(known)
        return defer.succeed(None)

    def _apply_presence(self, user: GatewayUser, session_id: str, presence: int, status_message: str,
                        automatic: bool) -> None:
        user.aggregate.set(session_id, presence, automatic)
        if not automatic:
            user.status_message = status_message
        self._send_status(user)

    def _send_status(self, user: GatewayUser, force: bool = False) -> None:
        if user.state != ONLINE:
            return
        wanted = (user.aggregate.value, user.status_message)
        if not force and wanted == user.sent_status:
            return
        if force and user.sent_status is None and wanted == (pr.ONLINE, ""):
            user.sent_status = wanted  # the backend assumes "online" after LOGIN
            return
        status = pb.Status(userName=user.jid, status=pr.to_status_type(wanted[0]))  # type: ignore[arg-type]
        if wanted[1]:
            status.statusMessage = wanted[1]
        if self.router.send(user.jid, W.TYPE_STATUS_CHANGED, status):
            user.sent_status = wanted

    def session_closed(self, user: str, session_id: str) -> defer.Deferred[None]:
        """A client went away. The user's last session logs them out of the legacy network."""
        known = self.users.get(user)
        if known is None or session_id not in known.sessions:
            return defer.succeed(None)
        del known.sessions[session_id]
        known.aggregate.remove(session_id)
        if known.sessions:
            self._send_status(known)
            return defer.succeed(None)
        self._fail_queue(known, "the user went offline before the message could be sent")
        self._logout(known)
        del self.users[user]
        return defer.succeed(None)

    def _logout(self, user: GatewayUser) -> None:
        user.cancel_timer()
        if user.state in (LOGGING_IN, ONLINE, RECONNECTING):
            self._send_logout(user)
        user.state = OFFLINE
        user.sent_status = None
        user.unconfirmed.clear()

    def _send_logout(self, user: GatewayUser) -> None:
        legacy = user.record.legacy_name if user.record is not None else user.jid
        self.router.logout(user.jid, pb.Logout(user=user.jid, legacyName=legacy))

    # ------------------------------------------------------------------ login machinery

    def _start_login(self, user: GatewayUser) -> None:
        user.attempt = 0
        self._login(user)

    def _login(self, user: GatewayUser) -> None:
        user.cancel_timer()
        if self._stopping or self._draining:
            return
        user.state = LOGGING_IN
        user.sent_status = None
        self.counters.logins += 1
        defer.ensureDeferred(self._send_login(user)).addErrback(self._login_error, user)

    async def _send_login(self, user: GatewayUser) -> None:
        record = user.record
        settings: dict[str, str] = {}
        buddies: list[Any] = []
        rooms: list[Any] = []
        if record is not None:
            settings = await self.store.get_settings(record.id)
            buddies = list(await self.store.get_buddies(record.id))
            rooms = list(await self.store.get_rooms(record.id))
        if user.state != LOGGING_IN or self.users.get(user.jid) is not user or self._stopping or self._draining:
            return  # logged out (or the gateway stopped) while we read the store
        for r in rooms:  # joined before a restart of the main instance: joined again after CONNECTED
            user.rooms.setdefault(r.room, JoinedRoom(r.room, r.nickname, r.password))
        for b in buddies:
            user.buddies.setdefault(b.name, ev.Buddy(b.name, b.alias, tuple(b.groups), pr.OFFLINE,
                                                     blocked=bool(b.flags & 1) or None))
        login = pb.Login(user=user.jid, legacyName=record.legacy_name if record else user.jid,
                         password=(record.password or "") if record else "")
        if record is not None and record.extra:
            login.extraFields.append(record.extra)
        for k, v in settings.items():
            login.settings.value[k] = v
        user.timer = self.clock.callLater(self._setting("login_timeout"), self._login_timed_out, user)
        packed = None
        if buddies:  # sent after LOGIN only to a backend that asked (features.send_buddies_on_login)
            packed = pb.Buddies()
            for b in buddies:
                item = packed.buddy.add(userName=user.jid, buddyName=b.name, alias=b.alias)
                item.group.extend(b.groups)
        self.router.login(user.jid, login, packed)

    def _login_error(self, failure: Failure, user: GatewayUser) -> None:
        log.failure("login of {user} failed", failure, user=user.jid)
        self._give_up(user, f"login failed: {failure.getErrorMessage()}")

    def _login_timed_out(self, user: GatewayUser) -> None:
        user.timer = None
        if user.state != LOGGING_IN:
            return
        log.warn("login of {user} timed out", user=user.jid)
        # LOGOUT, not just forget: the backend may still finish this login, and a
        # legacy session it keeps would clash with the next attempt's (name in use)
        self._send_logout(user)
        self._retry(user, "the backend did not answer the login in time")

    def users_lost(self, users: Iterable[str], reason: str) -> None:
        """The backend of *users* went away (called by the router): log them in again."""
        for jid in users:
            user = self.users.get(jid)
            if user is None or user.state not in (LOGGING_IN, ONLINE):
                continue
            # what the dead backend may not have handled goes out again, first
            user.queue.extendleft(reversed(user.unconfirmed))
            user.unconfirmed.clear()
            self._retry(user, reason)

    def _retry(self, user: GatewayUser, reason: str) -> None:
        user.cancel_timer()
        user.attempt += 1
        if user.attempt > self._setting("login_attempts"):
            self._give_up(user, f"no backend could log you in ({reason})")
            return
        user.state = RECONNECTING
        self.counters.relogins += 1
        delay = self._setting("login_retry_delay") * (2 ** (user.attempt - 1))
        log.info("user {user}: {reason}; logging in again in {delay:.1f} s (attempt {n})", user=user.jid,
                 reason=reason, delay=delay, n=user.attempt)
        self._deliver(ev.Reconnecting(user.jid, user.attempt, reason))
        user.timer = self.clock.callLater(delay, self._login, user)

    def _give_up(self, user: GatewayUser, message: str) -> None:
        user.cancel_timer()
        self.router.forget(user.jid)
        user.state = DISCONNECTED
        user.unconfirmed.clear()
        self._fail_queue(user, message)
        self._deliver(ev.Disconnected(user.jid, pb.CONNECTION_ERROR_NETWORK_ERROR, message))

    def _fail_queue(self, user: GatewayUser, reason: str) -> None:
        while user.queue:
            item = user.queue.popleft()
            if item.type in (W.TYPE_CONV_MESSAGE, W.TYPE_ATTENTION):
                self.counters.messages_failed += 1
                log.warn("message from {user} to {buddy} not delivered: {reason}", user=user.jid,
                         buddy=item.buddy, reason=reason)
                self._deliver(ev.MessageFailed(user.jid, item.buddy, item.frontend_id, reason, item.body))

    def _connected(self, user: GatewayUser) -> None:
        user.cancel_timer()
        user.state = ONLINE
        user.attempt = 0
        self._deliver(ev.Connected(user.jid))
        self._send_status(user, force=True)
        for room in user.rooms.values():
            self.router.send(user.jid, W.TYPE_JOIN_ROOM, pb.Room(userName=user.jid, nickname=room.nickname,
                                                                 room=room.room, password=room.password))
        self._flush(user)

    def _flush(self, user: GatewayUser) -> None:
        while user.queue and user.state == ONLINE:
            item = user.queue[0]
            if not self._transmit(user, item):
                return
            user.queue.popleft()

    # ------------------------------------------------------------------ frames to backends

    def _transmit(self, user: GatewayUser, item: _Outgoing) -> bool:
        confirmable = item.type in (W.TYPE_CONV_MESSAGE, W.TYPE_ATTENTION)
        if item.type == W.TYPE_CONV_MESSAGE and not item.wire_id:
            # with receipts, every message carries an id so that its ACK confirms it
            if item.frontend_id:
                item.wire_id = item.frontend_id
            elif self.features.receipts:
                item.wire_id = f"{_WIRE_PREFIX}{next(self._wire_ids)}"
            if item.wire_id:
                item.payload.id = item.wire_id
        if not self.router.send(user.jid, item.type, item.payload):
            return False
        if confirmable:
            item.mark = self.router.confirmation_mark(user.jid)
            user.unconfirmed.append(item)
        return True

    def _submit(self, user: str, item: _Outgoing) -> defer.Deferred[None]:
        if self._draining or self._stopping:
            self._last_refusal = self.clock.seconds()
            return defer.fail(ShuttingDown("the gateway is stopping; try again when it is back"))
        known = self.users.get(user)
        if known is None or known.state in (OFFLINE, DISCONNECTED):
            return defer.fail(NotConnected(user))
        self.counters.messages_from_frontend += 1
        if known.state == ONLINE and not known.queue and self._transmit(known, item):
            return defer.succeed(None)
        if len(known.queue) + len(known.unconfirmed) >= self._setting("max_queued_per_user"):
            self.counters.messages_from_frontend -= 1
            return defer.fail(QueueFull(f"{len(known.queue)} messages already queued for {user}"))
        known.queue.append(item)
        return defer.succeed(None)

    def send_message(self, user: str, buddy: str, body: str, id: str = "", xhtml: str = "",
                     pm: bool = False) -> defer.Deferred[None]:
        """Send a chat message; fires when it was written to the backend or queued.

        Fails with :class:`QueueFull` (queue at ``max_queued_per_user``) or
        :class:`NotConnected`. A queued message that finally cannot be sent
        produces :class:`~transport.core.events.MessageFailed` with *id*.
        """
        msg = pb.ConversationMessage(userName=user, buddyName=buddy, message=body)
        if id:
            msg.id = id
        if xhtml:
            msg.xhtml = xhtml
        if pm:
            msg.pm = True
        return self._submit(user, _Outgoing(W.TYPE_CONV_MESSAGE, msg, buddy, body, id))

    def send_room_message(self, user: str, room: str, body: str, id: str = "") -> defer.Deferred[None]:
        """Send a message to *room* (same queueing and errors as :meth:`send_message`)."""
        msg = pb.ConversationMessage(userName=user, buddyName=room, message=body)
        if id:
            msg.id = id
        return self._submit(user, _Outgoing(W.TYPE_CONV_MESSAGE, msg, room, body, id))

    def attention(self, user: str, buddy: str, body: str = "") -> defer.Deferred[None]:
        """Ask *buddy* for attention ("buzz"); queued like a message."""
        msg = pb.ConversationMessage(userName=user, buddyName=buddy, message=body)
        return self._submit(user, _Outgoing(W.TYPE_ATTENTION, msg, buddy, body))

    def _send_now(self, user: str, type_: int, payload: Any) -> bool:
        known = self.users.get(user)
        if known is None or known.state != ONLINE:
            return False
        return bool(self.router.send(user, type_, payload))

    def typing(self, user: str, buddy: str, state: str) -> None:
        """Tell *buddy* the user's chat state ("composing", "paused", "active").

        Chat states are ephemeral: while the user is not connected they are not queued.
        """
        type_ = {"composing": W.TYPE_BUDDY_TYPING, "paused": W.TYPE_BUDDY_TYPED,
                 "active": W.TYPE_BUDDY_STOPPED_TYPING}.get(state)
        if type_ is None:
            raise ValueError(f"unknown chat state {state!r}")
        self._send_now(user, type_, pb.Buddy(userName=user, buddyName=buddy))

    def join_room(self, user: str, room: str, nickname: str, password: str = "") -> None:
        """Join *room* as *nickname*; remembered (in the store too) and rejoined after a re-login or a restart."""
        known = self.users.get(user)
        if known is None:
            raise NotConnected(user)
        known.rooms[room] = JoinedRoom(room, nickname, password)
        if known.record is not None:
            self._store_room(known, "add_room", known.record.id, room, nickname, password)
        self._send_now(user, W.TYPE_JOIN_ROOM, pb.Room(userName=user, nickname=nickname, room=room,
                                                       password=password))

    def _store_room(self, user: GatewayUser, method: str, *args: Any) -> None:
        """Write a room membership change, after the user's earlier ones (the pool may run queries in parallel)."""
        def write(_: Any) -> Any:
            return getattr(self.store, method)(*args)
        user.room_writes.addCallback(write)
        user.room_writes.addErrback(lambda f: log.failure("storing the rooms of {user}", f, user=user.jid))

    def leave_room(self, user: str, room: str) -> None:
        """Leave *room* (and stop rejoining it)."""
        known = self.users.get(user)
        if known is None:
            return
        joined = known.rooms.pop(room, None)
        nickname = joined.nickname if joined else ""
        if known.record is not None:
            self._store_room(known, "remove_room", known.record.id, room)
        self._send_now(user, W.TYPE_LEAVE_ROOM, pb.Room(userName=user, nickname=nickname, room=room))

    def set_subject(self, user: str, room: str, subject: str) -> None:
        """Set the subject of *room*."""
        self._send_now(user, W.TYPE_ROOM_SUBJECT_CHANGED,
                       pb.ConversationMessage(userName=user, buddyName=room, message=subject))

    def request_vcard(self, user: str, buddy: str) -> defer.Deferred[ev.VCard]:
        """Ask the backend for *buddy*'s vCard; fails with :class:`VCardTimeout` after 40 s."""
        known = self.users.get(user)
        if known is None or known.state != ONLINE:
            return defer.fail(NotConnected(user))
        vid = next(self._vcard_ids) % 0x7FFFFFFF or next(self._vcard_ids)
        d: defer.Deferred[ev.VCard] = defer.Deferred()
        timer = self.clock.callLater(self.vcard_timeout, self._vcard_timeout, vid)
        self._vcards[vid] = (user, buddy, d, timer)
        self.router.send(user, W.TYPE_VCARD, pb.VCard(userName=user, buddyName=buddy, id=vid))
        return d

    def _vcard_timeout(self, vid: int) -> None:
        entry = self._vcards.pop(vid, None)
        if entry is not None:
            entry[2].errback(VCardTimeout(f"no vCard for {entry[1]} within {self.vcard_timeout:g} s"))

    def set_own_vcard(self, user: str, nickname: str = "", photo: bytes = b"") -> None:
        """Publish the user's own nickname / photo on the legacy network."""
        self._send_now(user, W.TYPE_VCARD, pb.VCard(userName=user, buddyName="", id=0, nickname=nickname,
                                                    photo=photo))

    def update_buddy(self, user: str, name: str, alias: str = "", groups: Iterable[str] = (),
                     blocked: bool | None = None) -> defer.Deferred[None]:
        """Add or change a roster entry (alias, groups), or toggle blocking when *blocked* is set."""
        payload = pb.Buddy(userName=user, buddyName=name, alias=alias)
        payload.group.extend(groups)
        if blocked is not None:
            payload.blocked = blocked
        self._send_now(user, W.TYPE_BUDDY_CHANGED, payload)
        known = self.users.get(user)
        if known is None or known.record is None:
            return defer.succeed(None)
        old = known.buddies.get(name, ev.Buddy(name))
        new = ev.Buddy(name, alias or old.alias, tuple(groups) or old.groups, old.presence, old.status_message,
                       old.icon_hash, old.blocked if blocked is None else blocked)
        known.buddies[name] = new
        return self._persist_buddy(known, new)

    def remove_buddy(self, user: str, name: str) -> defer.Deferred[None]:
        """Remove a roster entry on the legacy network and in storage."""
        self._send_now(user, W.TYPE_BUDDY_REMOVED, pb.Buddy(userName=user, buddyName=name))
        known = self.users.get(user)
        if known is None or known.record is None:
            return defer.succeed(None)
        known.buddies.pop(name, None)
        d: defer.Deferred[Any] = self.store.remove_buddy(known.record.id, name)
        return d.addCallback(lambda _: None)

    def raw_xml(self, user: str, xml: str) -> None:
        """Pass a raw stanza to a backend that announced ``features.rawxml``."""
        self._send_now(user, W.TYPE_RAW_XML, xml)

    # ------------------------------------------------------------------ introspection

    def user_state(self, user: str) -> UserState:
        """A snapshot of *user* (state ``offline`` when unknown)."""
        known = self.users.get(user)
        if known is None:
            return UserState(user, OFFLINE, {}, pr.OFFLINE, "", None, 0, 0, (), 0)
        backend = self.router.backend_of(user)
        return UserState(user, known.state, {s.session_id: s.frontend.name for s in known.sessions.values()},
                         known.aggregate.value, known.status_message, backend, len(known.queue),
                         len(known.unconfirmed), tuple(known.rooms), known.attempt)

    def online_users(self) -> list[str]:
        """Users with a legacy session (CONNECTED), sorted."""
        return sorted(u.jid for u in self.users.values() if u.state == ONLINE)

    # ------------------------------------------------------------------ frames from backends

    def backend_confirmed(self, users: Iterable[str]) -> None:
        """A backend answered a PING (called by the router): release confirmed messages of *users*."""
        for jid in users:
            user = self.users.get(jid)
            if user is None:
                continue
            q = user.unconfirmed
            while q and self.router.is_confirmed(q[0].mark):
                q.popleft()

    def backend_global_packet(self, packet: Packet) -> None:
        """A frame about nobody in particular (called by the router)."""
        t = packet.type
        p: Any = packet.payload
        if t == W.TYPE_BACKEND_CONFIG:
            self.features = parse_backend_config(p.config)
            for listener in list(self._feature_listeners):
                listener(self.features)
        elif t == W.TYPE_ROOM_LIST:
            self.room_list = tuple(zip(p.room, p.name, strict=False))
            self._deliver(ev.RoomList("", self.room_list))
        elif t == W.TYPE_RAW_XML:
            m = _RAW_TO.search(p[:4096])
            if m:
                self.backend_packet(m.group(1), packet)

    def backend_packet(self, jid: str, packet: Packet) -> None:
        """A frame a backend sent about user *jid* (called by the router)."""
        user = self.users.get(jid)
        if user is None:
            log.debug("{type} for {user}, who is not logged in: ignored", type=packet.type_name, user=jid)
            return
        handler = _HANDLERS.get(packet.type)
        if handler is None:
            log.debug("{type} from a backend: ignored", type=packet.type_name)
            return
        handler(self, user, packet.payload)

    def _on_connected(self, user: GatewayUser, p: Any) -> None:
        if user.state in (LOGGING_IN, RECONNECTING):
            self._connected(user)

    def _on_disconnected(self, user: GatewayUser, p: Any) -> None:
        if user.state == OFFLINE:
            return
        user.cancel_timer()
        self.router.forget(user.jid)
        user.state = DISCONNECTED
        user.sent_status = None
        user.unconfirmed.clear()  # handled by the backend before it disconnected the user
        self._fail_queue(user, p.message or "disconnected from the legacy network")
        self._deliver(ev.Disconnected(user.jid, p.error, p.message))

    def _on_buddy_changed(self, user: GatewayUser, p: Any) -> None:
        old = user.buddies.get(p.buddyName)
        groups = tuple(p.group) or (old.groups if old else ())
        alias = p.alias or (old.alias if old else "")
        blocked = p.blocked if p.HasField("blocked") else (old.blocked if old else None)
        presence = pr.from_status_type(p.status) if p.HasField("status") else (old.presence if old else pr.ONLINE)
        buddy = ev.Buddy(p.buddyName, alias, groups, presence, p.statusMessage, p.iconHash, blocked)
        user.buddies[p.buddyName] = buddy
        if old is None or (old.alias, old.groups, old.blocked) != (alias, groups, blocked):
            self._persist_buddy(user, buddy)
        self._deliver(ev.BuddyChanged(user.jid, buddy))

    def _persist_buddy(self, user: GatewayUser, buddy: ev.Buddy) -> defer.Deferred[None]:
        if user.record is None:
            return defer.succeed(None)
        from transport.storage.gateway import BuddyRecord  # the storage part's record type

        record = BuddyRecord(buddy.name, buddy.alias, buddy.groups, "both", 1 if buddy.blocked else 0)
        d: defer.Deferred[Any] = self.store.upsert_buddy(user.record.id, record)
        d.addErrback(lambda f: log.failure("storing buddy {buddy} of {user}", f, buddy=buddy.name,
                                           user=user.jid))
        return d.addCallback(lambda _: None)

    def _on_buddy_removed(self, user: GatewayUser, p: Any) -> None:
        user.buddies.pop(p.buddyName, None)
        if user.record is not None:
            self.store.remove_buddy(user.record.id, p.buddyName).addErrback(
                lambda f: log.failure("removing buddy {buddy}", f, buddy=p.buddyName))
        self._deliver(ev.BuddyRemoved(user.jid, p.buddyName))

    def _on_message(self, user: GatewayUser, p: Any) -> None:
        timestamp = None
        if p.timestamp:
            try:
                timestamp = datetime.strptime(p.timestamp[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
            except ValueError:
                timestamp = None
        attachments = tuple(ev.Attachment(a.url, a.mimeType, a.description) for a in p.attachment)
        self.counters.messages_to_frontend += 1
        self._deliver(ev.MessageReceived(user.jid, p.buddyName, p.message, p.nickname, p.xhtml, timestamp,
                                         p.headline, p.id, p.pm, p.carbon, attachments))

    def _on_ack(self, user: GatewayUser, p: Any) -> None:
        q = user.unconfirmed
        target = next((item for item in q if item.wire_id == p.id), None) if p.id else None
        if target is not None:
            # the backend handles frames in order: everything before it was handled too
            while q:
                item = q.popleft()
                if item is target:
                    break
            if target.frontend_id:
                self._deliver(ev.MessageAcked(user.jid, target.buddy, target.frontend_id))
        elif p.id and not p.id.startswith(_WIRE_PREFIX):
            self._deliver(ev.MessageAcked(user.jid, p.buddyName, p.id))

    def _on_attention(self, user: GatewayUser, p: Any) -> None:
        self._deliver(ev.Attention(user.jid, p.buddyName, p.message))

    def _on_auth_request(self, user: GatewayUser, p: Any) -> None:
        self._deliver(ev.AuthRequest(user.jid, p.buddyName))

    def _on_participant(self, user: GatewayUser, p: Any) -> None:
        self._deliver(ev.ParticipantChanged(user.jid, p.room, p.nickname, p.flag, pr.from_status_type(p.status),
                                            p.statusMessage, p.newname, p.iconHash, p.alias))

    def _on_room_nickname(self, user: GatewayUser, p: Any) -> None:
        room = user.rooms.get(p.room)
        if room is not None:
            room.nickname = p.nickname
        self._deliver(ev.RoomNicknameChanged(user.jid, p.room, p.nickname))

    def _on_room_subject(self, user: GatewayUser, p: Any) -> None:
        self._deliver(ev.RoomSubjectChanged(user.jid, p.buddyName, p.message, p.nickname))

    def _on_room_list(self, user: GatewayUser, p: Any) -> None:
        self._deliver(ev.RoomList(user.jid, tuple(zip(p.room, p.name, strict=False))))

    def _on_vcard(self, user: GatewayUser, p: Any) -> None:
        card = ev.VCard(user.jid, p.buddyName, p.fullname, p.nickname, p.photo)
        entry = self._vcards.pop(p.id, None) if p.id else None
        if entry is not None:
            if entry[3].active():
                entry[3].cancel()
            entry[2].callback(card)
        else:
            self._deliver(ev.VCardReceived(user.jid, card))

    def _on_raw_xml(self, user: GatewayUser, p: Any) -> None:
        self._deliver(ev.RawXml(user.jid, p))


def _typing_handler(state: ev.TypingState) -> Callable[[Gateway, GatewayUser, Any], None]:
    def handle(self: Gateway, user: GatewayUser, p: Any) -> None:
        self._deliver(ev.Typing(user.jid, p.buddyName, state))
    return handle


_HANDLERS: dict[int, Callable[[Gateway, GatewayUser, Any], None]] = {
    W.TYPE_CONNECTED: Gateway._on_connected,
    W.TYPE_DISCONNECTED: Gateway._on_disconnected,
    W.TYPE_BUDDY_CHANGED: Gateway._on_buddy_changed,
    W.TYPE_BUDDY_REMOVED: Gateway._on_buddy_removed,
    W.TYPE_CONV_MESSAGE: Gateway._on_message,
    W.TYPE_CONV_MESSAGE_ACK: Gateway._on_ack,
    W.TYPE_BUDDY_TYPING: _typing_handler("composing"),
    W.TYPE_BUDDY_TYPED: _typing_handler("paused"),
    W.TYPE_BUDDY_STOPPED_TYPING: _typing_handler("active"),
    W.TYPE_ATTENTION: Gateway._on_attention,
    W.TYPE_AUTH_REQUEST: Gateway._on_auth_request,
    W.TYPE_PARTICIPANT_CHANGED: Gateway._on_participant,
    W.TYPE_ROOM_NICKNAME_CHANGED: Gateway._on_room_nickname,
    W.TYPE_ROOM_SUBJECT_CHANGED: Gateway._on_room_subject,
    W.TYPE_ROOM_LIST: Gateway._on_room_list,
    W.TYPE_VCARD: Gateway._on_vcard,
    W.TYPE_RAW_XML: Gateway._on_raw_xml,
}
