"""Scale benchmark: USERS users logged in across USERS / PER_BACKEND echo backend processes.

An in-process gateway (the real BackendPool, Gateway and SQLite store) with
``users_per_backend = PER_BACKEND``; all users are registered first, then every
session is opened at once. Reported: the time from the first ``session_opened``
to the last CONNECTED (this includes spawning every backend, one spawn in flight
at a time, and three store reads per login), the main instance's resident memory
before and after, the growth per user, and the backends' resident memory (their
STATS).

    python benchmarks/scale.py [--users 10000] [--per-backend 100] [--prestart]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, task
from zope.interface import implementer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transport import config as configuration
from transport.backend.pool import BackendPool
from transport.core import events as ev
from transport.core.gateway import Gateway
from transport.core.interfaces import IFrontend
from transport.storage.database import open_sqlite
from transport.storage.gateway import GatewayStore


@implementer(IFrontend)
class ConnectCounter:
    name = "bench"

    def __init__(self) -> None:
        self.connected = 0

    def deliver(self, event: object) -> None:
        if isinstance(event, ev.Connected):
            self.connected += 1


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def run(reactor: object, args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="transport-scale-"))
    config = configuration.load_text("", None, [
        f"service.state_dir={tmp}", f"service.backend={sys.executable} -m transport_backends.echo",
        f"service.users_per_backend={args.per_backend}", "service.web_port=",
        f"service.start_backends={-(-args.users // args.per_backend) if args.prestart else 1}",
        "service.login_timeout=600", "logging.backend_output=false"])
    database = open_sqlite(tmp / "scale.sqlite3", reactor)
    database.start()
    store = GatewayStore(database)
    await store.start()
    pool = BackendPool(config, reactor)
    gateway = Gateway(config, store, pool, reactor)
    frontend = ConnectCounter()
    gateway.add_frontend(frontend)
    await pool.start()
    users = [f"user{i}@scale" for i in range(args.users)]
    await defer.gatherResults([gateway.register(u, u, "") for u in users])
    wanted = -(-args.users // args.per_backend) if args.prestart else 1
    while len(pool.ready_backends()) < wanted:
        await task.deferLater(reactor, 0.05, lambda: None)
    before = rss_kib()
    started = time.perf_counter()
    await defer.gatherResults([gateway.session_opened(frontend, u, "s", 4) for u in users])
    while frontend.connected < len(users):
        await task.deferLater(reactor, 0.05, lambda: None)
    elapsed = time.perf_counter() - started
    await task.deferLater(reactor, 1.0, lambda: None)
    after = rss_kib()
    backends = pool.ready_backends()
    for b in backends:  # fresh STATS
        pool._barrier(b)  # a PING: STATS follow the PONG
    await task.deferLater(reactor, 2.0, lambda: None)
    backend_rss = sum(b.stats.res for b in backends if b.stats is not None)
    print(f"{'users':>6} {'backends':>8} {'login s':>8} {'logins/s':>9} {'main RSS before':>16} "
          f"{'main RSS after':>15} {'KiB/user':>9} {'backends RSS':>13}")
    print(f"{len(users):>6} {len(backends):>8} {elapsed:>8.1f} {len(users) / elapsed:>9.0f} "
          f"{before / 1024:>12.1f} MiB {after / 1024:>11.1f} MiB {(after - before) / len(users):>9.2f} "
          f"{backend_rss / 1024:>9.0f} MiB")
    await pool.shutdown()
    await database.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--per-backend", type=int, default=100)
    parser.add_argument("--prestart", action="store_true",
                        help="spawn every backend before the clock starts (measures logins alone)")
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args)))


if __name__ == "__main__":
    main()
