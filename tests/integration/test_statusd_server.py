"""statusd over real sockets: the dump, the draft's example, who is told, disconnects, errors, WebSocket, fuzz."""

from __future__ import annotations

import random
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from tests.integration.test_chatd_server import wait_for
from transport.chatd.client import AuthenticationFailed, CommandClient, open_link
from transport.chatd.wire import Auth, AuthResult, Decoder, Error, ErrorCode, KeepAlive
from transport.core.presence import AWAY, DND, FREE_FOR_CHAT, ONLINE, XA
from transport.statusd.client import StatusdClient
from transport.statusd.codec import SERVER_COMMANDS, Hello, Pres, SetPres, client_connection

pytestmark = pytest.mark.integration


async def settle(client: StatusdClient, value: int) -> list[Pres]:
    """Every PRES this client received up to now.

    A round trip: the client re-states its explicit presence *value*, which must be its user's presence
    already; that changes nothing, so only this client hears back (``PRES 0 value``), after all that the
    server sent it before.
    """
    client.set_presence(value)
    seen: list[Pres] = []
    while True:
        entry = await client.next(Pres)
        if entry == Pres(0, value):
            return seen
        seen.append(entry)


async def raw_client(stack: Any) -> CommandClient:
    client = CommandClient(reactor, client_connection())
    await open_link(reactor, stack.statusd_address, client)
    stack.clients.append(client)
    return client


@pytest_twisted.ensureDeferred
async def test_dump_ends_with_own_presence(make_chatd_stack: Any) -> None:
    stack = await make_chatd_stack()
    await stack.directory.add_contacts(1, [2, 3, 4])
    await stack.directory.create_room(50, "room")
    await stack.directory.add_members(50, [1, 5])
    await stack.statusd_client(2, AWAY)
    await stack.statusd_client(3, DND)
    await stack.statusd_client(5, FREE_FOR_CHAT, automatic=True)
    await stack.statusd_client(6, ONLINE)  # a stranger
    me = await stack.statusd_client(1, XA)
    assert me.dump == [Pres(2, AWAY), Pres(3, DND), Pres(5, FREE_FOR_CHAT), Pres(0, XA)]
    assert me.presence == {2: AWAY, 3: DND, 5: FREE_FOR_CHAT} and me.own == XA
    alone = await stack.statusd_client(7, ONLINE)
    assert alone.dump == [Pres(0, ONLINE)]


@pytest_twisted.ensureDeferred
async def test_draft_example(make_chatd_stack: Any) -> None:
    """A explicitly free-for-chat, B connects explicitly online → online; A's idle timer sends away → online."""
    stack = await make_chatd_stack()
    await stack.directory.add_contacts(9, [1])
    watcher = await stack.statusd_client(9, ONLINE)
    a = await stack.statusd_client(1, FREE_FOR_CHAT)
    assert a.dump[-1] == Pres(0, FREE_FOR_CHAT)
    assert await settle(watcher, ONLINE) == [Pres(1, FREE_FOR_CHAT)]
    b = await stack.statusd_client(1, ONLINE)
    assert b.dump[-1] == Pres(0, ONLINE)
    assert await settle(watcher, ONLINE) == [Pres(1, ONLINE)]
    assert await a.next(Pres) == Pres(0, ONLINE)  # A's user is now online
    a.set_presence(AWAY, automatic=True)
    assert await a.next(Pres) == Pres(0, ONLINE)  # max(away, online): A learns it is still online
    assert await settle(b, ONLINE) == []  # nothing: A's idle SETPRES changed nothing
    assert await settle(watcher, ONLINE) == []
    assert watcher.presence[1] == ONLINE
    # B goes: A's away is what is left
    await b.close()
    assert await a.next(Pres) == Pres(0, AWAY)
    assert await watcher.next(Pres) == Pres(1, AWAY)
    # A goes: offline
    await a.close()
    assert await watcher.next(Pres) == Pres(1, 0)
    assert 1 not in watcher.presence


@pytest_twisted.ensureDeferred
async def test_changes_reach_exactly_the_entitled(make_chatd_stack: Any) -> None:
    stack = await make_chatd_stack()
    await stack.directory.add_contacts(2, [1])  # 2 has 1 in its contact list
    await stack.directory.add_contacts(1, [4])  # 1 has 4: that does not let 4 see 1
    await stack.directory.create_room(50, "room")
    await stack.directory.add_members(50, [1, 3])  # 3 shares a room with 1
    watchers = {u: [await stack.statusd_client(u, ONLINE), await stack.statusd_client(u, ONLINE)]
                for u in (2, 3, 4, 5)}
    first = await stack.statusd_client(1, DND)
    second = await stack.statusd_client(1, DND)
    expected = {2: [Pres(1, DND)], 3: [Pres(1, DND)], 4: [], 5: []}
    for userid, clients in watchers.items():
        for client in clients:
            assert await settle(client, ONLINE) == expected[userid]
    first.set_presence(FREE_FOR_CHAT)
    assert await first.next(Pres) == Pres(0, FREE_FOR_CHAT)
    assert await second.next(Pres) == Pres(0, FREE_FOR_CHAT)  # the user's own clients: userid 0
    expected = {2: [Pres(1, FREE_FOR_CHAT)], 3: [Pres(1, FREE_FOR_CHAT)], 4: [], 5: []}
    for userid, clients in watchers.items():
        for client in clients:
            assert await settle(client, ONLINE) == expected[userid]
    # the first disconnect leaves the other client's DND; only the last one's yields 0
    await first.close()
    assert await second.next(Pres) == Pres(0, DND)
    await second.close()
    expected = {2: [Pres(1, DND), Pres(1, 0)], 3: [Pres(1, DND), Pres(1, 0)], 4: [], 5: []}
    for userid, clients in watchers.items():
        for client in clients:
            assert await settle(client, ONLINE) == expected[userid]


