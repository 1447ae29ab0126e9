"""A presence change of a user watched by 10,000 connected statusd clients: time until the last one has it.

The server (chatd + statusd, see chatd_common.py) runs in its own process with
users 2..N+1 each having user 1 in their contact list; the N watcher clients and
user 1's client run in this process. Each round user 1 changes its presence
(SETPRES, alternating two values); the time is from just before the SETPRES is
written until the last watcher has received the PRES. Also reports the server's
memory per connected client.

    python benchmarks/statusd_fanout.py [--watchers 10000] [--rounds 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chatd_common import ROOT, ServerProcess, cpu_seconds, percentile, rss_kib

sys.path.insert(0, str(ROOT))

from twisted.internet import defer, task

from transport.auth.tokens import issue_token
from transport.core.presence import AWAY, ONLINE
from transport.statusd.client import StatusdClient
from transport.statusd.codec import Pres


class Arrivals:
    """Counts, for the current round, the watchers that received the expected PRES."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.expected: Pres | None = None
        self.count = 0
        self.last = 0.0
        self.done: defer.Deferred[None] | None = None

    def arm(self, expected: Pres) -> defer.Deferred[None]:
        self.expected, self.count = expected, 0
        self.done = defer.Deferred()
        return self.done

    def seen(self, command: Any) -> None:
        if command == self.expected:
            self.count += 1
            if self.count == self.total and self.done is not None:
                self.last = time.perf_counter()
                d, self.done = self.done, None
                d.callback(None)


async def run(reactor: Any, args: argparse.Namespace) -> None:
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(tmp, "contacts", args.watchers)
        try:
            await measure(reactor, args, server)
        finally:
            server.stop()


async def measure(reactor: Any, args: argparse.Namespace, server: ServerProcess) -> None:
    address = f"tcp:host=127.0.0.1:port={server.statusd_port}"
    arrivals = Arrivals(args.watchers)
    before = rss_kib(server.pid)
    started = time.perf_counter()
    watchers: list[StatusdClient] = []
    ids = list(range(2, args.watchers + 2))
    for start in range(0, len(ids), 200):
        async def one(userid: int) -> StatusdClient:
            token = issue_token(server.secret, userid, ttl=3600)
            client = await StatusdClient.connect(reactor, address, userid, token, ONLINE, timeout=300)
            client.dispatch = arrivals.seen  # type: ignore[method-assign]  # count, do not queue
            return client
        watchers += await defer.gatherResults([defer.ensureDeferred(one(u)) for u in ids[start:start + 200]])
    connect_time = time.perf_counter() - started
    await task.deferLater(reactor, 0.5, lambda: None)
    after = rss_kib(server.pid)
    # user 1 logs in: every watcher learns it (the first round)
    times = []
    done = arrivals.arm(Pres(1, ONLINE))
    t0 = time.perf_counter()
    me = await StatusdClient.connect(reactor, address, 1, issue_token(server.secret, 1, ttl=3600), ONLINE)
    await done
    login_time = arrivals.last - t0
    cpu = cpu_seconds(server.pid)
    for round_ in range(args.rounds):
        value = AWAY if round_ % 2 == 0 else ONLINE
        done = arrivals.arm(Pres(1, value))
        t0 = time.perf_counter()
        me.set_presence(value)
        await done
        times.append(arrivals.last - t0)
    server_cpu = (cpu_seconds(server.pid) - cpu) / args.rounds
    print(f"statusd fan-out: one user watched by {args.watchers} connected clients (contact lists); "
          "server in its own process, clients in another")
    print(f"{'event':<28}{'n':>4}{'p50 ms':>9}{'max ms':>9}")
    print(f"{'login seen by all':<28}{1:>4}{login_time * 1e3:>9.1f}{login_time * 1e3:>9.1f}")
    print(f"{'SETPRES seen by all':<28}{len(times):>4}{percentile(times, 50) * 1e3:>9.1f}{max(times) * 1e3:>9.1f}")
    print(f"server CPU per change: {server_cpu * 1e3:.0f} ms")
    print(f"connecting {args.watchers} clients (AUTH, HELLO, dump): {connect_time:.1f} s")
    print(f"server RSS: {before} KiB before, {after} KiB with {args.watchers} clients: "
          f"{(after - before) * 1024 / args.watchers:.0f} bytes per client")
    for client in watchers + [me]:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args)))


if __name__ == "__main__":
    main()
