"""chatd's domain: connected clients, the rooms they joined, RTMSG routing and the in-call flag (no I/O).

The hub works on :class:`ChatClient` objects; whatever carries a client's bytes
gives it a ``send(bytes)`` callable. Room existence and the right to JOIN come
from the shared :class:`~transport.chatd.directory.Directory`; which clients are
in a room right now is kept here.

In-call flag (the draft): a client is in a call while its IN_CALL heartbeats
(status 1) keep arriving, each one moving its deadline ``call_timeout`` seconds
ahead; status 0, a missed deadline, LEAVE or a disconnect ends it. The room's
flag is 1 when clients of at least two distinct users are in a call; it is sent
to a client when it joins, and to every client in the room when it changes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from transport.chatd.codec import (
    JOIN_NO_SUCH_ROOM,
    JOIN_NOT_A_MEMBER,
    JOIN_OK,
    InCall,
    InCallFlag,
    JoinResult,
    Left,
    RtMsg,
    RtMsgDelivery,
)
from transport.chatd.directory import Directory, DirectoryView
from transport.chatd.wire import INVALID_CLIENTID, INVALID_USERID, ErrorCode, Violation

log = Logger()

MAX_CLIENT_ID = 0xFFFFFFFF


class ClientIdAllocator:
    """Client ids: a 4-byte counter starting at 1; on wraparound 0 and ids still in use are skipped.

    >>> ids = ClientIdAllocator(start=0xFFFFFFFE)
    >>> ids.allocate(), ids.allocate(), ids.allocate()
    (4294967294, 4294967295, 1)
    """

    def __init__(self, start: int = 1) -> None:
        self._next = start
        self._in_use: set[int] = set()

    def allocate(self) -> int:
        if len(self._in_use) >= MAX_CLIENT_ID:
            raise RuntimeError("every client id is in use")
        while True:
            candidate = self._next
            self._next = candidate + 1 if candidate < MAX_CLIENT_ID else 1
            if candidate != INVALID_CLIENTID and candidate not in self._in_use:
                self._in_use.add(candidate)
                return candidate

    def release(self, client_id: int) -> None:
        self._in_use.discard(client_id)

    def __len__(self) -> int:
        return len(self._in_use)


class ChatClient:
    """One logged-in chatd connection: its user, the id the server gave it, the rooms it joined."""

    __slots__ = ("userid", "client_id", "send", "rooms", "__weakref__")

    def __init__(self, userid: int, client_id: int, send: Callable[[bytes], None]) -> None:
        self.userid = userid
        self.client_id = client_id
        self.send = send
        self.rooms: set[int] = set()

    def __repr__(self) -> str:
        return f"<ChatClient user={self.userid} client={self.client_id}>"


class LiveRoom:
    """The clients currently in one room and its call state."""

    __slots__ = ("chatid", "by_user", "calls", "users_in_call", "flag")

    def __init__(self, chatid: int) -> None:
        self.chatid = chatid
        #: userid -> client id -> client
        self.by_user: dict[int, dict[int, ChatClient]] = {}
        #: clients in a call -> their heartbeat deadline
        self.calls: dict[ChatClient, IDelayedCall] = {}
        self.users_in_call: Counter[int] = Counter()
        self.flag = 0

    def clients(self) -> list[ChatClient]:
        return [c for per_user in self.by_user.values() for c in per_user.values()]

    def broadcast(self, data: bytes) -> None:
        for per_user in self.by_user.values():
            for client in per_user.values():
                client.send(data)


class ChatHub:
    """Every connected chatd client and live room of one server."""

    def __init__(self, directory: Directory, clock: Any, call_timeout: float = 10.0,
                 ids: ClientIdAllocator | None = None) -> None:
        self.directory = directory
        self.clock = clock
        self.call_timeout = call_timeout
        self.ids = ids or ClientIdAllocator()
        self.clients: dict[int, ChatClient] = {}
        self.rooms: dict[int, LiveRoom] = {}
        directory.add_listener(self.directory_changed)

    # clients ----------------------------------------------------------------------------

    def connect(self, userid: int, send: Callable[[bytes], None]) -> ChatClient:
        """A client said HELLO: give it a client id."""
        client = ChatClient(userid, self.ids.allocate(), send)
        self.clients[client.client_id] = client
        return client

    def disconnect(self, client: ChatClient) -> None:
        for chatid in list(client.rooms):
            self._remove(client, chatid)
        if self.clients.get(client.client_id) is client:
            del self.clients[client.client_id]
            self.ids.release(client.client_id)

    # rooms --------------------------------------------------------------------------------

    def join(self, client: ChatClient, chatid: int) -> None:
        """JOIN: answer with the result, then (when admitted) the room's in-call flag."""
        view = self.directory.view
        room_record = view.room(chatid)
        if room_record is None:
            client.send(JoinResult(chatid, JOIN_NO_SUCH_ROOM).encode())
            return
        if not view.may_join(chatid, client.userid):
            client.send(JoinResult(chatid, JOIN_NOT_A_MEMBER).encode())
            return
        room = self.rooms.get(chatid)
        if room is None:
            room = self.rooms[chatid] = LiveRoom(chatid)
        room.by_user.setdefault(client.userid, {})[client.client_id] = client
        client.rooms.add(chatid)
        client.send(JoinResult(chatid, JOIN_OK).encode() + InCallFlag(chatid, room.flag).encode())

    def leave(self, client: ChatClient, chatid: int) -> None:
        self._remove(client, chatid)
        client.send(Left(chatid).encode())

    def _remove(self, client: ChatClient, chatid: int) -> None:
        client.rooms.discard(chatid)
        room = self.rooms.get(chatid)
        if room is None:
            return
        per_user = room.by_user.get(client.userid)
        if per_user is None or per_user.get(client.client_id) is not client:
            return
        del per_user[client.client_id]
        if not per_user:
            del room.by_user[client.userid]
        self._end_call(room, client)
        if not room.by_user:
            del self.rooms[chatid]

    # RTMSG ------------------------------------------------------------------------------------

    def rtmsg(self, sender: ChatClient, msg: RtMsg) -> Violation | None:
        """Route one RTMSG; a Violation (not fatal) when it cannot be delivered as addressed."""
        room = self.rooms.get(msg.chatid)
        if room is None or msg.chatid not in sender.rooms:
            return Violation(ErrorCode.NOT_JOINED, f"not in room {msg.chatid}", fatal=False)
        if msg.userid == INVALID_USERID:
            if msg.clientid != INVALID_CLIENTID:
                return Violation(ErrorCode.BAD_VALUE, "a client id needs a user id", fatal=False)
            targets = room.clients()
        else:
            per_user = room.by_user.get(msg.userid)
            if not per_user:
                return Violation(ErrorCode.NOT_IN_ROOM, f"user {msg.userid} is not in room {msg.chatid}",
                                 fatal=False)
            if msg.clientid == INVALID_CLIENTID:
                targets = list(per_user.values())
            else:
                target = per_user.get(msg.clientid)
                if target is None:
                    return Violation(ErrorCode.NOT_IN_ROOM, f"client {msg.clientid} of user {msg.userid} is not in "
                                     f"room {msg.chatid}", fatal=False)
                # The one case where the sender is excluded: it addressed itself by client.
                targets = [] if target is sender else [target]
        if targets:
            data = RtMsgDelivery(msg.chatid, sender.userid, sender.client_id, msg.msgtype, msg.data).encode()
            for target in targets:
                target.send(data)
        return None

    # in-call flag -----------------------------------------------------------------------------

    def in_call(self, client: ChatClient, msg: InCall) -> Violation | None:
        room = self.rooms.get(msg.chatid)
        if room is None or msg.chatid not in client.rooms:
            return Violation(ErrorCode.NOT_JOINED, f"not in room {msg.chatid}", fatal=False)
        if msg.status not in (0, 1):
            return Violation(ErrorCode.BAD_VALUE, f"IN_CALL status {msg.status}; expected 0 or 1", fatal=False)
        if msg.status == 1:
            deadline = room.calls.get(client)
            if deadline is not None and deadline.active():
                deadline.reset(self.call_timeout)
                return None
            room.calls[client] = self.clock.callLater(self.call_timeout, self._call_expired, room, client)
            room.users_in_call[client.userid] += 1
            self._update_flag(room)
        else:
            self._end_call(room, client)
        return None

    def _call_expired(self, room: LiveRoom, client: ChatClient) -> None:
        if room.calls.get(client) is not None:
            self._end_call(room, client)

    def _end_call(self, room: LiveRoom, client: ChatClient) -> None:
        deadline = room.calls.pop(client, None)
        if deadline is None:
            return
        if deadline.active():
            deadline.cancel()
        room.users_in_call[client.userid] -= 1
        if room.users_in_call[client.userid] <= 0:
            del room.users_in_call[client.userid]
        self._update_flag(room)

    def _update_flag(self, room: LiveRoom) -> None:
        flag = 1 if len(room.users_in_call) >= 2 else 0
        if flag != room.flag:
            room.flag = flag
            room.broadcast(InCallFlag(room.chatid, flag).encode())

    # directory changes ---------------------------------------------------------------------------

    def directory_changed(self, old: DirectoryView, new: DirectoryView) -> None:
        """Clients in a room they may no longer join (room deleted, membership removed) are made to leave."""
        for chatid, room in list(self.rooms.items()):
            for client in room.clients():
                if not new.may_join(chatid, client.userid):
                    log.info("chatd: user {userid} removed from room {chatid}", userid=client.userid, chatid=chatid)
                    self.leave(client, chatid)
