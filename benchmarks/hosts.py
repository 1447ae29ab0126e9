"""Hosts: directory announce rate, search-chain time and memory; join + chat relay to many members.

Three parts, each printed as rows of one table:

1. the directory alone (sans-I/O): N announcements, a full search chain (pages of
   ``--page-size``), and the memory the entries take (tracemalloc);
2. the network host over TLS on loopback, in this process: announcements as user
   hosts make them (one TLS connection per announcement, ``--tls-announces`` of them,
   16 at a time), and the full search + MORE chain over the N-entry directory;
3. a group host over TLS with ``--members`` clients: time for all to connect and join
   (SQLite membership records), then ``--messages`` chat messages from one member,
   relayed to every other member, until all have arrived.

    python benchmarks/hosts.py [--entries 100000] [--members 1000] [--messages 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twisted.internet import defer, task

from transport import config as configuration
from transport.hosts.client import HostClient
from transport.hosts.directory import Directory
from transport.hosts.identity import Identity
from transport.hosts.network import NetworkHost
from transport.hosts.packets import Announce, ChatReply, EHostType, HostedInfo, OnlineId, Packet
from transport.hosts.protocol import PeerConnection, PeerFactory, listen, url_to_endpoint
from transport.hosts.service import HostsService
from transport.storage.database import open_sqlite

THUMB = OnlineId(b"\x07" * 16)
ROWS: list[tuple[str, str, str]] = []


def row(part: str, what: str, value: str) -> None:
    ROWS.append((part, what, value))
    print(f"  {part:<10} {what:<44} {value}", flush=True)


def entry(i: int) -> HostedInfo:
    return HostedInfo(OnlineId(os.urandom(16)), 1_700_000_000_000 + i, f"ptop://10.0.{i // 256 % 256}.{i % 256}:4621",
                      f"Host number {i}", "A user host announced for the benchmark", THUMB)


def bench_directory(entries: int, page_size: int) -> list[HostedInfo]:
    clock = task.Clock()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    # The entries as a server holds them: the decoded announcement plus the directory's index.
    infos = [entry(i) for i in range(entries)]
    directory = Directory(clock.seconds, 1800, page_size)
    t0 = time.perf_counter()
    for info in infos:
        directory.announce(EHostType.GROUP, info)
    t1 = time.perf_counter()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    # the rate without tracemalloc's overhead
    fresh = Directory(clock.seconds, 1800, page_size)
    t0 = time.perf_counter()
    for info in infos:
        fresh.announce(EHostType.GROUP, info)
    t1 = time.perf_counter()
    row("directory", f"announce {entries:,} (new entries)", f"{entries / (t1 - t0):,.0f} /s")
    t0 = time.perf_counter()
    for info in infos[: entries // 10]:
        directory.announce(EHostType.GROUP, info)
    t1 = time.perf_counter()
    row("directory", f"re-announce {entries // 10:,} (replace)", f"{entries // 10 / (t1 - t0):,.0f} /s")
    t0 = time.perf_counter()
    page = directory.search(EHostType.GROUP)
    count, pages = len(page.entries), 1
    while page.more_exist:
        page = directory.search(EHostType.GROUP, start=page.next_id)
        count += len(page.entries)
        pages += 1
    t1 = time.perf_counter()
    assert count == entries, count
    row("directory", f"full search chain ({pages:,} pages of {page_size})", f"{(t1 - t0) * 1000:,.0f} ms")
    row("directory", f"memory for {entries:,} entries (tracemalloc)",
        f"{(after - before) / 2**20:,.1f} MiB ({(after - before) / entries:,.0f} B/entry)")
    return infos


async def bench_network(reactor: Any, infos: list[HostedInfo], tls_announces: int, page_size: int) -> None:
    ident = Identity.generate("bench-network")
    directory = Directory(reactor.seconds, 1800, page_size)
    handler = NetworkHost(directory, ident.online_id)
    for info in infos:
        handler.announce_local(EHostType.GROUP, info)
    factory = PeerFactory(handler, ident, Announce(src=ident.online_id, name="bench"), reactor=reactor)
    port = await listen(reactor, "tcp:0:interface=127.0.0.1", factory)
    endpoint = f"tcp:127.0.0.1:{port.getHost().port}"  # type: ignore[attr-defined]
    identities = [Identity.generate(f"h{i}") for i in range(tls_announces)]
    semaphore = defer.DeferredSemaphore(16)

    async def announce(i: int, identity: Identity) -> None:
        c = await HostClient.connect(reactor, endpoint, identity, ident.online_id, timeout=300)
        await c.announce(EHostType.CHAT_ROOM, f"ptop://127.0.0.1:{i + 1}", f"Room {i}", "bench", THUMB)
        await c.close()

    t0 = time.perf_counter()
    await defer.gatherResults([semaphore.run(lambda i=i, x=x: defer.ensureDeferred(announce(i, x)))
                               for i, x in enumerate(identities)], consumeErrors=True)
    t1 = time.perf_counter()
    row("network", f"announce over TLS, new connection each ({tls_announces:,})",
        f"{tls_announces / (t1 - t0):,.0f} /s")
    searcher = await HostClient.connect(reactor, endpoint, Identity.generate("searcher"), ident.online_id,
                                        timeout=300)
    t0 = time.perf_counter()
    found = await searcher.search(EHostType.GROUP)
    t1 = time.perf_counter()
    assert len(found) == len(infos) and len({f.online_id for f in found}) == len(infos)
    row("network", f"search + MORE chain over TLS ({len(infos):,} entries)", f"{(t1 - t0):,.2f} s")
    await searcher.close()
    await port.stopListening()


class CountingClient(HostClient):
    """Counts relayed chat instead of keeping it."""

    chats = 0
    target = 0
    done: defer.Deferred[None] | None = None

    def packet_received(self, conn: PeerConnection, packet: Packet) -> None:
        if isinstance(packet, ChatReply):
            CountingClient.chats += 1
            if CountingClient.chats == CountingClient.target and CountingClient.done is not None:
                CountingClient.done.callback(None)
            return
        super().packet_received(conn, packet)


async def bench_group(reactor: Any, members: int, messages: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="hosts-bench-"))
    config = configuration.load_text(f"""
