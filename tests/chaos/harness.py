"""The chaos suite's stack and traffic: real peers, real clients, and a ledger of every message.

:class:`ChaosStack`
    A private PostgreSQL server (its own, so that restarting it disturbs no other test), a private
    Prosody, and ``twistd -n transport`` as a real process with both frontends (the XEP-0114
    component and the WebSocket server), PostgreSQL as its database and the echo backend. The
    backend port is fixed, so the backends of every incarnation of the main instance can be found
    in ``/proc`` by their ``--port``.

:class:`XmppChatter` / :class:`WsChatter`
    One user each, on the shared asyncio loop (:class:`tests.peers.prosody.ClientLoop`): a slixmpp
    client through Prosody, or a ``websockets`` client. Each sends numbered messages to the echo
    buddy (bodies unique in the whole run) with a bounded number in flight, reconnects when its
    connection goes away, and records into the :class:`Ledger` what happened to each message.

:class:`Ledger`
    Per message: accepted (the WebSocket server broadcast it back to its sender), refused (an error
    came back: an XMPP error stanza, a WebSocket ``error`` or ``gateway_message_failed``), cut (the
    sender's own connection went away before any answer: the sender cannot know, so it may be
    delivered once or not at all), and how many times its echo arrived (live, and in the stored
    history). :meth:`Ledger.violations` lists every message that breaks the rule *delivered exactly
    once, or its sender got an error; never twice*.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.peers.backends import ECHO, MainInstance, backend_processes, process_alive
from tests.peers.postgres import PostgresServer
from tests.peers.prosody import ClientLoop, ProsodyServer, XmppClient

C = "{jabber:client}"
NS_RECEIPTS = "urn:xmpp:receipts"
NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_MUC_USER = "{http://jabber.org/protocol/muc#user}"
XMPP_ACCOUNTS = tuple(f"x{i}" for i in range(8))
PASSWORD = "pw-chaos-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident memory of *pid* from ``/proc/PID/status`` (KiB)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll *predicate* (outside any reactor: the stack is made of processes) until true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------- the stack


class GatewayProcess(MainInstance):
    """``twistd -n transport`` with both frontends; the log is appended to across restarts."""

    def __init__(self, directory: Path, ini: str, web_port: int, backend_port: int) -> None:
        self.dir = directory
        self.state = directory / "state"
        self.portfile = directory / "backend.port"
        self.config_path = directory / "transport.ini"
        self.config_path.write_text(ini)
        self.log_path = directory / "twistd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = backend_port
        self.web_port = web_port
        self.incarnations = 0

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.web_port}/ws"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 90.0) -> None:
        self.portfile.unlink(missing_ok=True)
        self.incarnations += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== chaos: start #{self.incarnations} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
                 "-l", "-", "transport", "-c", str(self.config_path)],
                cwd=self.dir, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
        sock = self.state / "admin.sock"

        def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"twistd exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            if not (self.portfile.exists() and self.portfile.read_text().strip() and sock.exists()):
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.web_port), timeout=2):
                    return True
            except OSError:
                return False
        wait_for(up, timeout, "twistd start")

    def terminate(self, timeout: float = 90.0) -> int:
        """SIGTERM and wait: the graceful shutdown (EXIT to the backends, then signals)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def backend_pids(self) -> list[int]:
        return backend_processes(self.port)

    def ready_backends(self) -> list[int]:
        result = self.ctl("status", check=False)
        return sorted(int(line.split("pid ")[1].split(",")[0])
                      for line in result.stdout.splitlines() if ": ready, pid " in line)

    def crashed_count(self) -> int:
        return int(self.ctl("crashed_backends_count").stdout.strip())


