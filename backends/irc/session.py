"""One user's IRC connection, kept alive across server restarts.

:class:`IRCSession` is what the backend keeps per logged-in user: the server
address, the channels the user joined (with their occupants), the private
conversations (buddies), and a queue for what the user says while the
connection is being re-established. :class:`IRCConnection` is the Twisted
``IRCClient`` under it; it only translates IRC events into calls on the session.

Sending is flood-safe: every line goes through a token bucket
(``irc_send_rate`` lines per second after a burst of ``irc_send_burst``), on the
injectable clock, instead of IRCClient's own ``lineRate`` (which uses the global
reactor and cannot burst).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from transport_backends.irc.options import IRCSettings, ServerAddress, decode_line, irc_lower, is_channel
from twisted.internet import defer, ssl
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols import irc

from transport.sdk import pb

if TYPE_CHECKING:
    from transport_backends.irc import IRCBackend

log = Logger(namespace="irc")

F_NONE = pb.PARTICIPANT_FLAG_NONE
F_MODERATOR = pb.PARTICIPANT_FLAG_MODERATOR
F_CONFLICT = pb.PARTICIPANT_FLAG_CONFLICT
F_ME = pb.PARTICIPANT_FLAG_ME
F_KICKED = pb.PARTICIPANT_FLAG_KICKED
F_NOT_AUTHORIZED = pb.PARTICIPANT_FLAG_NOT_AUTHORIZED
F_BANNED = pb.PARTICIPANT_FLAG_BANNED

#: NAMES prefixes that make an occupant a moderator (op, half-op, admin, owner).
MODERATOR_PREFIXES = "@%&~"
ALL_PREFIXES = "@%&~+"


def _redacted(line: str) -> str:
    """*line* for the log: the password of ``PASS`` and of NickServ's ``IDENTIFY`` replaced."""
    upper = line.upper()
    if upper.startswith("PASS "):
        return "PASS ***"
    if upper.startswith("PRIVMSG NICKSERV :IDENTIFY "):
        return line[:len("PRIVMSG NickServ :IDENTIFY ")] + "***"
    return line


class TokenBucket:
    """At most *rate* items per second after a burst of *burst*; the rest wait, in order."""

    def __init__(self, clock: IReactorTime, rate: float, burst: int, send: Callable[[str], None]) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = clock.seconds()
        self.send = send
        self.waiting: deque[str] = deque()
        self._timer: IDelayedCall | None = None

    def put(self, line: str) -> None:
        self.waiting.append(line)
        self._drain()

    def _refill(self) -> None:
        now = self.clock.seconds()
        if self.rate > 0:
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def _drain(self) -> None:
        self._timer = None
        if self.rate <= 0:
            while self.waiting:
                self.send(self.waiting.popleft())
            return
        self._refill()
        while self.waiting and self.tokens >= 1:
            self.tokens -= 1
            self.send(self.waiting.popleft())
        if self.waiting and self._timer is None:
            self._timer = self.clock.callLater((1 - self.tokens) / self.rate, self._drain)

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.waiting.clear()


@dataclass
class Room:
    """A channel the user asked to be in."""

    name: str
    nickname: str
    password: str = ""
    joined: bool = False
    occupants: dict[str, int] = field(default_factory=dict)  # irc_lower(nick) -> flags
    display: dict[str, str] = field(default_factory=dict)  # irc_lower(nick) -> nick as written
    away: dict[str, bool] = field(default_factory=dict)
    names_buffer: list[str] = field(default_factory=list)
    topic: str | None = None


