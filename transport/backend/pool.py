"""The backend pool: spawns backend processes, keeps them alive or declares them dead, routes users.

Life cycle (``specs/backend-protocol.md``, "Backend life cycle"):

* The pool listens on ``[service] backend_host``:``backend_port`` (0 picks a free
  port, written to ``portfile`` when set) and spawns backends with the configured
  command line plus ``--host H --port P --service.backend_id=N CONFIG``, exactly
  what Spectrum 2 appends (see :mod:`transport.backend.process` for the guard that
  makes them die with the main instance).
* A backend that connects gets a PING. Its first PONG makes it *ready*: it is
  matched to the process the pool spawned (by the pid in its STATS, else the
  one spawn in flight), or, when nobody spawned it, accepted as a *remote*
  backend (started by hand, or reached through a mux channel) - served the same
  way, just without a process to kill.
* Every ``ping_interval`` each backend gets a PING. A backend from which no frame
  at all arrived since the previous PING is killed and treated as crashed (any
  frame is a sign of life; a PONG is only the usual one).
* Users go to a ready backend with fewer than ``users_per_backend`` users (the
  fullest such backend first, to keep processes few). When none has room, one
  backend is spawned - one spawn in flight at a time - and the waiting users'
  LOGINs go out after its first PONG.
* When a backend goes away (link closed, process exited, ping timeout, spawn
  timeout), its users are handed to the core (``sink.users_lost``) which logs
  them in again; the pool only forgets them.
* QUERY frames (Spectrum 2's unauthenticated admin channel) are refused: the
  admin commands are served on the admin endpoint instead.
* Shutdown: EXIT to every backend, ``shutdown_grace``, SIGTERM, ``shutdown_grace``,
  SIGKILL. Before that, the main instance drains the gateway (``Gateway.drain``, which
  asks :meth:`BackendPool.confirm_all` for a PING to every backend) while frontends and
  backends still run; see :mod:`transport.service`.
"""

from __future__ import annotations

import itertools
import os
import shlex
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet import defer, endpoints, task
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.logger import Logger
from zope.interface import implementer

from transport.backend import transport_pb2 as pb
from transport.backend.codec import Packet
from transport.backend.link import BackendLink, BackendListenerFactory
from transport.backend.process import BackendProcess
from transport.core.features import BackendFeatures, parse_backend_config
from transport.core.interfaces import IBackendRouter

log = Logger()
W = pb.WrapperMessage

# backend states
SPAWNING = "spawning"   #: process started, not connected / no PONG yet
READY = "ready"         #: answered its first PING: takes users
STOPPING = "stopping"   #: EXIT sent at shutdown
GONE = "gone"           #: crashed, killed or exited

#: Seconds a backend's first PONG waits for the STATS frame that identifies its process.
STATS_WAIT = 0.5

#: Seconds a burst of unconfirmed messages waits for a barrier PING (backends without receipts).
BARRIER_DELAY = 0.05

#: Payload field naming the user, per frame type (B→M frames about one user).
_USER_FIELD: dict[int, str] = {
    W.TYPE_CONNECTED: "user",
    W.TYPE_DISCONNECTED: "user",
    W.TYPE_BUDDY_CHANGED: "userName",
    W.TYPE_BUDDY_REMOVED: "userName",
    W.TYPE_CONV_MESSAGE: "userName",
    W.TYPE_PARTICIPANT_CHANGED: "userName",
    W.TYPE_ROOM_NICKNAME_CHANGED: "userName",
    W.TYPE_ROOM_SUBJECT_CHANGED: "userName",
    W.TYPE_VCARD: "userName",
    W.TYPE_BUDDY_TYPING: "userName",
    W.TYPE_BUDDY_STOPPED_TYPING: "userName",
    W.TYPE_BUDDY_TYPED: "userName",
    W.TYPE_AUTH_REQUEST: "userName",
    W.TYPE_ATTENTION: "userName",
    W.TYPE_CONV_MESSAGE_ACK: "userName",
}

