"""chatd over real sockets (TCP on loopback, and WebSocket): ids, RTMSG routing, in-call flag, keepalive, errors."""

from __future__ import annotations

import random
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from transport.auth.tokens import issue_token
from transport.chatd.client import AuthenticationFailed, ChatdClient, CommandClient, open_link
from transport.chatd.codec import (
    JOIN_NO_SUCH_ROOM,
    JOIN_NOT_A_MEMBER,
    JOIN_OK,
    SERVER_COMMANDS,
    AuthResult,
    ClientId,
    Hello,
    InCallFlag,
    Join,
    JoinResult,
    Left,
    RtMsg,
    RtMsgDelivery,
    client_connection,
)
from transport.chatd.wire import Auth, Decoder, Error, ErrorCode, KeepAlive

pytestmark = pytest.mark.integration

ROOM = 100
NOWHERE = 999_999  # a room nobody is in: LEAVE of it is a harmless round trip


async def barrier(*clients: ChatdClient) -> None:
    """When this returns, everything the server sent each client before now is in its queues."""
    for client in clients:
        await client.leave(NOWHERE)


async def raw_client(stack: Any, address: str | None = None) -> CommandClient:
    client = CommandClient(reactor, client_connection())
    await open_link(reactor, address or stack.chatd_address, client)
    stack.clients.append(client)
    return client


async def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    """Poll *predicate* on the real reactor (for state that has no message to await)."""
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError("condition not reached")
        await task.deferLater(reactor, 0.01, lambda: None)


async def room_with(stack: Any, members: list[int], is_open: bool = False, chatid: int = ROOM) -> None:
    await stack.directory.create_room(chatid, "test", is_open)
    if members:
        await stack.directory.add_members(chatid, members)


@pytest_twisted.ensureDeferred
async def test_client_ids_are_unique_and_never_zero(make_chatd_stack: Any) -> None:
    stack = await make_chatd_stack()
    clients = [await stack.chatd_client(1 + n % 3) for n in range(20)]
    clients += [await stack.chatd_client(7, address=stack.ws_url("chatd")) for _ in range(3)]
    ids = [c.client_id for c in clients]
    assert 0 not in ids
    assert len(set(ids)) == len(ids)
    for client in clients[::2]:
        await client.close()
    await wait_for(lambda: len(stack.chatd.hub.clients) == len(clients) - len(clients[::2]))
    more = [await stack.chatd_client(4) for _ in range(5)]
    live = [c.client_id for c in clients[1::2] + more]
    assert 0 not in live and len(set(live)) == len(live)


@pytest_twisted.ensureDeferred
async def test_rtmsg_addressing_modes(make_chatd_stack: Any) -> None:
    stack = await make_chatd_stack()
    users = [11, 22, 33]
    await room_with(stack, users)
    clients: dict[tuple[int, int], ChatdClient] = {}
    for userid in users:
        for n in range(3):
            client = await stack.chatd_client(userid)
            assert await client.join(ROOM) == JOIN_OK
            clients[(userid, n)] = client
    sender = clients[(11, 0)]
    everyone = set(clients)

    async def delivered(**address: int) -> set[tuple[int, int]]:
        payload = random.randbytes(50)
        msgtype = random.randrange(256)
        sender.send_rtmsg(ROOM, msgtype=msgtype, data=payload, **address)
        await barrier(sender)
        await barrier(*clients.values())
        got = set()
        for key, client in clients.items():
            items = client.drain(RtMsgDelivery)
            assert len(items) <= 1
            if items:
                assert items[0] == RtMsgDelivery(ROOM, 11, sender.client_id, msgtype, payload)
                got.add(key)
        return got

    assert await delivered() == everyone  # (0, 0): every client of every user, the sender's too
    assert await delivered(userid=22) == {(22, 0), (22, 1), (22, 2)}
    assert await delivered(userid=11) == {(11, 0), (11, 1), (11, 2)}
    target = clients[(33, 1)]
    assert await delivered(userid=33, clientid=target.client_id) == {(33, 1)}
    assert await delivered(userid=11, clientid=clients[(11, 2)].client_id) == {(11, 2)}
    assert await delivered(userid=11, clientid=sender.client_id) == set()  # itself by client: excluded
    assert not sender.pending(Error)


