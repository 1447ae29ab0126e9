"""XMPP end-to-end benchmark: N slixmpp clients chatting with ``echo`` through Prosody and the gateway.

Starts a private Prosody (tests/peers/prosody.py) with N accounts and ``twistd -n
transport`` (XMPP frontend, echo backend) as real processes on loopback. Each
client registers, waits for the echo buddy, then sends MESSAGES messages one
after the other, each waiting for its echo (so latency is a full round trip:
client → Prosody → component → gateway → backend → back). All N clients run at
once. Reported per N: messages/s (echoes received over the sending phase),
p50/p99 round-trip latency, and the gateway process's CPU use over the sending
phase (100% = one core), with Prosody's and the clients' process (all slixmpp
clients share one Python process, the load generator) for comparison.

    python benchmarks/xmpp_e2e.py [--clients 1 10 100] [--messages 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1])]
                                           + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

from tests.peers.backends import MainInstance
from tests.peers.prosody import ProsodyServer, XmppClient

C = "{jabber:client}"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_client(server: ProsodyServer, account: str, messages: int, start: asyncio.Event,
                     ready: list[str], latencies: list[float]) -> None:
    client = await XmppClient(server, account, "bench").start(120)
    mark = len(client.received)
    client.send_raw(f"<iq type='set' id='reg' to='{server.component}'><query xmlns='jabber:iq:register'>"
                    f"<username>{account}</username><password>pw</password></query></iq>")
    echo = f"echo@{server.component}"
    await client.wait_for(lambda e: e.tag == C + "presence" and e.get("from") == echo and e.get("type") is None,
                          300, mark)
    ready.append(account)
    await start.wait()
    for i in range(messages):
        mark = len(client.received)
        body = f"{account} {i}"
        sent = time.perf_counter()
        client.send_raw(f"<message to='{echo}' type='chat'><body>{body}</body></message>")
        await client.wait_for(lambda e, b=body: e.tag == C + "message" and e.findtext(C + "body") == b, 120, mark)
        latencies.append(time.perf_counter() - sent)
    await client.stop()


async def run_round(server: ProsodyServer, gateway_pid: int, accounts: list[str], messages: int) -> dict[str, float]:
    assert server.process is not None
    prosody_pid = server.process.pid
    start = asyncio.Event()
    latencies: list[float] = []
    ready: list[str] = []
    tasks = [asyncio.ensure_future(one_client(server, a, messages, start, ready, latencies)) for a in accounts]
    # wait until every client is registered and sees echo
    while len(ready) < len(tasks):
        await asyncio.sleep(0.2)
        for t in tasks:
            if t.done() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    cpu0, t0 = cpu_seconds(gateway_pid), time.perf_counter()
    prosody0, clients0 = cpu_seconds(prosody_pid), cpu_seconds(os.getpid())
    start.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds(gateway_pid) - cpu0
    prosody_cpu = cpu_seconds(prosody_pid) - prosody0
    clients_cpu = cpu_seconds(os.getpid()) - clients0
    latencies.sort()
    return {"messages": len(latencies), "rate": len(latencies) / elapsed,
            "p50": statistics.median(latencies) * 1000,
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
            "cpu": 100.0 * cpu / elapsed, "prosody": 100.0 * prosody_cpu / elapsed,
            "clients": 100.0 * clients_cpu / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--messages", type=int, default=200, help="messages per client")
    args = parser.parse_args()
    total = sum(args.clients)
    accounts = [f"user{i}" for i in range(total)]
    server = ProsodyServer(accounts=tuple(accounts))
    workdir = Path(tempfile.mkdtemp(prefix="xmpp-bench-"))
    gateway = MainInstance(workdir, "[xmpp]\nenabled = true\n[websocket]\nenabled = false\n[logging]\nlevel = warn\n",
                           jid=server.component, server="127.0.0.1", port=server.component_port,
                           password=server.component_secret, users_per_backend=1000)
    try:
        server.start()
        gateway.start()
        assert gateway.process is not None
        print(f"{'clients':>8} {'messages':>9} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'gateway CPU':>12} "
              f"{'Prosody CPU':>12} {'clients CPU':>12}")
        offset = 0
        for n in args.clients:
            chunk = accounts[offset:offset + n]
            offset += n
            result = asyncio.run(run_round(server, gateway.process.pid, chunk, args.messages))
            print(f"{n:>8} {int(result['messages']):>9} {result['rate']:>8.0f} {result['p50']:>8.1f} "
                  f"{result['p99']:>8.1f} {result['cpu']:>11.0f}% {result['prosody']:>11.0f}% "
                  f"{result['clients']:>11.0f}%", flush=True)
    finally:
        gateway.cleanup()
        server.cleanup()


if __name__ == "__main__":
    main()
