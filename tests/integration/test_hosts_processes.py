"""Hosts across separate processes: a network host, a group host, a chat-room + random-connect host.

Each host runs as ``twistd -n transport -c <generated ini>`` (:class:`MainInstance`),
with its own state directory and SQLite database; the admin uses the
``transport-hosts`` CLI on the group host's configuration while it runs. The
clients are in this process and talk TLS over loopback.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography import x509
from twisted.internet import defer, reactor, task
from twisted.internet.utils import getProcessOutputAndValue

from tests.peers.backends import MainInstance
from transport.hosts.client import HostClient
from transport.hosts.identity import Identity, online_id_of
from transport.hosts.packets import (
    AdminAvail,
    ChatReply,
    ECommErr,
    EHostType,
    EJoinState,
    EPluginAccess,
    ERandAction,
    HostedInfo,
    HostInviteAnnounceReq,
    HostUserListReply,
    OnlineId,
    Packet,
    RandConnectReply,
    encode,
)
from transport.hosts.protocol import url_to_endpoint

pytestmark = pytest.mark.integration

GROUP, CHAT, RANDOM = EHostType.GROUP, EHostType.CHAT_ROOM, EHostType.RANDOM_CONNECT
THUMB = OnlineId(b"\x07" * 16)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_file(path: Path, instance: MainInstance, timeout: float = 60.0) -> str:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if instance.process is not None and instance.process.poll() is not None:
            raise RuntimeError(f"twistd exited:\n{instance.log()[-4000:]}")
        time.sleep(0.05)  # start-up polling in a fixture, outside the reactor
    raise TimeoutError(f"{path} did not appear:\n{instance.log()[-4000:]}")


def _cert_id(path: Path) -> OnlineId:
    return online_id_of(x509.load_pem_x509_certificate(path.read_bytes()))


class HostProcess:
    """One twistd process running hosts, with its ini and where its things are."""

    def __init__(self, base: Path, name: str, hosts_ini: str, portfile: str) -> None:
        directory = base / name
        directory.mkdir()
        self.instance = MainInstance(directory, hosts_ini)
        self.dir = directory
        self.ini = self.instance.config_path
        self.portfile = directory / portfile
        self.state = self.instance.state

    def start(self) -> None:
        for stale in (self.portfile, self.instance.portfile):
            if stale.exists():
                stale.unlink()
        self.instance.start(timeout=180)
        _wait_file(self.portfile, self.instance, timeout=180)

    @property
    def port(self) -> int:
        return int(self.portfile.read_text())

    def cli(self, *args: str) -> defer.Deferred[tuple[bytes, bytes, int]]:
        return getProcessOutputAndValue(sys.executable, ["-m", "transport.hosts.cli", "-c", str(self.ini), *args],
                                        env=dict(os.environ), path=str(self.dir))


class Deployment:
    def __init__(self, network: HostProcess, group: HostProcess, rooms: HostProcess, network_id: OnlineId) -> None:
        self.network = network
        self.group = group
        self.rooms = rooms
        self.network_id = network_id
        self.clients: list[HostClient] = []

    @property
    def network_endpoint(self) -> str:
        return f"tcp:127.0.0.1:{self.network.port}"

    def host_id(self, process: HostProcess, name: str) -> OnlineId:
        return _cert_id(process.state / "hosts" / "host" / name / "cert.pem")

    async def client(self, name: str, info: HostedInfo | None = None,
                     identity: Identity | None = None) -> HostClient:
        identity = identity or Identity.generate(name)
        if info is None:
            c = await HostClient.connect(reactor, self.network_endpoint, identity, self.network_id, name=name,
                                         timeout=120)
        else:
            c = await HostClient.connect(reactor, url_to_endpoint(info.url), identity, info.online_id, name=name,
                                         timeout=120)
        self.clients.append(c)
        return c

    async def find(self, host_type: int, online_id: OnlineId, timeout: float = 120.0) -> HostedInfo:
        """Search until the host with *online_id* is listed (it announces at its start)."""
        searcher = await self.client("finder")
        try:
            for _ in range(int(timeout / 0.2)):
                found = await searcher.search(host_type, specific_id=online_id)
                if found:
                    return found[0]
                await task.deferLater(reactor, 0.2, lambda: None)
        finally:
            await searcher.close()
        raise TimeoutError(f"host {online_id} was never announced")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    base = tmp_path_factory.mktemp("hosts")
    network = HostProcess(base, "network", """
