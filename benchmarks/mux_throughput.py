"""Mux benchmark: channel throughput against plain TLS, channel open latency, memory per channel.

Both ends run in this one process on loopback (as in the tests), so the plain
TLS stream measured in the same run - same certificates, same pyOpenSSL
connection creators, same writer - is the yardstick: the table shows each
mux figure as a ratio to it.

    python benchmarks/mux_throughput.py [--mib 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twisted.internet import defer, endpoints, protocol, task
from twisted.internet.interfaces import IPushProducer
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from transport.mux.identity import DeviceIdentity, TrustPolicy, client_creator, server_creator
from transport.mux.manager import ConnectionManager

CHUNK = 64 * 1024


@implementer(IPushProducer)
class Writer:
    """Writes *total* bytes to *transport* in 64 KiB chunks, honouring pauses."""

    def __init__(self, reactor: Any, transport: Any, total: int) -> None:
        self.reactor = reactor
        self.transport = transport
        self.left = total
        self.paused = False
        self.data = b"\x5a" * CHUNK
        self.call: Any = None

    def start(self) -> None:
        self.transport.registerProducer(self, True)
        self._schedule()

    def _schedule(self) -> None:
        if self.call is None and not self.paused and self.left > 0:
            self.call = self.reactor.callLater(0, self._run)

    def _run(self) -> None:
        self.call = None
        for _ in range(16):
            if self.paused or self.left <= 0:
                break
            n = min(CHUNK, self.left)
            self.transport.write(self.data[:n] if n < CHUNK else self.data)
            self.left -= n
        if self.left <= 0:
            self.transport.unregisterProducer()
            return
        self._schedule()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._schedule()

    def stopProducing(self) -> None:
        self.left = 0


class Counter(protocol.Protocol):
    def __init__(self, expect: int, done: defer.Deferred[float]) -> None:
        self.expect = expect
        self.got = 0
        self.done = done

    def dataReceived(self, data: bytes) -> None:
        self.got += len(data)
        if self.got >= self.expect and not self.done.called:
            self.done.callback(time.perf_counter())


class Sink(protocol.Protocol):
    """Counts into a shared target; fires when everything of all streams has arrived."""

    def __init__(self, shared: dict[str, Any]) -> None:
        self.shared = shared

    def dataReceived(self, data: bytes) -> None:
        s = self.shared
        s["got"] += len(data)
        if s["got"] >= s["expect"] and not s["done"].called:
            s["done"].callback(time.perf_counter())


async def plain_tls(reactor: Any, a: DeviceIdentity, b: DeviceIdentity, total: int) -> tuple[float, float]:
    done: defer.Deferred[float] = defer.Deferred()
    server_factory = protocol.Factory.forProtocol(lambda: Counter(total, done))
    tls_server = TLSMemoryBIOFactory(server_creator(b, TrustPolicy()), False, server_factory)
    port = await endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(tls_server)
    client_factory = protocol.Factory.forProtocol(protocol.Protocol)
    tls_client = TLSMemoryBIOFactory(client_creator(a, TrustPolicy(expected_device=b.device_id)), True,
                                     client_factory)
    proto = await endpoints.clientFromString(reactor, f"tcp:127.0.0.1:{port.getHost().port}").connect(tls_client)
    start, cpu = time.perf_counter(), time.process_time()
    Writer(reactor, proto, total).start()
    end = await done
    cpu = time.process_time() - cpu
    proto.loseConnection()
    await port.stopListening()
    return total / (end - start), total / cpu


async def mux_channels(reactor: Any, alice: ConnectionManager, ep: str, bob_id: str, shared: dict[str, Any],
                       channels: int, total: int) -> tuple[float, float]:
    sock = await alice.connect(bob_id, ep)
    opened = await defer.gatherResults([sock.open_channel("bench") for _ in range(channels)])
    per = total // channels
    total = per * channels
    shared.update(got=0, expect=total, done=defer.Deferred())
    start, cpu = time.perf_counter(), time.process_time()
    for ch in opened:
        ch.attach(protocol.Protocol())
        Writer(reactor, ch, per).start()
    end = await shared["done"]
    cpu = time.process_time() - cpu
    for ch in opened:
        ch.loseConnection()
    return total / (end - start), total / cpu


async def open_latency(alice: ConnectionManager, ep: str, bob_id: str, n: int) -> list[float]:
    sock = await alice.connect(bob_id, ep)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        ch = await sock.open_channel("latency")
        out.append(time.perf_counter() - t0)
        ch.loseConnection()
    return out


async def memory_per_channel(alice: ConnectionManager, ep: str, bob_id: str, n: int) -> float:
    sock = await alice.connect(bob_id, ep)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    chans = await defer.gatherResults([sock.open_channel("mem") for _ in range(n)])
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    for ch in chans:
        ch.loseConnection()
    return (after - before) / n


async def main(reactor: Any, args: argparse.Namespace) -> None:
    a, b = DeviceIdentity.generate("alice"), DeviceIdentity.generate("bob")
    shared: dict[str, Any] = {"got": 0, "expect": 0, "done": defer.Deferred()}
    bob = ConnectionManager(b)
    bob.on_channel_request(lambda peer, name: True)
    bob.on_channel_ready(lambda ch: ch.attach(Sink(shared)))
    port = await bob.listen("tcp:0:interface=127.0.0.1")
    ep = f"tcp:127.0.0.1:{port.getHost().port}"
    total = args.mib * 1024 * 1024
    names = ("plain TLS stream", "mux, 1 channel", "mux, 100 channels")
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        print(f"round {r + 1}...", file=sys.stderr)
        # the three cases run back to back in each round, so each round's ratios
        # compare runs made under the same machine load
        # the order rotates so that no case always runs first (warm-up) or last
        for name in names[r % 3:] + names[:r % 3]:
            if name == "plain TLS stream":
                w, c = await plain_tls(reactor, a, b, total)
            else:
                alice = ConnectionManager(a)
                w, c = await mux_channels(reactor, alice, ep, b.device_id, shared, 1 if "1 " in name else 100, total)
                await alice.close_all()
            wall[name].append(w)
            cpu[name].append(c)
    print(f"throughput, {args.mib} MiB per run, {args.rounds} rounds (both ends in one process, loopback);")
    print("ratio = median over rounds of (case / plain TLS in the same round); cpu = bytes per CPU second")
    print(f"{'case':<20} {'MiB/s':>8} {'ratio':>7} {'cpu MiB/s':>10} {'cpu ratio':>10}")
    for name in names:
        ratio = statistics.median(x / y for x, y in zip(wall[name], wall[names[0]], strict=True))
        cratio = statistics.median(x / y for x, y in zip(cpu[name], cpu[names[0]], strict=True))
        print(f"{name:<20} {statistics.median(wall[name]) / 2**20:>8.1f} {ratio:>7.2f} "
              f"{statistics.median(cpu[name]) / 2**20:>10.1f} {cratio:>10.2f}")
    alice = ConnectionManager(a)
    lat = await open_latency(alice, ep, b.device_id, args.opens)
    lat.sort()
    print(f"\nchannel open on an existing connection ({args.opens} sequential opens)")
    print(f"{'median':>10} {'p90':>10} {'p99':>10}")
    print(f"{lat[len(lat) // 2] * 1e6:>8.0f}us {lat[int(len(lat) * 0.9)] * 1e6:>8.0f}us "
          f"{lat[int(len(lat) * 0.99)] * 1e6:>8.0f}us")
    await alice.close_all()
    alice = ConnectionManager(a)
    per = await memory_per_channel(alice, ep, b.device_id, args.channels)
    print(f"\nmemory per open channel (both ends, tracemalloc, {args.channels} channels): {per:.0f} bytes")
    await alice.close_all()
    await bob.close_all()
    await port.stopListening()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--opens", type=int, default=2000)
    parser.add_argument("--channels", type=int, default=10000)
    ns = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, ns)))
