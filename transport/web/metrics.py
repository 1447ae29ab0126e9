"""The Prometheus endpoint: ``/metrics`` on the web port (text exposition format).

Numbers are read from the live objects when Prometheus scrapes - the gateway
(users, sessions, queues, message counters), the backend pool (backends, their
users, memory from STATS, frames, PING latency, crashes), the link counters
(frames in/out/skipped) and the parts published in ``context.registry`` - by
one custom collector (:class:`TransportCollector`) in a per-instance
``CollectorRegistry``, so that two instances in one process (tests) do not mix.

Families (all prefixed ``transport_``) are listed in ``docs/operations.md``.
Parts in the registry contribute generically: an object with ``counters()``
(a dict of numbers) gives ``transport_part_value{part,name}``; one with a
``sessions`` collection gives ``transport_part_sessions{part}``.
"""

from __future__ import annotations

import hmac
import time
from base64 import b64decode
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.web import resource

import transport
from transport.backend import link as backend_link

#: Pool states as the metrics name them.
BACKEND_STATES = {"spawning": "starting", "ready": "running", "stopping": "stopping"}


class TransportCollector(Collector):
    """Collects the instance's numbers from *context* (a ``ServiceContext``) at scrape time."""

    def __init__(self, context: Any, clock: Any = None) -> None:
        self.context = context
        self.clock = clock if clock is not None else context.reactor
        self.started_at = time.time()

    def collect(self) -> Iterator[Metric]:
        ctx = self.context
        config = ctx.config
        info = GaugeMetricFamily("transport_info", "The instance: version, JID and legacy network.",
                                 labels=["version", "jid", "protocol"])
        info.add_metric([transport.__version__, config.get("service", "jid"), config.get("service", "protocol")], 1)
        yield info
        yield GaugeMetricFamily("transport_uptime_seconds", "Seconds since the instance started.",
                                value=max(0.0, time.time() - self.started_at))
        gateway = ctx.gateway
        if gateway is not None:
            yield from self._gateway(gateway)
        pool = ctx.registry.get("backend_pool")
        if pool is not None:
            yield from self._pool(pool)
        yield from self._links()
        yield from self._parts(ctx.registry)

    # -- the core

    def _gateway(self, gateway: Any) -> Iterator[Metric]:
        users = list(gateway.users.values())
        yield GaugeMetricFamily("transport_users_online", "Users logged in to the legacy network.",
                                value=sum(1 for u in users if u.state == "online"))
        states = GaugeMetricFamily("transport_users", "Users with sessions, by login state.", labels=["state"])
        by_state: dict[str, int] = {}
        sessions: dict[str, int] = {f.name: 0 for f in gateway.frontends}
        queued = unconfirmed = 0
        for u in users:
            by_state[u.state] = by_state.get(u.state, 0) + 1
            for s in u.sessions.values():
                name = getattr(s.frontend, "name", "?")
                sessions[name] = sessions.get(name, 0) + 1
            queued += len(u.queue)
            unconfirmed += len(u.unconfirmed)
        for state in ("logging_in", "online", "reconnecting", "disconnected", "offline"):
            by_state.setdefault(state, 0)
        for state, n in sorted(by_state.items()):
            states.add_metric([state], n)
        yield states
        per_frontend = GaugeMetricFamily("transport_sessions", "Open sessions (client connections) per frontend.",
                                         labels=["frontend"])
        for name, n in sorted(sessions.items()):
            per_frontend.add_metric([name], n)
        yield per_frontend
        yield GaugeMetricFamily("transport_queued_messages",
                                "Messages queued while their users' backend sessions (re)start.", value=queued)
        yield GaugeMetricFamily("transport_unconfirmed_messages",
                                "Messages written to backends and not yet confirmed.", value=unconfirmed)
        c = gateway.counters
        messages = CounterMetricFamily("transport_messages", "Chat messages through the gateway.",
                                       labels=["direction"])
        messages.add_metric(["from_frontend"], c.messages_from_frontend)
        messages.add_metric(["to_frontend"], c.messages_to_frontend)
        yield messages
        per_frontend_out = CounterMetricFamily("transport_frontend_messages_delivered",
                                               "Chat messages delivered to each frontend.", labels=["frontend"])
        delivered = getattr(c, "messages_to_frontend_by", {})
        for f in gateway.frontends:
            per_frontend_out.add_metric([f.name], delivered.get(f.name, 0))
        yield per_frontend_out
        for name, doc, value in (
            ("transport_messages_failed", "Queued messages that could not be delivered.", c.messages_failed),
            ("transport_logins", "LOGINs sent to backends.", c.logins),
            ("transport_relogins", "Re-logins after a backend went away or a login timed out.", c.relogins),
            ("transport_events_delivered", "Events delivered to frontends.", c.events_delivered),
            ("transport_frontend_errors", "Events a frontend failed to handle.", c.frontend_errors),
        ):
            yield CounterMetricFamily(name, doc, value=value)

    def _pool(self, pool: Any) -> Iterator[Metric]:
        counts = {"starting": 0, "running": 0, "stopping": 0}
        users = GaugeMetricFamily("transport_backend_users", "Users assigned to each backend.", labels=["backend"])
        memory = GaugeMetricFamily("transport_backend_memory_bytes", "Backend memory from its latest STATS.",
                                   labels=["backend", "kind"])
        frames = CounterMetricFamily("transport_backend_link_frames", "Frames on each backend's link.",
                                     labels=["backend", "direction"])
        latency = GaugeMetricFamily("transport_backend_ping_latency_seconds",
                                    "Time the last periodic PING took to be answered.", labels=["backend"])
        for b in sorted(pool.backends.values(), key=lambda b: b.id):
            state = BACKEND_STATES.get(b.state)
            if state is None:
                continue
            counts[state] += 1
            users.add_metric([b.name], len(b.users))
            if b.stats is not None:
                memory.add_metric([b.name, "resident"], b.stats.res * 1024)
                memory.add_metric([b.name, "shared"], b.stats.shared * 1024)
            if b.link is not None:
                frames.add_metric([b.name, "in"], getattr(b.link, "frames_in", 0))
                frames.add_metric([b.name, "out"], getattr(b.link, "frames_out", 0))
            if getattr(b, "ping_latency", None) is not None:
                latency.add_metric([b.name], b.ping_latency)
        backends = GaugeMetricFamily("transport_backends", "Backend processes by state.", labels=["state"])
        for state, n in counts.items():
            backends.add_metric([state], n)
        yield backends
        yield users
        yield memory
        yield frames
        yield latency
        yield CounterMetricFamily("transport_backend_crashes", "Backends that went away without being asked.",
                                  value=getattr(pool, "crashes_total", len(pool.crashes)))
        yield GaugeMetricFamily("transport_users_waiting_for_backend", "Logins waiting for a backend with room.",
                                value=len(pool.waiting))
        res, shr = pool.main_memory_kib()
        main = GaugeMetricFamily("transport_main_memory_bytes", "The main instance's memory.", labels=["kind"])
        main.add_metric(["resident"], res * 1024)
        main.add_metric(["shared"], shr * 1024)
        yield main

    def _links(self) -> Iterator[Metric]:
        c = backend_link.COUNTERS
        frames = CounterMetricFamily("transport_backend_frames", "Frames on every backend link.",
                                     labels=["direction"])
        frames.add_metric(["in"], c.frames_in)
        frames.add_metric(["out"], c.frames_out)
        yield frames
        yield CounterMetricFamily("transport_backend_frames_skipped",
                                  "Well-delimited backend frames that did not parse (skipped).",
                                  value=c.frames_skipped)
        yield CounterMetricFamily("transport_backend_frames_oversized",
                                  "Backend frames over max_frame_size (the link was closed).", value=c.oversized)

    # -- the parts

    def _parts(self, registry: dict[str, Any]) -> Iterator[Metric]:
        values = GaugeMetricFamily("transport_part_value", "Numbers a part (frontend, side service) reports.",
                                   labels=["part", "name"])
        sessions = GaugeMetricFamily("transport_part_sessions", "Connections a side service holds.",
                                     labels=["part"])
        for part_name, part in sorted(registry.items()):
            counters = getattr(part, "counters", None)
            if callable(counters):
                try:
                    numbers = counters()
                except Exception:
                    numbers = {}
                for name, value in sorted(numbers.items()):
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        values.add_metric([part_name, str(name)], value)
            held = getattr(part, "sessions", None)
            if held is not None and hasattr(held, "__len__"):
                sessions.add_metric([part_name], len(held))
        yield values
        yield sessions


