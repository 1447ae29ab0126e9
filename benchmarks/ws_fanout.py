"""WebSocket fan-out: one message to a channel with 1, 100, 1000 connected viewers.

Starts ``twistd -n transport`` (echo backend, WebSocket frontend in validator
mode with an HMAC secret so that 1000 logins cost no password hashing, rate
limits lifted) on a free loopback port, connects N viewers plus one sender with
the ``websockets`` asyncio client, and measures:

* latency: from sending ``message_new`` until the *last* viewer has the
  broadcast (p50 / p99 over ``--messages`` messages sent one at a time);
* throughput: ``--burst`` messages sent back to back; messages/s until every
  viewer has all of them, and the deliveries/s that makes.

Clients and server share the machine (2 cores in docs/performance.md), so the
figures are a floor. Usage: ``python benchmarks/ws_fanout.py [--viewers 1,100,1000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from tests.browser.processes import TwistdInstance  # noqa: E402
from transport.frontends.websocket.tokens import issue_token  # noqa: E402

SECRET = "bench-secret"
INI = f"""[websocket]
auth_mode = validator
validator_secret = {SECRET}
rate_limit_per_minute = 1000000
rate_limit_burst = 1000000
max_message_size = 1MiB
"""


async def login(url: str, name: str) -> ClientConnection:
    ws = await connect(url, max_size=None, open_timeout=120, ping_interval=None)
    await ws.recv()  # handshake
    await ws.send(json.dumps({"cmd": "auth", "validator": issue_token(SECRET.encode(), name)}))
    while json.loads(await ws.recv())["cmd"] != "ready":
        pass
    return ws


class Viewer:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: dict[str, float] = {}
        self.task = asyncio.create_task(self.run())

    async def run(self) -> None:
        async for raw in self.ws:
            if '"message_new"' in raw:
                packet = json.loads(raw)
                self.seen[packet["message"]["content"]] = time.perf_counter()


async def wait_all(viewers: list[Viewer], contents: list[str], timeout: float = 300.0) -> None:
    deadline = time.perf_counter() + timeout
    while not all(c in v.seen for v in viewers for c in contents):
        if time.perf_counter() > deadline:
            raise TimeoutError("viewers did not get every message")
        await asyncio.sleep(0.002)


async def run_case(url: str, n: int, messages: int, burst: int) -> dict[str, float]:
    viewers: list[Viewer] = []
    for start in range(0, n, 100):
        batch = await asyncio.gather(*(login(url, f"v{n}x{i}") for i in range(start, min(n, start + 100))))
        viewers.extend(Viewer(ws) for ws in batch)
    sender = await login(url, f"sender{n}")
    drain = asyncio.create_task(_drain(sender))
    latencies = []
    for i in range(messages):
        content = f"lat-{n}-{i}"
        sent = time.perf_counter()
        await sender.send(json.dumps({"cmd": "message_new", "channel": "general", "content": content}))
        await wait_all(viewers, [content])
        latencies.append(max(v.seen[content] for v in viewers) - sent)
    contents = [f"burst-{n}-{i}" for i in range(burst)]
    start_t = time.perf_counter()
    for content in contents:
        await sender.send(json.dumps({"cmd": "message_new", "channel": "general", "content": content}))
    await wait_all(viewers, contents)
    elapsed = time.perf_counter() - start_t
    for v in viewers:
        v.task.cancel()
        await v.ws.close()
    drain.cancel()
    await sender.close()
    latencies.sort()
    return {"p50": statistics.median(latencies) * 1000,
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
            "msgs": burst / elapsed, "deliveries": burst * n / elapsed}


def _cpu(instance: TwistdInstance) -> float:
    """CPU seconds (user + system) the twistd process has used so far."""
    assert instance.process is not None
    fields = Path(f"/proc/{instance.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drain(ws: ClientConnection) -> None:
    async for _ in ws:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", default="1,100,1000")
    parser.add_argument("--messages", type=int, default=100, help="messages for the latency figures")
    parser.add_argument("--burst", type=int, default=200, help="messages for the throughput figures")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # inherited by twistd
    with tempfile.TemporaryDirectory(prefix="ws-fanout-") as tmp:
        instance = TwistdInstance(Path(tmp), INI)
        instance.start()
        try:
            print(f"{'viewers':>8} {'p50 ms':>9} {'p99 ms':>9} {'msgs/s':>9} {'deliveries/s':>13} "
                  f"{'server cpu s':>13} {'client cpu s':>13}")
            for n in (int(x) for x in args.viewers.split(",")):
                server_before, client_before = _cpu(instance), time.process_time()
                r = asyncio.run(run_case(instance.ws_url, n, args.messages, args.burst))
                server_cpu, client_cpu = _cpu(instance) - server_before, time.process_time() - client_before
                print(f"{n:>8} {r['p50']:>9.2f} {r['p99']:>9.2f} {r['msgs']:>9.0f} {r['deliveries']:>13.0f} "
                      f"{server_cpu:>13.2f} {client_cpu:>13.2f}", flush=True)
        finally:
            instance.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
