"""Link benchmark: messages main instance → echo backend → main instance over loopback.

An in-process gateway (the real BackendPool, Gateway and SQLite store) spawns real
echo backend processes; USERS users log in; then MESSAGES chat messages are sent
through ``Gateway.send_message`` to the buddy ``echo`` (round robin over the users),
with at most WINDOW messages awaiting their echo. Throughput counts echoes received
by the frontend; latency is from ``send_message`` to the echo's delivery.

    python benchmarks/link.py [--users 100] [--messages 200000] [--window 2000] [--per-backend 100]
"""

from __future__ import annotations

import argparse
import os
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
class EchoCounter:
    name = "bench"

    def __init__(self) -> None:
        self.connected: set[str] = set()
        self.sent_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.received = 0
        self.on_echo = lambda: None

    def deliver(self, event: object) -> None:
        if isinstance(event, ev.MessageReceived):
            started = self.sent_at.pop(event.body, None)
            if started is not None:
                self.latencies.append(time.perf_counter() - started)
                self.received += 1
                self.on_echo()
        elif isinstance(event, ev.Connected):
            self.connected.add(event.user)


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


async def run(reactor: object, args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="transport-bench-"))
    config = configuration.load_text("", None, [
        f"service.state_dir={tmp}", f"service.backend={sys.executable} -m transport_backends.echo",
        f"service.users_per_backend={args.per_backend}", "service.web_port=",
        f"service.max_queued_per_user={args.window * 2}", "logging.backend_output=false"])
    database = open_sqlite(tmp / "bench.sqlite3", reactor)
    database.start()
    store = GatewayStore(database)
    await store.start()
    pool = BackendPool(config, reactor)
    gateway = Gateway(config, store, pool, reactor)
    frontend = EchoCounter()
    gateway.add_frontend(frontend)
    await pool.start()
    users = [f"user{i}@bench" for i in range(args.users)]
    for u in users:
        await gateway.register(u, u, "")
    await defer.gatherResults([gateway.session_opened(frontend, u, "s", 4) for u in users])
    while len(frontend.connected) < len(users):
        await task.deferLater(reactor, 0.05, lambda: None)
    backends = len(pool.ready_backends())

    total = args.messages
    state = {"next": 0}
    finished: defer.Deferred[None] = defer.Deferred()

    def pump() -> None:
        while state["next"] < total and state["next"] - frontend.received < args.window:
            n = state["next"]
            body = str(n)
            frontend.sent_at[body] = time.perf_counter()
            gateway.send_message(users[n % len(users)], "echo", body)
            state["next"] = n + 1
        if frontend.received >= total and not finished.called:
            finished.callback(None)

    batch = {"pending": False}

    def on_echo() -> None:
        if not batch["pending"]:
            batch["pending"] = True

            def later() -> None:
                batch["pending"] = False
                pump()
            reactor.callLater(0, later)  # type: ignore[attr-defined]

    frontend.on_echo = on_echo
    started = time.perf_counter()
    pump()
    await finished
    elapsed = time.perf_counter() - started
    rate = total / elapsed
    print(f"{'users':>6} {'backends':>8} {'messages':>9} {'window':>7} {'seconds':>8} {'msg/s':>9} "
          f"{'p50 ms':>7} {'p99 ms':>7}")
    print(f"{len(users):>6} {backends:>8} {total:>9} {args.window:>7} {elapsed:>8.2f} {rate:>9.0f} "
          f"{percentile(frontend.latencies, 0.5) * 1000:>7.2f} {percentile(frontend.latencies, 0.99) * 1000:>7.2f}")
    await pool.shutdown()
    await database.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--window", type=int, default=2000)
    parser.add_argument("--per-backend", type=int, default=100)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args)))


if __name__ == "__main__":
    main()