def make_registry(context: Any) -> CollectorRegistry:
    """A registry with the instance's collector and the process collector (CPU, memory, fds)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TransportCollector(context))
    ProcessCollector(namespace="", registry=registry)
    return registry


def token_matches(request: Any, token: str) -> bool:
    """Whether *request* carries *token*: HTTP Basic (any user name, the token as password) or Bearer."""
    if not token:
        return False
    header = request.getHeader(b"authorization") or b""
    if isinstance(header, str):
        header = header.encode()
    scheme, _, value = header.strip().partition(b" ")
    presented = b""
    if scheme.lower() == b"bearer":
        presented = value.strip()
    elif scheme.lower() == b"basic":
        try:
            decoded = b64decode(value.strip(), validate=True)
        except ValueError:
            return False
        presented = decoded.partition(b":")[2]
    return bool(presented) and hmac.compare_digest(presented, token.encode())


class MetricsResource(resource.Resource):
    """``GET /metrics``: the registry in the text exposition format."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry, config: Any) -> None:
        super().__init__()
        self.registry = registry
        self.config = config

    def render_GET(self, request: Any) -> bytes:
        if self.config.get("monitoring", "metrics_auth"):
            token = self.config.get("service", "admin_token")
            if not token_matches(request, token):
                request.setResponseCode(401)
                request.setHeader(b"www-authenticate", b'Basic realm="Transport metrics"')
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                return b"the admin token is needed\n"
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        request.setHeader(b"cache-control", b"no-store")
        return generate_latest(self.registry)