@pytest_twisted.ensureDeferred
async def test_msgtype_and_payload_are_forwarded_untouched(make_chatd_stack: Any) -> None:
    stack = await make_chatd_stack()
    await room_with(stack, [1, 2])
    a, b = await stack.chatd_client(1), await stack.chatd_client(2)
    assert await a.join(ROOM) == JOIN_OK and await b.join(ROOM) == JOIN_OK
    sent = [(t, bytes([t]) * (t % 7) + b"\x00\xff") for t in range(256)]
    for msgtype, data in sent:
        a.send_rtmsg(ROOM, 2, 0, msgtype, data)
    got = [await b.next(RtMsgDelivery) for _ in sent]
    assert [(m.msgtype, m.data) for m in got] == sent
    assert {(m.sender_userid, m.sender_clientid) for m in got} == {(1, a.client_id)}


@pytest_twisted.ensureDeferred
async def test_message_to_someone_not_in_the_room_is_refused(make_chatd_stack: Any) -> None:
    stack = await make_chatd_stack()
    await room_with(stack, [1, 2, 3])
    await room_with(stack, [3], chatid=ROOM + 1)
    a, b = await stack.chatd_client(1), await stack.chatd_client(2)
    outsider = await stack.chatd_client(3)  # a member, but joined to another room only
    assert await a.join(ROOM) == JOIN_OK and await b.join(ROOM) == JOIN_OK
    assert await outsider.join(ROOM + 1) == JOIN_OK
    a.send_rtmsg(ROOM, 3, 0, 1, b"secret")
    a.send_rtmsg(ROOM, 4242, 0, 1, b"secret")
    a.send_rtmsg(ROOM, 2, outsider.client_id, 1, b"secret")
    a.send_rtmsg(ROOM + 1, 0, 0, 1, b"secret")  # the sender is not in that room
    errors = [await a.next(Error) for _ in range(4)]
    assert [e.code for e in errors] == [ErrorCode.NOT_IN_ROOM] * 3 + [ErrorCode.NOT_JOINED]
    a.send_rtmsg(ROOM, 0, 0, 2, b"after")  # the connection stays usable
    assert (await b.next(RtMsgDelivery)).data == b"after"
    await barrier(a, b, outsider)
    assert outsider.pending(RtMsgDelivery) == 0
    assert b.pending(RtMsgDelivery) == 0


@pytest_twisted.ensureDeferred
async def test_join_results(make_chatd_stack: Any) -> None:
    stack = await make_chatd_stack()
    await room_with(stack, [1])
    await room_with(stack, [], is_open=True, chatid=ROOM + 1)
    stranger = await stack.chatd_client(5)
    assert await stranger.join(ROOM) == JOIN_NOT_A_MEMBER
    assert await stranger.join(ROOM + 1) == JOIN_OK
    assert await stranger.next(InCallFlag) == InCallFlag(ROOM + 1, 0)
    assert await stranger.join(ROOM + 2) == JOIN_NO_SUCH_ROOM


