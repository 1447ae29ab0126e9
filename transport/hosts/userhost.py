"""A user host (group, chat room or random connect): joins, membership, session traffic.

Access rules for HOST_JOIN_REQ / HOST_OFFER_REQ, in order (as NoLimitConnect):

1. the host's permission is Ignore -> access Disabled, joinState JoinDenied;
2. the admin ignores the user (friend state Ignore) -> access Ignored, JoinDenied;
3. the user's friendship level is below the host's permission level -> access
   Locked: a user the admin granted before gets in (access Ok); one the admin
   denied stays out (JoinDenied); anyone else is recorded as JoinRequested for the
   admin to grant or deny (unless ``max_pending`` requests already wait: access
   Busy, nothing recorded) (``transport-hosts grant|deny``). While the requester
   stays connected, the host checks the records every ``pending_poll_interval``
   and pushes the decision as an unsolicited HOST_JOIN_REPLY (seq 0);
4. otherwise access Ok, joinState JoinIsGranted.

On a grant the membership is recorded, the newcomer receives the member list
(HOST_USER_LIST_REPLY pages carrying its join's session id) and ADMIN_AVAIL,
and the other members receive a one-record HOST_USER_LIST_REPLY with a zero
session id (a membership update). Leaving, un-joining and disconnecting are
announced to the remaining members the same way, with ``online = 0``.

Session traffic: CHAT_REQ from a joined member is relayed as CHAT_REPLY (src =
the sender) to every other joined member; a random-connect host relays each
RAND_CONNECT_REQ as RAND_CONNECT_REPLY to every connected client, the sender
included. Members whose friend state is Admin are the host's admins: when the
first one joins or the last one goes, ADMIN_AVAIL is broadcast to the members.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from transport.hosts.packets import (
    MAX_BLOB_DATA,
    AdminAvail,
    Announce,
    ChatReply,
    ChatReq,
    ECommErr,
    EFriendState,
    EHostType,
    EJoinState,
    EPluginAccess,
    HostInfoReply,
    HostInfoReq,
    HostInviteAnnounceReq,
    HostJoinReply,
    HostJoinReq,
    HostLeaveReply,
    HostLeaveReq,
    HostOfferReply,
    HostOfferReq,
    HostSearchReply,
    HostSearchReq,
    HostUnjoinReply,
    HostUnjoinReq,
    HostUserInfoReply,
    HostUserInfoReq,
    HostUserListMoreReply,
    HostUserListMoreReq,
    HostUserListReply,
    HostUserListReq,
    MemberInfo,
    OnlineId,
    Packet,
    RandConnectReply,
    RandConnectReq,
    RouteFlags,
    encode,
    readdress,
)
from transport.hosts.protocol import PeerConnection
from transport.hosts.store import Member, MembershipStore

log = Logger()

HOST_TYPES = {"group": EHostType.GROUP, "chatroom": EHostType.CHAT_ROOM,
              "randomconnect": EHostType.RANDOM_CONNECT}
PERMISSIONS = {"ignore": EFriendState.IGNORE, "anonymous": EFriendState.ANONYMOUS, "guest": EFriendState.GUEST,
               "friend": EFriendState.FRIEND, "admin": EFriendState.ADMIN}
RELAY_FLAGS = {EHostType.GROUP: RouteFlags.GROUP_RELAY, EHostType.CHAT_ROOM: RouteFlags.CHAT_ROOM_RELAY,
               EHostType.RANDOM_CONNECT: RouteFlags.RANDOM_CONNECT_RELAY}
#: Member-list searches remembered per connection (their text, for MORE).
MAX_LIST_SESSIONS = 16


@dataclass(frozen=True)
class UserHostSettings:
    """What a ``[host:NAME]`` section says about a user host."""

    name: str
    host_type: EHostType
    title: str
    description: str
    url: str
    thumb_id: OnlineId
    permission: EFriendState
    display_name: str = ""
    motto: str = ""
    page_size: int = 50
    max_pending: int = 1000

    @classmethod
    def from_config(cls, name: str, values: Any, online_id: OnlineId, url: str) -> UserHostSettings:
        thumb = (OnlineId.from_hex(values["thumb_id"]) if values["thumb_id"]
                 else OnlineId(hashlib.sha256(b"thumb:" + online_id.raw).digest()[:16]))
        return cls(name=name, host_type=HOST_TYPES[values["type"]], title=values["title"],
                   description=values["description"], url=values["url"] or url, thumb_id=thumb,
                   permission=PERMISSIONS[values["permission"]], display_name=values["name"] or values["title"],
                   motto=values["motto"], page_size=values["page_size"], max_pending=values["max_pending"])

    def digest(self) -> str:
        """A digest of what is announced: when it changes, lastModifiedMs moves."""
        text = "\0".join([str(int(self.host_type)), self.title, self.description, self.url, self.thumb_id.hex(),
                          str(int(self.permission))])
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class _Pending:
    conn: PeerConnection
    session_id: OnlineId
    offer: bool
    friend: int


class UserHost:
    """The :class:`~transport.hosts.protocol.PacketHandler` of one user host."""

    def __init__(self, settings: UserHostSettings, online_id: OnlineId, store: MembershipStore,
                 now_ms: Callable[[], int]) -> None:
        self.settings = settings
        self.online_id = online_id
        self.store = store
        self.now_ms = now_ms
        self.last_modified_ms = now_ms()
        #: Every connected client (joined or not).
        self.clients: set[PeerConnection] = set()
        #: Joined members in session, by online id.
        self.members: dict[bytes, PeerConnection] = {}
        self._admins: set[bytes] = set()
        self._pending: dict[bytes, _Pending] = {}
        self.relayed = 0

    # what the host announces ----------------------------------------------------------

    def announce_packet(self) -> Announce:
        return Announce(src=self.online_id, name=self.settings.display_name, motto=self.settings.motto,
                        url=self.settings.url)

    def invite_announcement(self, dst: OnlineId, session_id: OnlineId, seq: int = 0) -> HostInviteAnnounceReq:
        s = self.settings
        return HostInviteAnnounceReq(src=self.online_id, dst=dst, seq=seq, plugin_num=s.host_type,
                                     host_type=s.host_type, session_id=session_id,
                                     last_modified_ms=self.last_modified_ms, url=s.url, title=s.title,
                                     description=s.description, thumb_id=s.thumb_id)

    @property
    def admin_available(self) -> bool:
        return bool(self._admins)

    # PacketHandler -------------------------------------------------------------------------

    def connection_made(self, conn: PeerConnection) -> None:
        self.clients.add(conn)
        conn.state["lists"] = OrderedDict()

    def connection_lost(self, conn: PeerConnection) -> None:
        self.clients.discard(conn)
        assert conn.peer_id is not None
        pending = self._pending.get(conn.peer_id.raw)
        if pending is not None and pending.conn is conn:
            del self._pending[conn.peer_id.raw]
        self._leave_session(conn, None)

    def packet_received(self, conn: PeerConnection, packet: Packet) -> defer.Deferred[None] | None:
        if isinstance(packet, ChatReq):
            self._chat(conn, packet)
        elif isinstance(packet, RandConnectReq):
            self._rand_connect(conn, packet)
        elif isinstance(packet, (HostJoinReq, HostOfferReq)):
            return self._join(conn, packet)
        elif isinstance(packet, HostLeaveReq):
            self._leave(conn, packet)
        elif isinstance(packet, HostUnjoinReq):
            return self._unjoin(conn, packet)
        elif isinstance(packet, HostInfoReq):
            return self._info(conn, packet)
        elif isinstance(packet, HostUserInfoReq):
            return self._user_info(conn, packet)
        elif isinstance(packet, (HostUserListReq, HostUserListMoreReq, HostSearchReq)):
            return self._user_list(conn, packet)
        elif not isinstance(packet, Announce):
            log.debug("hosts: {host} ignores {type}", host=self.settings.name, type=type(packet).__name__)
        return None

    # helpers ----------------------------------------------------------------------------------

    def _common(self, conn: PeerConnection, seq: int = 0) -> dict[str, Any]:
        return {"src": self.online_id, "dst": conn.peer_id, "seq": seq, "plugin_num": self.settings.host_type}

    def _broadcast(self, packet: Packet, targets: list[PeerConnection]) -> None:
        """Send *packet* to each of *targets*, addressed to each (encoded once)."""
        data = encode(packet)
        for target in targets:
            if target.peer_id is not None:
                target.send_encoded(readdress(data, target.peer_id))

    def _peer_names(self, conn: PeerConnection) -> tuple[str, str]:
        ann = conn.peer_announce
        return (ann.name, ann.motto) if ann is not None else ("", "")

    def _reply_join(self, conn: PeerConnection, req: HostJoinReq | HostOfferReq, access: int, state: int,
                    err: int = ECommErr.NONE) -> None:
        common = self._common(conn, req.seq)
        if isinstance(req, HostOfferReq):
            conn.send(HostOfferReply(host_type=req.host_type, access=access, comm_err=err, join_state=state,
                                     session_id=req.session_id, **common))
        else:
            conn.send(HostJoinReply(host_type=req.host_type, access=access, comm_err=err, join_state=state,
                                    session_id=req.session_id, **common))

    # join / leave / unjoin ------------------------------------------------------------------------

    @defer.inlineCallbacks
    def _join(self, conn: PeerConnection, req: HostJoinReq | HostOfferReq) -> Generator[Any, Any, None]:
        assert conn.peer_id is not None
        host, peer = self.settings.name, conn.peer_id
        if req.host_type != self.settings.host_type:
            self._reply_join(conn, req, EPluginAccess.NOT_SET, EJoinState.NONE, ECommErr.INVALID_HOST_TYPE)
            return
        if self.settings.permission == EFriendState.IGNORE:
            self._reply_join(conn, req, EPluginAccess.DISABLED, EJoinState.JOIN_DENIED)
            return
        friend = yield self.store.friend_state(host, peer)
        if friend == EFriendState.IGNORE:
            self._reply_join(conn, req, EPluginAccess.IGNORED, EJoinState.JOIN_DENIED)
            return
        member: Member | None = yield self.store.member(host, peer)
        name, motto = self._peer_names(conn)
        message = req.message if isinstance(req, HostOfferReq) else None
        if friend < self.settings.permission:
            if member is not None and member.join_state == EJoinState.JOIN_DENIED:
                self._reply_join(conn, req, EPluginAccess.LOCKED, EJoinState.JOIN_DENIED)
                return
            if member is None or member.join_state != EJoinState.JOIN_IS_GRANTED:
                if member is None:
                    waiting = yield self.store.count_members(host, EJoinState.JOIN_REQUESTED)
                    if waiting >= self.settings.max_pending:
                        log.warn("hosts: {host}: {n} join requests already wait for the admin; refusing {peer}",
                                 host=host, n=waiting, peer=peer)
                        self._reply_join(conn, req, EPluginAccess.BUSY, EJoinState.NONE)
                        return
                yield self.store.set_member(host, peer, EJoinState.JOIN_REQUESTED, name, motto, message,
                                            self.now_ms())
                if conn.connected_and_ready:
                    self._pending[peer.raw] = _Pending(conn, req.session_id, isinstance(req, HostOfferReq), friend)
                log.info("hosts: {host}: {peer} asks to join (friend state {friend}); waiting for the admin",
                         host=host, peer=peer, friend=friend)
                self._reply_join(conn, req, EPluginAccess.LOCKED, EJoinState.JOIN_REQUESTED)
                return
        yield self.store.set_member(host, peer, EJoinState.JOIN_IS_GRANTED, name, motto, message, self.now_ms())
        if conn.connected_and_ready:
            self._reply_join(conn, req, EPluginAccess.OK, EJoinState.JOIN_IS_GRANTED)
            self._enter_session(conn, friend, req.session_id)

    def _enter_session(self, conn: PeerConnection, friend: int, session_id: OnlineId) -> None:
        assert conn.peer_id is not None
        peer = conn.peer_id.raw
        self._pending.pop(peer, None)
        previous = self.members.get(peer)
        if previous is not None and previous is not conn:
            self._leave_session(previous, None)
        self.members[peer] = conn
        conn.state["friend"] = friend
        name, _ = self._peer_names(conn)
        # The member list, paged, to the newcomer.
        records = [MemberInfo(OnlineId(raw), self._peer_names(c)[0], EJoinState.JOIN_IS_GRANTED, True)
                   for raw, c in sorted(self.members.items())]
        for page, more, next_id in _pages(records, self.settings.page_size):
            conn.send(HostUserListReply(host_type=self.settings.host_type, more_exist=more, session_id=session_id,
                                        next_id=next_id, users=tuple(page), **self._common(conn)))
        # The others learn of the newcomer.
        update = (MemberInfo(conn.peer_id, name, EJoinState.JOIN_IS_GRANTED, True),)
        self._broadcast(HostUserListReply(host_type=self.settings.host_type, users=update, **self._common(conn)),
                        [other for other in self.members.values() if other is not conn])
        if friend == EFriendState.ADMIN:
            first = not self._admins
            self._admins.add(peer)
            if first:
                self._broadcast_admin_avail()
                return
        conn.send(AdminAvail(available=self.admin_available, **self._common(conn)))

    def _leave_session(self, conn: PeerConnection, notice_state: int | None) -> bool:
        """Take *conn* out of the session and tell the others; False if it was not in it."""
        assert conn.peer_id is not None
        peer = conn.peer_id.raw
        if self.members.get(peer) is not conn:
            return False
        del self.members[peer]
        name, _ = self._peer_names(conn)
        state = EJoinState.JOIN_IS_GRANTED if notice_state is None else notice_state
        update = (MemberInfo(conn.peer_id, name, state, False),)
        self._broadcast(HostUserListReply(host_type=self.settings.host_type, users=update, **self._common(conn)),
                        list(self.members.values()))
        if peer in self._admins:
            self._admins.discard(peer)
            if not self._admins:
                self._broadcast_admin_avail()
        return True

    def _broadcast_admin_avail(self) -> None:
        if self.members:
            any_member = next(iter(self.members.values()))
            self._broadcast(AdminAvail(available=self.admin_available, **self._common(any_member)),
                            list(self.members.values()))

    def _leave(self, conn: PeerConnection, req: HostLeaveReq) -> None:
        self._leave_session(conn, EJoinState.JOIN_LEAVE_HOST)
        conn.send(HostLeaveReply(host_type=req.host_type, access=EPluginAccess.OK,
                                 join_state=EJoinState.JOIN_LEAVE_HOST, session_id=req.session_id,
                                 **self._common(conn, req.seq)))

    @defer.inlineCallbacks
    def _unjoin(self, conn: PeerConnection, req: HostUnjoinReq) -> Generator[Any, Any, None]:
        assert conn.peer_id is not None
        self._pending.pop(conn.peer_id.raw, None)
        self._leave_session(conn, EJoinState.NONE)
        yield self.store.delete_member(self.settings.name, conn.peer_id)
        conn.send(HostUnjoinReply(host_type=req.host_type, access=EPluginAccess.OK, join_state=EJoinState.NONE,
                                  session_id=req.session_id, **self._common(conn, req.seq)))

    @defer.inlineCallbacks
    def poll_pending(self) -> Generator[Any, Any, None]:
        """Push the admin's decisions to requesters still connected."""
        for raw, pending in list(self._pending.items()):
            peer = OnlineId(raw)
            member: Member | None = yield self.store.member(self.settings.name, peer)
            if self._pending.get(raw) is not pending:
                continue
            if not pending.conn.connected_and_ready:  # went away while its request was being recorded
                del self._pending[raw]
                continue
            if member is None:
                del self._pending[raw]
                continue
            if member.join_state == EJoinState.JOIN_REQUESTED:
                continue
            del self._pending[raw]
            granted = member.join_state == EJoinState.JOIN_IS_GRANTED
            cls = HostOfferReply if pending.offer else HostJoinReply
            pending.conn.send(cls(host_type=self.settings.host_type,
                                  access=EPluginAccess.OK if granted else EPluginAccess.LOCKED,
                                  join_state=EJoinState.JOIN_IS_GRANTED if granted else EJoinState.JOIN_DENIED,
                                  session_id=pending.session_id, **self._common(pending.conn)))
            if granted:
                self._enter_session(pending.conn, pending.friend, pending.session_id)

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # info ---------------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def _info(self, conn: PeerConnection, req: HostInfoReq) -> Generator[Any, Any, None]:
        count = yield self.store.count_members(self.settings.name)
        s = self.settings
        conn.send(HostInfoReply(host_type=s.host_type, session_id=req.session_id, title=s.title,
                                description=s.description, thumb_id=s.thumb_id,
                                last_modified_ms=self.last_modified_ms, member_count=count,
                                **self._common(conn, req.seq)))

    @defer.inlineCallbacks
    def _user_info(self, conn: PeerConnection, req: HostUserInfoReq) -> Generator[Any, Any, None]:
        assert conn.peer_id is not None
        common = self._common(conn, req.seq)
        if conn.peer_id.raw not in self.members:
            conn.send(HostUserInfoReply(**common))
            return
        target = req.target
        if target == self.online_id:
            conn.send(HostUserInfoReply(online_id=target, name=self.settings.display_name, motto=self.settings.motto,
                                        friend_state=EFriendState.ADMIN, online=True, **common))
            return
        friend = yield self.store.friend_state(self.settings.name, target)
        online_conn = self.members.get(target.raw)
        if online_conn is not None:
            name, motto = self._peer_names(online_conn)
            conn.send(HostUserInfoReply(online_id=target, name=name, motto=motto, friend_state=friend, online=True,
                                        **common))
            return
        member: Member | None = yield self.store.member(self.settings.name, target)
        if member is None:
            conn.send(HostUserInfoReply(online_id=target, friend_state=friend, **common))
        else:
            conn.send(HostUserInfoReply(online_id=target, name=member.name, motto=member.motto,
                                        friend_state=friend, online=False, **common))

    @defer.inlineCallbacks
    def _user_list(self, conn: PeerConnection,
                   req: HostUserListReq | HostUserListMoreReq | HostSearchReq) -> Generator[Any, Any, None]:
        assert conn.peer_id is not None
        reply_cls: type[HostUserListReply] | type[HostUserListMoreReply] | type[HostSearchReply]
        lists: OrderedDict[bytes, str] = conn.state["lists"]
        start: OnlineId | None = None
        if isinstance(req, HostSearchReq):
            reply_cls, text = HostSearchReply, req.text
            lists[req.session_id.raw] = text
        elif isinstance(req, HostUserListReq):
            reply_cls, text = HostUserListReply, ""
            lists[req.session_id.raw] = text
        else:
            reply_cls, start = HostUserListMoreReply, req.next_id
            text = lists.get(req.session_id.raw, "")
        while len(lists) > MAX_LIST_SESSIONS:
            lists.popitem(last=False)
        common = self._common(conn, req.seq)
        if conn.peer_id.raw not in self.members:
            conn.send(reply_cls(host_type=self.settings.host_type, comm_err=ECommErr.INVALID_PKT,
                                session_id=req.session_id, **common))
            return
        states = (EJoinState.JOIN_REQUESTED, EJoinState.JOIN_IS_GRANTED)
        if text:
            # name search: every record is looked at (names are matched as the members announced them)
            rows: list[Member] = yield self.store.members(self.settings.name, states, start)
        else:
            # one page and the record after it, straight from the database
            rows = yield self.store.members(self.settings.name, states, start, self.settings.page_size + 1)
        needle = text.casefold()
        records = []
        for row in rows:
            online_conn = self.members.get(row.online_id.raw)
            name = self._peer_names(online_conn)[0] if online_conn is not None else row.name
            if needle and needle not in name.casefold():
                continue
            records.append(MemberInfo(row.online_id, name, row.join_state, online_conn is not None))
        if start is not None and (not records or records[0].online_id != start):
            conn.send(reply_cls(host_type=self.settings.host_type, comm_err=ECommErr.SEARCH_NO_MATCH,
                                session_id=req.session_id, **common))
            return
        page, more, next_id = next(iter(_pages(records, self.settings.page_size)))
        err = ECommErr.NONE if page else ECommErr.SEARCH_NO_MATCH
        conn.send(reply_cls(host_type=self.settings.host_type, more_exist=more, comm_err=err,
                            session_id=req.session_id, next_id=next_id, users=tuple(page), **common))

    # session traffic ------------------------------------------------------------------------------

    def _chat(self, conn: PeerConnection, req: ChatReq) -> None:
        assert conn.peer_id is not None
        if self.members.get(conn.peer_id.raw) is not conn:
            log.debug("hosts: {host}: chat from non-member {peer} dropped", host=self.settings.name,
                      peer=conn.peer_id)
            return
        others = [member for member in self.members.values() if member is not conn]
        self._broadcast(ChatReply(src=conn.peer_id, plugin_num=self.settings.host_type,
                                  route_flags=RELAY_FLAGS[self.settings.host_type], text=req.text,
                                  sent_ms=req.sent_ms), others)
        self.relayed += len(others)

    def _rand_connect(self, conn: PeerConnection, req: RandConnectReq) -> None:
        if self.settings.host_type != EHostType.RANDOM_CONNECT:
            log.debug("hosts: {host} is not a random-connect host; RAND_CONNECT_REQ dropped",
                      host=self.settings.name)
            return
        clients = [client for client in self.clients if client.connected_and_ready]
        self._broadcast(RandConnectReply(src=req.src, seq=req.seq, plugin_num=self.settings.host_type,
                                         route_flags=RouteFlags.RANDOM_CONNECT_RELAY, action=req.action,
                                         user_id=req.user_id, host_id=req.host_id, to_user_id=req.to_user_id),
                        clients)
        self.relayed += len(clients)


def _pages(records: list[MemberInfo], page_size: int) -> Generator[tuple[list[MemberInfo], bool, OnlineId]]:
    """Split *records* into pages bounded by *page_size* and the blob; (page, more, next id) each."""
    if not records:
        yield [], False, OnlineId()
        return
    page: list[MemberInfo] = []
    used = 0
    for record in records:
        size = record.size()
        if page and (len(page) >= page_size or used + size > MAX_BLOB_DATA):
            yield page, True, record.online_id
            page, used = [], 0
        page.append(record)
        used += size
    yield page, False, OnlineId()
