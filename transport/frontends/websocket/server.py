"""The OriginChats protocol server: connections, users, channels, and the gateway's private channels.

This module has no sockets. :class:`ChatServer` is given *peers* (anything with
``send(packet)`` and ``close(code, reason)``; the autobahn adapter in
:mod:`.resource` is one, the unit tests use in-memory ones) and drives, per
connection, the state machine::

    AWAITING_AUTH --auth/login/register ok--> READY --close--> CLOSED
          |                                   ^
          +-- (checking the token/password) --+

* On connect the server sends ``handshake`` before reading anything.
* Before READY only ``auth``/``login``/``register``/``ping`` are served; any other
  command gets ``auth_error`` "Authentication required".
* Commands of one connection run one after another (the next starts when the
  previous one, with its database work, is done), so a client sees its answers in
  the order it asked.
* ``global`` answers go to every other connection allowed to view the channel,
  then to the sender with the request's ``listener`` echoed.

Channels: the admin's local channels (shared, persisted) and, per user, the
legacy conversations the gateway reports: ``dm:<buddy>`` for a buddy and
``room:<room>`` for a joined legacy room. Those are private: only the user's own
connections see them. The server implements :class:`transport.core.interfaces.IFrontend`
and turns gateway events into OriginChats packets (see docs/websocket.md).
"""

from __future__ import annotations

import itertools
import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from transport.core import events as ev
from transport.core import presence as pr
from transport.core.interfaces import IFrontend

from . import auth
from .channels import LocalChannel
from .codec import Command, ProtocolError, decode, encode
from .codec import field as get_field
from .history import HistoryQueue
from .ratelimit import RateLimiter
from .store import Account, Store, StoredMessage
from .tokens import USERNAME_RE, issue_token, verify_token

log = Logger()

VERSION = "1.1.0"
MAX_CHANNEL_NAME = 320
MAX_ID = 64
MAX_EMOJI = 32
MAX_PEER_ID = 128
MAX_PASSWORD = 256
MAX_REACTIONS_PER_MESSAGE = 20
#: Commands queued on one connection at which the server stops reading from it (back-pressure)
#: until half of them are done.
MAX_PENDING = 64
#: How long the token handed out in ``ready`` (cracked mode) stays valid: 30 days.
RESUME_TOKEN_TTL = 30 * 24 * 3600.0
PRE_AUTH_COMMANDS = frozenset({"auth", "login", "register", "ping"})
DM_PREFIX = "dm:"
ROOM_PREFIX = "room:"

AWAITING_AUTH = "awaiting_auth"
AUTHENTICATING = "authenticating"
READY = "ready"
CLOSED = "closed"

# WebSocket close codes (autobahn allows applications 1000 and 3000-4999; 4008 mirrors 1008 "policy")
CLOSE_POLICY = 4008
CLOSE_GOING_AWAY = 1000


class Peer(Protocol):
    """The transport under a connection."""

    def send(self, data: bytes) -> None: ...
    def close(self, code: int, reason: str) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


@dataclass
class Settings:
    """What the server needs from ``[websocket]`` (see settings.py for the meaning)."""

    server_name: str = "Transport"
    server_icon: str = ""
    owner: tuple[str, ...] = ()
    admins: tuple[str, ...] = ()
    default_roles: tuple[str, ...] = ("user",)
    role_colors: dict[str, str] = field(default_factory=dict)
    auth_mode: str = "cracked"
    allow_registration: bool = True
    post_content: int = 2000
    max_message_size: int = 64 * 1024
    max_json_depth: int = 16
    max_invalid: int = 20
    max_auth_attempts: int = 5
    auth_timeout: float = 60.0
    history_limit: int = 100
    rate_per_minute: int = 60
    rate_burst: int = 10
    rate_burst_window: float = 10.0
    rate_cooldown: float = 30.0
    ping_interval: float = 30.0
    gateway_auto_register: bool = True
    legacy_history: int = 500
    protocol_name: str = "legacy"

    @classmethod
    def from_config(cls, config: Any) -> Settings:
        s = config["websocket"]
        colors = {}
        for item in s["role_colors"]:
            role, _, color = item.partition(":")
            colors[role] = color
        return cls(
            server_name=s["server_name"] or config["identity"]["name"], server_icon=s["server_icon"],
            owner=tuple(u.lower() for u in s["owner"]), admins=tuple(u.lower() for u in s["admins"]),
            default_roles=tuple(s["default_roles"]), role_colors=colors, auth_mode=s["auth_mode"],
            allow_registration=s["allow_registration"], post_content=s["post_content"],
            max_message_size=s["max_message_size"], max_json_depth=s["max_json_depth"],
            max_invalid=s["max_invalid"], max_auth_attempts=s["max_auth_attempts"], auth_timeout=s["auth_timeout"],
            history_limit=s["history_limit"], rate_per_minute=s["rate_limit_per_minute"],
            rate_burst=s["rate_limit_burst"], rate_burst_window=s["rate_limit_burst_window"],
            rate_cooldown=s["rate_limit_cooldown"], ping_interval=s["ping_interval"],
            gateway_auto_register=s["gateway_auto_register"], legacy_history=s["legacy_history"],
            protocol_name=config["service"]["protocol"],
        )


class Connection:
    """One WebSocket connection: its state, its user once authenticated, and its command queue."""

    def __init__(self, cid: str, peer: Peer, validator_key: str) -> None:
        self.id = cid
        self.peer = peer
        self.validator_key = validator_key
        self.state = AWAITING_AUTH
        self.username = ""
        self.invalid = 0
        self.auth_failures = 0
        self.pending = 0
        self.paused = False
        self.queue: defer.Deferred[None] = defer.succeed(None)
        self.auth_timer: Any = None
        self.gateway_session = False

    def send(self, packet: dict[str, Any]) -> None:
        if self.state != CLOSED:
            self.peer.send(encode(packet))

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.username or '-'} {self.state}>"


@dataclass
class VoiceMember:
    username: str
    peer_id: str
    connection: Connection
    muted: bool = False


@dataclass
class RoomState:
    """A legacy room the user is in, as the backend described it."""

    room: str
    nickname: str = ""
    subject: str = ""
    participants: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class LegacyState:
    """What the gateway told us about one user (while the user is online here)."""

    connected: bool = False
    status: str = ""
    buddies: dict[str, ev.Buddy] = field(default_factory=dict)
    rooms: dict[str, RoomState] = field(default_factory=dict)
    conversations: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class PrivateChannel:
    """A legacy conversation of *owner*: ``kind`` "dm" (a buddy) or "room"."""

    owner: str
    kind: str
    target: str

    @property
    def name(self) -> str:
        return (DM_PREFIX if self.kind == "dm" else ROOM_PREFIX) + self.target


