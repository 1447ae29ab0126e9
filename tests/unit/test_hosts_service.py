"""The hosts services in this process, over real TLS sockets on loopback.

The network host and user hosts run as :class:`HostsService` (SQLite in a
temporary directory); clients are :class:`HostClient` objects with fresh
identities. Expiry runs on a ``task.Clock``.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.error import ConnectionLost

from transport import config as configuration
from transport.hosts.client import HostClient
from transport.hosts.directory import Directory
from transport.hosts.identity import Identity
from transport.hosts.network import NetworkHost
from transport.hosts.packets import (
    AdminAvail,
    Announce,
    ChatReply,
    ChatReq,
    ECommErr,
    EFriendState,
    EHostType,
    EJoinState,
    EPluginAccess,
    ERandAction,
    HostInviteAnnounceReq,
    HostJoinReq,
    HostUserListReply,
    OnlineId,
    Packet,
    RandConnectReply,
    encode,
)
from transport.hosts.protocol import PeerFactory, WrongPeer, listen, url_to_endpoint
from transport.hosts.service import HostsService
from transport.storage.database import open_sqlite

GROUP, CHAT, RANDOM = EHostType.GROUP, EHostType.CHAT_ROOM, EHostType.RANDOM_CONNECT
THUMB = OnlineId(b"\x07" * 16)

INI = """
[service]
state_dir = {state}
web_port =
[hosts]
enabled = true
network_host = true
listen = tcp:0:interface=127.0.0.1
[host:open]
type = group
title = Open group
description = anyone may join
pending_poll_interval = 0.05
[host:friends]
type = chatroom
title = Friends room
description = friends only
permission = friend
pending_poll_interval = 0.05
max_pending = 2
[host:rand]
type = randomconnect
title = Random
description = meet someone
[host:off]
type = group
title = Closed
description = disabled host
permission = ignore
"""


class Hosts:
    def __init__(self, service: HostsService, path: Path) -> None:
        self.service = service
        self.path = path
        self.clients: list[HostClient] = []

    @property
    def network_endpoint(self) -> str:
        assert self.service.network is not None and self.service.network.port is not None
        return f"tcp:127.0.0.1:{self.service.network.port.getHost().port}"  # type: ignore[attr-defined]

    def user_host(self, name: str) -> Any:
        return self.service.user_hosts[name]

    async def client(self, name: str, target: str | None = None, identity: Identity | None = None) -> HostClient:
        identity = identity or Identity.generate(name)
        if target is None:
            endpoint, expected = self.network_endpoint, self.service.network.online_id  # type: ignore[union-attr]
        else:
            host = self.user_host(target)
            endpoint, expected = url_to_endpoint(host.host.settings.url), host.online_id
        c = await HostClient.connect(reactor, endpoint, identity, expected, name=name, timeout=60)
        self.clients.append(c)
        return c


@pytest_twisted.async_yield_fixture
async def hosts(tmp_path: Path) -> AsyncIterator[Hosts]:
    config = configuration.load_text(INI.format(state=tmp_path / "state"), str(tmp_path / "t.ini"))
    database = open_sqlite(tmp_path / "hosts.sqlite3")
    database.start()
    service = HostsService(config, reactor, database)
    service.startService()
    await service.network.listening  # type: ignore[union-attr]
    for host in service.user_hosts.values():
        await host.ready
    h = Hosts(service, tmp_path)
    try:
        yield h
    finally:
        for c in h.clients:
            c.close()
        await service.stopService()
        await database.close()


def _is(cls: type[Packet], **attrs: Any) -> Callable[[Packet], bool]:
    return lambda p: isinstance(p, cls) and all(getattr(p, k) == v for k, v in attrs.items())


@pytest_twisted.ensureDeferred
async def test_local_hosts_announce_without_a_connection(hosts: Hosts) -> None:
    net = await hosts.client("searcher")
    assert sorted(h.title for h in await net.search(GROUP)) == ["Closed", "Open group"]
    assert [h.title for h in await net.search(CHAT)] == ["Friends room"]
    assert [h.title for h in await net.search(RANDOM)] == ["Random"]
    assert hosts.service.network.handler.announcements == 4  # type: ignore[union-attr]
    numbers = hosts.service.counters()
    assert numbers["directory_entries"] == 4 and numbers["open_announcements"] == 1
    assert numbers["open_announce_failing"] == 0 and numbers["directory_searches"] == 3
    # Path A: the only connection the network host ever saw is this searcher's
    assert len(hosts.service.network.factory.connections) == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["length-not-multiple-of-16", "too-long", "bad-type", "truncated-blob", "zero-type"])
@pytest_twisted.ensureDeferred
async def test_malformed_packet_closes_only_that_connection(hosts: Hosts, kind: str) -> None:
    bystander = await hosts.client("bystander")
    bad = await hosts.client("bad")
    good = encode(HostJoinReq(src=bad.online_id, host_type=GROUP))
    data = bytearray(encode(ChatReq(src=bad.online_id, text="hello")))
    if kind == "length-not-multiple-of-16":
        data = bytearray(struct.pack(">H", 40 + 1) + good[2:41])
    elif kind == "too-long":
        data = bytearray(struct.pack(">H", 16384 + 16) + good[2:])
    elif kind == "bad-type":
        data = bytearray(good)
        data[2:4] = struct.pack(">H", 9999)
    elif kind == "zero-type":
        data = bytearray(good)
        data[2:4] = b"\x00\x00"
    else:
        data[48:50] = struct.pack(">H", 500)
    assert bad.conn is not None and bad.conn.transport is not None
    bad.conn.transport.write(bytes(data))
    await bad.lost
    # the other connection carries on
    assert len(await bystander.search(GROUP)) == 2


@pytest_twisted.ensureDeferred
async def test_forged_source_is_refused(hosts: Hosts) -> None:
    forger = await hosts.client("forger")
    victim = OnlineId(b"\x66" * 16)
    packet = HostInviteAnnounceReq(src=victim, dst=forger.peer_id, host_type=GROUP, last_modified_ms=1,
                                   url="ptop://127.0.0.1:1", title="fake", description="fake", thumb_id=THUMB)
    assert forger.conn is not None and forger.conn.transport is not None
    forger.conn.transport.write(encode(packet))
    await forger.lost
    checker = await hosts.client("checker")
    assert "fake" not in [h.title for h in await checker.search(GROUP)]
    assert await checker.search(GROUP, specific_id=victim) == []


@pytest_twisted.ensureDeferred
async def test_client_pins_the_server_identity(hosts: Hosts) -> None:
    with pytest.raises(WrongPeer):
        await HostClient.connect(reactor, hosts.network_endpoint, Identity.generate("x"), OnlineId(b"\x01" * 16))


@pytest_twisted.ensureDeferred
async def test_remote_announce_and_expiry_on_a_clock(tmp_path: Path) -> None:
    clock = task.Clock()
    ident = Identity.generate("net")
    directory = Directory(clock.seconds, expiry=1800)
    handler = NetworkHost(directory, ident.online_id)
    factory = PeerFactory(handler, ident, Announce(src=ident.online_id, name="net"), reactor=reactor)
    port = await listen(reactor, "tcp:0:interface=127.0.0.1", factory)
    try:
        endpoint = f"tcp:127.0.0.1:{port.getHost().port}"
        quiet = await HostClient.connect(reactor, endpoint, Identity.generate("quiet"), ident.online_id)
        busy = await HostClient.connect(reactor, endpoint, Identity.generate("busy"), ident.online_id)
        for c, title in ((quiet, "Quiet"), (busy, "Busy")):
            reply = await c.announce(GROUP, "ptop://127.0.0.1:9", title, "desc", THUMB)
            assert reply.comm_err == ECommErr.NONE
        refused = await busy.announce(GROUP, "ptop://127.0.0.1:9", "", "desc", THUMB)
        assert refused.comm_err == ECommErr.INVALID_PKT
        searcher = await HostClient.connect(reactor, endpoint, Identity.generate("s"), ident.online_id)
        assert sorted(h.title for h in await searcher.search(GROUP)) == ["Busy", "Quiet"]
        clock.advance(900)
        await busy.announce(GROUP, "ptop://127.0.0.1:9", "Busy", "desc", THUMB)
        clock.advance(901)
        assert [h.title for h in await searcher.search(GROUP)] == ["Busy"]
        assert [h.online_id for h in await searcher.search(GROUP, specific_id=busy.online_id)] == [busy.online_id]
        assert await searcher.search(GROUP, specific_id=quiet.online_id) == []
        for c in (quiet, busy, searcher):
            await c.close()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_join_rules_and_admin_decisions(hosts: Hosts) -> None:
    store = hosts.service.store
    friend = await hosts.client("friend", "friends")
    stranger = await hosts.client("stranger", "friends")
    ignored = await hosts.client("ignored", "friends")
    await store.set_friend_state("friends", friend.online_id, EFriendState.FRIEND)
    await store.set_friend_state("friends", ignored.online_id, EFriendState.IGNORE)

    joined = await friend.join(CHAT)
    assert (joined.reply.access, joined.reply.join_state) == (EPluginAccess.OK, EJoinState.JOIN_IS_GRANTED)
    assert [m.name for m in joined.members] == ["friend"]

    no = await ignored.join(CHAT)
    assert (no.reply.access, no.reply.join_state) == (EPluginAccess.IGNORED, EJoinState.JOIN_DENIED)

    wrong_type = await stranger.join(GROUP)
    assert wrong_type.reply.comm_err == ECommErr.INVALID_HOST_TYPE

    pending = await stranger.join(CHAT, offer_message="I know Alice")
    assert (pending.reply.access, pending.reply.join_state) == (EPluginAccess.LOCKED, EJoinState.JOIN_REQUESTED)
    record = await store.member("friends", stranger.online_id)
    assert record.join_state == EJoinState.JOIN_REQUESTED and record.message == "I know Alice"
    # nothing for a pending user: chat is not relayed to it
    friend.chat("before the grant")
    assert await store.decide("friends", stranger.online_id, True)
    decision = await stranger.wait_join_decision(CHAT)
    assert decision.granted and {m.name for m in decision.members} == {"friend", "stranger"}
    update = await friend.wait_for(_is(HostUserListReply, session_id=OnlineId()))
    assert [(u.name, u.online) for u in update.users] == [("stranger", True)]

    # a denied requester is pushed the denial and stays out on the next try
    late = await hosts.client("late", "friends")
    assert (await late.join(CHAT)).reply.join_state == EJoinState.JOIN_REQUESTED
    await store.decide("friends", late.online_id, False)
    denied = await late.wait_join_decision(CHAT)
    assert denied.reply.join_state == EJoinState.JOIN_DENIED
    again = await late.join(CHAT)
    assert (again.reply.access, again.reply.join_state) == (EPluginAccess.LOCKED, EJoinState.JOIN_DENIED)

    # a disabled host refuses everyone
    off = await hosts.client("friend2", "off")
    closed = await off.join(GROUP)
    assert (closed.reply.access, closed.reply.join_state) == (EPluginAccess.DISABLED, EJoinState.JOIN_DENIED)


@pytest_twisted.ensureDeferred
async def test_chat_leave_unjoin_disconnect(hosts: Hosts) -> None:
    a = await hosts.client("a", "open")
    b = await hosts.client("b", "open")
    c = await hosts.client("c", "open")
    for x in (a, b, c):
        assert (await x.join(GROUP)).granted
    outsider = await hosts.client("outsider", "open")
    outsider.chat("not a member")
    a.chat("hello", GROUP, sent_ms=42)
    for x in (b, c):
        got = await x.wait_for(_is(ChatReply))
        assert (got.src, got.dst, got.text, got.sent_ms, got.route_flags) == (a.online_id, x.online_id, "hello",
                                                                               42, 0x02)
    b.chat("marker")
    got = await a.wait_for(_is(ChatReply))
    assert (got.src, got.text) == (b.online_id, "marker")  # a never received its own message

    info = await a.info(GROUP)
    assert (info.title, info.member_count) == ("Open group", 3)
    names = {m.name for m in await a.user_list(GROUP)}
    assert names == {"a", "b", "c"}
    assert [m.name for m in await a.user_list(GROUP, text="B")] == ["b"]
    user = await a.user_info(b.online_id)
    assert (user.name, user.online, user.friend_state) == ("b", True, EFriendState.ANONYMOUS)
    assert (await outsider.user_info(b.online_id)).name == ""  # members only

    # leave: session over, record kept
    a.received.clear()
    left = await b.leave(GROUP)
    assert left.join_state == EJoinState.JOIN_LEAVE_HOST
    update = await a.wait_for(_is(HostUserListReply, session_id=OnlineId()))
    assert [(u.name, u.online) for u in update.users] == [("b", False)]
    assert (await hosts.service.store.member("open", b.online_id)).join_state == EJoinState.JOIN_IS_GRANTED
    c.chat("after leave")
    await a.wait_for(_is(ChatReply, text="after leave"))
    assert not [p for p in b.received if isinstance(p, ChatReply) and p.text == "after leave"]

    # unjoin: record gone
    await c.unjoin(GROUP)
    update = await a.wait_for(_is(HostUserListReply, session_id=OnlineId()))
    assert [(u.name, u.online, u.join_state) for u in update.users] == [("c", False, EJoinState.NONE)]
    assert await hosts.service.store.member("open", c.online_id) is None
    assert {m.name for m in await a.user_list(GROUP)} == {"a", "b"}

    # a member disconnecting is announced
    assert (await b.join(GROUP)).granted
    await a.wait_for(_is(HostUserListReply, session_id=OnlineId()))
    await b.close()
    update = await a.wait_for(_is(HostUserListReply, session_id=OnlineId()))
    assert [(u.name, u.online) for u in update.users] == [("b", False)]


@pytest_twisted.ensureDeferred
async def test_admin_availability(hosts: Hosts) -> None:
    member = await hosts.client("member", "open")
    assert (await member.join(GROUP)).granted
    first = await member.wait_for(_is(AdminAvail))
    assert first.available is False
    admin = await hosts.client("admin", "open")
    await hosts.service.store.set_friend_state("open", admin.online_id, EFriendState.ADMIN)
    assert (await admin.join(GROUP)).granted
    assert (await member.wait_for(_is(AdminAvail))).available is True
    assert (await admin.wait_for(_is(AdminAvail))).available is True
    await admin.leave(GROUP)
    assert (await member.wait_for(_is(AdminAvail))).available is False


@pytest_twisted.ensureDeferred
async def test_random_connect_reaches_every_client(hosts: Hosts) -> None:
    clients = [await hosts.client(f"r{i}", "rand") for i in range(3)]
    assert (await clients[0].join(RANDOM)).granted  # joining is not needed to be relayed
    clients[1].rand_connect(ERandAction.OFFER_REQUEST, clients[2].online_id)
    for c in clients:
        got = await c.wait_for(_is(RandConnectReply))
        assert (got.action, got.user_id, got.to_user_id, got.host_id) == (
            ERandAction.OFFER_REQUEST, clients[1].online_id, clients[2].online_id, hosts.user_host("rand").online_id)
    # a group host does not relay random-connect requests
    g = await hosts.client("g", "open")
    g.rand_connect(ERandAction.SELECT_USER)
    g.chat("sync")  # processed after the request: nothing came back before this point
    await g.info(GROUP)
    assert not [p for p in g.received if isinstance(p, RandConnectReply)]


@pytest_twisted.ensureDeferred
async def test_client_requests_fail_when_the_host_goes(hosts: Hosts) -> None:
    c = await hosts.client("c", "open")
    d = c.request(HostJoinReq(host_type=GROUP), AdminAvail)  # a reply type that never comes
    hosts.user_host("open").factory.connections.copy().pop().abort()
    with pytest.raises(ConnectionLost):
        await d


@pytest_twisted.ensureDeferred
async def test_settings_change_reannounces(hosts: Hosts) -> None:
    net = await hosts.client("searcher")
    open_id = hosts.user_host("open").online_id
    (before,) = await net.search(GROUP, specific_id=open_id)
    text = INI.format(state=hosts.path / "state").replace("title = Open group", "title = Renamed group")
    config = configuration.load_text(text, str(hosts.path / "t.ini"))
    changed = await hosts.service.reload(config)
    assert changed == [False, False, True, False]  # friends, off, open, rand: only "open" changed
    (after,) = await net.search(GROUP, specific_id=open_id)
    assert after.title == "Renamed group" and after.last_modified_ms >= before.last_modified_ms
    member = await hosts.client("m", "open")
    assert (await member.info(GROUP)).title == "Renamed group"


@pytest_twisted.ensureDeferred
async def test_silent_peer_is_dropped_after_the_handshake_timeout() -> None:
    from twisted.internet.endpoints import TCP4ClientEndpoint
    from twisted.internet.protocol import Factory, Protocol

    ident = Identity.generate("net")
    handler = NetworkHost(Directory(reactor.seconds), ident.online_id)
    factory = PeerFactory(handler, ident, Announce(src=ident.online_id), reactor=reactor, handshake_timeout=0.2)
    port = await listen(reactor, "tcp:0:interface=127.0.0.1", factory)
    closed: defer.Deferred[None] = defer.Deferred()

    class Silent(Protocol):
        def connectionLost(self, reason: Any = None) -> None:
            closed.callback(None)

    try:
        await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(  # type: ignore[attr-defined]
            Factory.forProtocol(Silent))
        await closed  # the server hung up on a peer that never started TLS
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_pending_requests_are_bounded(hosts: Hosts) -> None:
    waiting = [await hosts.client(f"w{i}", "friends") for i in range(3)]
    states = [(await w.join(CHAT)).reply for w in waiting]
    assert [(r.access, r.join_state) for r in states] == [
        (EPluginAccess.LOCKED, EJoinState.JOIN_REQUESTED), (EPluginAccess.LOCKED, EJoinState.JOIN_REQUESTED),
        (EPluginAccess.BUSY, EJoinState.NONE)]
    assert await hosts.service.store.member("friends", waiting[2].online_id) is None
    # asking again while pending does not count twice
    assert (await waiting[0].join(CHAT)).reply.join_state == EJoinState.JOIN_REQUESTED


@pytest_twisted.ensureDeferred
async def test_member_list_pages(hosts: Hosts) -> None:
    host = hosts.user_host("open").host
    host.settings = replace(host.settings, page_size=3)
    members = [await hosts.client(f"p{i}", "open") for i in range(8)]
    for m in members:
        assert (await m.join(GROUP)).granted
    listed = await members[0].user_list(GROUP)
    assert sorted(m.online_id for m in listed) == sorted(m.online_id for m in members)
    assert len(listed) == 8 and all(m.online for m in listed)
    assert [m.name for m in await members[0].user_list(GROUP, text="p7")] == ["p7"]


@pytest_twisted.ensureDeferred
async def test_fuzzed_packets_against_live_hosts(hosts: Hosts) -> None:
    """Mutated packets (flipped bytes, cut short, wrong lengths and types) from many connections:
    no handler fails, and a bystander on each host keeps being served."""
    import random

    from twisted.logger import globalLogPublisher

    from transport.hosts.packets import HostInfoReq, HostInviteSearchReq, HostUserListReq, RandConnectReq

    failures: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if "log_failure" in event and str(event.get("log_namespace", "")).startswith("transport.hosts"):
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    rng = random.Random(7)
    try:
        net_bystander = await hosts.client("net-bystander")
        group_bystander = await hosts.client("group-bystander", "open")
        assert (await group_bystander.join(GROUP)).granted
        for case in range(120):
            target = "open" if case % 2 else None
            c = await hosts.client(f"fuzz{case}", target)
            if target is not None and case % 4 == 1:
                await c.join(GROUP)
            samples: list[Packet] = [
                HostInviteSearchReq(src=c.online_id, host_type=GROUP, text="abc"),
                HostInviteAnnounceReq(src=c.online_id, host_type=GROUP, last_modified_ms=1, url="u", title="t",
                                      description="d", thumb_id=THUMB),
                HostJoinReq(src=c.online_id, host_type=GROUP), HostInfoReq(src=c.online_id, host_type=GROUP),
                HostUserListReq(src=c.online_id, host_type=GROUP), ChatReq(src=c.online_id, text="x" * 40),
                RandConnectReq(src=c.online_id, action=1),
            ]
            data = bytearray(encode(rng.choice(samples)))
            kind = rng.randrange(4)
            if kind == 0:
                for _ in range(rng.randrange(1, 6)):
                    data[rng.randrange(40, len(data))] = rng.randrange(256)  # the body, keeping the source
            elif kind == 1:
                data = data[:rng.randrange(1, len(data))]
            elif kind == 2:
                data[0:2] = rng.randrange(0, 65536).to_bytes(2, "big")
            else:
                data[2:4] = rng.randrange(0, 65536).to_bytes(2, "big")
            assert c.conn is not None and c.conn.transport is not None
            c.conn.transport.write(bytes(data))
            c.conn.transport.loseConnection()
            await c.lost
        assert await net_bystander.search(GROUP)
        assert (await group_bystander.info(GROUP)).title == "Open group"
    finally:
        globalLogPublisher.removeObserver(observe)
    assert failures == []


@pytest_twisted.ensureDeferred
async def test_announce_retried_until_the_network_host_is_up(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        net_port = s.getsockname()[1]
    config = configuration.load_text(f"""