[hosts]
enabled = true
network_host = true
listen = tcp:0:interface=127.0.0.1
portfile = network.port
""", "network.port")
    network.start()
    network_id = _cert_id(network.state / "hosts" / "network" / "cert.pem")
    common = f"network_host = tcp:127.0.0.1:{network.port}\nnetwork_host_id = {network_id.hex()}\n"
    group = HostProcess(base, "group", f"""
[hosts]
enabled = true
[host:g]
type = group
title = Gardening group
description = friends who garden
permission = friend
listen = tcp:{_free_port()}:interface=127.0.0.1
portfile = g.port
pending_poll_interval = 0.2
{common}""", "g.port")
    rooms = HostProcess(base, "rooms", f"""
[hosts]
enabled = true
[host:c]
type = chatroom
title = Chess room
description = open chat room
portfile = c.port
{common}
[host:r]
type = randomconnect
title = Random meetings
description = meet someone new
portfile = r.port
{common}""", "c.port")
    try:
        group.start()
        rooms.start()
        _wait_file(rooms.dir / "r.port", rooms.instance, timeout=180)
        yield Deployment(network, group, rooms, network_id)
    finally:
        for p in (group, rooms, network):
            p.instance.cleanup()


@pytest_twisted.async_yield_fixture
async def dep(deployment: Deployment) -> Any:
    yield deployment
    for c in deployment.clients:
        c.close()
    deployment.clients.clear()


def _is(cls: type[Packet], **attrs: Any) -> Callable[[Packet], bool]:
    return lambda p: isinstance(p, cls) and all(getattr(p, k) == v for k, v in attrs.items())


@pytest_twisted.ensureDeferred
async def test_hosts_announce_and_are_found_by_type_once(dep: Deployment) -> None:
    g_id, c_id, r_id = dep.host_id(dep.group, "g"), dep.host_id(dep.rooms, "c"), dep.host_id(dep.rooms, "r")
    await dep.find(GROUP, g_id)
    await dep.find(CHAT, c_id)
    await dep.find(RANDOM, r_id)
    searcher = await dep.client("searcher")
    groups = await searcher.search(GROUP)
    rooms = await searcher.search(CHAT)
    assert [h.online_id for h in groups].count(g_id) == 1
    assert [h.online_id for h in rooms].count(c_id) == 1
    assert c_id not in [h.online_id for h in groups] and g_id not in [h.online_id for h in rooms]
    (g,) = [h for h in groups if h.online_id == g_id]
    assert (g.title, g.description) == ("Gardening group", "friends who garden")
    assert g.url == f"ptop://127.0.0.1:{dep.group.port}"
    # targeted search
    assert [h.online_id for h in await searcher.search(CHAT, specific_id=c_id)] == [c_id]
    assert await searcher.search(GROUP, specific_id=c_id) == []
    reply = await searcher.search_page(GROUP, specific_id=OnlineId(b"\x42" * 16))
    assert reply.comm_err == ECommErr.SEARCH_NO_MATCH
    assert [h.title for h in await searcher.search(CHAT, text="chess")] == ["Chess room"]


@pytest_twisted.ensureDeferred
async def test_thousand_hosts_search_chain_returns_each_once(dep: Deployment) -> None:
    identities = [Identity.generate(f"bulk{i}") for i in range(1000)]
    semaphore = defer.DeferredSemaphore(16)

    async def announce(i: int, identity: Identity) -> None:
        c = await HostClient.connect(reactor, dep.network_endpoint, identity, dep.network_id, timeout=120)
        try:
            reply = await c.announce(RANDOM, f"ptop://127.0.0.1:{10000 + i}", f"Bulk host {i}", "bulk", THUMB)
            assert reply.comm_err == ECommErr.NONE
        finally:
            await c.close()

    await defer.gatherResults([semaphore.run(lambda i=i, ident=ident: defer.ensureDeferred(announce(i, ident)))
                               for i, ident in enumerate(identities)], consumeErrors=True)
    searcher = await dep.client("searcher")
    pages = 0
    session = OnlineId(os.urandom(16))
    reply = await searcher.search_page(RANDOM, session_id=session)
    found: list[OnlineId] = []
    while True:
        pages += 1
        assert reply.comm_err == ECommErr.NONE
        found += [h.online_id for h in reply.entries]
        if not reply.more_exist:
            break
        reply = await searcher.more_page(RANDOM, session, reply.next_id)
    bulk = {i.online_id for i in identities}
    assert len(found) == len(set(found))  # nothing twice
    assert bulk <= set(found)  # everything once
    assert set(found) - bulk == {dep.host_id(dep.rooms, "r")}
    assert pages > 1


@pytest_twisted.ensureDeferred
async def test_forged_source_id_is_refused(dep: Deployment) -> None:
    forger = await dep.client("forger")
    victim = dep.host_id(dep.group, "g")
    forged = HostInviteAnnounceReq(src=victim, dst=dep.network_id, host_type=GROUP, last_modified_ms=1,
                                   url="ptop://127.0.0.1:1", title="Hijacked", description="x", thumb_id=THUMB)
    assert forger.conn is not None and forger.conn.transport is not None
    forger.conn.transport.write(encode(forged))
    await forger.lost
    searcher = await dep.client("searcher")
    (entry,) = await searcher.search(GROUP, specific_id=victim)
    assert entry.title == "Gardening group"


async def _cli(process: HostProcess, *args: str) -> str:
    out, err, code = await process.cli(*args)
    assert code == 0, f"transport-hosts {args} exited {code}: {err.decode()}"
    return out.decode()


@pytest_twisted.ensureDeferred
async def test_membership_chat_leave_unjoin_and_restart(dep: Deployment) -> None:
    g = await dep.find(GROUP, dep.host_id(dep.group, "g"))
    alice_id, bob_id, carol_id = Identity.generate("alice"), Identity.generate("bob"), Identity.generate("carol")
    for ident in (alice_id, carol_id):
        await _cli(dep.group, "friend", "g", ident.online_id.hex(), "friend")

    # a friend is granted at once, with the member list
    alice = await dep.client("alice", g, alice_id)
    joined = await alice.join(GROUP)
    assert (joined.reply.access, joined.reply.join_state) == (EPluginAccess.OK, EJoinState.JOIN_IS_GRANTED)
    assert [m.online_id for m in joined.members] == [alice_id.online_id]

    # an anonymous user waits for the admin, who grants with the CLI
    bob = await dep.client("bob", g, bob_id)
    pending = await bob.join(GROUP)
    assert (pending.reply.access, pending.reply.join_state) == (EPluginAccess.LOCKED, EJoinState.JOIN_REQUESTED)
    assert bob_id.online_id.hex() in await _cli(dep.group, "pending", "g")
    assert "granted" in await _cli(dep.group, "grant", "g", bob_id.online_id.hex())
    decision = await bob.wait_join_decision(GROUP, timeout=120)
    assert decision.granted
    assert {m.online_id for m in decision.members} == {alice_id.online_id, bob_id.online_id}
    assert [u.name for u in (await alice.wait_for(_is(HostUserListReply, session_id=OnlineId()))).users] == ["bob"]

    carol = await dep.client("carol", g, carol_id)
    assert (await carol.join(GROUP)).granted
    await alice.wait_for(_is(HostUserListReply, session_id=OnlineId()))
    await bob.wait_for(_is(HostUserListReply, session_id=OnlineId()))

    # chat reaches every member but the sender
    alice.chat("hello garden", GROUP)
    for other in (bob, carol):
        got = await other.wait_for(_is(ChatReply))
        assert (got.src, got.text) == (alice_id.online_id, "hello garden")
    bob.chat("marker", GROUP)
    assert (await alice.wait_for(_is(ChatReply))).text == "marker"
    await carol.wait_for(_is(ChatReply, text="marker"))

    # leave keeps the membership: bob is let straight back in
    assert (await bob.leave(GROUP)).join_state == EJoinState.JOIN_LEAVE_HOST
    gone = await alice.wait_for(_is(HostUserListReply, session_id=OnlineId()))
    assert [(u.online_id, u.online) for u in gone.users] == [(bob_id.online_id, False)]
    assert "JOIN_IS_GRANTED" in [line for line in (await _cli(dep.group, "members", "g")).splitlines()
                                 if bob_id.online_id.hex() in line][0]
    assert (await bob.join(GROUP)).granted
    await alice.wait_for(_is(HostUserListReply, session_id=OnlineId()))

    # a member disconnecting is announced to the others
    await carol.close()
    gone = await alice.wait_for(_is(HostUserListReply, session_id=OnlineId()))
    assert [(u.online_id, u.online) for u in gone.users] == [(carol_id.online_id, False)]

    # the membership database survives a restart of the host process
    await alice.close()
    await bob.close()
    g_id = dep.host_id(dep.group, "g")
    dep.group.instance.stop()
    dep.group.start()
    assert dep.host_id(dep.group, "g") == g_id  # same identity
    g = await dep.find(GROUP, g_id)
    bob = await dep.client("bob", g, bob_id)
    back = await bob.join(GROUP)
    assert back.granted  # anonymous, but granted before the restart
    alice = await dep.client("alice", g, alice_id)
    assert (await alice.join(GROUP)).granted

    # unjoin removes the record: bob has to ask again
    await bob.unjoin(GROUP)
    assert bob_id.online_id.hex() not in await _cli(dep.group, "members", "g")
    again = await bob.join(GROUP)
    assert again.reply.join_state == EJoinState.JOIN_REQUESTED
    out, _, code = await dep.group.cli("deny", "g", bob_id.online_id.hex())
    assert code == 0
    assert (await bob.wait_join_decision(GROUP, timeout=120)).reply.join_state == EJoinState.JOIN_DENIED


@pytest_twisted.ensureDeferred
async def test_admin_availability_is_broadcast(dep: Deployment) -> None:
    g = await dep.find(GROUP, dep.host_id(dep.group, "g"))
    member_id, admin_id = Identity.generate("member"), Identity.generate("admin")
    await _cli(dep.group, "friend", "g", member_id.online_id.hex(), "friend")
    await _cli(dep.group, "friend", "g", admin_id.online_id.hex(), "admin")
    member = await dep.client("member", g, member_id)
    assert (await member.join(GROUP)).granted
    assert (await member.wait_for(_is(AdminAvail))).available is False
    admin = await dep.client("admin", g, admin_id)
    assert (await admin.join(GROUP)).granted
    assert (await member.wait_for(_is(AdminAvail))).available is True
    await admin.close()
    assert (await member.wait_for(_is(AdminAvail))).available is False


@pytest_twisted.ensureDeferred
async def test_random_connect_relayed_to_every_client(dep: Deployment) -> None:
    r = await dep.find(RANDOM, dep.host_id(dep.rooms, "r"))
    users = [await dep.client(f"u{i}", r) for i in range(3)]
    users[0].rand_connect(ERandAction.OFFER_REQUEST, users[1].online_id)
    for u in users:
        got = await u.wait_for(_is(RandConnectReply))
        assert (got.action, got.user_id, got.to_user_id) == (ERandAction.OFFER_REQUEST, users[0].online_id,
                                                             users[1].online_id)
    # the chat room in the same process is joined without the admin (anonymous permission)
    c = await dep.find(CHAT, dep.host_id(dep.rooms, "c"))
    guest = await dep.client("guest", c)
    assert (await guest.join(CHAT)).granted


async def _client_cli(dep: Deployment, identity_dir: Path, *args: str,
                      stdin: bytes | None = None) -> tuple[str, int]:
    argv = ["-m", "transport.hosts.cli", "--identity", str(identity_dir), "--name", identity_dir.name, *args]
    out, err, code = await getProcessOutputAndValue(sys.executable, argv, env=dict(os.environ),
                                                    path=str(dep.network.dir))
    return out.decode() + err.decode(), code


@pytest_twisted.ensureDeferred
async def test_cli_search_join_chat_leave(dep: Deployment, tmp_path: Path) -> None:
    c_id = dep.host_id(dep.rooms, "c")
    c = await dep.find(CHAT, c_id)
    network = ["--network", dep.network_endpoint, "--network-id", dep.network_id.hex()]
    out, code = await _client_cli(dep, tmp_path / "dora", "search", "chatroom", *network)
    assert code == 0, out
    assert f"{c_id.hex()}  {c.url}" in out and "Chess room" in out
    out, code = await _client_cli(dep, tmp_path / "dora", "search", "chatroom", "--text", "nothing-like-it",
                                  *network)
    assert code == 1 and "0 chatroom host(s)" in out

    # a member listening in this process sees the CLI's chat line
    listener = await dep.client("listener", c)
    assert (await listener.join(CHAT)).granted
    out, code = await _client_cli(dep, tmp_path / "dora", "chat", "--host-id", c_id.hex(), c.url,
                                  "chatroom", "hello", "from", "the", "cli")
    assert code == 0, out
    got = await listener.wait_for(_is(ChatReply))
    assert got.text == "hello from the cli"
    out, code = await _client_cli(dep, tmp_path / "dora", "join", c.url, "chatroom")
    assert code == 0 and "access OK, JOIN_IS_GRANTED" in out and "listener" in out, out
    out, code = await _client_cli(dep, tmp_path / "dora", "info", c.url, "chatroom")
    assert "title: Chess room" in out and code == 0
    out, code = await _client_cli(dep, tmp_path / "dora", "users", c.url, "chatroom")
    assert "dora" in out and "listener" in out and code == 0
    out, code = await _client_cli(dep, tmp_path / "dora", "leave", c.url, "chatroom")
    assert "left (JOIN_LEAVE_HOST)" in out and code == 0
    out, code = await _client_cli(dep, tmp_path / "dora", "unjoin", c.url, "chatroom")
    assert "membership removed" in out and code == 0
    # a wrong pinned id is refused
    out, code = await _client_cli(dep, tmp_path / "dora", "info", c.url, "chatroom", "--host-id", "11" * 16)
    assert code == 2


@pytest_twisted.ensureDeferred
async def test_cli_announce_and_ids(dep: Deployment) -> None:
    out = await _cli(dep.group, "id")
    assert f"host:g  {dep.host_id(dep.group, 'g').hex()}" in out
    out = await _cli(dep.group, "announce", "g")
    assert "g: announced" in out


@pytest_twisted.ensureDeferred
async def test_reload_reannounces_changed_settings(dep: Deployment) -> None:
    r_id = dep.host_id(dep.rooms, "r")
    before = await dep.find(RANDOM, r_id)
    assert before.title == "Random meetings"
    ini = dep.rooms.ini
    ini.write_text(ini.read_text().replace("title = Random meetings", "title = Random encounters"))
    assert dep.rooms.instance.process is not None
    dep.rooms.instance.process.send_signal(signal.SIGHUP)
    searcher = await dep.client("searcher")
    for _ in range(1200):  # two minutes for a loaded machine
        (entry,) = await searcher.search(RANDOM, specific_id=r_id)
        if entry.title == "Random encounters":
            break
        await task.deferLater(reactor, 0.1, lambda: None)
    assert entry.title == "Random encounters"
    assert entry.last_modified_ms >= before.last_modified_ms
