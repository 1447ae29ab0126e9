"""Mux channels over real TLS connections on loopback."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, error, protocol, reactor, task
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from transport.mux.channel import ChannelSocket
from transport.mux.identity import CertificateAuthority, DeviceIdentity, PeerRefused
from transport.mux.manager import ConnectionManager
from transport.mux.protocol import BeaconTimeout, ChannelDeclinedError, MultiplexedSocket

pytestmark = pytest.mark.integration

# generating EC keys is cheap, but reuse them anyway
ALICE = DeviceIdentity.generate("alice")
BOB = DeviceIdentity.generate("bob")
MALLORY = DeviceIdentity.generate("mallory")


class Echo(protocol.Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


class Ended:
    """How a channel ended (a Deferred cannot carry a Failure as a success value)."""

    def __init__(self, failure: Failure) -> None:
        self.failure = failure

    def check(self, *errors: type[BaseException]) -> Any:
        return self.failure.check(*errors)

    def __repr__(self) -> str:
        return f"Ended({self.failure.value!r})"


class Recorder(protocol.Protocol):
    """Collects what arrives and how the channel ended."""

    def __init__(self, expect: int = 0) -> None:
        self.chunks: list[bytes] = []
        self.received = 0
        self.expect = expect
        self.got_all: defer.Deferred[bytes] = defer.Deferred()
        self.lost: defer.Deferred[Ended] = defer.Deferred()

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        self.received += len(data)
        if self.expect and self.received >= self.expect and not self.got_all.called:
            self.got_all.callback(self.data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # type: ignore[assignment]
        self.lost.callback(Ended(reason))


class Peer:
    """A listening manager (Bob) that records requests and attaches a protocol per channel."""

    def __init__(self, identity: DeviceIdentity = BOB, make: Callable[[], protocol.Protocol] = Echo,
                 accept: Callable[[str, str], Any] = lambda peer, name: True, **kw: Any) -> None:
        self.manager = ConnectionManager(identity, **kw)
        self.requests: list[tuple[str, str]] = []
        self.channels: list[ChannelSocket] = []
        self.protocols: list[Any] = []
        self.make = make

        def on_request(peer: str, name: str) -> Any:
            self.requests.append((peer, name))
            return accept(peer, name)

        def on_ready(channel: ChannelSocket) -> None:
            self.channels.append(channel)
            self.protocols.append(channel.attach(self.make()))

        self.manager.on_channel_request(on_request)
        self.manager.on_channel_ready(on_ready)
        self.port: Any = None

    async def start(self) -> str:
        self.port = await self.manager.listen("tcp:0:interface=127.0.0.1")
        return f"tcp:127.0.0.1:{self.port.getHost().port}"

    async def stop(self) -> None:
        await self.manager.close_all()
        if self.port is not None:
            await defer.maybeDeferred(self.port.stopListening)


@pytest.fixture
def cleanup() -> Any:
    things: list[Any] = []
    yield things
    # closing is best effort: the test body decides what must hold


async def roundtrip(channel: ChannelSocket, data: bytes) -> bytes:
    rec = Recorder(expect=len(data))
    channel.attach(rec)
    channel.write(data)
    return await rec.got_all


async def closed_peer(peer: Peer, alice: ConnectionManager) -> None:
    await alice.close_all()
    await peer.stop()


@pytest_twisted.ensureDeferred
async def test_two_channels_share_one_connection() -> None:
    bob = Peer()
    ep = await bob.start()
    alice = ConnectionManager(ALICE)
    try:
        one = await alice.connect_device(BOB.device_id, ep, "file://one")
        two = await alice.connect_device(BOB.device_id, ep, "file://two")
        assert one._sock is two._sock
        assert len(alice.connections()) == 1 and len(bob.manager.connections()) == 1
        listing = alice.connections()[0]
        assert listing["device_id"] == BOB.device_id
        assert [(c["id"], c["name"]) for c in listing["channels"]] == [(1, "file://one"), (2, "file://two")]
        assert bob.requests == [(ALICE.device_id, "file://one"), (ALICE.device_id, "file://two")]
        assert await roundtrip(one, b"first") == b"first"
        assert await roundtrip(two, b"second") == b"second"
        listing = alice.connections()[0]
        assert [(c["bytes_in"], c["bytes_out"]) for c in listing["channels"]] == [(5, 5), (6, 6)]
        assert one.getPeer().device_id == BOB.device_id and one.getHost().device_id == ALICE.device_id
    finally:
        await closed_peer(bob, alice)


@pytest_twisted.ensureDeferred
async def test_refusal_fails_only_that_channel_and_same_name_twice() -> None:
    bob = Peer(accept=lambda peer, name: not name.startswith("secret"))
    ep = await bob.start()
    alice = ConnectionManager(ALICE)
    try:
        ok = await alice.connect_device(BOB.device_id, ep, "public")
        with pytest.raises(ChannelDeclinedError):
            await alice.connect_device(BOB.device_id, ep, "secret/plans")
        assert ("" + ALICE.device_id, "secret/plans") in bob.requests
        again = await alice.connect_device(BOB.device_id, ep, "public")
        assert again.id != ok.id and again.name == ok.name == "public"
        assert await roundtrip(ok, b"a") == b"a"
        assert await roundtrip(again, b"b") == b"b"
        # a Deferred verdict works too
        bob.manager.on_channel_request(lambda peer, name: task.deferLater(reactor, 0, lambda: name == "later"))
        assert (await alice.connect_device(BOB.device_id, ep, "later")).name == "later"
        with pytest.raises(ChannelDeclinedError):
            await alice.connect_device(BOB.device_id, ep, "not later")
        assert len(alice.connections()) == 1
    finally:
        await closed_peer(bob, alice)


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_ten_thousand_channels_echo_close_and_ids_are_reused() -> None:
    bob = Peer()
    ep = await bob.start()
    alice = ConnectionManager(ALICE)
    n = 10_000
    try:
        sock = await alice.connect(BOB.device_id, ep)
        channels = await defer.gatherResults([sock.open_channel(f"ch/{i}") for i in range(n)])
        ids = {c.id for c in channels}
        assert len(ids) == n and ids == set(range(1, n + 1))
        recorders = [Recorder(expect=32) for _ in channels]
        for c, r in zip(channels, recorders, strict=True):
            c.attach(r)
            c.write(c.id.to_bytes(2, "big") * 16)
        await defer.gatherResults([r.got_all for r in recorders])
        for c, r in zip(channels, recorders, strict=True):
            assert r.data == c.id.to_bytes(2, "big") * 16
        for c in channels:
            c.loseConnection()
        reasons = await defer.gatherResults([r.lost for r in recorders])
        assert all(f.check(error.ConnectionDone) for f in reasons)
        await defer.gatherResults([p.lost for p in bob.protocols if hasattr(p, "lost")] or [defer.succeed(None)])
        assert sock.mux.channels_in_use == 0 and not sock.channels
        assert len(bob.channels) == n
        reused = await alice.connect_device(BOB.device_id, ep, "after")
        assert reused.id == 1
        assert sock.mux.channels_in_use == 1
    finally:
        await closed_peer(bob, alice)


@pytest_twisted.ensureDeferred
async def test_three_interleaved_2mb_streams_arrive_intact_and_in_order() -> None:
    size = 2 * 1024 * 1024
    bob = Peer(make=lambda: Recorder(expect=size))
    ep = await bob.start()
    alice = ConnectionManager(ALICE)
    try:
        channels = [await alice.connect_device(BOB.device_id, ep, f"stream/{i}") for i in range(3)]
        payloads = [os.urandom(size) for _ in range(3)]
        chunk = 10_000  # not a multiple of the frame size, so frames of the three interleave unevenly
        for off in range(0, size, chunk):
            for c, p in zip(channels, payloads, strict=True):
                c.write(p[off:off + chunk])
        got = await defer.gatherResults([p.got_all for p in bob.protocols])
        by_name = {ch.name: rec for ch, rec in zip(bob.channels, bob.protocols, strict=True)}
        for i, p in enumerate(payloads):
            data = by_name[f"stream/{i}"].data
            assert len(data) == size
            assert hashlib.sha256(data).digest() == hashlib.sha256(p).digest()
        assert len(got) == 3
    finally:
        await closed_peer(bob, alice)


@pytest_twisted.ensureDeferred
async def test_eof_both_ways() -> None:
    bob = Peer(make=Recorder)
    ep = await bob.start()
    alice = ConnectionManager(ALICE)
    try:
        # Alice closes
        ch = await alice.connect_device(BOB.device_id, ep, "a-closes")
        mine = Recorder()
        ch.attach(mine)
        ch.write(b"bye")
        ch.loseConnection()
        theirs = bob.protocols[-1]
        assert (await theirs.lost).check(error.ConnectionDone)
        assert theirs.data == b"bye"
        assert (await mine.lost).check(error.ConnectionDone)
        # Bob closes, after sending data that must still arrive
        ch2 = await alice.connect_device(BOB.device_id, ep, "b-closes")
        mine2 = Recorder()
        ch2.attach(mine2)
        bob.channels[-1].write(b"so long")
        bob.channels[-1].loseConnection()
        assert (await mine2.lost).check(error.ConnectionDone)
        assert mine2.data == b"so long"
        assert (await bob.protocols[-1].lost).check(error.ConnectionDone)
        # the connection itself carries on
        assert len(alice.connections()) == 1
        ch3 = await alice.connect_device(BOB.device_id, ep, "next")
        assert ch3.id == 1  # both earlier ids were released on both sides
    finally:
        await closed_peer(bob, alice)


@pytest_twisted.ensureDeferred
async def test_killing_tcp_errors_every_channel() -> None:
    bob = Peer(make=Recorder)
    ep = await bob.start()
    alice = ConnectionManager(ALICE)
    try:
        mine = []
        for i in range(5):
            ch = await alice.connect_device(BOB.device_id, ep, f"c{i}")
            rec = Recorder()
            ch.attach(rec)
            mine.append(rec)
        pending = alice.connection_to(BOB.device_id).open_channel("never answered")  # type: ignore[union-attr]
        sock: MultiplexedSocket = alice.connection_to(BOB.device_id)  # type: ignore[assignment]
        sock.transport.transport.abortConnection()  # type: ignore[union-attr]  # the TCP connection under TLS
        for rec in mine + bob.protocols:
            reason = await rec.lost
            assert reason.check(error.ConnectionLost), reason
            assert not reason.check(error.ConnectionDone)
        with pytest.raises(error.ConnectionLost):
            await pending
        assert alice.connections() == []
        # a new connect_device dials again
        ch = await alice.connect_device(BOB.device_id, ep, "again")
        assert ch._sock is not sock
    finally:
        await closed_peer(bob, alice)


@pytest_twisted.ensureDeferred
async def test_beacons_answered_and_unanswered_with_clock() -> None:
    bob = Peer(make=Recorder)
    ep = await bob.start()
    clock = task.Clock()
    alice = ConnectionManager(ALICE, clock=clock, beacon_interval=60.0)
    try:
        ch = await alice.connect_device(BOB.device_id, ep, "watched")
        rec = Recorder()
        ch.attach(rec)
        assert await alice.send_beacons() == [True]
        # Bob stops reading: the next beacon goes unanswered
        bob_sock = next(iter(bob.manager._sockets))
        bob_sock.transport.pauseProducing()  # type: ignore[union-attr]
        answered = alice.send_beacons()
        clock.advance(2.9)
        assert not answered.called and ch.connected
        clock.advance(0.2)
        assert await answered == [False]
        reason = await rec.lost
        assert reason.check(BeaconTimeout)
        assert not reason.check(error.ConnectionDone)
        assert alice.connections() == []
        bob_sock.transport.resumeProducing()  # type: ignore[union-attr]
    finally:
        await closed_peer(bob, alice)


@pytest_twisted.ensureDeferred
async def test_idle_connection_sends_beacons() -> None:
    bob = Peer()
    ep = await bob.start()
    clock = task.Clock()
    alice = ConnectionManager(ALICE, clock=clock, beacon_interval=10.0)
    try:
        await alice.connect_device(BOB.device_id, ep, "idle")
        sock = alice.connection_to(BOB.device_id)
        assert sock is not None
        clock.advance(10.0)
        assert sock._beacon_call is not None  # an idle beacon is out
        d = defer.Deferred()  # wait for its real answer to travel through the reactor
        sock._beacon_waiters.append(d)
        assert await d is True
    finally:
        await closed_peer(bob, alice)


@pytest_twisted.ensureDeferred
async def test_wrong_device_id_is_refused() -> None:
    bob = Peer()
    ep = await bob.start()
    alice = ConnectionManager(ALICE)
    try:
        with pytest.raises(PeerRefused, match="wrong device"):
            await alice.connect_device(MALLORY.device_id, ep, "x")
        assert alice.connections() == []
        assert bob.requests == []
    finally:
        await closed_peer(bob, alice)


@pytest_twisted.ensureDeferred
async def test_account_ca_and_trusted_devices() -> None:
    ca = CertificateAuthority.generate("account")
    issued_alice = DeviceIdentity.generate("alice", issuer=ca)
    issued_bob = DeviceIdentity.generate("bob", issuer=ca)
    other_ca = CertificateAuthority.generate("someone else")
    foreign = DeviceIdentity.generate("foreign", issuer=other_ca)
    bob = Peer(identity=issued_bob, account_ca=ca.cert)
    ep = await bob.start()
    try:
        # a self-signed device is refused when an account CA is configured
        for stranger in (ALICE, foreign):
            m = ConnectionManager(stranger)
            with pytest.raises((PeerRefused, error.ConnectionLost)):
                await m.connect_device(issued_bob.device_id, ep, "x")
            assert m.connections() == []
        assert bob.requests == []
        # a device issued by the account CA gets in (and checks Bob's chain too)
        good = ConnectionManager(issued_alice, account_ca=ca.cert)
        ch = await good.connect_device(issued_bob.device_id, ep, "x")
        assert await roundtrip(ch, b"ok") == b"ok"
        await good.close_all()
        # the client refuses a self-signed server when it requires the CA
        plain = Peer(identity=BOB)
        ep2 = await plain.start()
        with pytest.raises(PeerRefused, match="account CA"):
            await ConnectionManager(issued_alice, account_ca=ca.cert).connect_device(BOB.device_id, ep2, "x")
        await plain.stop()
        # trusted_devices on the listening side
        picky = Peer(identity=BOB, trusted_devices=[ALICE.device_id])
        ep3 = await picky.start()
        with pytest.raises((PeerRefused, error.ConnectionLost)):
            await ConnectionManager(MALLORY).connect_device(BOB.device_id, ep3, "x")
        ch = await ConnectionManager(ALICE).connect_device(BOB.device_id, ep3, "x")
        assert await roundtrip(ch, b"ok") == b"ok"
        ch._sock.close()
        await ch._sock.closed
        await picky.stop()
    finally:
        await bob.stop()


@pytest_twisted.ensureDeferred
async def test_hostname_verification() -> None:
    named = DeviceIdentity.generate("server", dns_names=["localhost", "127.0.0.1"])
    bob = Peer(identity=named)
    ep = await bob.start()
    try:
        ch = await ConnectionManager(ALICE).connect_device(named.device_id, ep, "x", hostname="localhost")
        ch._sock.close()
        with pytest.raises(PeerRefused, match="does not name"):
            await ConnectionManager(ALICE).connect_device(named.device_id, ep, "x", hostname="example.org")
    finally:
        await bob.stop()


@pytest_twisted.ensureDeferred
async def test_close_connections_with() -> None:
    bob = Peer()
    ep = await bob.start()
    alice = ConnectionManager(ALICE)
    try:
        ch = await alice.connect_device(BOB.device_id, ep, "x")
        rec = Recorder()
        ch.attach(rec)
        await alice.close_connections_with(BOB.device_id)
        assert (await rec.lost).check(error.ConnectionLost)
        assert alice.connections() == []
    finally:
        await closed_peer(bob, alice)


@implementer(IPushProducer)
class Flood:
    """Writes 64 KiB chunks while not paused, up to *limit* bytes."""

    def __init__(self, channel: ChannelSocket, limit: int) -> None:
        self.channel = channel
        self.limit = limit
        self.written = 0
        self.paused = False
        self.pauses = 0
        self.chunk = os.urandom(65536)
        self.done: defer.Deferred[None] = defer.Deferred()
        self._call: Any = None

    def start(self) -> None:
        self.channel.registerProducer(self, True)
        self._schedule()

    def _schedule(self) -> None:
        if self._call is None and not self.paused and self.written < self.limit:
            self._call = reactor.callLater(0, self._tick)  # type: ignore[attr-defined]

    def _tick(self) -> None:
        self._call = None
        for _ in range(8):
            if self.paused or self.written >= self.limit:
                break
            self.channel.write(self.chunk)
            self.written += len(self.chunk)
        if self.written >= self.limit:
            self.channel.unregisterProducer()
            if not self.done.called:
                self.done.callback(None)
            return
        self._schedule()

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False
        self._schedule()

    def stopProducing(self) -> None:
        self.paused = True


class SlowReader(Recorder):
    def connectionMade(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_slow_reader_pauses_writer_and_memory_stays_bounded() -> None:
    limit = 256 * 1024 * 1024  # what an unpaused writer would push
    bob = Peer(make=SlowReader, max_buffered=1024 * 1024)
    ep = await bob.start()
    alice = ConnectionManager(ALICE)
    try:
        ch = await alice.connect_device(BOB.device_id, ep, "flood")
        flood = Flood(ch, limit)
        flood.start()
        # wait until the writer has been paused and makes no more progress
        last, still = -1, 0
        for _ in range(600):
            await task.deferLater(reactor, 0.05, lambda: None)
            if flood.paused and flood.written == last:
                still += 1
                if still >= 10:
                    break
            else:
                still = 0
            last = flood.written
        assert flood.paused and flood.pauses >= 1
        bob_sock = next(iter(bob.manager._sockets))
        reader = bob.protocols[0]
        assert reader.received == 0  # nothing delivered while paused
        # bounded: Bob's mux buffer stays near its budget, and everything in flight
        # (both TLS layers, kernel socket buffers) is a small fraction of the flood
        assert bob_sock.buffered_in <= 1024 * 1024 + 256 * 1024
        assert flood.written < 48 * 1024 * 1024
        # the reader resumes: everything arrives, in order, and the writer finishes
        written_at_pause = flood.written
        reader.expect = written_at_pause
        bob.channels[0].resumeProducing()
        await reader.got_all
        assert reader.data[:65536] == flood.chunk
        assert bob_sock.buffered_in == 0 and not bob_sock.reading_paused
        ch.unregisterProducer()
        flood.limit = flood.written  # stop
    finally:
        await closed_peer(bob, alice)


@pytest_twisted.ensureDeferred
async def test_hostile_control_message_drops_only_that_connection() -> None:
    bob = Peer()
    ep = await bob.start()
    good = ConnectionManager(ALICE)
    evil = ConnectionManager(MALLORY)
    try:
        ok = await good.connect_device(BOB.device_id, ep, "fine")
        bad_sock = await evil.connect(BOB.device_id, ep)
        bad_sock.transport.write(b"\x00\x01\x00\x00\xc1")  # type: ignore[union-attr]  # not msgpack on channel 0
        await bad_sock.closed
        assert await roundtrip(ok, b"unaffected") == b"unaffected"
        assert [c["device_id"] for c in bob.manager.connections()] == [ALICE.device_id]
    finally:
        await evil.close_all()
        await closed_peer(bob, good)


@pytest_twisted.ensureDeferred
async def test_fuzz_live_server_with_random_frames() -> None:
    import random

    from transport.mux import codec

    rng = random.Random(8)
    bob = Peer()
    ep = await bob.start()
    good = ConnectionManager(ALICE)
    try:
        ok = await good.connect_device(BOB.device_id, ep, "steady")
        for round_ in range(30):
            fuzzer = ConnectionManager(MALLORY, beacon_timeout=0.5)  # a swallowed beacon costs little
            sock = await fuzzer.connect(BOB.device_id, ep)
            kind = round_ % 3
            if kind == 0:  # raw garbage
                junk = rng.randbytes(rng.randrange(1, 5000))
            elif kind == 1:  # well-framed frames on random channels with random bodies
                junk = b"".join(codec.encode_frame(rng.choice([0, 1, 2, 0x8000, 0xFFFF, rng.randrange(65536)]),
                                                   rng.randbytes(rng.randrange(0, 300))) for _ in range(20))
            else:  # requests with odd ids and states
                junk = b"".join(codec.encode_request("x" * rng.randrange(0, 50), rng.randrange(65536),
                                                     rng.randrange(-3, 6)) for _ in range(20))
            sock.transport.write(junk)  # type: ignore[union-attr]
            # whatever happened, the fuzzer's connection is either closed or still answers beacons
            if sock.is_connected:
                beacon = sock.send_beacon()
                await defer.DeferredList([beacon, sock.closed], fireOnOneCallback=True)
            await fuzzer.close_all()
            assert await roundtrip_again(ok, f"still fine {round_}".encode())
        assert len(bob.manager.connections()) == 1
    finally:
        await closed_peer(bob, good)


async def roundtrip_again(channel: ChannelSocket, data: bytes) -> bool:
    """Echo over an already attached channel (re-attaching is not allowed)."""
    rec: Recorder = channel.protocol if isinstance(channel.protocol, Recorder) else Recorder()
    if channel.protocol is None:
        channel.attach(rec)
    before = rec.received
    rec.expect = before + len(data)
    rec.got_all = defer.Deferred()
    channel.write(data)
    got = await rec.got_all
    return got[before:] == data


@pytest_twisted.ensureDeferred
async def test_pull_producer_and_line_protocol_over_channels() -> None:
    import io

    from twisted.protocols.basic import FileSender, LineReceiver

    size = 3 * 1024 * 1024 + 17
    bob = Peer(make=lambda: Recorder(expect=size))
    ep = await bob.start()
    alice = ConnectionManager(ALICE)
    try:
        # FileSender is a pull (non-streaming) producer
        ch = await alice.connect_device(BOB.device_id, ep, "file")
        ch.attach(protocol.Protocol())
        payload = os.urandom(size)
        await FileSender().beginFileTransfer(io.BytesIO(payload), ch)
        got = await bob.protocols[-1].got_all
        assert got == payload

        # a line protocol through the Factory helper
        class Shout(LineReceiver):
            def lineReceived(self, line: bytes) -> None:
                self.sendLine(line.upper())

        class Ask(LineReceiver):
            def __init__(self) -> None:
                self.answers: list[bytes] = []
                self.done: defer.Deferred[list[bytes]] = defer.Deferred()

            def connectionMade(self) -> None:
                for word in (b"one", b"two", b"three"):
                    self.sendLine(word)

            def lineReceived(self, line: bytes) -> None:
                self.answers.append(line)
                if len(self.answers) == 3:
                    self.done.callback(self.answers)

        bob.make = Shout
        asker = await alice.connect_protocol(BOB.device_id, ep, "lines", protocol.Factory.forProtocol(Ask))
        assert await asker.done == [b"ONE", b"TWO", b"THREE"]
    finally:
        await closed_peer(bob, alice)


@pytest_twisted.ensureDeferred
async def test_a_silent_tcp_peer_is_dropped_after_the_handshake_timeout() -> None:
    from twisted.internet import endpoints

    clock = task.Clock()
    bob = Peer(clock=clock, handshake_timeout=30.0)
    ep = await bob.start()
    silent = await endpoints.connectProtocol(endpoints.clientFromString(reactor, ep), Recorder())
    try:
        for _ in range(600):  # until the server side has the connection
            if bob.manager._sockets:
                break
            await task.deferLater(reactor, 0.01, lambda: None)
        [sock] = bob.manager._sockets
        clock.advance(29.0)
        assert sock.is_connected
        clock.advance(1.5)
        assert isinstance(await sock.closed, error.TimeoutError)
        assert (await silent.lost).check(error.ConnectionLost, error.ConnectionDone)
    finally:
        await bob.stop()


@pytest_twisted.ensureDeferred
async def test_counters_for_the_metrics_endpoint() -> None:
    bob = Peer()
    ep = await bob.start()
    alice = ConnectionManager(ALICE)
    try:
        ch = await alice.connect_device(BOB.device_id, ep, "x")
        assert await roundtrip(ch, b"12345") == b"12345"
        live = alice.counters()
        assert live["connections_open"] == 1 and live["channels_open"] == 1 and live["bytes_out"] > 5
        with pytest.raises(PeerRefused):
            await ConnectionManager(ALICE).connect_device(MALLORY.device_id, ep, "x")
        sock = alice.connection_to(BOB.device_id)
        assert sock is not None
        sock.transport.transport.abortConnection()  # type: ignore[union-attr]
        await sock.closed
        after = alice.counters()
        assert after["connections"] == 1 and after["connections_open"] == 0 and after["closed_with_error"] == 1
        assert after["channels_opened"] == 1 and after["bytes_in"] >= live["bytes_in"]
    finally:
        await closed_peer(bob, alice)


@pytest_twisted.ensureDeferred
async def test_a_failing_protocol_loses_only_its_channel() -> None:
    class Broken(Recorder):
        def dataReceived(self, data: bytes) -> None:
            raise ValueError("application bug")

    bob = Peer(make=Broken)
    ep = await bob.start()
    alice = ConnectionManager(ALICE)
    try:
        doomed = await alice.connect_device(BOB.device_id, ep, "doomed")
        mine = Recorder()
        doomed.attach(mine)
        doomed.write(b"boom")
        assert (await bob.protocols[0].lost).check(error.ConnectionAborted)
        assert (await mine.lost).check(error.ConnectionDone)  # Alice sees the channel closed
        bob.make = Echo
        fine = await alice.connect_device(BOB.device_id, ep, "fine")
        assert await roundtrip(fine, b"ok") == b"ok"
        assert len(alice.connections()) == 1
    finally:
        await closed_peer(bob, alice)


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_many_producers_share_the_connection_fairly_and_all_finish() -> None:
    n, limit = 20, 4 * 1024 * 1024
    bob = Peer(make=lambda: Recorder(expect=limit))
    ep = await bob.start()
    alice = ConnectionManager(ALICE)
    try:
        sock = await alice.connect(BOB.device_id, ep)
        channels = await defer.gatherResults([sock.open_channel(f"p{i}") for i in range(n)])
        floods = [Flood(ch, limit) for ch in channels]
        for f in floods:
            f.start()
        await defer.DeferredList([f.done for f in floods], fireOnOneCallback=True)
        # when the first writer is done, nobody has been starved
        least = min(f.written for f in floods)
        assert least >= limit // 4, [f.written for f in floods]
        assert sum(f.pauses for f in floods) > 0  # the send buffer did fill
        await defer.gatherResults([f.done for f in floods])
        got = await defer.gatherResults([p.got_all for p in bob.protocols])
        assert all(len(g) == limit for g in got)
    finally:
        await closed_peer(bob, alice)