[service]
state_dir = {tmp / 'state'}
[hosts]
enabled = true
network_host = true
listen = tcp:0:interface=127.0.0.1
[host:bench]
type = group
title = Benchmark group
description = many members
""", str(tmp / "bench.ini"))
    database = open_sqlite(tmp / "bench.sqlite3")
    database.start()
    service = HostsService(config, reactor, database)
    service.startService()
    host = service.user_hosts["bench"]
    await host.ready
    endpoint = url_to_endpoint(host.host.settings.url)
    identities = [Identity.generate(f"m{i}") for i in range(members)]
    semaphore = defer.DeferredSemaphore(32)
    clients: list[CountingClient] = []

    async def join(identity: Identity) -> None:
        c = await CountingClient.connect(reactor, endpoint, identity, host.online_id, name="member", timeout=600)
        result = await c.join(EHostType.GROUP)
        assert result.granted
        clients.append(c)  # type: ignore[arg-type]

    t0 = time.perf_counter()
    await defer.gatherResults([semaphore.run(lambda x=x: defer.ensureDeferred(join(x))) for x in identities],
                              consumeErrors=True)
    t1 = time.perf_counter()
    row("group", f"{members:,} clients connect (TLS) and join", f"{(t1 - t0):,.1f} s ({members / (t1 - t0):,.0f}/s)")
    CountingClient.chats = 0
    CountingClient.target = messages * (members - 1)
    CountingClient.done = defer.Deferred()
    t0 = time.perf_counter()
    for i in range(messages):
        clients[0].chat(f"message {i}", EHostType.GROUP)
    await CountingClient.done
    t1 = time.perf_counter()
    row("group", f"{messages} chats relayed to {members - 1:,} members each",
        f"{(t1 - t0):,.2f} s ({CountingClient.target / (t1 - t0):,.0f} deliveries/s)")
    for c in clients:
        c.close()
    await service.stopService()
    await database.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--tls-announces", type=int, default=2000)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20)
    args = parser.parse_args()
    print(f"hosts benchmark — {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}")
    print(f"  {'part':<10} {'measure':<44} value")
    infos = bench_directory(args.entries, args.page_size)

    async def run(reactor: Any) -> None:
        await bench_network(reactor, infos, args.tls_announces, args.page_size)
        await bench_group(reactor, args.members, args.messages)

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main()