class ChaosStack:
    """PostgreSQL + Prosody + the main instance (see the module docstring)."""

    def __init__(self, directory: Path, *, ping_interval: float = 2.0, users_per_backend: int = 4,
                 max_queued_per_user: int = 50) -> None:
        self.dir = directory
        self.postgres = PostgresServer()
        self.prosody = ProsodyServer(accounts=XMPP_ACCOUNTS)
        self.postgres.start()
        try:
            self.dbname = self.postgres.create_database("chaos")
            self.prosody.start()
            web_port, backend_port = free_port(), free_port()
            ini = "\n".join([
                "[service]",
                f"jid = {self.prosody.component}",
                "server = 127.0.0.1",
                f"port = {self.prosody.component_port}",
                f"password = {self.prosody.component_secret}",
                f"backend = {ECHO}",
                f"state_dir = {directory / 'state'}",
                f"portfile = {directory / 'backend.port'}",
                f"backend_port = {backend_port}",
                f"web_port = tcp:{web_port}:interface=127.0.0.1",
                f"users_per_backend = {users_per_backend}",
                "start_backends = 2",
                f"ping_interval = {ping_interval}",
                "login_retry_delay = 0.5",
                "login_attempts = 6",
                "login_timeout = 30",
                "backend_start_timeout = 60",
                f"max_queued_per_user = {max_queued_per_user}",
                "shutdown_grace = 3",
                "[database]",
                "type = postgresql",
                f"database = {self.postgres.conninfo(self.dbname)}",
                "pool_size = 4",
                "[xmpp]",
                "enabled = true",
                "reconnect_initial_delay = 0.3",
                "reconnect_max_delay = 1",
                "session_grace = 60",
                "[websocket]",
                "enabled = true",
                "rate_limit_per_minute = 100000",
                "rate_limit_burst = 100000",
                "max_invalid = 100000",
                "channels = general:text",
                "",
            ])
            self.gateway = GatewayProcess(directory, ini, web_port, backend_port)
            self.gateway.start()
        except BaseException:
            self.cleanup()
            raise

    def cleanup(self) -> None:
        gateway = getattr(self, "gateway", None)
        if gateway is not None:
            gateway.cleanup()
        self.prosody.cleanup()
        self.postgres.cleanup()

    def orphans(self) -> list[int]:
        """Live backend processes of this instance (spawned with its backend port)."""
        return backend_processes(self.gateway.port)


# ---------------------------------------------------------------------------------------------- the ledger


@dataclass
class Sent:
    tag: str
    sender: str
    frontend: str
    accepted: bool = False
    acked: bool = False
    refused: str = ""
    cut: bool = False
    echoes: int = 0
    stored_echoes: int = 0
    stored_own: int = 0
    message_id: str = ""
    sent_at: float = field(default_factory=time.monotonic)

    @property
    def answered(self) -> bool:
        return self.accepted or bool(self.refused) or self.cut or self.echoes > 0

    @property
    def done(self) -> bool:
        """Nothing more is expected for it."""
        if self.refused or self.cut:
            return True
        return self.echoes > 0


@dataclass
class Ledger:
    scenario: str
    messages: dict[str, Sent] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    unknown_echoes: list[str] = field(default_factory=list)

    def new(self, sender: str, frontend: str) -> Sent:
        tag = f"chaos {self.scenario} {sender} #{next(self.counter)}"
        sent = Sent(tag, sender, frontend)
        self.messages[tag] = sent
        return sent

    def echo(self, tag: str) -> None:
        sent = self.messages.get(tag)
        if sent is None:
            if tag.startswith(f"chaos {self.scenario} "):
                self.unknown_echoes.append(tag)
            return
        sent.echoes += 1

    def pending(self) -> list[Sent]:
        return [m for m in self.messages.values() if not m.done]

    def counts(self) -> dict[str, int]:
        values = self.messages.values()
        return {"sent": len(self.messages), "echoed": sum(1 for m in values if m.echoes),
                "refused": sum(1 for m in values if m.refused), "cut": sum(1 for m in values if m.cut),
                "xmpp": sum(1 for m in values if m.frontend == "xmpp"),
                "websocket": sum(1 for m in values if m.frontend == "websocket")}

    def violations(self, history: bool = False) -> list[str]:
        """Every message that breaks the rule; *history*: the WebSocket history counts as delivery too."""
        out = [f"echo of a message never sent: {t}" for t in self.unknown_echoes]
        for m in self.messages.values():
            delivered = max(m.echoes, m.stored_echoes) if history else m.echoes
            if m.echoes > 1 or m.stored_echoes > 1:
                out.append(f"duplicate: {m}")
            elif m.refused or m.cut:
                continue  # the sender knows (an error), or cannot know (its connection broke): at most once
            elif delivered != 1:
                out.append(f"accepted but not delivered, and no error: {m}")
            elif m.frontend == "websocket" and not m.accepted:
                out.append(f"delivered but never acknowledged to its sender: {m}")
        return out


