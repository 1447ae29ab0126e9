"""Shared by the chatd/statusd benchmarks: a chatd + statusd server in its own process.

``python benchmarks/chatd_common.py serve DIR SETUP N`` fills a fresh SQLite
directory in DIR (SETUP ``room``: an open room 1 with users 1..N as members;
``contacts``: users 2..N+1 each have user 1 in their contact list), starts chatd
and statusd on free loopback ports, prints ``PORTS <chatd> <statusd> <secret-hex>``
and runs until its stdin closes. The benchmarks run their clients in the parent
process, so the server has a core of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def rss_kib(pid: int) -> int:
    """Resident set size of process *pid* in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by process *pid*."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    def __init__(self, directory: str, setup: str, count: int) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen([sys.executable, __file__, "serve", directory, setup, str(count)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if not line or line[0] != "PORTS":
            raise RuntimeError(f"server did not start: {line}")
        self.chatd_port, self.statusd_port = int(line[1]), int(line[2])
        self.secret = bytes.fromhex(line[3])

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(60)


def serve(directory: str, setup: str, count: int) -> None:
    from twisted.internet import reactor, stdio
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.protocol import Protocol

    from transport.auth.tokens import HMACTokenValidator
    from transport.chatd import store
    from transport.chatd.directory import Directory
    from transport.chatd.server import ChatdServer
    from transport.chatd.session import SessionSettings
    from transport.statusd.server import StatusdServer
    from transport.storage.database import open_sqlite

    database = open_sqlite(Path(directory) / "bench.sqlite3", reactor)
    database.start()
    secret = os.urandom(32)
    validator = HMACTokenValidator(secret, reactor)
    directory_ = Directory(database, reactor, refresh_interval=0)
    settings = SessionSettings(max_send_buffer=64 * 1024 * 1024)
    chatd = ChatdServer(directory_, validator, settings)
    statusd = StatusdServer(directory_, validator, settings)

    def fill(txn: Any) -> None:
        if setup == "room":
            store.create_room(txn, 1, "bench", True)
            store.add_members(txn, 1, list(range(1, count + 1)))
        else:
            for userid in range(2, count + 2):
                store.add_contacts(txn, userid, [1])

    class Stdin(Protocol):
        def connectionLost(self, reason: Any = None) -> None:
            os._exit(0)  # the parent is done; nothing here needs a clean shutdown

    async def main() -> None:
        await database.migrate(store.MIGRATIONS)
        await database.run_interaction(fill)
        await directory_.start()
        c = await serverFromString(reactor, "tcp:0:interface=127.0.0.1:backlog=4096").listen(chatd.stream_factory())
        s = await serverFromString(reactor, "tcp:0:interface=127.0.0.1:backlog=4096").listen(statusd.stream_factory())
        print("PORTS", c.getHost().port, s.getHost().port, secret.hex(), flush=True)
        stdio.StandardIO(Stdin())

    from twisted.internet import defer
    defer.ensureDeferred(main()).addErrback(lambda f: (f.printTraceback(), reactor.stop()))
    reactor.run()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