Channel = LocalChannel | PrivateChannel


def presence_name(value: int) -> str:
    return pr.NAMES.get(value, "online" if value > pr.FREE_FOR_CHAT else "offline")


@implementer(IFrontend)
class ChatServer:
    """The protocol core shared by every connection of the WebSocket frontend."""

    name = "websocket"

    def __init__(self, settings: Settings, store: Store, channels: Iterable[LocalChannel], clock: Any,
                 validator: auth.IValidator | None = None, gateway: Any = None, secret: bytes | None = None,
                 hasher: Callable[[str], Awaitable[str]] | None = None,
                 checker: Callable[[str, str], Awaitable[bool]] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        #: best-effort writes of the private channels' history (kept and retried while the database is away)
        self.history = HistoryQueue(store, clock)
        self.validator = validator
        self.gateway = gateway
        self.secret = secret or secrets.token_bytes(32)
        self._hash = hasher or auth.hash_password
        self._check = checker or auth.check_password
        self.channels: dict[str, LocalChannel] = {c.name: c for c in channels}
        self.channel_order = [c.name for c in channels]
        self.connections: dict[str, Connection] = {}
        self.users: dict[str, list[Connection]] = {}
        self.accounts: dict[str, Account] = {}
        self.legacy: dict[str, LegacyState] = {}
        self.voice: dict[str, dict[str, VoiceMember]] = {c.name: {} for c in channels if c.type == "voice"}
        self.message_limiter = self._limiter()
        self.typing_limiter = self._limiter()
        self._ids = itertools.count(1)
        self.local_store_refusals = 0
        self._pinger: task.LoopingCall | None = None
        self.ready = False
        self._waiting: list[defer.Deferred[None]] = []
        self._handlers: dict[str, Callable[[Connection, Command], Awaitable[None]]] = {
            name[4:]: getattr(self, name) for name in dir(self) if name.startswith("cmd_")}

    def _limiter(self) -> RateLimiter:
        s = self.settings
        return RateLimiter(self.clock, s.rate_per_minute, s.rate_burst, s.rate_burst_window, s.rate_cooldown)

    # ------------------------------------------------------------------ life cycle

    def mark_ready(self) -> None:
        """The store is migrated: serve the commands that waited for it."""
        self.ready = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def _when_ready(self) -> defer.Deferred[None]:
        if self.ready:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(d)
        return d

    def start(self) -> None:
        """Start the periodic ``ping``."""
        self._pinger = task.LoopingCall(self._ping_all)
        self._pinger.clock = self.clock
        self._pinger.start(self.settings.ping_interval, now=False)

    def stop(self) -> None:
        if self._pinger is not None and self._pinger.running:
            self._pinger.stop()
        self.history.stop()
        for conn in list(self.connections.values()):
            conn.peer.close(CLOSE_GOING_AWAY, "Server shutting down")

    def _ping_all(self) -> None:
        for conn in list(self.connections.values()):
            conn.send({"cmd": "ping"})
        self.message_limiter.prune()
        self.typing_limiter.prune()

    def now(self) -> float:
        return float(self.clock.seconds())

    def counters(self) -> dict[str, int]:
        """Numbers for the metrics (``transport_part_value{part="websocket"}``) and the status page."""
        return dict(self.history.counters(), connections=len(self.connections), users=len(self.users),
                    local_store_refusals=self.local_store_refusals)

    # ------------------------------------------------------------------ connections

    def connection_made(self, peer: Peer) -> Connection:
        """A client connected: register it and send the handshake."""
        conn = Connection(f"ws{next(self._ids)}", peer, "originChats-" + secrets.token_hex(16))
        self.connections[conn.id] = conn
        conn.queue = self._when_ready()
        conn.auth_timer = self.clock.callLater(self.settings.auth_timeout, self._auth_timeout, conn)
        conn.send({"cmd": "handshake", "val": self.handshake(conn)})
        return conn

    def handshake(self, conn: Connection) -> dict[str, Any]:
        s = self.settings
        return {
            "server": {"name": s.server_name, "icon": s.server_icon or None, "owner": {"name": s.owner[0]} if s.owner
                       else None, "protocol": s.protocol_name},
            "limits": {"post_content": s.post_content, "message_size": s.max_message_size,
                       "messages_get": 200, "rate_limit": {"per_minute": s.rate_per_minute, "burst": s.rate_burst,
                                                           "burst_window": s.rate_burst_window,
                                                           "cooldown": s.rate_cooldown}},
            "version": VERSION,
            "validator_key": conn.validator_key,
            "capabilities": sorted(self._handlers) + ["global", "listener", "voice"],
            "auth_mode": s.auth_mode,
        }

    def _auth_timeout(self, conn: Connection) -> None:
        conn.auth_timer = None
        if conn.state in (AWAITING_AUTH, AUTHENTICATING):
            conn.send({"cmd": "auth_error", "val": "Authentication timed out"})
            self._close(conn, CLOSE_POLICY, "Authentication timed out")

    def _close(self, conn: Connection, code: int, reason: str) -> None:
        if conn.state != CLOSED:
            conn.peer.close(code, reason)

    def data_received(self, conn: Connection, data: str | bytes, binary: bool = False) -> defer.Deferred[None]:
        """One WebSocket message from *conn*; fires when it has been handled."""
        if conn.state == CLOSED:
            return defer.succeed(None)
        try:
            if binary:
                raise ProtocolError("Binary frames are not supported")
            command = decode(data, self.settings.max_message_size, self.settings.max_json_depth)
        except ProtocolError as e:
            self._refuse(conn, e)
            return defer.succeed(None)
        if command.cmd == "ping":  # answered at once, even behind slow commands
            self._reply(conn, command, {"cmd": "pong", "val": "pong"})
            return defer.succeed(None)
        conn.pending += 1
        if conn.pending >= MAX_PENDING and not conn.paused:
            conn.paused = True
            conn.peer.pause_reading()
        done: defer.Deferred[None] = defer.Deferred()

        def run(_: Any) -> defer.Deferred[None]:
            d = defer.ensureDeferred(self._dispatch(conn, command))
            d.addErrback(self._unexpected, conn, command)

            def finished(_: Any) -> None:
                conn.pending -= 1
                if conn.paused and conn.pending <= MAX_PENDING // 2:
                    conn.paused = False
                    if conn.state != CLOSED:
                        conn.peer.resume_reading()
                done.callback(None)
            d.addBoth(finished)
            return d
        conn.queue.addCallback(run)
        return done

    def _unexpected(self, failure: Any, conn: Connection, command: Command) -> None:
        log.failure("command {cmd} of {conn} failed", failure, cmd=command.cmd, conn=conn)
        self._error(conn, command, "Internal server error")

    def _refuse(self, conn: Connection, error: ProtocolError, listener: str | None = None) -> None:
        conn.invalid += 1
        packet: dict[str, Any] = {"cmd": "error", "val": error.message, "src": error.src}
        if listener is not None:
            packet["listener"] = listener
        conn.send(packet)
        if conn.invalid >= self.settings.max_invalid:
            log.info("closing {conn}: {n} invalid commands", conn=conn, n=conn.invalid)
            self._close(conn, CLOSE_POLICY, "Too many invalid commands")

    def _reply(self, conn: Connection, command: Command, packet: dict[str, Any]) -> None:
        if command.listener is not None:
            packet = dict(packet, listener=command.listener)
        conn.send(packet)

    def _error(self, conn: Connection, command: Command, message: str) -> None:
        self._refuse(conn, ProtocolError(message, command.cmd), command.listener)

    async def _dispatch(self, conn: Connection, command: Command) -> None:
        if conn.state == CLOSED:
            return
        if conn.state != READY and command.cmd not in PRE_AUTH_COMMANDS:
            self._reply(conn, command, {"cmd": "auth_error", "val": "Authentication required"})
            conn.invalid += 1
            if conn.invalid >= self.settings.max_invalid:
                self._close(conn, CLOSE_POLICY, "Too many invalid commands")
            return
        handler = self._handlers.get(command.cmd)
        if handler is None:
            self._error(conn, command, f"Unknown command: {command.cmd}")
            return
        try:
            await handler(conn, command)
        except ProtocolError as e:
            self._refuse(conn, ProtocolError(e.message, command.cmd), command.listener)

    def connection_lost(self, conn: Connection) -> None:
        """The client went away (or was closed)."""
        if conn.state == CLOSED:
            return
        was_ready = conn.state == READY
        conn.state = CLOSED
        self.connections.pop(conn.id, None)
        if conn.auth_timer is not None and conn.auth_timer.active():
            conn.auth_timer.cancel()
        if not was_ready:
            return
        user = conn.username
        for channel, members in self.voice.items():
            member = members.get(user)
            if member is not None and member.connection is conn:
                del members[user]
                self._voice_broadcast(channel, {"cmd": "voice_user_left", "channel": channel, "username": user,
                                                "global": True})
        conns = self.users.get(user, [])
        if conn in conns:
            conns.remove(conn)
        if conn.gateway_session and self.gateway is not None:
            self._gateway_call(self.gateway.session_closed(user, conn.id), "session_closed")
        if not conns:
            self.users.pop(user, None)
            self.accounts.pop(user, None)
            self.legacy.pop(user, None)
            self._to_all({"cmd": "user_disconnect", "username": user})

    # ------------------------------------------------------------------ sending

    def _ready_connections(self) -> list[Connection]:
        return [c for c in self.connections.values() if c.state == READY]

    def _to_all(self, packet: dict[str, Any]) -> None:
        data = encode(packet)
        for conn in self._ready_connections():
            conn.peer.send(data)

    def _to_user(self, user: str, packet: dict[str, Any], skip: Connection | None = None) -> None:
        data = encode(packet)
        for conn in self.users.get(user, ()):
            if conn is not skip and conn.state == READY:
                conn.peer.send(data)

    def roles_of(self, user: str) -> list[str]:
        account = self.accounts.get(user)
        return account.roles if account is not None else list(self.settings.default_roles)

    def _viewers(self, channel: Channel) -> list[Connection]:
        if isinstance(channel, PrivateChannel):
            return [c for c in self.users.get(channel.owner, ()) if c.state == READY]
        return [c for c in self._ready_connections() if channel.permissions.allows("view", self.roles_of(c.username))]

    def _broadcast(self, channel: Channel, packet: dict[str, Any], sender: Connection | None = None,
                   command: Command | None = None) -> None:
        """A ``global`` packet: to every other viewer, then to the sender (with its listener)."""
        data = encode(packet)
        for conn in self._viewers(channel):
            if conn is not sender:
                conn.peer.send(data)
        if sender is not None:
            if command is not None:
                self._reply(sender, command, packet)
            else:
                sender.send(packet)

    # ------------------------------------------------------------------ users

    def color_of(self, roles: Iterable[str]) -> str | None:
        for role in roles:
            if role in self.settings.role_colors:
                return self.settings.role_colors[role]
        return None

    def user_json(self, account: Account, online: bool | None = None) -> dict[str, Any]:
        if online is None:
            online = account.username in self.users
        return {"username": account.username, "nickname": account.username, "roles": list(account.roles),
                "color": self.color_of(account.roles), "cracked": account.cracked,
                "status": {"status": "online" if online else "offline", "text": ""}}

    def _roles_for(self, username: str, stored: list[str]) -> list[str]:
        roles = list(stored) or list(self.settings.default_roles)
        if username in self.settings.admins and "admin" not in roles:
            roles.insert(0, "admin")
        if username in self.settings.owner and "owner" not in roles:
            roles.insert(0, "owner")
        return roles

    async def _authenticated(self, conn: Connection, command: Command, account: Account) -> None:
        if conn.state == CLOSED:
            return
        account.roles = self._roles_for(account.username, account.roles)
        conn.state = READY
        conn.username = account.username
        if conn.auth_timer is not None and conn.auth_timer.active():
            conn.auth_timer.cancel()
        conn.auth_timer = None
        first = account.username not in self.users
        self.users.setdefault(account.username, []).append(conn)
        self.accounts[account.username] = account
        self.legacy.setdefault(account.username, LegacyState())
        self._reply(conn, command, {"cmd": "auth_success", "val": "Authentication successful"})
        ready: dict[str, Any] = {"cmd": "ready", "user": self.user_json(account, online=True)}
        ready["validator"] = issue_token(self.secret, account.username, ttl=RESUME_TOKEN_TTL, now=self.now())
        conn.send(ready)
        if first:
            self._to_all({"cmd": "user_connect", "user": {"username": account.username, "roles": account.roles,
                                                           "color": self.color_of(account.roles)}})
        await self._open_gateway_session(conn)

    def _auth_failed(self, conn: Connection, command: Command, reason: str) -> None:
        if conn.state == CLOSED:
            return
        conn.state = AWAITING_AUTH
        conn.auth_failures += 1
        self._reply(conn, command, {"cmd": "auth_error", "val": reason})
        if conn.auth_failures >= self.settings.max_auth_attempts:
            self._close(conn, CLOSE_POLICY, "Too many failed authentication attempts")

    def _check_auth_state(self, conn: Connection, command: Command) -> bool:
        if conn.state == READY:
            self._reply(conn, command, {"cmd": "auth_error", "val": "Already authenticated"})
            return False
        return True

    async def cmd_auth(self, conn: Connection, command: Command) -> None:
        """``validator`` mode, and in both modes the token handed out in ``ready`` (to resume a session)."""
        if not self._check_auth_state(conn, command):
            return
        token = command.get("validator")
        if not isinstance(token, str) or not token or len(token) > 2048:
            self._auth_failed(conn, command, "Invalid authentication")
            return
        conn.state = AUTHENTICATING
        username = verify_token(self.secret, token, now=self.now())
        if username is None and self.settings.auth_mode == "validator" and self.validator is not None:
            username = await self.validator.validate(token, conn.validator_key)
        if username is None or not USERNAME_RE.match(username):
            self._auth_failed(conn, command, "Invalid authentication")
            return
        account = await self.store.ensure_account(username, list(self.settings.default_roles), int(self.now() * 1000))
        await self._authenticated(conn, command, account)

    def _credentials(self, conn: Connection, command: Command) -> tuple[str, str] | None:
        if self.settings.auth_mode != "cracked":
            self._auth_failed(conn, command, "Password login is disabled on this server")
            return None
        username = command.get("username")
        password = command.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            self._auth_failed(conn, command, "Username and password are required")
            return None
        username = username.strip().lower()
        if not USERNAME_RE.match(username):
            self._auth_failed(conn, command, "Usernames are 2-32 characters of a-z, 0-9, _ and -")
            return None
        if not 4 <= len(password) <= MAX_PASSWORD:
            self._auth_failed(conn, command, f"Passwords are 4-{MAX_PASSWORD} characters")
            return None
        return username, password

    async def cmd_login(self, conn: Connection, command: Command) -> None:
        if not self._check_auth_state(conn, command):
            return
        creds = self._credentials(conn, command)
        if creds is None:
            return
        conn.state = AUTHENTICATING
        account = await self.store.get_account(creds[0])
        if account is None or not account.password_hash:
            self._auth_failed(conn, command, "Invalid username or password")
            return
        if not await self._check(creds[1], account.password_hash):
            self._auth_failed(conn, command, "Invalid username or password")
            return
        await self._authenticated(conn, command, account)

    async def cmd_register(self, conn: Connection, command: Command) -> None:
        if not self._check_auth_state(conn, command):
            return
        creds = self._credentials(conn, command)
        if creds is None:
            return
        if not self.settings.allow_registration:
            self._auth_failed(conn, command, "Registration is disabled on this server")
            return
        conn.state = AUTHENTICATING
        hashed = await self._hash(creds[1])
        account = Account(creds[0], list(self.settings.default_roles), True, hashed)
        if not await self.store.create_account(account, int(self.now() * 1000)):
            self._auth_failed(conn, command, "Username already taken")
            return
        await self._authenticated(conn, command, account)

    async def cmd_ping(self, conn: Connection, command: Command) -> None:  # pragma: no cover - answered early
        self._reply(conn, command, {"cmd": "pong", "val": "pong"})

    async def cmd_users_list(self, conn: Connection, command: Command) -> None:
        accounts = await self.store.all_accounts()
        users = []
        for account in accounts:
            live = self.accounts.get(account.username)
            users.append(self.user_json(live or Account(account.username, self._roles_for(account.username,
                                                                                          account.roles),
                                                        account.cracked)))
        self._reply(conn, command, {"cmd": "users_list", "users": users})

    async def cmd_users_online(self, conn: Connection, command: Command) -> None:
        users = [self.user_json(self.accounts[u], online=True) for u in sorted(self.users) if u in self.accounts]
        self._reply(conn, command, {"cmd": "users_online", "users": users})

    # ------------------------------------------------------------------ channels

    def _resolve(self, conn: Connection, command: Command, *, need: str = "view") -> Channel:
        name = get_field(command, "channel", str, max_length=MAX_CHANNEL_NAME, min_length=1, label="Channel name")
        if name.startswith(DM_PREFIX) or name.startswith(ROOM_PREFIX):
            kind = "dm" if name.startswith(DM_PREFIX) else "room"
            target = name.split(":", 1)[1]
            if not target:
                raise ProtocolError("Invalid channel name")
            state = self.legacy.get(conn.username)
            if kind == "room" and (state is None or target not in state.rooms) and need != "view":
                raise ProtocolError("You are not in this room")
            return PrivateChannel(conn.username, kind, target)
        channel = self.channels.get(name)
        if channel is None:
            raise ProtocolError("Invalid channel name")
        roles = self.roles_of(conn.username)
        if not channel.permissions.allows("view", roles):
            raise ProtocolError("Access denied to this channel")
        if need != "view" and not channel.permissions.allows(need, roles):
            raise ProtocolError(f"You do not have permission to {need.replace('_', ' ')} in this channel")
        return channel

    def _private_json(self, channel: PrivateChannel) -> dict[str, Any]:
        state = self.legacy.get(channel.owner, LegacyState())
        gateway: dict[str, Any] = {"kind": channel.kind, "target": channel.target}
        display = channel.target
        if channel.kind == "dm":
            buddy = state.buddies.get(channel.target)
            if buddy is not None:
                display = buddy.alias or buddy.name
                gateway.update(self._buddy_json(buddy))
            else:
                gateway["presence"] = "offline"
        else:
            room = state.rooms.get(channel.target)
            if room is not None:
                gateway.update({"nickname": room.nickname, "subject": room.subject,
                                "participants": sorted(room.participants)})
        perms = {"view": ["user"], "send": ["user"], "delete": [], "delete_own": ["user"], "edit_own": [],
                 "react": ["user"]}
        return {"name": channel.name, "type": "text", "display_name": display,
                "description": f"{self.settings.protocol_name} {'conversation' if channel.kind == 'dm' else 'room'}",
                "permissions": perms, "private": True, "gateway": gateway}

    def _buddy_json(self, buddy: ev.Buddy) -> dict[str, Any]:
        return {"name": buddy.name, "alias": buddy.alias, "groups": list(buddy.groups),
                "presence": presence_name(buddy.presence), "status_message": buddy.status_message,
                "blocked": buddy.blocked, "channel": DM_PREFIX + buddy.name}

    def _private_channels(self, user: str) -> list[PrivateChannel]:
        state = self.legacy.get(user, LegacyState())
        names: dict[str, PrivateChannel] = {}
        for room in state.rooms:
            names[ROOM_PREFIX + room] = PrivateChannel(user, "room", room)
        for buddy in sorted(state.buddies):
            names.setdefault(DM_PREFIX + buddy, PrivateChannel(user, "dm", buddy))
        for name in state.conversations:
            kind = "dm" if name.startswith(DM_PREFIX) else "room"
            names.setdefault(name, PrivateChannel(user, kind, name.split(":", 1)[1]))
        return list(names.values())

    async def cmd_channels_get(self, conn: Connection, command: Command) -> None:
        roles = self.roles_of(conn.username)
        out = []
        for name in self.channel_order:
            channel = self.channels[name]
            if not channel.permissions.allows("view", roles):
                continue
            item = channel.as_json()
            if channel.type == "voice":
                members = self.voice[name]
                if conn.username in members:
                    item["voice_state"] = [{"username": m.username, "muted": m.muted}
                                           for m in members.values() if m.username != conn.username]
            out.append(item)
        state = self.legacy.get(conn.username)
        if state is not None:
            for conversation in await self.store.conversations(conn.username):
                state.conversations.add(conversation)
        out.extend(self._private_json(c) for c in self._private_channels(conn.username))
        self._reply(conn, command, {"cmd": "channels_get", "val": out})

    def _text_channel(self, channel: Channel) -> None:
        if isinstance(channel, LocalChannel) and channel.type != "text":
            raise ProtocolError("This is not a text channel")

    @staticmethod
    def _owner(channel: Channel) -> str:
        return channel.owner if isinstance(channel, PrivateChannel) else ""

    async def cmd_messages_get(self, conn: Connection, command: Command) -> None:
        channel = self._resolve(conn, command)
        self._text_channel(channel)
        start = get_field(command, "start", (int, str), required=False, default=0, max_length=MAX_ID)
        if isinstance(start, int) and start < 0:
            raise ProtocolError("Start must not be negative")
        limit = get_field(command, "limit", int, required=False, default=self.settings.history_limit)
        limit = max(1, min(200, limit))
        messages = await self.store.get_messages(self._owner(channel), channel.name, start, limit)
        self._reply(conn, command, {"cmd": "messages_get", "channel": channel.name,
                                    "messages": [m.as_json() for m in messages]})

    def _content(self, command: Command) -> str:
        content = get_field(command, "content", str, label="Message content")
        content = content.strip()
        if not content:
            raise ProtocolError("Message content cannot be empty")
        if len(content) > self.settings.post_content:
            raise ProtocolError(f"Message too long (at most {self.settings.post_content} characters)")
        return content

    def _rate_limited(self, conn: Connection, command: Command, limiter: RateLimiter) -> bool:
        refused = limiter.check(conn.username)
        if refused is None:
            return False
        self._reply(conn, command, {"cmd": "rate_limit", "reason": refused.reason, "length": refused.length_ms})
        return True

    async def cmd_message_new(self, conn: Connection, command: Command) -> None:
        channel = self._resolve(conn, command, need="send")
        self._text_channel(channel)
        content = self._content(command)
        reply_id = get_field(command, "reply_to", str, required=False, max_length=MAX_ID)
        if self._rate_limited(conn, command, self.message_limiter):
            return
        reply = None
        if reply_id:
            original = await self.store.get_message(self._owner(channel), channel.name, reply_id)
            if original is None:
                raise ProtocolError("The message replied to does not exist")
            reply = {"id": original.id, "user": original.user}
        message = StoredMessage(str(uuid.uuid4()), channel.name, conn.username, content, round(self.now(), 3),
                                reply_to=reply, owner=self._owner(channel))
        if isinstance(channel, PrivateChannel):
            # the legacy network is the contract here: once it has the message the sender sees it accepted, and
            # the history is written best-effort (kept and retried while the database is away)
            await self._send_legacy(conn, channel, message)
            self.history.write(message, keep=self.settings.legacy_history)
            self._remember_conversation(channel)
        else:
            # local channels: the history is the contract, so a message that cannot be stored is not sent
            try:
                await self.store.add_message(message)
            except Exception as e:
                self.local_store_refusals += 1
                log.warn("storing a message of {channel} failed: {error}", channel=channel.name, error=e)
                raise ProtocolError("The message could not be stored (database unavailable); it was not sent") \
                    from None
        packet: dict[str, Any] = {"cmd": "message_new", "message": message.as_json(), "channel": channel.name,
                                  "global": True}
        if command.get("ping") is False:
            packet["message"]["ping"] = False
        self._broadcast(channel, packet, conn, command)

    async def _send_legacy(self, conn: Connection, channel: PrivateChannel, message: StoredMessage) -> None:
        from transport.core import gateway as gw

        if self.gateway is None:
            raise ProtocolError("No gateway is running")
        try:
            if channel.kind == "dm":
                await self.gateway.send_message(conn.username, channel.target, message.content, id=message.id)
            else:
                await self.gateway.send_room_message(conn.username, channel.target, message.content, id=message.id)
        except gw.QueueFull:
            raise ProtocolError("Too many messages are waiting for the legacy network; try again later") from None
        except gw.NotConnected:
            raise ProtocolError(f"You are not connected to {self.settings.protocol_name}") from None

    def _remember_conversation(self, channel: PrivateChannel) -> None:
        state = self.legacy.get(channel.owner)
        if state is not None and channel.name not in state.conversations:
            state.conversations.add(channel.name)
            if not (channel.kind == "dm" and channel.target in state.buddies) and not (
                    channel.kind == "room" and channel.target in state.rooms):
                self._to_user(channel.owner, {"cmd": "gateway_channel", "channel": self._private_json(channel)})

    async def _own_message(self, conn: Connection, command: Command, channel: Channel) -> StoredMessage:
        message_id = get_field(command, "id", str, max_length=MAX_ID, min_length=1, label="Message id")
        message = await self.store.get_message(self._owner(channel), channel.name, message_id)
        if message is None:
            raise ProtocolError("Message not found")
        return message

    async def cmd_message_edit(self, conn: Connection, command: Command) -> None:
        channel = self._resolve(conn, command)
        self._text_channel(channel)
        if isinstance(channel, PrivateChannel):
            raise ProtocolError("Messages sent to a legacy network cannot be edited")
        content = self._content(command)
        message = await self._own_message(conn, command, channel)
        if message.user != conn.username:
            raise ProtocolError("You can only edit your own messages")
        if not channel.permissions.allows("edit_own", self.roles_of(conn.username)):
            raise ProtocolError("You do not have permission to edit messages in this channel")
        if self._rate_limited(conn, command, self.message_limiter):
            return
        await self.store.edit_message(message.id, content, int(self.now() * 1000))
        self._broadcast(channel, {"cmd": "message_edit", "id": message.id, "content": content,
                                  "channel": channel.name, "global": True}, conn, command)

    async def cmd_message_delete(self, conn: Connection, command: Command) -> None:
        channel = self._resolve(conn, command)
        self._text_channel(channel)
        message = await self._own_message(conn, command, channel)
        if isinstance(channel, LocalChannel):
            roles = self.roles_of(conn.username)
            own = message.user == conn.username
            if not (channel.permissions.allows("delete", roles)
                    or (own and channel.permissions.allows("delete_own", roles))):
                raise ProtocolError("You do not have permission to delete this message")
        await self.store.delete_message(message.id)
        self._broadcast(channel, {"cmd": "message_delete", "id": message.id, "channel": channel.name,
                                  "global": True}, conn, command)

    async def cmd_typing(self, conn: Connection, command: Command) -> None:
        channel = self._resolve(conn, command)
        self._text_channel(channel)
        if self._rate_limited(conn, command, self.typing_limiter):
            return
        if isinstance(channel, LocalChannel):
            if not channel.permissions.allows("send", self.roles_of(conn.username)):
                raise ProtocolError("You do not have permission to send in this channel")
        elif channel.kind == "dm" and self.gateway is not None:
            try:
                self.gateway.typing(conn.username, channel.target, "composing")
            except Exception as e:  # the legacy side is best effort for chat states
                log.debug("typing to {buddy} not sent: {e}", buddy=channel.target, e=e)
        self._broadcast(channel, {"cmd": "typing", "user": conn.username, "channel": channel.name, "global": True},
                        conn, command)

    async def _react(self, conn: Connection, command: Command, add: bool) -> None:
        channel = self._resolve(conn, command, need="react")
        self._text_channel(channel)
        emoji = get_field(command, "emoji", str, max_length=MAX_EMOJI, min_length=1, label="Emoji")
        message = await self._own_message(conn, command, channel)
        if add:
            if await self.store.count_reaction_kinds(message.id) >= MAX_REACTIONS_PER_MESSAGE:
                raise ProtocolError("Too many different reactions on this message")
            changed = await self.store.add_reaction(message.id, emoji, conn.username)
        else:
            changed = bool(await self.store.remove_reaction(message.id, emoji, conn.username))
        if not changed:
            raise ProtocolError("Reaction already present" if add else "Reaction not found")
        cmd = "message_react_add" if add else "message_react_remove"
        self._broadcast(channel, {"cmd": cmd, "id": message.id, "channel": channel.name, "emoji": emoji,
                                  "from": conn.username, "global": True}, conn, command)

    async def cmd_message_react_add(self, conn: Connection, command: Command) -> None:
        await self._react(conn, command, True)

    async def cmd_message_react_remove(self, conn: Connection, command: Command) -> None:
        await self._react(conn, command, False)

    # ------------------------------------------------------------------ voice

    def _voice_channel(self, conn: Connection, command: Command) -> LocalChannel:
        channel = self._resolve(conn, command)
        if not isinstance(channel, LocalChannel) or channel.type != "voice":
            raise ProtocolError("This is not a voice channel")
        return channel

    def _voice_user(self, member: VoiceMember, with_peer: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"id": member.username, "username": member.username, "muted": member.muted}
        if with_peer:
            out["peer_id"] = member.peer_id
        return out

    def _voice_broadcast(self, channel: str, packet: dict[str, Any], member: VoiceMember | None = None,
                         sender: Connection | None = None, command: Command | None = None) -> None:
        """To every viewer of *channel*; the ``user`` object carries ``peer_id`` only for participants."""
        local = self.channels[channel]
        members = self.voice[channel]
        for conn in self._viewers(local):
            out = packet
            if member is not None:
                participant = conn.username in members and members[conn.username].connection is conn
                out = dict(packet, user=self._voice_user(member, participant))
            if conn is sender and command is not None:
                continue
            conn.send(out)
        if sender is not None and command is not None:
            out = packet
            if member is not None:
                out = dict(packet, user=self._voice_user(member, True))
            self._reply(sender, command, out)

    def _leave_voice(self, user: str) -> str | None:
        for channel, members in self.voice.items():
            if user in members:
                del members[user]
                self._voice_broadcast(channel, {"cmd": "voice_user_left", "channel": channel, "username": user,
                                                "global": True})
                return channel
        return None

    async def cmd_voice_join(self, conn: Connection, command: Command) -> None:
        channel = self._voice_channel(conn, command)
        peer_id = get_field(command, "peer_id", str, max_length=MAX_PEER_ID, min_length=1, label="Peer ID")
        self._leave_voice(conn.username)
        members = self.voice[channel.name]
        others = [self._voice_user(m, True) for m in members.values()]
        member = members[conn.username] = VoiceMember(conn.username, peer_id, conn)
        self._reply(conn, command, {"cmd": "voice_join", "channel": channel.name, "participants": others})
        self._voice_broadcast(channel.name, {"cmd": "voice_user_joined", "channel": channel.name, "global": True},
                              member)

    async def cmd_voice_leave(self, conn: Connection, command: Command) -> None:
        channel = self._leave_voice(conn.username)
        if channel is None:
            raise ProtocolError("You are not in a voice channel")
        self._reply(conn, command, {"cmd": "voice_leave", "channel": channel})

    async def _mute(self, conn: Connection, command: Command, muted: bool | None) -> None:
        for channel, members in self.voice.items():
            member = members.get(conn.username)
            if member is not None:
                if muted is None:
                    value = get_field(command, "muted", bool, required=False, default=True)
                else:
                    value = muted
                member.muted = value
                self._reply(conn, command, {"cmd": command.cmd, "channel": channel, "muted": value})
                self._voice_broadcast(channel, {"cmd": "voice_user_updated", "channel": channel, "global": True},
                                      member)
                return
        raise ProtocolError("You are not in a voice channel")

    async def cmd_voice_mute(self, conn: Connection, command: Command) -> None:
        await self._mute(conn, command, None)

    async def cmd_voice_unmute(self, conn: Connection, command: Command) -> None:
        await self._mute(conn, command, False)

    async def cmd_voice_state(self, conn: Connection, command: Command) -> None:
        channel = self._voice_channel(conn, command)
        members = self.voice[channel.name]
        inside = conn.username in members
        self._reply(conn, command, {"cmd": "voice_state", "channel": channel.name,
                                    "participants": [self._voice_user(m, inside) for m in members.values()]})

    # ------------------------------------------------------------------ gateway: commands

    def _gateway_call(self, d: Any, what: str) -> None:
        if isinstance(d, defer.Deferred):
            d.addErrback(lambda f: log.warn("gateway {what} failed: {error}", what=what, error=f.getErrorMessage()))

    async def _open_gateway_session(self, conn: Connection) -> None:
        if self.gateway is None or conn.state != READY:
            return
        from transport.core import gateway as gw

        user = conn.username
        try:
            await self.gateway.session_opened(self, user, conn.id, pr.ONLINE)
        except gw.NotRegistered:
            if not self.settings.gateway_auto_register:
                conn.send({"cmd": "gateway_status", "registered": False, "connected": False,
                           "val": f"Not registered with {self.settings.protocol_name}: use gateway_register"})
                return
            try:
                await self.gateway.register(user, user, "")
                await self.gateway.session_opened(self, user, conn.id, pr.ONLINE)
            except gw.GatewayError as e:
                conn.send({"cmd": "gateway_status", "registered": False, "connected": False, "val": str(e)})
                return
        except gw.GatewayError as e:
            conn.send({"cmd": "gateway_status", "registered": False, "connected": False, "val": str(e)})
            return
        if conn.state == CLOSED:  # went away while we waited: do not leak the session
            self._gateway_call(self.gateway.session_closed(user, conn.id), "session_closed")
            return
        conn.gateway_session = True
        state = self.legacy.get(user)
        if state is not None and state.connected:
            conn.send({"cmd": "gateway_status", "registered": True, "connected": True, "val": "Connected"})

    def _need_gateway(self) -> Any:
        if self.gateway is None:
            raise ProtocolError("No gateway is running")
        return self.gateway

    async def cmd_gateway_register(self, conn: Connection, command: Command) -> None:
        from transport.core import gateway as gw

        gateway = self._need_gateway()
        legacy_name = get_field(command, "legacy_name", str, max_length=256, min_length=1, label="Legacy name")
        password = get_field(command, "password", str, required=False, default="", max_length=MAX_PASSWORD)
        extra = get_field(command, "extra", str, required=False, default="", max_length=1024)
        try:
            await gateway.register(conn.username, legacy_name, password, extra)
        except gw.GatewayError as e:
            raise ProtocolError(f"Registration refused: {e}") from None
        self._reply(conn, command, {"cmd": "gateway_register", "val": "Registered", "legacy_name": legacy_name})
        for other in list(self.users.get(conn.username, ())):
            if other.gateway_session:
                self._gateway_call(gateway.session_closed(conn.username, other.id), "session_closed")
                other.gateway_session = False
        for other in list(self.users.get(conn.username, ())):
            await self._open_gateway_session(other)

    async def cmd_gateway_unregister(self, conn: Connection, command: Command) -> None:
        gateway = self._need_gateway()
        removed = await gateway.unregister(conn.username)
        for other in self.users.get(conn.username, ()):
            if other.gateway_session:
                self._gateway_call(gateway.session_closed(conn.username, other.id), "session_closed")
                other.gateway_session = False
        state = self.legacy.get(conn.username)
        if state is not None:
            state.buddies.clear()
            state.rooms.clear()
            state.connected = False
        self._reply(conn, command, {"cmd": "gateway_unregister", "val": "Unregistered" if removed
                                    else "Not registered"})

    async def cmd_gateway_join(self, conn: Connection, command: Command) -> None:
        from transport.core import gateway as gw

        gateway = self._need_gateway()
        room = get_field(command, "room", str, max_length=256, min_length=1, label="Room")
        nickname = get_field(command, "nickname", str, required=False, default=conn.username, max_length=128)
        password = get_field(command, "password", str, required=False, default="", max_length=MAX_PASSWORD)
        try:
            gateway.join_room(conn.username, room, nickname or conn.username, password)
        except gw.GatewayError:
            raise ProtocolError(f"You are not connected to {self.settings.protocol_name}") from None
        state = self.legacy.setdefault(conn.username, LegacyState())
        state.rooms.setdefault(room, RoomState(room, nickname or conn.username))
        channel = PrivateChannel(conn.username, "room", room)
        self._to_user(conn.username, {"cmd": "gateway_channel", "channel": self._private_json(channel)})
        self._reply(conn, command, {"cmd": "gateway_join", "room": room, "channel": channel.name})

    async def cmd_gateway_leave(self, conn: Connection, command: Command) -> None:
        gateway = self._need_gateway()
        room = get_field(command, "room", str, max_length=256, min_length=1, label="Room")
        gateway.leave_room(conn.username, room)
        state = self.legacy.get(conn.username)
        if state is not None:
            state.rooms.pop(room, None)
        self._reply(conn, command, {"cmd": "gateway_leave", "room": room, "channel": ROOM_PREFIX + room})
        self._to_user(conn.username, {"cmd": "gateway_channel_removed", "channel": ROOM_PREFIX + room})

    async def cmd_gateway_buddies(self, conn: Connection, command: Command) -> None:
        state = self.legacy.get(conn.username, LegacyState())
        self._reply(conn, command, {"cmd": "gateway_buddies", "connected": state.connected,
                                    "buddies": [self._buddy_json(b) for _, b in sorted(state.buddies.items())]})

    async def cmd_gateway_rooms(self, conn: Connection, command: Command) -> None:
        state = self.legacy.get(conn.username, LegacyState())
        self._reply(conn, command, {"cmd": "gateway_rooms", "rooms": [
            {"room": r.room, "nickname": r.nickname, "subject": r.subject, "channel": ROOM_PREFIX + r.room,
             "participants": sorted(r.participants)} for _, r in sorted(state.rooms.items())]})

    async def cmd_gateway_open(self, conn: Connection, command: Command) -> None:
        buddy = get_field(command, "buddy", str, max_length=256, min_length=1, label="Buddy")
        channel = PrivateChannel(conn.username, "dm", buddy)
        self._reply(conn, command, {"cmd": "gateway_open", "channel": self._private_json(channel)})

    # ------------------------------------------------------------------ gateway: events (IFrontend)

    def deliver(self, event: Any) -> None:
        """Turn a gateway event into packets for the user's connections."""
        handler = getattr(self, "_on_" + type(event).__name__, None)
        if handler is None:
            return
        if event.user == "":
            handler(event, None)
            return
        state = self.legacy.get(event.user)
        if state is None:
            return
        handler(event, state)

    def _status(self, user: str, connected: bool, text: str, **extra: Any) -> None:
        self._to_user(user, dict({"cmd": "gateway_status", "registered": True, "connected": connected,
                                  "val": text}, **extra))

    def _on_Connected(self, event: ev.Connected, state: LegacyState) -> None:
        state.connected = True
        self._status(event.user, True, "Connected")
        for name in list(state.rooms):
            state.rooms[name].participants.clear()

    def _on_Disconnected(self, event: ev.Disconnected, state: LegacyState) -> None:
        state.connected = False
        self._status(event.user, False, event.message or "Disconnected", error=event.error)

    def _on_Reconnecting(self, event: ev.Reconnecting, state: LegacyState) -> None:
        state.connected = False
        self._status(event.user, False, f"Reconnecting (attempt {event.attempt})", reconnecting=True)

    def _on_BuddyChanged(self, event: ev.BuddyChanged, state: LegacyState) -> None:
        old = state.buddies.get(event.buddy.name)
        buddy = event.buddy
        if old is not None and not buddy.groups and old.groups:
            buddy = ev.Buddy(buddy.name, buddy.alias, old.groups, buddy.presence, buddy.status_message,
                             buddy.icon_hash, buddy.blocked)
        state.buddies[buddy.name] = buddy
        self._to_user(event.user, {"cmd": "gateway_buddy", "buddy": self._buddy_json(buddy)})
        if old is None:
            channel = PrivateChannel(event.user, "dm", buddy.name)
            self._to_user(event.user, {"cmd": "gateway_channel", "channel": self._private_json(channel)})

    def _on_BuddyRemoved(self, event: ev.BuddyRemoved, state: LegacyState) -> None:
        state.buddies.pop(event.buddy_name, None)
        self._to_user(event.user, {"cmd": "gateway_buddy_removed", "name": event.buddy_name,
                                   "channel": DM_PREFIX + event.buddy_name})

    def _on_MessageReceived(self, event: ev.MessageReceived, state: LegacyState) -> None:
        room = state.rooms.get(event.buddy)
        if room is not None and not event.pm:
            if event.nickname and event.nickname == room.nickname and not event.carbon:
                return  # the room reflecting our own message: already in the history
            channel = PrivateChannel(event.user, "room", event.buddy)
            author = event.nickname or event.buddy
        else:
            target = event.buddy if not (event.pm and event.nickname) else f"{event.buddy}/{event.nickname}"
            channel = PrivateChannel(event.user, "dm", target)
            author = event.user if event.carbon else target
        body = event.body
        for attachment in event.attachments:
            body += ("\n" if body else "") + attachment.url
        if not body:
            return
        stamp = event.timestamp.timestamp() if event.timestamp is not None else self.now()
        message = StoredMessage(str(uuid.uuid4()), channel.name, author, body, round(stamp, 3), owner=event.user)
        packet = {"cmd": "message_new", "message": message.as_json(), "channel": channel.name, "global": True}
        if event.headline:
            packet["headline"] = True

        # shown at once (the id is made here, not by the database); the history is written best-effort
        self._remember_conversation(channel)
        self._broadcast(channel, packet)
        self.history.write(message, legacy_id=event.id, keep=self.settings.legacy_history)

    def _on_MessageFailed(self, event: ev.MessageFailed, state: LegacyState) -> None:
        kind = "room" if event.buddy in state.rooms else "dm"
        channel = PrivateChannel(event.user, kind, event.buddy)
        self._to_user(event.user, {"cmd": "gateway_message_failed", "channel": channel.name, "id": event.id,
                                   "val": event.reason})

    def _on_MessageAcked(self, event: ev.MessageAcked, state: LegacyState) -> None:
        self._to_user(event.user, {"cmd": "gateway_message_acked", "channel": DM_PREFIX + event.buddy,
                                   "id": event.id})

    def _on_Typing(self, event: ev.Typing, state: LegacyState) -> None:
        channel = DM_PREFIX + event.buddy
        if event.state == "composing":
            self._to_user(event.user, {"cmd": "typing", "user": event.buddy, "channel": channel, "global": True})
        else:
            self._to_user(event.user, {"cmd": "typing_stop", "user": event.buddy, "channel": channel,
                                       "state": event.state, "global": True})

    def _on_Attention(self, event: ev.Attention, state: LegacyState) -> None:
        self._to_user(event.user, {"cmd": "gateway_attention", "buddy": event.buddy, "channel": DM_PREFIX + event.buddy,
                                   "val": event.body})

    def _on_AuthRequest(self, event: ev.AuthRequest, state: LegacyState) -> None:
        self._to_user(event.user, {"cmd": "gateway_auth_request", "buddy": event.buddy})

    def _on_ParticipantChanged(self, event: ev.ParticipantChanged, state: LegacyState) -> None:
        room = state.rooms.get(event.room)
        is_self = bool(event.flags & 16)
        if room is None:
            if not is_self or event.presence == pr.OFFLINE:
                return
            room = state.rooms[event.room] = RoomState(event.room, event.nickname)
            channel = PrivateChannel(event.user, "room", event.room)
            self._to_user(event.user, {"cmd": "gateway_channel", "channel": self._private_json(channel)})
        if is_self:
            room.nickname = event.newname or event.nickname
        if event.presence == pr.OFFLINE:
            room.participants.pop(event.nickname, None)
        else:
            info = {"nickname": event.newname or event.nickname, "presence": presence_name(event.presence),
                    "status_message": event.status_message, "moderator": bool(event.flags & 1), "self": is_self}
            if event.newname:
                room.participants.pop(event.nickname, None)
            room.participants[event.newname or event.nickname] = info
        self._to_user(event.user, {"cmd": "gateway_participant", "channel": ROOM_PREFIX + event.room,
                                   "room": event.room, "nickname": event.nickname, "newname": event.newname,
                                   "presence": presence_name(event.presence), "flags": event.flags,
                                   "status_message": event.status_message, "self": is_self})

    def _on_RoomNicknameChanged(self, event: ev.RoomNicknameChanged, state: LegacyState) -> None:
        room = state.rooms.get(event.room)
        if room is not None:
            room.nickname = event.nickname

    def _on_RoomSubjectChanged(self, event: ev.RoomSubjectChanged, state: LegacyState) -> None:
        room = state.rooms.get(event.room)
        if room is not None:
            room.subject = event.subject
        self._to_user(event.user, {"cmd": "gateway_subject", "channel": ROOM_PREFIX + event.room, "room": event.room,
                                   "subject": event.subject, "nickname": event.nickname})

    def _on_RoomList(self, event: ev.RoomList, state: LegacyState | None) -> None:
        packet = {"cmd": "gateway_room_list", "rooms": [{"id": r, "name": n} for r, n in event.rooms]}
        if event.user == "":
            self._to_all(packet)
        else:
            self._to_user(event.user, packet)