# ---------------------------------------------------------------------------------------------- chatters


class Chatter:
    """Common sending loop: at most *window* unanswered messages, one every *interval* seconds."""

    frontend = ""

    def __init__(self, name: str, window: int = 5, interval: float = 0.05) -> None:
        self.name = name
        self.window = window
        self.interval = interval
        self.ledger: Ledger | None = None
        self.online = False
        self.in_flight: list[Sent] = []
        self.sessions = 0
        self.paused = False

    def connection_lost(self) -> None:
        self.online = False
        for m in self.in_flight:
            if not m.answered:
                m.cut = True
        self.in_flight = []

    def _answered(self, m: Sent) -> None:
        if m in self.in_flight and (m.refused or m.echoes or m.accepted):
            self.in_flight.remove(m)

    async def chat(self, ledger: Ledger, until: asyncio.Event) -> None:
        self.ledger = ledger
        while not until.is_set():
            self.in_flight = [m for m in self.in_flight if not (m.echoes or m.refused or m.cut)]
            if self.online and not self.paused and len(self.in_flight) < self.window:
                m = ledger.new(self.name, self.frontend)
                self.in_flight.append(m)
                try:
                    await self.send(m)
                except Exception as e:  # the connection broke under us: never left this client
                    m.refused = f"not sent: {e!r}"
            await asyncio.sleep(self.interval)

    async def send(self, m: Sent) -> None:
        raise NotImplementedError