_FT_TYPES = {W.TYPE_FT_START, W.TYPE_FT_FINISH, W.TYPE_FT_DATA, W.TYPE_FT_PAUSE, W.TYPE_FT_CONTINUE}

QUERY_REFUSAL = "error: admin queries are not served on the backend port; use transportctl (the admin endpoint)"


def _process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


@dataclass
class CrashRecord:
    """A backend that went away without being asked to."""

    backend_id: int
    pid: int | None
    reason: str
    at: float
    users: int


@dataclass(eq=False)
class Backend:
    """One backend: its process (unless remote), its link, its users and what it reported."""

    id: int
    state: str = SPAWNING
    process: BackendProcess | None = None
    link: BackendLink | None = None
    remote: bool = False
    users: set[str] = field(default_factory=set)
    pings_sent: int = 0
    pongs_received: int = 0
    #: a frame arrived since the last periodic PING
    alive: bool = True
    stats: Any = None
    stats_at: float = 0.0
    config_text: str = ""
    features: BackendFeatures | None = None
    api_version: int | None = None
    started_at: float = 0.0
    ready_at: float = 0.0
    start_timer: IDelayedCall | None = None
    barrier_call: IDelayedCall | None = None
    ft_logged: bool = False
    #: the periodic PING awaiting its PONG: (pings_sent after it, when it was sent)
    ping_mark: tuple[int, float] | None = None
    #: seconds between the last answered periodic PING and its PONG
    ping_latency: float | None = None

    @property
    def name(self) -> str:
        return f"backend-{self.id}"

    @property
    def pid(self) -> int | None:
        if self.process is not None:
            return self.process.pid
        if self.stats is not None and self.stats.id.isdigit():
            return int(self.stats.id)
        return None

    def send(self, type_: int, payload: Any = None) -> bool:
        if self.link is None or self.link.closed:
            return False
        self.link.send(type_, payload)
        return True