@pytest_twisted.ensureDeferred
async def test_in_call_flag(make_chatd_stack: Any) -> None:
    clock = Clock()
    stack = await make_chatd_stack(clock=clock, call_timeout=10.0)
    await room_with(stack, [1, 2, 3])
    a1, a2, b = await stack.chatd_client(1), await stack.chatd_client(1), await stack.chatd_client(2)
    everyone = [a1, a2, b]
    for client in everyone:
        assert await client.join(ROOM) == JOIN_OK
        assert await client.next(InCallFlag) == InCallFlag(ROOM, 0)

    async def flags_seen() -> list[list[InCallFlag]]:
        await barrier(*everyone)
        return [c.drain(InCallFlag) for c in everyone]

    # one user (two devices) in a call: no call
    a1.heartbeat(ROOM)
    a2.heartbeat(ROOM)
    await barrier(a1, a2)
    assert await flags_seen() == [[], [], []]
    # a second user: the flag goes to 1, broadcast once
    b.heartbeat(ROOM)
    await barrier(b)
    for _ in range(3):  # heartbeats keep it, without new broadcasts
        clock.advance(4)
        a1.heartbeat(ROOM)
        b.heartbeat(ROOM)
        await barrier(a1, b)
    assert await flags_seen() == [[InCallFlag(ROOM, 1)]] * 3
    # a late joiner gets the current flag with its JOIN
    late = await stack.chatd_client(3)
    assert await late.join(ROOM) == JOIN_OK
    assert await late.next(InCallFlag) == InCallFlag(ROOM, 1)
    everyone.append(late)
    # b misses its heartbeats: after call_timeout the flag drops back, once
    for _ in range(3):
        clock.advance(4)
        a1.heartbeat(ROOM)
        await barrier(a1)
    assert await flags_seen() == [[InCallFlag(ROOM, 0)]] * 4
    # back in the call, then b disconnects: 0 again
    b.heartbeat(ROOM)
    await barrier(b)
    assert await flags_seen() == [[InCallFlag(ROOM, 1)]] * 4
    await b.close()
    everyone.remove(b)
    assert [await c.next(InCallFlag) for c in everyone] == [InCallFlag(ROOM, 0)] * 3
    # status 0 ends a call explicitly
    late.heartbeat(ROOM)
    await barrier(late)
    assert await flags_seen() == [[InCallFlag(ROOM, 1)]] * 3
    late.heartbeat(ROOM, in_call=False)
    await barrier(late)
    assert await flags_seen() == [[InCallFlag(ROOM, 0)]] * 3


@pytest_twisted.ensureDeferred
async def test_keepalive_and_idle_timeout(make_chatd_stack: Any) -> None:
    clock = Clock()
    stack = await make_chatd_stack(clock=clock)
    silent = await ChatdClient.connect(reactor, stack.chatd_address, 1, stack.token(1))
    silent.answer_keepalive = False
    stack.clients.append(silent)
    talker = await stack.chatd_client(2)
    sessions = {s.userid: s for s in stack.chatd.sessions}
    clock.advance(30)
    assert await silent.next(KeepAlive) == KeepAlive()
    assert await talker.next(KeepAlive) == KeepAlive()
    # the talker's answer moves its idle deadline
    await wait_for(lambda: sessions[2]._idle.getTime() == 30 + 90)
    clock.advance(30)
    assert await silent.next(KeepAlive) == KeepAlive()
    await talker.next(KeepAlive)
    await wait_for(lambda: sessions[2]._idle.getTime() == 60 + 90)
    clock.advance(29.9)  # 89.9 s of silence
    assert sessions[1] in stack.chatd.sessions and not silent.is_closed
    clock.advance(0.2)
    await silent.closed
    assert sessions[1] not in stack.chatd.sessions
    assert sessions[2] in stack.chatd.sessions and not talker.is_closed


@pytest_twisted.ensureDeferred
async def test_bad_tokens_are_refused(make_chatd_stack: Any) -> None:
    stack = await make_chatd_stack()
    expired = issue_token(stack.secret, 1, expiry=int(reactor.seconds()) - 1)
    for userid, token in ((1, stack.token(2)), (1, expired), (1, b"short"), (0, stack.token(1))):
        with pytest.raises(AuthenticationFailed):
            await ChatdClient.connect(reactor, stack.chatd_address, userid, token)
    raw = await raw_client(stack)
    raw.send(Auth(1, stack.token(2)))
    raw.send(Hello(1))
    raw.send(Join(ROOM))
    assert await raw.next(AuthResult) == AuthResult(1)
    await raw.closed
    assert raw.pending(ClientId) == 0 and raw.pending(JoinResult) == 0


@pytest_twisted.ensureDeferred
async def test_first_command_must_be_auth(make_chatd_stack: Any) -> None:
    stack = await make_chatd_stack()
    raw = await raw_client(stack)
    raw.send(Hello(1))
    error = await raw.next(Error)
    assert error.code == ErrorCode.AUTH_REQUIRED
    await raw.closed