class XmppChatter(Chatter):
    """A slixmpp client (via Prosody) registered with the transport, chatting with ``echo@transport``."""

    frontend = "xmpp"

    def __init__(self, server: ProsodyServer, account: str, **kw: Any) -> None:
        super().__init__(server.jid(account), **kw)
        self.server = server
        self.account = account
        self.client = XmppClient(server, account, "chaos")
        self.client.reconnect = True
        self.echo_jid = f"echo@{server.component}"
        self.client.xmpp.add_filter("in", self._incoming)
        self.client.xmpp.add_event_handler("session_start", self._session_start)
        self.client.xmpp.add_event_handler("disconnected", lambda _e: self.connection_lost())
        self.by_id: dict[str, Sent] = {}
        self.ids = itertools.count(1)

    def _session_start(self, _event: Any) -> None:
        self.online = True
        self.sessions += 1

    def _incoming(self, stanza: Any) -> Any:
        e = stanza.xml
        if e.tag == C + "message" and self.ledger is not None:
            body = e.findtext(C + "body")
            receipt = e.find(f"{{{NS_RECEIPTS}}}received")
            if receipt is not None and receipt.get("id", "") in self.by_id:
                self.by_id[receipt.get("id", "")].acked = True  # the legacy network (the backend) has it
            if e.get("type") == "error":
                m = self.by_id.get(e.get("id", ""))
                if m is None and body:
                    m = self.ledger.messages.get(body)
                if m is not None and not m.refused:
                    err = e.find(C + "error")
                    m.refused = "xmpp error " + ",".join(c.tag.split("}")[-1] for c in (err if err is not None else []))
                    self._answered(m)
            elif e.get("from", "").startswith(self.echo_jid) and body and e.get("type") in ("chat", None):
                self.ledger.echo(body)
                m = self.ledger.messages.get(body)
                if m is not None:
                    self._answered(m)
        return stanza

    async def start(self) -> None:
        await self.client.start()

    async def register(self) -> None:
        mark = len(self.client.received)
        answer = await self.client.iq(
            f"<iq type='set' to='{self.server.component}'><query xmlns='jabber:iq:register'>"
            f"<username>{self.account}</username><password>pw</password></query></iq>")
        assert answer.get("type") == "result", answer
        await self.client.wait_for(lambda e: e.tag == C + "presence" and e.get("from") == self.echo_jid
                                   and e.get("type") is None, 90, mark)

    async def send(self, m: Sent) -> None:
        ident = f"c{next(self.ids)}-{self.account}"
        self.by_id[ident] = m
        m.message_id = ident
        self.client.send_raw(f"<message to='{self.echo_jid}' type='chat' id='{ident}'><body>{m.tag}</body>"
                             f"<request xmlns='{NS_RECEIPTS}'/></message>")

    async def wait_online(self, timeout: float = 120.0) -> None:
        """Until the transport shows as available again to this client (the user is logged in)."""
        mark = len(self.client.received)
        # a probe: the gateway answers with the echo buddy's presence once the user is logged in again
        self.client.send_raw(f"<presence to='{self.server.component}' type='probe'/>")
        await self.client.wait_for(lambda e: e.tag == C + "presence" and e.get("type") is None
                                   and e.get("from", "").startswith(self.server.component), timeout, mark)

    async def settings(self, submit: dict[str, str] | None = None) -> dict[str, str]:
        """Run the ``settings`` ad-hoc command; with *submit*, store those values."""
        first = await self.client.iq(f"<iq type='set' to='{self.server.component}'><command xmlns='{NS_COMMANDS}' "
                                     "node='settings' action='execute'/></iq>")
        cmd = first.find(f"{{{NS_COMMANDS}}}command")
        assert cmd is not None, first
        values = {f.get("var"): f.findtext("{jabber:x:data}value") or ""
                  for f in cmd.iter("{jabber:x:data}field")}
        if submit:
            fields = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in submit.items())
            done = await self.client.iq(
                f"<iq type='set' to='{self.server.component}'><command xmlns='{NS_COMMANDS}' node='settings' "
                f"sessionid='{cmd.get('sessionid')}'><x xmlns='jabber:x:data' type='submit'>{fields}</x>"
                "</command></iq>")
            assert done.get("type") == "result", done
        return values

    async def registered(self) -> str | None:
        """The legacy name the transport has for this user (None when not registered)."""
        form = await self.client.iq(f"<iq type='get' to='{self.server.component}'>"
                                    "<query xmlns='jabber:iq:register'/></iq>")
        query = form.find("{jabber:iq:register}query")
        if query is None or query.find("{jabber:iq:register}registered") is None:
            return None
        return query.findtext("{jabber:iq:register}username")

    async def join_room(self, room: str, nick: str) -> None:
        mark = len(self.client.received)
        occupant = f"{room}@{self.server.component}/{nick}"
        self.client.send_raw(f"<presence to='{occupant}'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        await self.client.wait_for(lambda e: e.get("from") == occupant and e.get("type") is None
                                   and any(s.get("code") == "110" for s in e.iter(NS_MUC_USER + "status")),
                                   90, mark)

    async def room_echo(self, room: str, text: str, timeout: float = 90.0) -> None:
        """A groupchat message to *room* comes back from its ``echo`` participant (the user is in it)."""
        mark = len(self.client.received)
        self.client.send_raw(f"<message to='{room}@{self.server.component}' type='groupchat'>"
                             f"<body>{text}</body></message>")
        await self.client.wait_for(lambda e: e.get("from") == f"{room}@{self.server.component}/echo"
                                   and e.findtext(C + "body") == text, timeout, mark)

    async def stop(self) -> None:
        await self.client.stop()


