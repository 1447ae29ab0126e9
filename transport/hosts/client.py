"""The Twisted client API: search the network host, join user hosts, chat.

>>> # doctest: +SKIP
>>> identity = Identity.load_or_create(Path("~/.transport-hosts").expanduser())
>>> net = await HostClient.connect(reactor, "tcp:127.0.0.1:4620", identity, name="me")
>>> hosts = await net.search(EHostType.GROUP)                  # the whole MORE chain
>>> group = await HostClient.connect(reactor, url_to_endpoint(hosts[0].url), identity,
...                                   expected_id=hosts[0].online_id, name="me")
>>> result = await group.join(EHostType.GROUP)                 # reply + member list
>>> group.chat("hello")
>>> chat = await group.wait_for(lambda p: isinstance(p, ChatReply))

Requests carry a random ``seq`` that the reply echoes; replies are matched by
it. Everything else the host sends on its own (relayed chat, membership
updates, ADMIN_AVAIL, random-connect relays, pushed join decisions) lands in
:attr:`HostClient.received` and wakes :meth:`HostClient.wait_for` callers.
"""

from __future__ import annotations

import os
import random
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet import defer, error
from twisted.logger import Logger

from transport.hosts.identity import Identity
from transport.hosts.packets import (
    ZERO_ID,
    Announce,
    ChatReq,
    ECommErr,
    EJoinState,
    HostedInfo,
    HostInfoReply,
    HostInfoReq,
    HostInviteAnnounceReply,
    HostInviteAnnounceReq,
    HostInviteMoreReply,
    HostInviteMoreReq,
    HostInviteSearchReply,
    HostInviteSearchReq,
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
    RandConnectReq,
)
from transport.hosts.protocol import PeerConnection, connect

log = Logger()

#: Unsolicited packets kept for :meth:`HostClient.wait_for`.
BACKLOG = 10000
#: Pages a search or list chain may take before the client gives up (a loop guard).
MAX_PAGES = 100000


class RequestFailed(Exception):
    """A reply carried a communication error."""

    def __init__(self, reply: Packet, err: int) -> None:
        super().__init__(f"{type(reply).__name__}: {ECommErr(err).name if err in set(ECommErr) else err}")
        self.reply = reply
        self.err = err


@dataclass(frozen=True)
class JoinResult:
    """A join's reply and, when granted, the member list that followed it."""

    reply: HostJoinReply | HostOfferReply
    members: tuple[MemberInfo, ...]

    @property
    def granted(self) -> bool:
        return self.reply.join_state == EJoinState.JOIN_IS_GRANTED


def new_session_id() -> OnlineId:
    return OnlineId(os.urandom(16))