@pytest_twisted.ensureDeferred
async def test_unknown_opcode_is_an_error_then_disconnect(make_chatd_stack: Any) -> None:
    stack = await make_chatd_stack()
    await room_with(stack, [1, 2])
    bystander = await stack.chatd_client(2)
    assert await bystander.join(ROOM) == JOIN_OK
    raw = await raw_client(stack)
    raw.send_bytes(Auth(1, stack.token(1)).encode() + Hello(1).encode() + b"\x77" + Join(ROOM).encode())
    assert (await raw.next(Error)).code == ErrorCode.PROTOCOL
    await raw.closed
    assert raw.pending(JoinResult) == 0
    await barrier(bystander)
    assert bystander.pending(Error) == 0 and not bystander.is_closed


@pytest_twisted.ensureDeferred
async def test_oversized_message_is_skipped_and_the_connection_stays(make_chatd_stack: Any) -> None:
    stack = await make_chatd_stack(max_message_size=1024)
    await room_with(stack, [1, 2])
    a, b = await stack.chatd_client(1), await stack.chatd_client(2)
    assert await a.join(ROOM) == JOIN_OK and await b.join(ROOM) == JOIN_OK
    a.send_rtmsg(ROOM, 2, 0, 1, b"x" * 100_000)
    a.send_rtmsg(ROOM, 2, 0, 1, b"y" * 1024)
    assert (await a.next(Error)).code == ErrorCode.TOO_LARGE
    assert (await b.next(RtMsgDelivery)).data == b"y" * 1024
    await barrier(a, b)
    assert b.pending(RtMsgDelivery) == 0 and not a.is_closed


@pytest_twisted.ensureDeferred
async def test_losing_membership_at_runtime_makes_clients_leave(make_chatd_stack: Any) -> None:
    stack = await make_chatd_stack()
    await room_with(stack, [1, 2])
    a, b = await stack.chatd_client(1), await stack.chatd_client(2)
    assert await a.join(ROOM) == JOIN_OK and await b.join(ROOM) == JOIN_OK
    await stack.directory.remove_members(ROOM, [2])
    assert await b.next(Left) == Left(ROOM)
    a.send_rtmsg(ROOM, 2, 0, 0, b"")
    assert (await a.next(Error)).code == ErrorCode.NOT_IN_ROOM


def _failures() -> tuple[list[dict[str, Any]], Any]:
    seen: list[dict[str, Any]] = []

    def observer(event: dict[str, Any]) -> None:
        if "log_failure" in event:
            seen.append(event)

    globalLogPublisher.addObserver(observer)
    return seen, observer


@pytest_twisted.ensureDeferred
async def test_fuzz_random_bytes(make_chatd_stack: Any) -> None:
    """Random bytes, before and after a valid login: the server survives, nobody else notices."""
    stack = await make_chatd_stack(max_message_size=4096)
    await room_with(stack, [1, 2, 3])
    bystander = await stack.chatd_client(2)
    assert await bystander.join(ROOM) == JOIN_OK
    failures, observer = _failures()
    rng = random.Random(6)
    try:
        for round_ in range(150):
            garbage = rng.randbytes(rng.randrange(1, 400))
            raw = await raw_client(stack, stack.ws_url("chatd") if round_ % 10 == 0 else None)
            if round_ % 2:
                prefix = Auth(3, stack.token(3)).encode() + Hello(1).encode() + Join(ROOM).encode()
                raw.send_bytes(prefix + garbage)
            else:
                raw.send_bytes(garbage)
                if garbage[0] != 1:  # not AUTH (or not even a chatd opcode): ERROR then disconnect
                    expected = ErrorCode.AUTH_REQUIRED if garbage[0] in range(7) else ErrorCode.PROTOCOL
                    assert (await raw.next(Error)).code == expected
                    await raw.closed
            if not raw.is_closed:
                await raw.close()
    finally:
        globalLogPublisher.removeObserver(observer)
    assert failures == []
    # the server still works, and the bystander saw only what fuzzing clients legitimately sent it
    await barrier(bystander)
    assert not bystander.is_closed and bystander.pending(Error) == 0
    fresh = await stack.chatd_client(1)
    assert await fresh.join(ROOM) == JOIN_OK
    fresh.send_rtmsg(ROOM, 2, 0, 9, b"still here")
    while (await bystander.next(RtMsgDelivery)).data != b"still here":
        pass