class IRCConnection(irc.IRCClient):
    """The IRC protocol for one session; events go to the session."""

    delimiter = b"\n"
    MAX_LENGTH = 16384  # LineReceiver closes the connection beyond this: a bounded parser
    heartbeatInterval = 60

    def __init__(self, session: IRCSession) -> None:
        self.session = session
        self.nickname = session.address.nick
        self.realname = session.settings.realname
        self.username = session.address.nick
        if session.password and session.settings.password_mode == "server":
            self.password = session.password  # type: ignore[assignment]
        self.bucket = TokenBucket(session.clock, session.settings.send_rate, session.settings.send_burst,
                                  self._reallySendLine)
        self._names: dict[str, list[str]] = {}

    # byte level ---------------------------------------------------------------

    def lineReceived(self, line: bytes | str) -> None:  # type: ignore[override]
        if isinstance(line, bytes):
            line = decode_line(line.rstrip(b"\r"), self.session.settings.fallback_encoding)
        log.debug("{user} <- {line}", user=self.session.user, line=line)
        super().lineReceived(line)

    def sendLine(self, line: str) -> None:  # type: ignore[override]
        log.debug("{user} -> {line}", user=self.session.user, line=_redacted(line))
        self.bucket.put(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        log.warn("IRC server sent a line over {n} bytes; closing", n=self.MAX_LENGTH)
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.bucket.stop()
        super().connectionLost(reason)
        self.session.on_connection_lost(self, reason)

    # registration ------------------------------------------------------------

    def signedOn(self) -> None:
        self.session.on_signed_on(self)

    def irc_ERR_NICKNAMEINUSE(self, prefix: str, params: list[str]) -> None:
        self.session.on_nick_refused(self, params[1] if len(params) > 1 else self._attemptedNick, "in use")

    def irc_ERR_ERRONEUSNICKNAME(self, prefix: str, params: list[str]) -> None:
        self.session.on_nick_refused(self, params[1] if len(params) > 1 else self._attemptedNick, "erroneous")

    def irc_ERR_PASSWDMISMATCH(self, prefix: str, params: list[str]) -> None:
        self.session.on_password_refused(self)

    def nickChanged(self, nick: str) -> None:
        super().nickChanged(nick)
        self.session.on_own_nick(nick)

    # channels -------------------------------------------------------------------

    def irc_RPL_NAMREPLY(self, prefix: str, params: list[str]) -> None:
        self._names.setdefault(irc_lower(params[2]), []).extend(params[3].split())

    def irc_RPL_ENDOFNAMES(self, prefix: str, params: list[str]) -> None:
        channel = params[1]
        self.session.on_names(channel, self._names.pop(irc_lower(channel), []))

    def joined(self, channel: str) -> None:
        self.session.on_joined(channel)

    def left(self, channel: str) -> None:
        self.session.on_left(channel)

    def userJoined(self, user: str, channel: str) -> None:
        self.session.on_occupant(channel, user, F_NONE, joined=True)

    def userLeft(self, user: str, channel: str) -> None:
        self.session.on_occupant_gone(channel, user, "")

    def userQuit(self, user: str, quitMessage: str) -> None:
        self.session.on_quit(user, quitMessage)

    def userKicked(self, kickee: str, channel: str, kicker: str, message: str) -> None:
        self.session.on_occupant_gone(channel, kickee, message, flags=F_KICKED)

    def kickedFrom(self, channel: str, kicker: str, message: str) -> None:
        self.session.on_self_kicked(channel, kicker, message)

    def userRenamed(self, oldname: str, newname: str) -> None:
        self.session.on_renamed(oldname, newname)

    def modeChanged(self, user: str, channel: str, set: bool, modes: str, args: tuple[Any, ...]) -> None:
        if is_channel(channel):
            for mode, arg in zip(modes, args, strict=False):
                if mode in "oqah" and arg:
                    self.session.on_operator(channel, arg, set)

    def irc_TOPIC(self, prefix: str, params: list[str]) -> None:
        self.session.on_topic(params[0], params[-1], prefix.split("!", 1)[0])

    def irc_RPL_TOPIC(self, prefix: str, params: list[str]) -> None:
        self.session.on_topic(params[1], params[2], "")

    def irc_ERR_BANNEDFROMCHAN(self, prefix: str, params: list[str]) -> None:
        self.session.on_join_refused(params[1], F_BANNED, params[-1])

    def irc_ERR_BADCHANNELKEY(self, prefix: str, params: list[str]) -> None:
        self.session.on_join_refused(params[1], F_NOT_AUTHORIZED, params[-1])

    def irc_ERR_INVITEONLYCHAN(self, prefix: str, params: list[str]) -> None:
        self.session.on_join_refused(params[1], F_NOT_AUTHORIZED, params[-1])

    def irc_ERR_CHANNELISFULL(self, prefix: str, params: list[str]) -> None:
        self.session.on_join_refused(params[1], F_NOT_AUTHORIZED, params[-1])

    def irc_ERR_CHANOPRIVSNEEDED(self, prefix: str, params: list[str]) -> None:
        self.session.on_room_error(params[1], f"[topic not changed: {params[-1]}]")

    def irc_ERR_CANNOTSENDTOCHAN(self, prefix: str, params: list[str]) -> None:
        self.session.on_room_error(params[1], f"[message not delivered: {params[-1]}]")

    def irc_ERR_NOSUCHCHANNEL(self, prefix: str, params: list[str]) -> None:
        self.session.on_join_refused(params[1], pb.PARTICIPANT_FLAG_ROOM_NOT_FOUND, params[-1])

    # messages -------------------------------------------------------------------

    def privmsg(self, user: str, channel: str, message: str) -> None:
        self.session.on_message(user.split("!", 1)[0], channel, message)

    def action(self, user: str, channel: str, data: str) -> None:
        self.session.on_message(user.split("!", 1)[0], channel, "/me " + data)

    def noticed(self, user: str, channel: str, message: str) -> None:
        if "!" in user:  # from a person (server notices have no user part)
            self.session.on_message(user.split("!", 1)[0], channel, message)

    # away and who ----------------------------------------------------------------

    def irc_RPL_AWAY(self, prefix: str, params: list[str]) -> None:
        self.session.on_away(params[1], True, params[-1])

    def irc_RPL_WHOREPLY(self, prefix: str, params: list[str]) -> None:
        # me, channel, user, host, server, nick, flags, "hops realname"
        if len(params) >= 7:
            self.session.on_away(params[5], params[6].startswith("G"), "", channel=params[1])

    def irc_RPL_WHOISUSER(self, prefix: str, params: list[str]) -> None:
        # me, nick, user, host, *, realname
        self.session.on_whois(params[1], params[-1])

    def irc_ERR_NOSUCHNICK(self, prefix: str, params: list[str]) -> None:
        self.session.on_no_such_nick(params[1])

    def irc_unknown(self, prefix: str, command: str, params: list[str]) -> None:
        pass  # numerics we do not use (MOTD, LUSERS...)


class IRCSession:
    """One main-side user logged in to one IRC server."""

    def __init__(self, backend: IRCBackend, user: str, address: ServerAddress, password: str,
                 settings: IRCSettings, clock: IReactorTime, reactor: Any) -> None:
        self.backend = backend
        self.user = user
        self.address = address
        self.password = password
        self.settings = settings
        self.clock = clock
        self.reactor = reactor
        self.nick = address.nick
        self.rooms: dict[str, Room] = {}
        self.buddies: dict[str, str] = {}  # irc_lower(nick) -> nick
        self.buddy_away: dict[str, bool] = {}
        self.queue: deque[Callable[[IRCConnection], None]] = deque()
        self.connection: IRCConnection | None = None
        self.signed_on = False
        self.logged_in = False  # CONNECTED was sent
        self.closing = False
        self.attempt = 0
        self._reconnect: IDelayedCall | None = None
        self._who: IDelayedCall | None = None
        self._connecting: defer.Deferred[Any] | None = None
        self._pending_nick: tuple[str, str] | None = None  # (nick, room) a NICK was sent for
        self._attempt: IRCConnection | None = None  # the connection being set up (not signed on yet)
        self._vcards: dict[str, list[int]] = {}

    # life cycle -----------------------------------------------------------------

    def start(self) -> None:
        self.connect()

    def connect(self) -> None:
        self._reconnect = None
        endpoint: Any = HostnameEndpoint(self.reactor, self.address.host, self.address.port,
                                         timeout=self.settings.connect_timeout)
        if self.address.tls:
            if self.settings.tls_verify:
                options = ssl.optionsForClientTLS(self.address.host)
            else:
                options = ssl.CertificateOptions(verify=False)
            endpoint = wrapClientTLS(options, endpoint)
        connection = IRCConnection(self)
        connection.nickname = self.nick
        self._attempt = connection
        d = connectProtocol(endpoint, connection)
        self._connecting = d
        d.addErrback(self._connect_failed)

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        if self.closing:
            return
        reason = failure.getErrorMessage()
        if not self.logged_in:
            log.info("{user}: cannot reach {host}:{port}: {reason}", user=self.user, host=self.address.host,
                     port=self.address.port, reason=reason)
            self.backend.session_failed(self, pb.CONNECTION_ERROR_NETWORK_ERROR,
                                        f"cannot connect to {self.address.host}:{self.address.port}: {reason}")
            return
        self._schedule_reconnect(reason)

    def _schedule_reconnect(self, reason: str) -> None:
        self.attempt += 1
        delay = min(self.settings.reconnect_max_delay, self.settings.reconnect_initial_delay * 2 ** (self.attempt - 1))
        log.info("{user}: IRC connection lost ({reason}); reconnecting in {delay:.1f} s",
                 user=self.user, reason=reason, delay=delay)
        self._reconnect = self.clock.callLater(delay, self.connect)

    def close(self, message: str = "Logged out") -> None:
        """Log out: QUIT and forget; no reconnect."""
        self.closing = True
        for timer in (self._reconnect, self._who):
            if timer is not None and timer.active():
                timer.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
        attempt, self._attempt = self._attempt, None
        if self.connection is None and attempt is not None and attempt.transport is not None:
            # connected but not welcomed yet: it would sign on later as a ghost holding the nick
            attempt.transport.loseConnection()
        if self.connection is not None:
            conn = self.connection
            conn.bucket.rate = 0  # the QUIT goes out now, not after the queue
            conn.quit(message)
            conn.bucket._drain()
            conn.transport.loseConnection()  # type: ignore[union-attr]

    # connection events -----------------------------------------------------------

    def on_signed_on(self, conn: IRCConnection) -> None:
        if self.closing:
            conn.transport.loseConnection()  # type: ignore[union-attr]
            return
        self._attempt = None
        self.connection = conn
        self._connecting = None
        self.signed_on = True
        self.attempt = 0
        self.nick = conn.nickname
        if self.password and self.settings.password_mode == "nickserv":
            conn.msg("NickServ", f"IDENTIFY {self.password}")
        if not self.logged_in:
            self.logged_in = True
            self.backend.send_connected(self.user)
        for room in self.rooms.values():
            room.joined = False
            conn.join(room.name, room.password or None)
        while self.queue and self.signed_on:
            self.queue.popleft()(conn)
        self._schedule_who()

    def on_connection_lost(self, conn: IRCConnection, reason: Failure) -> None:
        if conn is not self.connection and self.connection is not None:
            return
        was_signed_on = self.signed_on
        self.connection = None
        self.signed_on = False
        if self._who is not None and self._who.active():
            self._who.cancel()
        if self.closing:
            return
        if not self.logged_in:
            if not was_signed_on:
                self.backend.session_failed(self, pb.CONNECTION_ERROR_NETWORK_ERROR,
                                            f"the IRC server closed the connection: {reason.getErrorMessage()}")
            return
        self._schedule_reconnect(reason.getErrorMessage())

    def on_password_refused(self, conn: IRCConnection) -> None:
        self.backend.session_failed(self, pb.CONNECTION_ERROR_AUTHENTICATION_FAILED, "the IRC server refused the password")

    def on_nick_refused(self, conn: IRCConnection, nick: str, why: str) -> None:
        if not conn._registered:
            if not self.logged_in:
                error = pb.CONNECTION_ERROR_NAME_IN_USE if why == "in use" else pb.CONNECTION_ERROR_INVALID_USERNAME
                self.backend.session_failed(self, error, f"nickname {nick} is {why}")
                return
            # Reconnecting and our nick is taken (a ghost of ourselves): take an altered one.
            conn._attemptedNick = conn._attemptedNick + "_"
            conn.setNick(conn._attemptedNick)
            return
        pending, self._pending_nick = self._pending_nick, None
        if pending is not None:
            wanted, room_key = pending
            room = self.rooms.pop(room_key, None)
            if room is not None:
                flags = F_CONFLICT if why == "in use" else F_NOT_AUTHORIZED
                self.backend.send_participant_changed(self.user, room.name, wanted, flag=flags | F_ME,
                                                      status=pb.STATUS_NONE, status_message=f"nickname {why}")

    def on_own_nick(self, nick: str) -> None:
        old, self.nick = self.nick, nick
        pending, self._pending_nick = self._pending_nick, None
        for key, room in self.rooms.items():
            if pending is not None and pending[1] == key:
                room.nickname = nick
                if self.connection is not None:
                    self.connection.join(room.name, room.password or None)
                continue
            if room.joined:
                room.nickname = nick
                self.backend.send_room_nickname_changed(self.user, room.name, nick)
                self.backend.send_participant_changed(self.user, room.name, old, flag=self._flags(room, old) | F_ME,
                                                      status=pb.STATUS_ONLINE, newname=nick)
                self._move_occupant(room, old, nick)

    # rooms ------------------------------------------------------------------------

    def join(self, name: str, nickname: str, password: str) -> None:
        key = irc_lower(name)
        room = self.rooms.get(key)
        if room is None:
            room = self.rooms[key] = Room(name, nickname or self.nick, password)
        elif room.joined:
            # Already in: tell the occupants again (a second XMPP resource joining, say).
            self._send_occupants(room)
            return
        if not self.signed_on or self.connection is None:
            return  # joined at sign-on
        if nickname and irc_lower(nickname) != irc_lower(self.nick):
            self._pending_nick = (nickname, key)
            self.connection.setNick(nickname)
            return
        self.connection.join(name, password or None)

    def leave(self, name: str) -> None:
        room = self.rooms.pop(irc_lower(name), None)
        if room is not None and self.connection is not None and room.joined:
            self.connection.part(room.name)

    def set_topic(self, name: str, topic: str) -> None:
        self.do(lambda conn: conn.topic(name, topic))

    def on_joined(self, channel: str) -> None:
        room = self.rooms.get(irc_lower(channel))
        if room is None:  # joined by the server (e.g. SAJOIN): follow
            room = self.rooms[irc_lower(channel)] = Room(channel, self.nick)
        room.joined = True

    def on_names(self, channel: str, names: list[str]) -> None:
        room = self.rooms.get(irc_lower(channel))
        if room is None:
            return
        before = dict(room.display)
        room.occupants.clear()
        room.display.clear()
        for entry in names:
            nick = entry.lstrip(ALL_PREFIXES)
            if not nick:
                continue
            prefixes = entry[: len(entry) - len(nick)]
            flags = F_MODERATOR if any(p in MODERATOR_PREFIXES for p in prefixes) else F_NONE
            room.occupants[irc_lower(nick)] = flags
            room.display[irc_lower(nick)] = nick
        # Occupants who left while we were away (a reconnect) are gone now.
        for key, nick in before.items():
            if key not in room.occupants:
                self.backend.send_participant_changed(self.user, room.name, nick, status=pb.STATUS_NONE)
        self._send_occupants(room)
        if room.topic is not None:
            self.backend.send_room_subject_changed(self.user, room.name, room.topic, "")
        if self.connection is not None:
            self.connection.sendLine(f"WHO {room.name}")

    def _send_occupants(self, room: Room) -> None:
        me = irc_lower(self.nick)
        for key, flags in room.occupants.items():
            if key != me:
                status = pb.STATUS_AWAY if room.away.get(key) else pb.STATUS_ONLINE
                self.backend.send_participant_changed(self.user, room.name, room.display[key], flag=flags,
                                                      status=status)
        # The user itself comes last, with flag ME (the protocol's rule).
        self.backend.send_participant_changed(self.user, room.name, self.nick,
                                              flag=room.occupants.get(me, F_NONE) | F_ME, status=pb.STATUS_ONLINE)

    def on_left(self, channel: str) -> None:
        self.rooms.pop(irc_lower(channel), None)

    def on_join_refused(self, channel: str, flags: int, text: str) -> None:
        room = self.rooms.pop(irc_lower(channel), None)
        if room is not None:
            self.backend.send_participant_changed(self.user, room.name, room.nickname, flag=flags | F_ME,
                                                  status=pb.STATUS_NONE, status_message=text)

    def on_occupant(self, channel: str, nick: str, flags: int, joined: bool = False) -> None:
        room = self.rooms.get(irc_lower(channel))
        if room is None or not room.joined:
            return
        key = irc_lower(nick)
        room.occupants[key] = flags
        room.display[key] = nick
        room.away.pop(key, None)
        self.backend.send_participant_changed(self.user, room.name, nick, flag=flags, status=pb.STATUS_ONLINE)

    def on_occupant_gone(self, channel: str, nick: str, message: str, flags: int = F_NONE) -> None:
        room = self.rooms.get(irc_lower(channel))
        if room is None:
            return
        key = irc_lower(nick)
        room.occupants.pop(key, None)
        room.display.pop(key, None)
        room.away.pop(key, None)
        self.backend.send_participant_changed(self.user, room.name, nick, flag=flags, status=pb.STATUS_NONE,
                                              status_message=message or None)

    def on_quit(self, nick: str, message: str) -> None:
        key = irc_lower(nick)
        for room in self.rooms.values():
            if key in room.occupants:
                self.on_occupant_gone(room.name, nick, message)
        if key in self.buddies:
            self.backend.send_buddy_changed(self.user, self.buddies[key], status=pb.STATUS_NONE,
                                            status_message=message)

    def on_self_kicked(self, channel: str, kicker: str, message: str) -> None:
        room = self.rooms.pop(irc_lower(channel), None)
        if room is not None:
            self.backend.send_participant_changed(self.user, room.name, self.nick, flag=F_KICKED | F_ME,
                                                  status=pb.STATUS_NONE, status_message=message)

    def on_renamed(self, old: str, new: str) -> None:
        for room in self.rooms.values():
            if irc_lower(old) in room.occupants:
                flags = room.occupants[irc_lower(old)]
                self.backend.send_participant_changed(self.user, room.name, old, flag=flags,
                                                      status=pb.STATUS_ONLINE, newname=new)
                self._move_occupant(room, old, new)
        key = irc_lower(old)
        if key in self.buddies:
            del self.buddies[key]
            self.backend.send_buddy_changed(self.user, old, status=pb.STATUS_NONE, status_message=f"now known as {new}")

    def _move_occupant(self, room: Room, old: str, new: str) -> None:
        flags = room.occupants.pop(irc_lower(old), F_NONE)
        room.display.pop(irc_lower(old), None)
        room.occupants[irc_lower(new)] = flags
        room.display[irc_lower(new)] = new

    def _flags(self, room: Room, nick: str) -> int:
        return room.occupants.get(irc_lower(nick), F_NONE)

    def on_operator(self, channel: str, nick: str, granted: bool) -> None:
        room = self.rooms.get(irc_lower(channel))
        if room is None or irc_lower(nick) not in room.occupants:
            return
        key = irc_lower(nick)
        flags = (room.occupants[key] | F_MODERATOR) if granted else (room.occupants[key] & ~F_MODERATOR)
        room.occupants[key] = flags
        me = F_ME if key == irc_lower(self.nick) else F_NONE
        self.backend.send_participant_changed(self.user, room.name, room.display[key], flag=flags | me,
                                              status=pb.STATUS_AWAY if room.away.get(key) else pb.STATUS_ONLINE)

    def on_topic(self, channel: str, topic: str, nick: str) -> None:
        room = self.rooms.get(irc_lower(channel))
        if room is None:
            return
        room.topic = topic
        if room.joined or nick:
            self.backend.send_room_subject_changed(self.user, room.name, topic, nick)

    # messages -----------------------------------------------------------------------

    def on_room_error(self, channel: str, text: str) -> None:
        """The IRC server refused something in *channel*: the room says so (a message with no speaker)."""
        room = self.rooms.get(irc_lower(channel))
        if room is not None:
            self.backend.send_message(self.user, room.name, text, nickname="")

    def on_message(self, sender: str, target: str, text: str) -> None:
        if is_channel(target):
            room = self.rooms.get(irc_lower(target))
            if room is not None:
                self.backend.send_room_message(self.user, room.name, sender, text)
            return
        key = irc_lower(sender)
        for room in self.rooms.values():
            if key in room.occupants and room.joined:
                # A private message from someone we share a room with: a MUC private message.
                self.backend.send_message(self.user, room.name, text, nickname=sender, pm=True)
                return
        self._ensure_buddy(sender)
        self.backend.send_message(self.user, self.buddies[key], text)

    def _ensure_buddy(self, nick: str) -> None:
        key = irc_lower(nick)
        if key not in self.buddies:
            self.buddies[key] = nick
            self.backend.send_buddy_changed(self.user, nick, status=pb.STATUS_ONLINE)

    def say(self, target: str, text: str, id: str = "", nickname: str = "", pm: bool = False) -> str:
        """Send what the user said; "" when sent (or queued), else why it was not."""
        if is_channel(target):
            room_name, _, pm_nick = target.partition("/")
            if pm or pm_nick:
                destination = pm_nick or nickname
                if not destination:
                    return "a private message in a room needs the occupant's nickname"
            else:
                destination = room_name
        else:
            destination = target
            self._ensure_buddy(target)

        def send(conn: IRCConnection) -> None:
            for line in text.splitlines() or [""]:
                if line.startswith("/me "):
                    conn.describe(destination, line[4:])
                elif line:
                    conn.msg(destination, line)
            if id:
                self.backend.send_message_ack(self.user, target, id)

        return "" if self.do(send) else "the IRC connection is being re-established and its queue is full"

    def do(self, action: Callable[[IRCConnection], None]) -> bool:
        """Run *action* now, or after the reconnection (bounded queue)."""
        if self.signed_on and self.connection is not None:
            action(self.connection)
            return True
        if len(self.queue) >= self.settings.queue_limit:
            return False
        self.queue.append(action)
        return True

    # away ---------------------------------------------------------------------------

    def set_status(self, status: int, message: str) -> None:
        if status in (pb.STATUS_AWAY, pb.STATUS_XA, pb.STATUS_DND):
            self.do(lambda conn: conn.away(message or "Away"))
        elif status in (pb.STATUS_ONLINE, pb.STATUS_FFC):
            self.do(lambda conn: conn.back())

    def on_away(self, nick: str, away: bool, message: str, channel: str = "") -> None:
        key = irc_lower(nick)
        if key == irc_lower(self.nick):
            return
        rooms = [self.rooms.get(irc_lower(channel))] if channel and is_channel(channel) else list(self.rooms.values())
        for room in rooms:
            if room is None or key not in room.occupants:
                continue
            if room.away.get(key, False) != away:
                room.away[key] = away
                self.backend.send_participant_changed(
                    self.user, room.name, room.display[key], flag=room.occupants[key],
                    status=pb.STATUS_AWAY if away else pb.STATUS_ONLINE, status_message=message or None)
        if key in self.buddies and self.buddy_away.get(key) != away:
            self.buddy_away[key] = away
            self.backend.send_buddy_changed(self.user, self.buddies[key],
                                            status=pb.STATUS_AWAY if away else pb.STATUS_ONLINE,
                                            status_message=message)

    def _schedule_who(self) -> None:
        if self._who is not None and self._who.active():
            return
        if self.settings.who_interval > 0 and not self.closing:
            self._who = self.clock.callLater(self.settings.who_interval, self._poll_who)

    def _poll_who(self) -> None:
        self._who = None
        if self.connection is not None and self.signed_on:
            for room in self.rooms.values():
                if room.joined:
                    self.connection.sendLine(f"WHO {room.name}")
            for nick in self.buddies.values():
                self.connection.sendLine(f"WHO {nick}")
        self._schedule_who()

    # vcards ----------------------------------------------------------------------------

    def request_vcard(self, nick: str, request_id: int) -> None:
        self._vcards.setdefault(irc_lower(nick), []).append(request_id)
        if not self.do(lambda conn: conn.whois(nick)):
            self.on_no_such_nick(nick)

    def on_whois(self, nick: str, realname: str) -> None:
        for request_id in self._vcards.pop(irc_lower(nick), []):
            self.backend.send_vcard(self.user, nick, request_id, fullname=realname, nickname=nick)

    def on_no_such_nick(self, nick: str) -> None:
        for request_id in self._vcards.pop(irc_lower(nick), []):
            self.backend.send_vcard(self.user, nick, request_id, nickname=nick)
