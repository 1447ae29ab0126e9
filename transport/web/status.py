"""The status page: ``/status`` on the web port, for the instance's administrators.

``/status`` serves a small page (``status.html``, ``status.js``, ``status.css``
next to this module; no external resources) that polls ``/status/data.json``
every few seconds and draws the last hour as inline SVG charts: users online,
messages per second each way, backends, memory. The samples are taken in memory
by :class:`StatusSampler` every ``[monitoring] sample_interval`` seconds on the
reactor's clock and kept for ``[monitoring] history`` seconds.

Access needs ``[service] admin_token``: HTTP Basic with any user name and the
token as password (browsers ask for it), or ``Authorization: Bearer TOKEN``.
Without a configured token the page answers 403 - it is never public.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.web import resource

from transport.web.metrics import token_matches

STATIC = Path(__file__).resolve().parent
_FILES = {
    b"": ("status.html", b"text/html; charset=utf-8"),
    b"status.js": ("status.js", b"text/javascript; charset=utf-8"),
    b"status.css": ("status.css", b"text/css; charset=utf-8"),
}

#: Users listed by name on the page (the count is always exact).
MAX_LISTED_USERS = 500


@dataclass(frozen=True)
class Sample:
    """One point of the charts."""

    t: float
    users_online: int
    sessions: int
    backends: int
    messages_in: int
    messages_out: int
    memory_kib: int


class StatusSampler:
    """Samples the gateway every *interval* seconds into a bounded history."""

    def __init__(self, context: Any, interval: float, history: float, clock: Any = None,
                 wall: Any = time.time) -> None:
        self.context = context
        self.interval = interval
        self.clock = clock if clock is not None else context.reactor
        self.wall = wall
        self.history = history
        self.samples: deque[Sample] = deque(maxlen=max(2, int(history / interval) + 1))
        self._loop: task.LoopingCall | None = None

    def start(self) -> None:
        self._loop = task.LoopingCall(self.sample)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def current(self) -> Sample:
        gateway = self.context.gateway
        pool = self.context.registry.get("backend_pool")
        users = sessions = m_in = m_out = 0
        if gateway is not None:
            users = sum(1 for u in gateway.users.values() if u.state == "online")
            sessions = sum(len(u.sessions) for u in gateway.users.values())
            m_in = gateway.counters.messages_from_frontend
            m_out = gateway.counters.messages_to_frontend
        backends = memory = 0
        if pool is not None:
            live = [b for b in pool.backends.values() if b.state in ("spawning", "ready")]
            backends = len(live)
            memory = pool.main_memory_kib()[0] + sum(b.stats.res for b in live if b.stats is not None)
        return Sample(self.wall(), users, sessions, backends, m_in, m_out, memory)

    def sample(self) -> Sample:
        s = self.current()
        self.samples.append(s)
        return s

    def series(self) -> dict[str, list[float]]:
        """Columns for the charts; message counts become rates (per second) between samples."""
        out: dict[str, list[float]] = {k: [] for k in ("t", "users_online", "sessions", "backends",
                                                       "memory_kib", "in_rate", "out_rate")}
        prev: Sample | None = None
        for s in self.samples:
            out["t"].append(round(s.t, 3))
            out["users_online"].append(s.users_online)
            out["sessions"].append(s.sessions)
            out["backends"].append(s.backends)
            out["memory_kib"].append(s.memory_kib)
            if prev is None or s.t <= prev.t:
                out["in_rate"].append(0.0)
                out["out_rate"].append(0.0)
            else:
                dt = s.t - prev.t
                out["in_rate"].append(round(max(0, s.messages_in - prev.messages_in) / dt, 3))
                out["out_rate"].append(round(max(0, s.messages_out - prev.messages_out) / dt, 3))
            prev = s
        return out


def snapshot(context: Any, sampler: StatusSampler) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data."""
    config = context.config
    gateway = context.gateway
    pool = context.registry.get("backend_pool")
    now = sampler.current()
    online = gateway.online_users() if gateway is not None else []
    backends = []
    crashes: list[dict[str, Any]] = []
    if pool is not None:
        for b in sorted(pool.backends.values(), key=lambda b: b.id):
            backends.append({
                "name": b.name, "state": b.state, "pid": b.pid, "remote": b.remote,
                "users": sorted(b.users)[:MAX_LISTED_USERS], "user_count": len(b.users),
                "memory_kib": b.stats.res if b.stats is not None else None,
                "ping_ms": round(b.ping_latency * 1000, 1) if getattr(b, "ping_latency", None) is not None
                else None,
            })
        crashes = [{"backend": c.backend_id, "pid": c.pid, "reason": c.reason, "at": c.at, "users": c.users}
                   for c in pool.crashes[-10:]]
    started = gateway.started_at if gateway is not None else None
    return {
        "instance": {"jid": config.get("service", "jid"), "protocol": config.get("service", "protocol"),
                     "name": config.get("identity", "name")},
        "now": now.t,
        "uptime": round(context.reactor.seconds() - started, 1) if started is not None else None,
        "current": asdict(now),
        "online": online[:MAX_LISTED_USERS],
        "online_count": len(online),
        "backends": backends,
        "crashes": crashes,
        "crashes_total": getattr(pool, "crashes_total", 0) if pool is not None else 0,
        "waiting": len(pool.waiting) if pool is not None else 0,
        "interval": sampler.interval,
        "history": sampler.history,
        "series": sampler.series(),
    }


class StatusResource(resource.Resource):
    """``/status`` (the page and its files) and ``/status/data.json``, behind the admin token."""

    isLeaf = True

    def __init__(self, context: Any, sampler: StatusSampler) -> None:
        super().__init__()
        self.context = context
        self.sampler = sampler

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"content-security-policy",
                          b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'")
        token = self.context.config.get("service", "admin_token")
        if not token:
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"the status page needs [service] admin_token to be set\n"
        if not token_matches(request, token):
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b'Basic realm="Transport status", charset="UTF-8"')
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"log in with the admin token as password\n"
        path = b"/".join(request.postpath)
        if path == b"data.json":
            request.setHeader(b"content-type", b"application/json")
            return json.dumps(snapshot(self.context, self.sampler)).encode()
        entry = _FILES.get(path)
        if entry is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found\n"
        if path == b"" and not request.path.endswith(b"/"):
            # relative links in the page resolve against /status/
            request.setResponseCode(302)
            request.setHeader(b"location", request.path + b"/")
            return b""
        request.setHeader(b"content-type", entry[1])
        return (STATIC / entry[0]).read_bytes()