# WebSocket, with an independent client library --------------------------------------------------


def _ws_exchange(url: str, messages: list[bytes], commands: int) -> list[Any]:
    """Runs in a thread: a `websockets` client sends binary *messages*, then decodes replies until it has
    *commands* server commands."""
    from websockets.sync.client import connect

    decoder = Decoder(SERVER_COMMANDS)
    out: list[Any] = []
    with connect(url, open_timeout=30) as ws:
        for message in messages:
            ws.send(message)
        while len(out) < commands:
            data = ws.recv(timeout=30)
            assert isinstance(data, bytes)
            out += decoder.feed(data)
    return out


def _ws_text(url: str) -> tuple[bytes, int | None]:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(url, open_timeout=30) as ws:
        ws.send("not binary")
        first = ws.recv(timeout=30)
        try:
            ws.recv(timeout=30)
        except ConnectionClosed as e:
            return first if isinstance(first, bytes) else first.encode(), e.rcvd.code if e.rcvd else None
    raise AssertionError("the server did not close")


@pytest_twisted.ensureDeferred
async def test_websocket_endpoint_with_a_real_client(make_chatd_stack: Any) -> None:
    stack = await make_chatd_stack()
    await room_with(stack, [1, 2])
    tcp = await stack.chatd_client(2)
    assert await tcp.join(ROOM) == JOIN_OK
    login = Auth(1, stack.token(1)).encode() + Hello(1).encode()
    message = login + Join(ROOM).encode() + RtMsg(ROOM, 2, 0, 0x42, b"via websocket").encode()
    commands = await _in_thread(_ws_exchange, stack.ws_url("chatd"), [message], 4)
    assert commands[0] == AuthResult(0)
    assert isinstance(commands[1], ClientId) and commands[1].client_id != 0
    assert commands[2:4] == [JoinResult(ROOM, JOIN_OK), InCallFlag(ROOM, 0)]
    delivery = await tcp.next(RtMsgDelivery)
    assert (delivery.sender_userid, delivery.msgtype, delivery.data) == (1, 0x42, b"via websocket")
    assert delivery.sender_clientid == commands[1].client_id
    first, code = await _in_thread(_ws_text, stack.ws_url("chatd"))
    assert Decoder(SERVER_COMMANDS).feed(first)[0].code == ErrorCode.NOT_BINARY  # type: ignore[union-attr]
    assert code == 1000


def _in_thread(fn: Any, *args: Any) -> defer.Deferred[Any]:
    from twisted.internet import threads
    return threads.deferToThread(fn, *args)