@implementer(IBackendRouter)
class BackendPool(service.Service):
    """Backend processes and the users assigned to them (the core's ``IBackendRouter``)."""

    name = "backends"

    def __init__(self, config: Any, reactor: Any, clock: Any = None,
                 spawn: Callable[[Backend, list[str]], None] | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.sink: Any = None
        self.factory = BackendListenerFactory(self, lambda: self._setting("max_frame_size"))
        self.backends: dict[int, Backend] = {}
        self.users: dict[str, Backend] = {}
        #: users waiting for a backend with room, with their LOGIN, in arrival order
        self.waiting: dict[str, tuple[Any, Any]] = {}  # user -> (LOGIN, BUDDIES or None)
        self.spawning: Backend | None = None
        self.crashes: list[CrashRecord] = []
        #: backends gone without being asked since start (``crashes`` keeps the last 1000)
        self.crashes_total = 0
        self.port: IListeningPort | None = None
        self.host = "127.0.0.1"
        self.port_number = 0
        self._ids = itertools.count(1)
        self._unbound: list[BackendLink] = []
        self._ping_loop: task.LoopingCall | None = None
        self._spawn = spawn or self._spawn_process
        self._stopping = False
        self.config_path: str | None = None

    def _setting(self, key: str) -> Any:
        return self.config.get("service", key)

    # ------------------------------------------------------------------ service

    def startService(self) -> None:
        super().startService()
        self._started = defer.ensureDeferred(self.start())
        self._started.addErrback(lambda f: log.failure("the backend pool failed to start", f))

    async def start(self) -> None:
        """Listen on the backend port, start pinging, spawn ``start_backends`` backends."""
        host = self._setting("backend_host")
        escaped = host.replace(":", "\\:")
        endpoint = endpoints.serverFromString(self.reactor,
                                              f"tcp:{self._setting('backend_port')}:interface={escaped}")
        self.port = await endpoint.listen(self.factory)
        self.port_number = self.port.getHost().port  # type: ignore[union-attr]
        self.host = "127.0.0.1" if host in ("", "0.0.0.0") else ("::1" if host == "::" else host)
        portfile = self._setting("portfile")
        if portfile:
            path = self.config.resolve_path(portfile)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{self.port_number}\n")
        log.info("backend port {host}:{port}", host=host, port=self.port_number)
        self.config_path = self._backend_config_path()
        self.supervise()

    def supervise(self) -> None:
        """Start the PING loop and spawn the first of ``start_backends`` (called by :meth:`start`)."""
        self._ping_loop = task.LoopingCall(self._ping_all)
        self._ping_loop.clock = self.clock
        self._ping_loop.start(self._setting("ping_interval"), now=False)
        if self._setting("start_backends"):
            self._spawn_backend()  # one spawn in flight; the others follow as each becomes ready

    def _backend_config_path(self) -> str:
        """The file backends get as their last argument (Spectrum 2 backends expect one).

        Normally the main instance's own file. With command-line overrides
        (``twistd -n transport -c F service.ping_interval=90``) it is a copy with the
        overrides appended - backends read the last value of a repeated key - so a
        backend's watchdog and frame limit agree with the main instance's.
        """
        original = ""
        if self.config.path:
            if not self.config.overrides:
                return str(Path(self.config.path).resolve())
            original = Path(self.config.path).read_text(encoding="utf-8")
        elif not self.config.overrides:
            path = self.config.state_dir / "backend-defaults.ini"
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_text("# every key has its default (the main instance was started without -c)\n")
            return str(path)
        lines = [original.rstrip("\n"), "", "# command-line overrides of the main instance"]
        for item in self.config.overrides:
            section, _, rest = item.partition(".")
            key, _, value = rest.partition("=")
            lines += [f"[{section}]", f"{key} = {value}"]
        path = self.config.state_dir / "backend-effective.ini"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold secrets
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines).lstrip("\n") + "\n")
        return str(path)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return defer.ensureDeferred(self.shutdown())

    async def shutdown(self) -> None:
        """EXIT to every backend, then SIGTERM, then SIGKILL, each after ``shutdown_grace``."""
        self._stopping = True
        if self._ping_loop is not None and self._ping_loop.running:
            self._ping_loop.stop()
        if self.port is not None:
            await defer.maybeDeferred(self.port.stopListening)
        for backend in list(self.backends.values()):
            if backend.start_timer is not None and backend.start_timer.active():
                backend.start_timer.cancel()
            if backend.barrier_call is not None and backend.barrier_call.active():
                backend.barrier_call.cancel()
            backend.send(W.TYPE_EXIT)
            backend.state = STOPPING
        for link in list(self._unbound):
            link.send(W.TYPE_EXIT)
        grace = self._setting("shutdown_grace")
        procs = [b.process for b in self.backends.values() if b.process is not None and not b.process.ended]
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            procs = [p for p in procs if not p.ended]
            if not procs:
                break
            if sig is not None:
                log.warn("{n} backends still running after {grace:g} s; sending signal {sig}", n=len(procs),
                         grace=grace, sig=sig)
                for p in procs:
                    p.kill(sig)
            await self._wait_ended(procs, grace if sig != signal.SIGKILL else max(grace, 5.0))
            procs = [p for p in procs if not p.ended]
        for backend in list(self.backends.values()):
            if backend.link is not None:
                backend.link.close("shutdown")
        for link in list(self._unbound):
            link.close("shutdown")

    def _wait_ended(self, procs: list[BackendProcess], timeout: float) -> defer.Deferred[None]:
        done: defer.Deferred[None] = defer.Deferred()

        def fire(_: object = None) -> None:
            if not done.called:
                done.callback(None)

        timer = self.clock.callLater(timeout, fire)
        defer.DeferredList([p.when_ended() for p in procs]).addCallback(fire)
        done.addCallback(lambda _: timer.cancel() if timer.active() else None)
        return done

    # ------------------------------------------------------------------ spawning

    def _spawn_backend(self) -> Backend | None:
        if self.spawning is not None or self._stopping:
            return self.spawning
        limit = self._setting("max_backends")
        alive = sum(1 for b in self.backends.values() if b.state in (SPAWNING, READY))
        if limit and alive >= limit:
            return None
        backend = Backend(next(self._ids), started_at=self.clock.seconds())
        self.backends[backend.id] = backend
        self.spawning = backend
        argv = shlex.split(self._setting("backend")) + [
            "--host", self.host, "--port", str(self.port_number),
            f"--service.backend_id={backend.id}", self.config_path or "",
        ]
        backend.start_timer = self.clock.callLater(self._setting("backend_start_timeout"), self._start_timed_out,
                                                   backend)
        try:
            self._spawn(backend, argv)
        except Exception as e:  # e.g. the executable does not exist
            log.error("{name}: cannot spawn {argv}: {error}", name=backend.name, argv=argv, error=e)
            self._gone(backend, f"spawn failed: {e}")
            return None
        log.info("{name}: spawned (pid {pid})", name=backend.name, pid=backend.pid)
        return backend

    def _spawn_process(self, backend: Backend, argv: list[str]) -> None:
        log_dir = self._setting("backend_log_dir")
        log_file = self.config.resolve_path(log_dir) / f"{backend.name}.log" if log_dir else None
        process = BackendProcess(backend.id, lambda p, status: self._process_ended(backend, status),
                                 log_file=log_file, log_output=self.config.get("logging", "backend_output"))
        backend.process = process
        process.spawn(self.reactor, argv)

    def _start_timed_out(self, backend: Backend) -> None:
        backend.start_timer = None
        if backend.state == SPAWNING:
            log.error("{name}: did not connect and answer PING within {t:g} s; killing it", name=backend.name,
                      t=self._setting("backend_start_timeout"))
            self._gone(backend, "start timeout")

    def _process_ended(self, backend: Backend, status: str) -> None:
        if backend.state == GONE:
            return
        if backend.state == STOPPING:
            log.info("{name}: {status}", name=backend.name, status=status)
            self._forget_backend(backend)
            return
        self._gone(backend, f"process {status}")

    # ------------------------------------------------------------------ links (LinkOwner)

    def link_made(self, link: BackendLink) -> None:
        if self._stopping:
            link.send(W.TYPE_EXIT)
            link.close("shutting down")
            return
        self._unbound.append(link)
        link.send(W.TYPE_PING)

    def packet_received(self, link: BackendLink, packet: Packet) -> None:
        backend = link.backend
        if backend is None:
            self._unbound_packet(link, packet)
            return
        backend.alive = True
        t = packet.type
        field_name = _USER_FIELD.get(t)
        if field_name is not None:
            user = getattr(packet.payload, field_name)
            if self.users.get(user) is backend:
                self.sink.backend_packet(user, packet)
            else:
                log.debug("{name}: {type} for {user}, who is not on this backend: ignored", name=backend.name,
                          type=packet.type_name, user=user)
            return
        if t == W.TYPE_PONG:
            backend.pongs_received += 1
            if backend.ping_mark is not None and backend.pongs_received >= backend.ping_mark[0]:
                backend.ping_latency = self.clock.seconds() - backend.ping_mark[1]
                backend.ping_mark = None
            if backend.users:
                self.sink.backend_confirmed(backend.users)
        elif t == W.TYPE_STATS:
            backend.stats = packet.payload
            backend.stats_at = self.clock.seconds()
        elif t == W.TYPE_ROOM_LIST:
            p: Any = packet.payload
            if p.user:
                if self.users.get(p.user) is backend:
                    self.sink.backend_packet(p.user, packet)
            else:
                self.sink.backend_global_packet(packet)
        elif t == W.TYPE_BACKEND_CONFIG:
            self._backend_config(backend, packet.payload.config)  # type: ignore[union-attr]
        elif t == W.TYPE_RAW_XML:
            self.sink.backend_global_packet(packet)
        elif t == W.TYPE_QUERY:
            backend.send(W.TYPE_QUERY, pb.BackendConfig(config=QUERY_REFUSAL))
        elif t == W.TYPE_API_VERSION:
            backend.api_version = packet.payload.version  # type: ignore[union-attr]
        elif t in _FT_TYPES:
            if not backend.ft_logged:
                backend.ft_logged = True
                log.info("{name}: legacy file transfer frames are not supported; ignored", name=backend.name)
        else:
            log.debug("{name}: unexpected {type}: ignored", name=backend.name, type=packet.type_name)

    def _backend_config(self, backend: Backend, text: str) -> None:
        backend.config_text = text
        backend.features = parse_backend_config(text)
        self.sink.backend_global_packet(Packet(W.TYPE_BACKEND_CONFIG, pb.BackendConfig(config=text)))

    def _unbound_packet(self, link: BackendLink, packet: Packet) -> None:
        t = packet.type
        if t == W.TYPE_PONG:
            link.pongs += 1
        elif t == W.TYPE_STATS:
            pid = packet.payload.id  # type: ignore[union-attr]
            link.stats_seen = True
            link.stats_pid = int(pid) if pid.isdigit() else None
        if t in (W.TYPE_STATS, W.TYPE_BACKEND_CONFIG, W.TYPE_API_VERSION, W.TYPE_ROOM_LIST):
            if len(link.early) < 16:  # kept for when it is bound; a link that never PONGs may send many
                link.early.append(packet)
        elif t == W.TYPE_QUERY:
            link.send(W.TYPE_QUERY, pb.BackendConfig(config=QUERY_REFUSAL))
        # anything about users before the backend is ready is meaningless: dropped

    def batch_done(self, link: BackendLink) -> None:
        if link.backend is not None or not link.pongs:
            return
        if not link.stats_seen and link.bind_timer is None:
            # STATS (with the pid that tells which process this is) normally comes in the
            # same read as the PONG; give it a moment when it does not
            link.bind_timer = self.clock.callLater(STATS_WAIT, self._bind, link)
            return
        self._bind(link)

    def _bind(self, link: BackendLink) -> None:
        if link.bind_timer is not None and link.bind_timer.active():
            link.bind_timer.cancel()
        link.bind_timer = None
        if link.backend is not None or link not in self._unbound:
            return
        self._unbound.remove(link)
        backend = None
        spawn = self.spawning if self.spawning is not None and self.spawning.link is None else None
        pid = link.stats_pid
        if link.remote:
            pass  # known to be remote: never taken for the local spawn in flight
        elif pid is not None:
            backend = next((b for b in self.backends.values()
                            if b.state == SPAWNING and b.process is not None and b.process.pid == pid
                            and b.link is None), None)
            if backend is None and spawn is not None and spawn.process is not None \
                    and _process_group(pid) == spawn.process.pid:
                backend = spawn  # started through a wrapper (a shell script): a child of our process
        elif spawn is not None:
            backend = spawn
        if backend is None:
            backend = Backend(next(self._ids), remote=True, started_at=self.clock.seconds())
            self.backends[backend.id] = backend
            log.info("{name}: a backend nobody spawned connected ({peer}); accepted as remote",
                     name=backend.name, peer=link.name)
        if backend.start_timer is not None and backend.start_timer.active():
            backend.start_timer.cancel()
        backend.start_timer = None
        backend.link = link
        link.backend = backend
        link.name = backend.name
        backend.state = READY
        backend.ready_at = self.clock.seconds()
        backend.pings_sent = 2 if link.pinged_again else 1  # the PONG to a second PING may still come
        backend.pongs_received = link.pongs
        backend.alive = True
        if self.spawning is backend:
            self.spawning = None
        log.info("{name}: ready (pid {pid})", name=backend.name, pid=backend.pid)
        for packet in link.early:
            self.packet_received(link, packet)
        link.early = []
        self._assign_waiting()
        if not self.waiting and len(self.ready_backends()) < self._setting("start_backends"):
            self._spawn_backend()

    def link_lost(self, link: BackendLink, reason: str) -> None:
        if link in self._unbound:
            self._unbound.remove(link)
            if link.bind_timer is not None and link.bind_timer.active():
                link.bind_timer.cancel()
            return
        backend = link.backend
        if backend is None or backend.state == GONE:
            return
        if backend.state == STOPPING:
            if backend.process is None or backend.process.ended:
                self._forget_backend(backend)
            return
        self._gone(backend, f"connection lost ({reason})")

    # ------------------------------------------------------------------ crash handling

    def _gone(self, backend: Backend, reason: str) -> None:
        """*backend* is dead (or must be): kill what is left, hand its users back to the core."""
        if backend.state == GONE:
            return
        was_spawning = self.spawning is backend
        backend.state = GONE
        if was_spawning:
            self.spawning = None
        for call in (backend.start_timer, backend.barrier_call):
            if call is not None and call.active():
                call.cancel()
        if backend.process is not None and not backend.process.ended:
            backend.process.kill(signal.SIGKILL)
        if backend.link is not None:
            backend.link.close(reason)
        users = sorted(backend.users)
        self.crashes_total += 1
        self.crashes.append(CrashRecord(backend.id, backend.pid, reason, time.time(), len(users)))
        del self.crashes[:-1000]
        log.error("{name} (pid {pid}) is gone: {reason}; {n} users to log in again", name=backend.name,
                  pid=backend.pid, reason=reason, n=len(users))
        for user in users:
            if self.users.get(user) is backend:
                del self.users[user]
        backend.users.clear()
        self._forget_backend(backend)
        if was_spawning and self.waiting:
            # the users waiting for this spawn try again through the core (with backoff)
            waiting = list(self.waiting)
            self.waiting.clear()
            users += waiting
        if users and self.sink is not None:
            self.sink.users_lost(users, f"{backend.name} {reason}")
        if self.waiting:
            self._spawn_backend()

    def _forget_backend(self, backend: Backend) -> None:
        self.backends.pop(backend.id, None)

    def kill(self, backend_id: int, reason: str = "killed by request") -> bool:
        """Kill a backend now and treat it as crashed (its users are logged in elsewhere)."""
        backend = self.backends.get(backend_id)
        if backend is None:
            return False
        self._gone(backend, reason)
        return True

    # ------------------------------------------------------------------ pinging

    def _ping_all(self) -> None:
        for backend in list(self.backends.values()):
            if backend.state != READY:
                continue
            if not backend.alive:
                log.error("{name}: no answer to the previous PING within {t:g} s; killing it",
                          name=backend.name, t=self._setting("ping_interval"))
                self._gone(backend, "ping timeout")
                continue
            backend.alive = False
            backend.pings_sent += 1
            backend.ping_mark = (backend.pings_sent, self.clock.seconds())
            backend.send(W.TYPE_PING)
        for link in list(self._unbound):
            if link.pinged_again:
                link.close("no answer to PING")
            else:
                link.pinged_again = True
                link.send(W.TYPE_PING)

    def confirm_all(self) -> None:
        """PING every ready backend now: its PONG confirms every frame sent to it before (used by a drain)."""
        for backend in list(self.backends.values()):
            if backend.barrier_call is not None and backend.barrier_call.active():
                backend.barrier_call.cancel()
            backend.barrier_call = None
            if backend.state == READY:
                backend.pings_sent += 1
                backend.send(W.TYPE_PING)

    def _barrier(self, backend: Backend) -> None:
        backend.barrier_call = None
        if backend.state == READY:
            backend.pings_sent += 1
            backend.send(W.TYPE_PING)

    # ------------------------------------------------------------------ routing (IBackendRouter)

    def start_routing(self, sink: Any) -> None:
        self.sink = sink

    def _pick(self) -> Backend | None:
        capacity = self._setting("users_per_backend")
        best: Backend | None = None
        for b in self.backends.values():
            if b.state == READY and len(b.users) < capacity and (best is None or len(b.users) > len(best.users)):
                best = b
        return best

    def login(self, user: str, payload: Any, buddies: Any = None) -> None:
        """Send LOGIN for *user* (spawning a backend first if none has room).

        *buddies* (a ``pb.Buddies``) follows the LOGIN when the backend that gets
        the user announced ``features.send_buddies_on_login`` - decided when the
        LOGIN actually goes out, since a waiting user's backend is not known yet.
        """
        current = self.users.get(user)
        if current is not None and current.state == READY:
            self._send_login(current, payload, buddies)
            return
        backend = self._pick()
        if backend is None:
            self.waiting.pop(user, None)
            self.waiting[user] = (payload, buddies)
            self._spawn_backend()
            return
        self._assign(user, backend, payload, buddies)

    def _assign(self, user: str, backend: Backend, payload: Any, buddies: Any = None) -> None:
        self.users[user] = backend
        backend.users.add(user)
        self._send_login(backend, payload, buddies)

    @staticmethod
    def _send_login(backend: Backend, payload: Any, buddies: Any) -> None:
        backend.send(W.TYPE_LOGIN, payload)
        if buddies is not None and len(buddies.buddy) and backend.features is not None \
                and backend.features.send_buddies_on_login:
            backend.send(W.TYPE_BUDDIES, buddies)

    def _assign_waiting(self) -> None:
        while self.waiting:
            backend = self._pick()
            if backend is None:
                self._spawn_backend()
                return
            user = next(iter(self.waiting))
            payload, buddies = self.waiting.pop(user)
            self._assign(user, backend, payload, buddies)

    def send(self, user: str, type_: int, payload: Any) -> bool:
        backend = self.users.get(user)
        if backend is None or backend.state != READY:
            return False
        return backend.send(type_, payload)

    def is_sendable(self, user: str) -> bool:
        backend = self.users.get(user)
        return backend is not None and backend.state == READY

    def logout(self, user: str, payload: Any) -> None:
        self.waiting.pop(user, None)
        backend = self.users.pop(user, None)
        if backend is not None:
            backend.users.discard(user)
            backend.send(W.TYPE_LOGOUT, payload)
            if self.waiting:
                self._assign_waiting()  # a slot freed (matters under max_backends)

    def forget(self, user: str) -> None:
        self.waiting.pop(user, None)
        backend = self.users.pop(user, None)
        if backend is not None:
            backend.users.discard(user)
            if self.waiting:
                self._assign_waiting()

    def backend_of(self, user: str) -> str | None:
        backend = self.users.get(user)
        return backend.name if backend is not None else None

    def confirmation_mark(self, user: str) -> tuple[Backend, int] | None:
        """Mark for a frame just sent for *user*: confirmed once the backend answers the next PING."""
        backend = self.users.get(user)
        if backend is None:
            return None
        if backend.barrier_call is None and not (backend.features and backend.features.receipts):
            backend.barrier_call = self.clock.callLater(BARRIER_DELAY, self._barrier, backend)
        return (backend, backend.pings_sent + 1)

    def is_confirmed(self, mark: tuple[Backend, int] | None) -> bool:
        if mark is None:
            return False
        backend, needed = mark
        return backend.pongs_received >= needed

    # ------------------------------------------------------------------ introspection

    def ready_backends(self) -> list[Backend]:
        return [b for b in self.backends.values() if b.state == READY]

    def main_memory_kib(self) -> tuple[int, int]:
        """The main instance's (resident, shared) memory in KiB."""
        try:
            with open("/proc/self/statm") as f:
                parts = f.read().split()
            page = os.sysconf("SC_PAGE_SIZE") // 1024
            return int(parts[1]) * page, int(parts[2]) * page
        except (OSError, ValueError, IndexError):
            return 0, 0