[service]
state_dir = {tmp_path / 'state'}
[hosts]
enabled = true
[host:late]
type = group
title = Early bird
description = starts before its directory
network_host = tcp:127.0.0.1:{net_port}
announce_retry = 0.1
""", str(tmp_path / "t.ini"))
    database = open_sqlite(tmp_path / "hosts.sqlite3")
    database.start()
    service = HostsService(config, reactor, database)
    service.startService()
    host = service.user_hosts["late"]
    await host.ready
    ident = Identity.generate("net")
    directory = Directory(reactor.seconds)
    handler = NetworkHost(directory, ident.online_id)
    port = None
    try:
        for _ in range(2400):  # the first try fails: nothing listens yet
            if host.announcements:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        assert host.last_announce_error is not None
        port = await listen(reactor, f"tcp:{net_port}:interface=127.0.0.1",
                            PeerFactory(handler, ident, Announce(src=ident.online_id), reactor=reactor))
        for _ in range(2400):  # a retry comes every 0.1 s; give a loaded machine two minutes
            if directory.lookup(GROUP, host.online_id) is not None:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        assert directory.lookup(GROUP, host.online_id).title == "Early bird"  # type: ignore[union-attr]
        assert host.last_announce_error is None
    finally:
        await service.stopService()
        if port is not None:
            await port.stopListening()
        await database.close()