class WsChatter(Chatter):
    """A ``websockets`` client of the WebSocket frontend, chatting in ``dm:echo``; reconnects on its own."""

    frontend = "websocket"

    def __init__(self, url: str, username: str, **kw: Any) -> None:
        super().__init__(username, **kw)
        self.url = url
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.keeper: asyncio.Task[None] | None = None
        self.by_id: dict[str, Sent] = {}
        self.replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.listeners = itertools.count(1)
        self.stopping = False
        self.registered_once = False
        self.connected_changed = asyncio.Event()
        self.gateway_connected = False

    async def start(self, register: bool = True) -> None:
        await self._connect(register)
        self.keeper = asyncio.ensure_future(self._keep())

    async def _connect(self, register: bool) -> None:
        from websockets.asyncio.client import connect

        ws = await connect(self.url, open_timeout=30, max_size=2**22)
        hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert hello["cmd"] == "handshake", hello
        await ws.send(json.dumps({"cmd": "register" if register else "login", "username": self.name,
                                  "password": PASSWORD}))
        while True:
            packet = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if packet["cmd"] == "auth_error":
                await ws.close()
                raise RuntimeError(f"{self.name}: {packet}")
            if packet["cmd"] == "ready":
                break
        self.ws = ws
        self.gateway_connected = False
        self.reader = asyncio.ensure_future(self._read(ws))

    async def _keep(self) -> None:
        """Reconnect (log in again) whenever the connection went away, until stopped."""
        while not self.stopping:
            if self.reader is not None and not self.reader.done():
                await asyncio.wait([self.reader])
                continue
            try:
                await self._connect(register=False)
            except Exception:
                await asyncio.sleep(0.5)

    async def _read(self, ws: Any) -> None:
        try:
            async for raw in ws:
                self._packet(json.loads(raw))
        except Exception:
            pass
        finally:
            self.connection_lost()
            self.gateway_connected = False
            for fut in self.replies.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("closed"))
            self.replies.clear()

    def _packet(self, p: dict[str, Any]) -> None:
        cmd = p.get("cmd")
        listener = p.get("listener")
        if listener is not None and listener in self.replies:
            fut = self.replies.pop(listener)
            if not fut.done():
                fut.set_result(p)
            return
        if cmd == "gateway_status":
            self.gateway_connected = bool(p.get("connected"))
            self.online = self.gateway_connected
            self.connected_changed.set()
            return
        if self.ledger is None:
            return
        if cmd == "message_new" and p.get("channel") == "dm:echo":
            msg = p["message"]
            if msg["user"] == "echo":
                self.ledger.echo(msg["content"])
                m = self.ledger.messages.get(msg["content"])
                if m is not None:
                    self._answered(m)
            elif listener is not None and listener in self.ledger.messages:
                m = self.ledger.messages[listener]
                m.accepted = True
                m.message_id = msg["id"]
                self.by_id[msg["id"]] = m
        elif cmd == "error" and listener in self.ledger.messages:
            m = self.ledger.messages[listener]
            m.refused = f"error: {p.get('val')}"
            self._answered(m)
        elif cmd == "rate_limit" and listener in self.ledger.messages:
            self.ledger.messages[listener].refused = "rate_limit"
        elif cmd == "gateway_message_failed":
            m = self.by_id.get(p.get("id", ""))
            if m is not None:
                m.refused = f"failed: {p.get('val')}"
                self._answered(m)

    def connection_lost(self) -> None:
        self.online = False
        # what the server acknowledged was accepted: its echo must come (live or in the history)
        for m in self.in_flight:
            if not m.answered:
                m.cut = True
        self.in_flight = [m for m in self.in_flight if m.accepted and not m.cut]

    async def send(self, m: Sent) -> None:
        await self.ws.send(json.dumps({"cmd": "message_new", "channel": "dm:echo", "content": m.tag,
                                       "listener": m.tag}))

    async def request(self, packet: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        listener = f"req-{next(self.listeners)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_event_loop().create_future()
        self.replies[listener] = fut
        await self.ws.send(json.dumps(dict(packet, listener=listener)))
        return await asyncio.wait_for(fut, timeout)

    async def wait_gateway(self, timeout: float = 120.0) -> None:
        deadline = asyncio.get_event_loop().time() + timeout
        while not self.gateway_connected:
            remaining = deadline - asyncio.get_event_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: legacy session not connected within {timeout} s")
            self.connected_changed.clear()
            try:
                await asyncio.wait_for(self.connected_changed.wait(), min(remaining, 1.0))
            except TimeoutError:
                pass
            if not self.gateway_connected and self.ws is not None:
                # the status may have come before this connection's reader: ask
                try:
                    answer = await self.request({"cmd": "gateway_buddies"}, 30)
                    self.gateway_connected = self.gateway_connected or bool(answer.get("connected"))
                    self.online = self.gateway_connected
                except Exception:
                    await asyncio.sleep(0.2)

    async def history(self, channel: str = "dm:echo", limit: int = 2000) -> list[dict[str, Any]]:
        """The stored history of *channel*, oldest first (paging backwards by message id)."""
        out: list[dict[str, Any]] = []
        before: Any = 0
        while len(out) < limit:
            answer = await self.request({"cmd": "messages_get", "channel": channel, "start": before, "limit": 200})
            page = answer.get("messages", [])
            out = page + out
            if len(page) < 200:
                break
            before = page[0]["id"]
        return out

    async def stop(self) -> None:
        self.stopping = True
        if self.keeper is not None:
            self.keeper.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


# ---------------------------------------------------------------------------------------------- driving


class Traffic:
    """All chatters sending at once on the clients' loop, while the test does harm from its own thread."""

    def __init__(self, loop: ClientLoop, chatters: Sequence[Chatter], ledger: Ledger) -> None:
        self.loop = loop
        self.chatters = list(chatters)
        self.ledger = ledger
        self.until: asyncio.Event | None = None
        self.tasks: Any = None

    def start(self) -> None:
        async def begin() -> None:
            self.until = asyncio.Event()
            self.tasks = [asyncio.ensure_future(c.chat(self.ledger, self.until)) for c in self.chatters]
        self.loop.run(begin())

    def count(self) -> int:
        return len(self.ledger.messages)

    def wait_sent(self, more: int, timeout: float = 120.0) -> None:
        """Until *more* messages have been sent since now."""
        target = self.count() + more
        wait_for(lambda: self.count() >= target, timeout, f"{more} more messages sent")

    def pause(self, frontend: str, paused: bool = True, settle: float = 60.0) -> None:
        """Stop (or resume) sending from one frontend's chatters; when stopping, wait for their answers."""
        chatters = [c for c in self.chatters if c.frontend == frontend]
        for c in chatters:
            c.paused = paused
        if paused:
            wait_for(lambda: not any(m for c in chatters for m in c.in_flight if not m.done), settle,
                     f"{frontend} messages answered")

    def burst(self, frontend: str, count: int) -> list[Sent]:
        """*count* messages from each chatter of *frontend* at once (no window); the messages."""
        async def send_all() -> list[Sent]:
            out = []
            for c in self.chatters:
                if c.frontend != frontend:
                    continue
                for _ in range(count):
                    m = self.ledger.new(c.name, c.frontend)
                    c.in_flight.append(m)
                    await c.send(m)
                    out.append(m)
            return out
        result: list[Sent] = self.loop.run(send_all())
        return result

    def stop(self, settle: float = 120.0) -> None:
        """Stop sending; wait until every message has its answer (or *settle* seconds)."""
        async def end() -> None:
            assert self.until is not None
            self.until.set()
            await asyncio.gather(*self.tasks)
            deadline = asyncio.get_event_loop().time() + settle
            while self.ledger.pending() and asyncio.get_event_loop().time() < deadline:
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # late duplicates would show up now
        self.loop.run(end(), settle + 60)


def kill_quietly(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


__all__ = ["ChaosStack", "GatewayProcess", "Ledger", "Sent", "Traffic", "WsChatter", "XmppChatter",
           "kill_quietly", "process_alive", "rss_kib", "wait_for", "free_port"]