class HostClient:
    """One connection to a network host or a user host (see the module docstring)."""

    def __init__(self, identity: Identity, name: str = "", motto: str = "", url: str = "",
                 reactor: Any = None, timeout: float = 30.0) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.identity = identity
        self.online_id = identity.online_id
        self.name = name
        self.motto = motto
        self.url = url
        self.reactor = reactor
        self.timeout = timeout
        self.conn: PeerConnection | None = None
        self._waiting: dict[int, tuple[tuple[type[Packet], ...], defer.Deferred[Packet], Any]] = {}
        self.received: deque[Packet] = deque(maxlen=BACKLOG)
        self._watchers: list[tuple[Callable[[Packet], bool], defer.Deferred[Packet], Any]] = []
        self.lost: defer.Deferred[None] = defer.Deferred()

    @classmethod
    def connect(cls, reactor: Any, endpoint: str, identity: Identity, expected_id: OnlineId | None = None,
                name: str = "", motto: str = "", url: str = "", timeout: float = 30.0) -> defer.Deferred[HostClient]:
        """Connect to the host listening at the client *endpoint* string (``tcp:HOST:PORT``)."""
        client = cls(identity, name, motto, url, reactor, timeout)
        announce = Announce(src=identity.online_id, name=name, motto=motto, url=url)
        d = connect(reactor, endpoint, client, identity, announce, expected_id, timeout)

        def ready(conn: PeerConnection) -> HostClient:
            conn.lost.addCallback(lambda _: client.lost.callback(None) if not client.lost.called else None)
            return client

        return d.addCallback(ready)

    @property
    def peer_id(self) -> OnlineId:
        assert self.conn is not None and self.conn.peer_id is not None
        return self.conn.peer_id

    @property
    def peer_announce(self) -> Announce | None:
        return self.conn.peer_announce if self.conn is not None else None

    def close(self) -> defer.Deferred[None]:
        if self.conn is not None:
            self.conn.close()
        return self.lost

    # PacketHandler ----------------------------------------------------------------------

    def connection_made(self, conn: PeerConnection) -> None:
        self.conn = conn

    def connection_lost(self, conn: PeerConnection) -> None:
        waiting = list(self._waiting.values())
        self._waiting.clear()
        for _, d, call in waiting:
            if call.active():
                call.cancel()
            d.errback(error.ConnectionLost("the host closed the connection"))
        watchers = list(self._watchers)
        self._watchers.clear()
        for _, d, call in watchers:
            if call.active():
                call.cancel()
            d.errback(error.ConnectionLost("the host closed the connection"))

    def packet_received(self, conn: PeerConnection, packet: Packet) -> None:
        waiter = self._waiting.get(packet.seq) if packet.seq else None
        if waiter is not None and isinstance(packet, waiter[0]):
            del self._waiting[packet.seq]
            _, d, call = waiter
            if call.active():
                call.cancel()
            d.callback(packet)
            return
        if isinstance(packet, HostUserInfoReq) and packet.target == self.online_id:
            conn.send(HostUserInfoReply(src=self.online_id, dst=packet.src, seq=packet.seq, online_id=self.online_id,
                                        name=self.name, motto=self.motto, online=True))
            return
        self.received.append(packet)
        for watcher in list(self._watchers):
            predicate, d, call = watcher
            if predicate(packet):
                self._watchers.remove(watcher)
                if call.active():
                    call.cancel()
                self.received.remove(packet)
                d.callback(packet)
                return

    # plumbing ----------------------------------------------------------------------------

    def send(self, packet: Packet) -> None:
        if self.conn is None:
            raise error.NotConnectingError("not connected")
        self.conn.send(replace(packet, src=self.online_id, dst=self.peer_id))

    def request(self, packet: Packet, *reply_types: type[Packet]) -> defer.Deferred[Any]:
        """Send *packet* with a fresh seq; fires with the reply of one of *reply_types*."""
        free = [s for s in range(1, 256) if s not in self._waiting]
        if not free:
            return defer.fail(RuntimeError("255 requests already outstanding"))
        seq = random.choice(free)
        d: defer.Deferred[Packet] = defer.Deferred()

        def timed_out() -> None:
            if self._waiting.get(seq, (None, None))[1] is d:
                del self._waiting[seq]
            d.errback(defer.TimeoutError(f"no reply to {type(packet).__name__} in {self.timeout:g}s"))

        call = self.reactor.callLater(self.timeout, timed_out)
        self._waiting[seq] = (reply_types, d, call)
        self.send(replace(packet, seq=seq))
        return d

    def wait_for(self, predicate: Callable[[Packet], bool], timeout: float | None = None) -> defer.Deferred[Any]:
        """The first unsolicited packet (already received or to come) for which *predicate* holds."""
        for packet in list(self.received):
            if predicate(packet):
                self.received.remove(packet)
                return defer.succeed(packet)
        d: defer.Deferred[Packet] = defer.Deferred()

        def timed_out() -> None:
            for w in list(self._watchers):
                if w[1] is d:
                    self._watchers.remove(w)
            d.errback(defer.TimeoutError("no such packet arrived"))

        call = self.reactor.callLater(self.timeout if timeout is None else timeout, timed_out)
        self._watchers.append((predicate, d, call))
        return d

    # network host ---------------------------------------------------------------------------

    def announce(self, host_type: int, url: str, title: str, description: str, thumb_id: OnlineId,
                 last_modified_ms: int | None = None) -> defer.Deferred[HostInviteAnnounceReply]:
        """Announce ourselves as a user host of *host_type*."""
        if last_modified_ms is None:
            last_modified_ms = int(time.time() * 1000)
        req = HostInviteAnnounceReq(plugin_num=host_type, host_type=host_type, session_id=new_session_id(),
                                    last_modified_ms=last_modified_ms, url=url, title=title,
                                    description=description, thumb_id=thumb_id)
        return self.request(req, HostInviteAnnounceReply)

    def search_page(self, host_type: int, text: str = "", specific_id: OnlineId | None = None,
                    session_id: OnlineId | None = None) -> defer.Deferred[HostInviteSearchReply]:
        req = HostInviteSearchReq(plugin_num=host_type, host_type=host_type,
                                  session_id=session_id or new_session_id(), specific_id=specific_id or OnlineId(),
                                  text=text)
        return self.request(req, HostInviteSearchReply)

    def more_page(self, host_type: int, session_id: OnlineId,
                  next_id: OnlineId) -> defer.Deferred[HostInviteMoreReply]:
        req = HostInviteMoreReq(plugin_num=host_type, host_type=host_type, session_id=session_id, next_id=next_id)
        return self.request(req, HostInviteMoreReply)

    @defer.inlineCallbacks
    def search(self, host_type: int, text: str = "",
               specific_id: OnlineId | None = None) -> Generator[Any, Any, list[HostedInfo]]:
        """Every matching host: the search and its MORE chain. SearchNoMatch gives an empty list."""
        session = new_session_id()
        reply = yield self.search_page(host_type, text, specific_id, session)
        out: list[HostedInfo] = []
        for _ in range(MAX_PAGES):
            if reply.comm_err == ECommErr.SEARCH_NO_MATCH:
                return out
            if reply.comm_err != ECommErr.NONE:
                raise RequestFailed(reply, reply.comm_err)
            out.extend(reply.entries)
            if not reply.more_exist:
                return out
            reply = yield self.more_page(host_type, session, reply.next_id)
        raise RuntimeError("search chain did not end")

    # user host ------------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def join(self, host_type: int, offer_message: str | None = None) -> Generator[Any, Any, JoinResult]:
        """HOST_JOIN_REQ (or HOST_OFFER_REQ with a message); when granted, also the member list."""
        session = new_session_id()
        reply: HostJoinReply | HostOfferReply
        if offer_message is None:
            reply = yield self.request(HostJoinReq(plugin_num=host_type, host_type=host_type, session_id=session),
                                       HostJoinReply)
        else:
            reply = yield self.request(HostOfferReq(plugin_num=host_type, host_type=host_type, session_id=session,
                                                    message=offer_message), HostOfferReply)
        members: tuple[MemberInfo, ...] = ()
        if reply.join_state == EJoinState.JOIN_IS_GRANTED:
            members = yield self.member_list_push(session)
        return JoinResult(reply, members)

    @defer.inlineCallbacks
    def member_list_push(self, session_id: OnlineId) -> Generator[Any, Any, tuple[MemberInfo, ...]]:
        """The member list pages a host pushes after a grant (for the join with *session_id*)."""
        members: list[MemberInfo] = []
        while True:
            page = yield self.wait_for(lambda p: isinstance(p, HostUserListReply) and p.session_id == session_id)
            members.extend(page.users)
            if not page.more_exist:
                return tuple(members)

    @defer.inlineCallbacks
    def wait_join_decision(self, host_type: int, timeout: float | None = None) -> Generator[Any, Any, JoinResult]:
        """Wait for the host to push the admin's decision on a pending join."""
        reply = yield self.wait_for(lambda p: isinstance(p, (HostJoinReply, HostOfferReply)) and p.seq == 0
                                    and p.host_type == host_type, timeout)
        members: tuple[MemberInfo, ...] = ()
        if reply.join_state == EJoinState.JOIN_IS_GRANTED:
            members = yield self.member_list_push(reply.session_id)
        return JoinResult(reply, members)

    def leave(self, host_type: int) -> defer.Deferred[HostLeaveReply]:
        return self.request(HostLeaveReq(plugin_num=host_type, host_type=host_type, session_id=new_session_id()),
                            HostLeaveReply)

    def unjoin(self, host_type: int) -> defer.Deferred[HostUnjoinReply]:
        return self.request(HostUnjoinReq(plugin_num=host_type, host_type=host_type, session_id=new_session_id()),
                            HostUnjoinReply)

    def info(self, host_type: int) -> defer.Deferred[HostInfoReply]:
        return self.request(HostInfoReq(plugin_num=host_type, host_type=host_type, session_id=new_session_id()),
                            HostInfoReply)

    def user_info(self, target: OnlineId) -> defer.Deferred[HostUserInfoReply]:
        return self.request(HostUserInfoReq(target=target), HostUserInfoReply)

    @defer.inlineCallbacks
    def user_list(self, host_type: int, text: str | None = None) -> Generator[Any, Any, list[MemberInfo]]:
        """The host's member records (HOST_USER_LIST, or HOST_SEARCH when *text* is given), whole chain."""
        session = new_session_id()
        if text is None:
            reply = yield self.request(HostUserListReq(plugin_num=host_type, host_type=host_type,
                                                       session_id=session), HostUserListReply)
        else:
            reply = yield self.request(HostSearchReq(plugin_num=host_type, host_type=host_type, session_id=session,
                                                     text=text), HostSearchReply)
        out: list[MemberInfo] = []
        for _ in range(MAX_PAGES):
            if reply.comm_err == ECommErr.SEARCH_NO_MATCH:
                return out
            if reply.comm_err != ECommErr.NONE:
                raise RequestFailed(reply, reply.comm_err)
            out.extend(reply.users)
            if not reply.more_exist:
                return out
            reply = yield self.request(HostUserListMoreReq(plugin_num=host_type, host_type=host_type,
                                                           session_id=session, next_id=reply.next_id),
                                       HostUserListMoreReply)
        raise RuntimeError("user list chain did not end")

    def chat(self, text: str, host_type: int = 0, sent_ms: int | None = None) -> None:
        """Send a chat message to the host (relayed to the other members)."""
        if sent_ms is None:
            sent_ms = int(time.time() * 1000)
        self.send(ChatReq(plugin_num=host_type, text=text, sent_ms=sent_ms))

    def rand_connect(self, action: int, to_user_id: OnlineId = ZERO_ID, host_type: int = 6) -> None:
        """A RAND_CONNECT_REQ; the host relays it to every client, us included."""
        self.send(RandConnectReq(plugin_num=host_type, action=action, user_id=self.online_id, host_id=self.peer_id,
                                 to_user_id=to_user_id))
