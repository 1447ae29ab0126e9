"""RTMSG broadcast in a room of 1,000 clients: messages/s, delivery latency, server memory per client.

The server (chatd + statusd, see chatd_common.py) runs in its own process; the
1,000 clients run in this process on one reactor. Clients log in and JOIN with
the real client API, then count deliveries by size (every RTMSG in a run has the
same length) and read the sender's timestamp from the payload, so the client side
stays cheap enough not to be what is measured.

    python benchmarks/chatd_broadcast.py [--clients 1000] [--burst 500] [--rates 10,50,100] [--seconds 5]
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chatd_common import ROOT, ServerProcess, cpu_seconds, percentile, rss_kib

sys.path.insert(0, str(ROOT))

from twisted.internet import defer, task

from transport.auth.tokens import issue_token
from transport.chatd.client import ChatdClient
from transport.chatd.codec import RtMsgDelivery

ROOM = 1
PAYLOAD = 32
SIZE = len(RtMsgDelivery(ROOM, 1, 1, 0, b"\0" * PAYLOAD).encode())


class Receiver:
    """Counts RTMSG deliveries of one client and records when each arrived."""

    def __init__(self) -> None:
        self.buffer = b""
        self.count = 0
        self.latencies: list[float] = []
        self.waiter: tuple[int, defer.Deferred[None]] | None = None

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        data = self.buffer + data
        whole = len(data) - len(data) % SIZE
        for offset in range(0, whole, SIZE):
            if data[offset] == 5:  # RTMSG; a KEEPALIVE would break the framing, runs are far shorter than 30 s
                sent = struct.unpack_from("<d", data, offset + SIZE - PAYLOAD)[0]
                self.latencies.append(now - sent)
                self.count += 1
        self.buffer = data[whole:]
        if self.waiter and self.count >= self.waiter[0]:
            d = self.waiter[1]
            self.waiter = None
            d.callback(None)

    def wait(self, count: int) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        if self.count >= count:
            d.callback(None)
        else:
            self.waiter = (count, d)
        return d


async def run(reactor: Any, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(tmp, "room", args.clients)
        try:
            await measure(reactor, args, server)
        finally:
            server.stop()


async def connect_all(reactor: Any, server: ServerProcess, userids: range) -> list[ChatdClient]:
    address = f"tcp:host=127.0.0.1:port={server.chatd_port}"
    clients: list[ChatdClient] = []
    batch = 100
    ids = list(userids)
    for start in range(0, len(ids), batch):
        async def one(userid: int) -> ChatdClient:
            token = issue_token(server.secret, userid, ttl=3600)
            client = await ChatdClient.connect(reactor, address, userid, token, timeout=120)
            assert await client.join(ROOM, 120) == 0
            return client
        clients += await defer.gatherResults([defer.ensureDeferred(one(u)) for u in ids[start:start + batch]])
    return clients


async def measure(reactor: Any, args: argparse.Namespace, server: ServerProcess) -> None:
    before = rss_kib(server.pid)
    clients = await connect_all(reactor, server, range(1, args.clients + 1))
    await task.deferLater(reactor, 0.5, lambda: None)
    after = rss_kib(server.pid)
    receivers = []
    for client in clients:
        receiver = Receiver()
        client.data_received = receiver.data_received  # type: ignore[method-assign]
        receivers.append(receiver)
    sender = clients[0]
    rows = []
    sent = [0]

    def send_one() -> None:
        sent[0] += 1
        payload = struct.pack("<d", time.perf_counter()) + b"\0" * (PAYLOAD - 8)
        sender.send_rtmsg(ROOM, 0, 0, 1, payload)

    # burst: everything at once, then wait for the last delivery everywhere
    start = time.perf_counter()
    cpu = cpu_seconds(server.pid)
    for _ in range(args.burst):
        send_one()
    await defer.gatherResults([r.wait(args.burst) for r in receivers])
    elapsed = burst_elapsed = time.perf_counter() - start
    server_cpu = cpu_seconds(server.pid) - cpu
    latencies = [x for r in receivers for x in r.latencies]
    rows.append(("burst", args.burst, args.burst / elapsed, args.burst * args.clients / elapsed,
                 percentile(latencies, 50) * 1e3, percentile(latencies, 99) * 1e3))
    # paced: a steady rate, latency without self-inflicted queueing
    for rate in args.rates:
        for r in receivers:
            r.latencies = []
        base = receivers[0].count
        sent[0] = 0
        loop = task.LoopingCall(send_one)
        loop.clock = reactor
        start = time.perf_counter()
        done = loop.start(1 / rate)
        await task.deferLater(reactor, args.seconds, lambda: None)
        loop.stop()
        await done
        await defer.gatherResults([r.wait(base + sent[0]) for r in receivers])
        elapsed = time.perf_counter() - start
        latencies = [x for r in receivers for x in r.latencies]
        count = len(latencies) // args.clients
        rows.append((f"paced {rate:g}/s", count, count / elapsed, len(latencies) / elapsed,
                     percentile(latencies, 50) * 1e3, percentile(latencies, 99) * 1e3))

    print(f"chatd RTMSG broadcast: room of {args.clients} clients (one per user), {PAYLOAD}-byte payload; "
          f"server in its own process, clients in another")
    print(f"{'run':<14}{'msgs':>7}{'msgs/s':>10}{'deliveries/s':>14}{'p50 ms':>9}{'p99 ms':>9}")
    for name, n, mps, dps, p50, p99 in rows:
        print(f"{name:<14}{n:>7}{mps:>10.0f}{dps:>14.0f}{p50:>9.2f}{p99:>9.2f}")
    print(f"server CPU during the burst: {server_cpu:.2f} s of {burst_elapsed:.2f} s "
          f"({server_cpu / args.burst * 1e3:.2f} ms per broadcast to {args.clients})")
    print(f"server RSS: {before} KiB before, {after} KiB with {args.clients} clients joined: "
          f"{(after - before) * 1024 / args.clients:.0f} bytes per client")
    for client in clients:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--rates", type=lambda t: [float(x) for x in t.split(",")], default=[10.0, 50.0, 100.0],
                        help="paced runs: messages per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args)))


if __name__ == "__main__":
    main()