@pytest_twisted.ensureDeferred
async def test_directory_changes_update_connected_clients(make_chatd_stack: Any) -> None:
    stack = await make_chatd_stack()
    one = await stack.statusd_client(1, ONLINE)
    await stack.statusd_client(2, AWAY)
    await stack.directory.add_contacts(1, [2])
    assert await one.next(Pres) == Pres(2, AWAY)
    await stack.directory.remove_contacts(1, [2])
    assert await one.next(Pres) == Pres(2, 0)


@pytest_twisted.ensureDeferred
async def test_login_errors(make_chatd_stack: Any) -> None:
    stack = await make_chatd_stack()
    with pytest.raises(AuthenticationFailed):
        await StatusdClient.connect(reactor, stack.statusd_address, 1, stack.token(2), ONLINE)
    raw = await raw_client(stack)
    raw.send(SetPres(4))
    assert (await raw.next(Error)).code == ErrorCode.AUTH_REQUIRED
    await raw.closed
    raw = await raw_client(stack)
    raw.send_bytes(Auth(1, stack.token(1)).encode() + SetPres(4).encode())
    assert await raw.next(AuthResult) == AuthResult(0)
    assert (await raw.next(Error)).code == ErrorCode.STATE
    await raw.closed
    raw = await raw_client(stack)
    raw.send_bytes(Auth(1, stack.token(1)).encode() + Hello(1, 4).encode() + b"\x09")
    assert (await raw.next(Error)).code == ErrorCode.PROTOCOL
    await raw.closed


@pytest_twisted.ensureDeferred
async def test_keepalive_and_idle_timeout(make_chatd_stack: Any) -> None:
    clock = Clock()
    stack = await make_chatd_stack(clock=clock)
    client = await stack.statusd_client(1, ONLINE)
    client.answer_keepalive = False
    clock.advance(30)
    assert await client.next(KeepAlive) == KeepAlive()
    clock.advance(59.9)
    assert not client.is_closed and len(stack.statusd.sessions) == 1
    clock.advance(0.2)
    await client.closed
    await wait_for(lambda: not stack.statusd.sessions)


@pytest_twisted.ensureDeferred
async def test_fuzz_random_bytes(make_chatd_stack: Any) -> None:
    stack = await make_chatd_stack(max_message_size=1024)
    await stack.directory.add_contacts(2, [3])
    bystander = await stack.statusd_client(2, ONLINE)
    failures: list[dict[str, Any]] = []

    def observer(event: dict[str, Any]) -> None:
        if "log_failure" in event:
            failures.append(event)

    globalLogPublisher.addObserver(observer)
    rng = random.Random(61)
    try:
        for round_ in range(150):
            garbage = rng.randbytes(rng.randrange(1, 300))
            raw = await raw_client(stack)
            if round_ % 2:
                raw.send_bytes(Auth(3, stack.token(3)).encode() + Hello(1, 4).encode() + garbage)
            else:
                raw.send_bytes(garbage)
                if garbage[0] != 1:
                    expected = ErrorCode.AUTH_REQUIRED if garbage[0] in (0, 2, 4) else ErrorCode.PROTOCOL
                    assert (await raw.next(Error)).code == expected
                    await raw.closed
            if not raw.is_closed:
                await raw.close()
    finally:
        globalLogPublisher.removeObserver(observer)
    assert failures == []
    await wait_for(lambda: 3 not in stack.statusd.hub.users)
    seen = await settle(bystander, ONLINE)
    assert seen and seen[-1] == Pres(3, 0)  # the fuzzing user 3 came and went; 2 saw only that
    assert all(p.userid == 3 for p in seen)
    fresh = await stack.statusd_client(3, XA)
    assert fresh.dump == [Pres(0, XA)]
    assert await bystander.next(Pres) == Pres(3, XA)


def _ws_statusd(url: str, message: bytes, commands: int) -> list[Any]:
    from websockets.sync.client import connect

    decoder = Decoder(SERVER_COMMANDS)
    out: list[Any] = []
    with connect(url, open_timeout=30) as ws:
        ws.send(message)
        while len(out) < commands:
            data = ws.recv(timeout=30)
            assert isinstance(data, bytes)
            out += decoder.feed(data)
    return out


@pytest_twisted.ensureDeferred
async def test_websocket_endpoint_with_a_real_client(make_chatd_stack: Any) -> None:
    stack = await make_chatd_stack()
    await stack.directory.add_contacts(1, [2])
    await stack.statusd_client(2, AWAY)
    message = Auth(1, stack.token(1)).encode() + Hello(1, 0x80 | ONLINE).encode()
    commands = await threads.deferToThread(_ws_statusd, stack.ws_url("statusd"), message, 3)
    assert commands == [AuthResult(0), Pres(2, AWAY), Pres(0, ONLINE)]