def _self_signed(directory: Any) -> tuple[str, str]:
    """A certificate for localhost / 127.0.0.1 and its key, as PEM files; returns their paths."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest_twisted.ensureDeferred
async def test_tls_through_the_endpoint_string(make_chatd_stack: Any, tmp_path: Any) -> None:
    from twisted.internet.endpoints import serverFromString

    stack = await make_chatd_stack()
    await room_with(stack, [1, 2])
    roots = tmp_path / "roots"
    roots.mkdir()
    cert, key = _self_signed(tmp_path)
    (roots / "cert.pem").write_bytes((tmp_path / "cert.pem").read_bytes())
    port = await serverFromString(reactor, f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}").listen(
        stack.chatd.stream_factory())
    stack.ports.append(port)
    address = f"tls:host=127.0.0.1:port={port.getHost().port}:trustRoots={roots}"
    a = await stack.chatd_client(1, address=address)
    b = await stack.chatd_client(2)  # plain TCP, same server
    assert await a.join(ROOM) == JOIN_OK and await b.join(ROOM) == JOIN_OK
    a.send_rtmsg(ROOM, 2, 0, 4, b"over tls")
    assert (await b.next(RtMsgDelivery)).data == b"over tls"


@pytest_twisted.ensureDeferred
async def test_commands_wait_while_the_service_is_not_open(make_chatd_stack: Any) -> None:
    stack = await make_chatd_stack()
    await room_with(stack, [1])
    stack.chatd.hold()
    raw = await raw_client(stack)
    raw.send_bytes(Auth(1, stack.token(1)).encode() + Hello(1).encode() + Join(ROOM).encode())
    await wait_for(lambda: any(s._early for s in stack.chatd.sessions))
    assert raw.pending(AuthResult) == 0
    stack.chatd.open()
    assert await raw.next(AuthResult) == AuthResult(0)
    assert (await raw.next(ClientId)).client_id != 0
    assert await raw.next(JoinResult) == JoinResult(ROOM, JOIN_OK)


def test_a_port_in_use_stops_start_up(tmp_path: Any) -> None:
    from twisted.internet.error import CannotListenError
    from twisted.internet.protocol import Factory

    from transport.chatd.directory import Directory
    from transport.chatd.server import ChatdServer
    from transport.chatd.service import ListenerService

    taken = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
    try:
        directory = Directory(None, reactor, refresh_interval=0)  # type: ignore[arg-type]  # never started
        server = ChatdServer(directory, validator=None)
        service = ListenerService("chatd", server, directory, f"tcp:{taken.getHost().port}:interface=127.0.0.1",
                                  reactor)
        with pytest.raises(CannotListenError):
            service.startService()
    finally:
        taken.stopListening()


@pytest_twisted.ensureDeferred
async def test_rate_limit_slows_a_client_down_without_losing_anything(make_chatd_stack: Any) -> None:
    clock = Clock()  # the token bucket refills only when the test advances this clock
    stack = await make_chatd_stack(clock=clock, rate_limit=10.0, rate_burst=5)
    await room_with(stack, [1, 2])
    b = await stack.chatd_client(2)
    assert await b.join(ROOM) == JOIN_OK
    a = await stack.chatd_client(1)
    assert await a.join(ROOM) == JOIN_OK  # AUTH, HELLO, JOIN: 3 of a's 5 tokens
    for n in range(20):
        a.send_rtmsg(ROOM, 2, 0, 0, bytes([n]))
    session = next(s for s in stack.chatd.sessions if s.userid == 1)
    await wait_for(lambda: b.pending(RtMsgDelivery) == 2 and session._throttle is not None)
    advances = 0
    while b.pending(RtMsgDelivery) < 20:
        waiting = len(session._queue) + 0
        clock.advance(1.0)
        advances += 1
        assert waiting - len(session._queue) <= 5  # never more than the burst per refill
        await wait_for(lambda: b.pending(RtMsgDelivery) >= 20 - len(session._queue) and (
            session._throttle is not None or b.pending(RtMsgDelivery) == 20))
    assert advances >= 4
    got = b.drain(RtMsgDelivery)
    assert [m.data for m in got] == [bytes([n]) for n in range(20)]
    assert a.pending(Error) == 0 and not a.is_closed


@pytest_twisted.ensureDeferred
async def test_a_websocket_client_that_does_not_read_is_dropped(make_chatd_stack: Any) -> None:
    # as over TCP: what the server queues for a client that stopped reading is bounded by max_send_buffer
    stack = await make_chatd_stack(max_send_buffer=256 * 1024)
    await room_with(stack, [1, 2])
    idle = await stack.chatd_client(1, address=stack.ws_url("chatd"))
    assert await idle.join(ROOM) == JOIN_OK
    idle.link.transport.pauseProducing()  # stops reading its socket
    sender = await stack.chatd_client(2)
    assert await sender.join(ROOM) == JOIN_OK
    sessions = lambda: [s for s in stack.chatd.sessions if s.userid == 1]  # noqa: E731
    assert sessions()
    for _ in range(40):
        for _ in range(20):
            sender.send_rtmsg(ROOM, 1, 0, 1, b"x" * 60000)
        await barrier(sender)
        if not sessions():
            break
    assert not sessions(), "the server kept queueing for a WebSocket client that does not read"
