"""Soak: many users on both frontends chatting with echo for minutes, while backends get killed.

Starts a private Prosody (``tests/peers/prosody.py``) and ``twistd -n transport`` as real processes on
loopback: XMPP component and WebSocket frontend, echo backend, SQLite (the default database). Half of the
users are slixmpp clients (through Prosody, registered with the transport in-band), half ``websockets``
clients (validator mode with HMAC tokens, so that logins cost no password hashing). All clients run in
this one process (the load generator).

Each user sends a message with a unique body to the echo buddy, waits for its echo (or an error), then
waits a random time (exponential, mean ``1 / --rate`` seconds) before the next one. Every ``--kill-every``
seconds one backend that has users is SIGKILLed; the gateway logs its users in again and re-sends what
the dead backend had not confirmed. Every ``--sample`` seconds the main instance's resident memory
(``/proc/PID/status``) and the echo count are recorded.

Reported: messages sent / echoed / refused with an error / lost (neither, after a final wait) /
duplicated; throughput; round-trip latency percentiles (send to echo, per frontend and all); backends
killed and crashes the gateway handled; the main instance's RSS at start, end and peak; and a PNG of RSS
(and throughput) over time with the kills marked.

    python benchmarks/soak.py [--users 1000] [--minutes 10] [--rate 0.1] [--kill-every 120]
                              [--png docs/soak-rss.png]

The plot needs matplotlib (``pip install matplotlib``; Agg backend, no display); ``--png ''`` skips it.
Not run in CI (minutes long). Results: docs/performance.md, section "Soak".
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import re
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                          if p])

from tests.chaos.harness import GatewayProcess, free_port, rss_kib  # noqa: E402
from tests.peers.backends import ECHO  # noqa: E402
from tests.peers.prosody import ProsodyServer  # noqa: E402
from transport.frontends.websocket.tokens import issue_token  # noqa: E402

C = "{jabber:client}"
SECRET = "soak-secret"


@dataclass
class Message:
    frontend: str
    sent: float
    echoes: int = 0
    latency: float | None = None
    error: str = ""


@dataclass
class Stats:
    messages: dict[str, Message] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    unknown: int = 0

    def new(self, user: str, frontend: str) -> tuple[str, Message]:
        tag = f"soak {user} {next(self.counter)}"
        m = self.messages[tag] = Message(frontend, time.monotonic())
        return tag, m

    def echo(self, tag: str) -> Message | None:
        m = self.messages.get(tag)
        if m is None:
            self.unknown += 1
            return None
        m.echoes += 1
        if m.latency is None:
            m.latency = time.monotonic() - m.sent
        return m


class User:
    """One user: send, wait for the echo or an error, pause, again."""

    frontend = ""

    def __init__(self, name: str, stats: Stats) -> None:
        self.name = name
        self.stats = stats
        self.answered = asyncio.Event()
        self.current: Message | None = None

    def answer(self, m: Message | None) -> None:
        if m is not None and m is self.current:
            self.answered.set()

    async def send(self, tag: str) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def run(self, rate: float, until: float, rng: random.Random) -> None:
        await asyncio.sleep(rng.uniform(0, 1 / rate))
        while time.monotonic() < until:
            tag, m = self.stats.new(self.name, self.frontend)
            self.current = m
            self.answered.clear()
            await self.send(tag)
            try:
                await asyncio.wait_for(self.answered.wait(), 120)
            except TimeoutError:
                pass  # counted as lost unless it comes before the end
            await asyncio.sleep(rng.expovariate(rate))


class XmppUser(User):
    frontend = "xmpp"

    def __init__(self, server: ProsodyServer, account: str, stats: Stats) -> None:
        import slixmpp

        super().__init__(account, stats)
        self.server = server
        self.echo = f"echo@{server.component}"
        self.xmpp = slixmpp.ClientXMPP(f"{server.jid(account)}/soak", server.password)
        self.xmpp.enable_plaintext = True
        self.xmpp.enable_starttls = False
        self.xmpp.enable_direct_tls = False
        self.xmpp.plugin["feature_mechanisms"].unencrypted_plain = True
        self.xmpp.auto_authorize = True
        self.xmpp.auto_subscribe = True
        self.xmpp.add_filter("in", self._incoming)
        self.xmpp.add_event_handler("session_start", self._session_start)
        self.xmpp.add_event_handler("disconnected", lambda _e: self._reconnect())
        self.started = asyncio.Event()
        self.echo_online = asyncio.Event()
        self.stopping = False
        self.ids = itertools.count(1)
        self.by_id: dict[str, Message] = {}

    def _reconnect(self) -> None:
        if not self.stopping:
            asyncio.get_event_loop().call_later(1.0, self.connect)

    def connect(self) -> None:
        self.xmpp.connect("127.0.0.1", self.server.c2s_port)

    async def _session_start(self, _e: Any) -> None:
        self.xmpp.send_presence()
        await self.xmpp.get_roster()
        self.started.set()

    def _incoming(self, stanza: Any) -> Any:
        e = stanza.xml
        if e.tag == C + "presence" and e.get("from") == self.echo and e.get("type") is None:
            self.echo_online.set()
        elif e.tag == C + "message":
            body = e.findtext(C + "body")
            if e.get("type") == "error":
                m = self.by_id.get(e.get("id", ""))
                if m is not None:
                    m.error = m.error or "xmpp error"
                    self.answer(m)
            elif body and e.get("from", "").startswith(self.echo):
                self.answer(self.stats.echo(body))
        return stanza

    async def start(self) -> None:
        self.connect()
        await asyncio.wait_for(self.started.wait(), 300)
        self.xmpp.send_raw(f"<iq type='set' id='reg' to='{self.server.component}'><query xmlns='jabber:iq:register'>"
                           f"<username>{self.name}</username><password>pw</password></query></iq>")
        await asyncio.wait_for(self.echo_online.wait(), 300)

    async def send(self, tag: str) -> None:
        ident = f"s{next(self.ids)}"
        assert self.current is not None
        self.by_id[ident] = self.current
        self.xmpp.send_raw(f"<message to='{self.echo}' type='chat' id='{ident}'><body>{tag}</body></message>")

    async def stop(self) -> None:
        self.stopping = True
        self.xmpp.disconnect()


class WsUser(User):
    frontend = "websocket"

    def __init__(self, url: str, name: str, stats: Stats) -> None:
        super().__init__(name, stats)
        self.url = url
        self.ws: Any = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, max_size=None, open_timeout=300, ping_interval=None)
        await self.ws.recv()  # handshake
        await self.ws.send(json.dumps({"cmd": "auth", "validator": issue_token(SECRET.encode(), self.name)}))
        asyncio.ensure_future(self._read())
        await asyncio.wait_for(self.connected.wait(), 300)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                p = json.loads(raw)
                cmd = p.get("cmd")
                if cmd == "gateway_status" and p.get("connected"):
                    self.connected.set()
                elif cmd == "message_new" and p.get("channel") == "dm:echo" and p["message"]["user"] == "echo":
                    self.answer(self.stats.echo(p["message"]["content"]))
                elif cmd in ("error", "gateway_message_failed", "rate_limit") and self.current is not None:
                    self.current.error = self.current.error or f"{cmd}: {p.get('val')}"
                    self.answer(self.current)
        except Exception:
            pass

    async def send(self, tag: str) -> None:
        await self.ws.send(json.dumps({"cmd": "message_new", "channel": "dm:echo", "content": tag}))

    async def stop(self) -> None:
        await self.ws.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def pick_victim(gateway: GatewayProcess, rng: random.Random) -> tuple[int, int, int] | None:
    """A random backend that has users: (pid, its XMPP users, its WebSocket users)."""
    backends: list[tuple[int, int, int]] = []
    for line in gateway.ctl("online_users_per_backend", check=False).stdout.splitlines():
        m = re.match(r"\S+ \(pid (\d+)\): \d+ users", line)
        if m:
            backends.append((int(m.group(1)), 0, 0))
        elif line.startswith("   ") and backends:
            pid, x, w = backends[-1]
            backends[-1] = (pid, x + 1, w) if "@" in line else (pid, x, w + 1)
    busy = [b for b in backends if b[1] + b[2] > 0]
    return rng.choice(busy) if busy else None


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    n_xmpp = args.users // 2
    n_ws = args.users - n_xmpp
    accounts = tuple(f"u{i:04d}" for i in range(n_xmpp))
    work = Path(tempfile.mkdtemp(prefix="transport-soak-"))
    prosody = ProsodyServer(accounts=accounts)
    prosody.start()
    web_port, backend_port = free_port(), free_port()
    backends = max(1, -(-args.users // args.users_per_backend))
    ini = "\n".join([
        "[service]", f"jid = {prosody.component}", "server = 127.0.0.1", f"port = {prosody.component_port}",
        f"password = {prosody.component_secret}", f"backend = {ECHO}", f"state_dir = {work / 'state'}",
        f"portfile = {work / 'backend.port'}", f"backend_port = {backend_port}",
        f"web_port = tcp:{web_port}:interface=127.0.0.1", f"users_per_backend = {args.users_per_backend}",
        f"start_backends = {backends}", "login_retry_delay = 1", "login_attempts = 6",
        "[xmpp]", "enabled = true", "[websocket]", "enabled = true", "auth_mode = validator",
        f"validator_secret = {SECRET}", "rate_limit_per_minute = 100000", "rate_limit_burst = 100000",
        "max_invalid = 100000", ""])
    gateway = GatewayProcess(work, ini, web_port, backend_port)
    stats = Stats()
    users: list[User] = []
    samples: list[tuple[float, int, int]] = []  # (seconds since start of chatting, RSS KiB, echoes so far)
    kills: list[float] = []
    try:
        gateway.start()
        gateway.wait_ready(backends, timeout=600)
        t0 = time.monotonic()
        xs = [XmppUser(prosody, a, stats) for a in accounts]
        ws = [WsUser(gateway.ws_url, f"w{i:04d}", stats) for i in range(n_ws)]
        limit = asyncio.Semaphore(50)

        async def start(u: Any) -> None:
            async with limit:
                await u.start()
        await asyncio.gather(*(start(u) for u in [*xs, *ws]))
        users = [*xs, *ws]
        login_seconds = time.monotonic() - t0
        print(f"{len(users)} users logged in in {login_seconds:.1f} s", flush=True)
        rss_before = rss_kib(gateway.pid)
        crashed_before = gateway.crashed_count()

        begin = time.monotonic()
        until = begin + args.minutes * 60
        rng = random.Random(1)
        kill_rng = random.Random(2)
        tasks = [asyncio.ensure_future(u.run(args.rate, until, random.Random(rng.random()))) for u in users]

        async def sample() -> None:
            while time.monotonic() < until + 5:
                echoed = sum(1 for m in stats.messages.values() if m.echoes)
                samples.append((time.monotonic() - begin, rss_kib(gateway.pid), echoed))
                await asyncio.sleep(args.sample)

        async def killer() -> None:
            if args.kill_every <= 0:
                return
            while True:
                await asyncio.sleep(args.kill_every)
                if time.monotonic() > until - 30:
                    return
                victim = await loop.run_in_executor(None, pick_victim, gateway, kill_rng)
                if victim is not None:
                    os.kill(victim[0], signal.SIGKILL)
                    kills.append(time.monotonic() - begin)
                    print(f"{kills[-1]:6.0f} s: killed backend pid {victim[0]} with {victim[1]} XMPP and "
                          f"{victim[2]} WebSocket users", flush=True)
        sampler = asyncio.ensure_future(sample())
        killing = asyncio.ensure_future(killer())
        await asyncio.gather(*tasks)
        killing.cancel()
        # a final wait for late echoes
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(not m.echoes and not m.error for m in stats.messages.values()):
            await asyncio.sleep(0.5)
        await sampler
        chatting = until - begin
        rss_after = rss_kib(gateway.pid)
        crashed = gateway.crashed_count() - crashed_before
        await asyncio.gather(*(u.stop() for u in users), return_exceptions=True)
    finally:
        gateway.cleanup()
        prosody.cleanup()

    ms = list(stats.messages.values())
    result: dict[str, Any] = {
        "users": args.users, "minutes": args.minutes, "login_seconds": login_seconds,
        "sent": len(ms), "echoed": sum(1 for m in ms if m.echoes),
        "refused": sum(1 for m in ms if m.error and not m.echoes),
        "lost": sum(1 for m in ms if not m.echoes and not m.error),
        "duplicated": sum(1 for m in ms if m.echoes > 1), "unknown_echoes": stats.unknown,
        "throughput": sum(1 for m in ms if m.echoes) / chatting,
        "kills": len(kills), "crashes_handled": crashed,
        "rss_before_kib": rss_before, "rss_after_kib": rss_after, "rss_peak_kib": max(s[1] for s in samples),
    }
    for name, sel in (("all", ms), ("xmpp", [m for m in ms if m.frontend == "xmpp"]),
                      ("websocket", [m for m in ms if m.frontend == "websocket"])):
        lat = [m.latency * 1000 for m in sel if m.latency is not None]
        result[f"latency_{name}"] = (percentile(lat, 0.5), percentile(lat, 0.9), percentile(lat, 0.99),
                                     max(lat) if lat else float("nan"), len(lat))
    if args.png:
        plot(args.png, samples, kills, result)
    return result


def plot(path: str, samples: list[tuple[float, int, int]], kills: list[float], result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s[0] / 60 for s in samples]
    rss = [s[1] / 1024 for s in samples]
    rate = [(b[2] - a[2]) / max(1e-9, b[0] - a[0]) for a, b in itertools.pairwise(samples)]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    ax.plot(t, rss, color="tab:blue", label="main instance RSS (MiB)")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS, MiB", color="tab:blue")
    ax.set_ylim(0, max(rss) * 1.3)
    ax2 = ax.twinx()
    ax2.plot(t[1:], rate, color="tab:gray", alpha=0.5, linewidth=0.8, label="echoes/s")
    ax2.set_ylabel("echoes per second", color="tab:gray")
    ax2.set_ylim(0, max(rate) * 1.3 if rate and max(rate) > 0 else 1)
    for i, k in enumerate(kills):
        ax.axvline(k / 60, color="tab:red", linestyle="--", linewidth=0.8,
                   label="backend SIGKILLed" if i == 0 else None)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower right", fontsize=8)
    ax.set_title(f"Soak: {result['users']} users (XMPP + WebSocket) chatting with echo, "
                 f"{result['minutes']:g} min", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1000, help="users, half XMPP and half WebSocket")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long they chat")
    parser.add_argument("--rate", type=float, default=0.1, help="messages per second per user (mean)")
    parser.add_argument("--kill-every", type=float, default=120.0, help="seconds between backend kills (0: none)")
    parser.add_argument("--users-per-backend", type=int, default=100)
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--png", default=str(ROOT / "docs" / "soak-rss.png"), help="the plot ('' for none)")
    args = parser.parse_args()
    result = asyncio.run(soak(args))
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'users':>6} {'minutes':>7} {'sent':>7} {'echoed':>7} {'refused':>7} {'lost':>5} {'dup':>4} "
          f"{'msg/s':>7} {'kills':>5} {'crashes':>7} {'RSS start':>10} {'RSS end':>9} {'RSS peak':>9}")
    r = result
    print(f"{r['users']:>6} {r['minutes']:>7g} {r['sent']:>7} {r['echoed']:>7} {r['refused']:>7} {r['lost']:>5} "
          f"{r['duplicated']:>4} {r['throughput']:>7.1f} {r['kills']:>5} {r['crashes_handled']:>7} "
          f"{r['rss_before_kib'] / 1024:>7.1f} MiB {r['rss_after_kib'] / 1024:>5.1f} MiB "
          f"{r['rss_peak_kib'] / 1024:>5.1f} MiB")
    print()
    print(f"{'frontend':<10} {'n':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name in ("xmpp", "websocket", "all"):
        p50, p90, p99, mx, n = r[f"latency_{name}"]
        print(f"{name:<10} {n:>7} {p50:>8.1f} {p90:>8.1f} {p99:>8.1f} {mx:>8.1f}")
    print(f"\nlogins: {r['login_seconds']:.1f} s for {r['users']} users; unknown echoes: {r['unknown_echoes']}")
    print(json.dumps({k: v for k, v in r.items()}, default=str))


if __name__ == "__main__":
    main()
