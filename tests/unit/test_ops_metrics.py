"""The metrics collector's contract with the parts, the token check, and the status sampler on a task.Clock."""

from __future__ import annotations

import base64
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import task
from twisted.web.test.requesthelper import DummyRequest

from transport import config as configuration
from transport.backend.pool import BackendPool
from transport.core.gateway import Gateway
from transport.web.metrics import TransportCollector, token_matches
from transport.web.status import StatusSampler


class _Context:
    def __init__(self, registry: dict[str, Any], reactor: Any = None) -> None:
        self.config = configuration.load_text("[service]\njid = t.example\n")
        self.reactor = reactor
        self.gateway = None
        self.registry = registry


class _Side:
    """A side service as the collector sees one: ``counters()`` and a ``sessions`` collection."""

    def __init__(self) -> None:
        self.sessions = {"a", "b", "c"}

    def counters(self) -> dict[str, Any]:
        return {"stanzas_in": 7, "connected": 1, "label": "not a number", "flag": True}


def _families(context: _Context) -> dict[str, Any]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TransportCollector(context, clock=task.Clock()))
    return {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}


def test_parts_report_their_numbers_and_sessions() -> None:
    families = _families(_Context({"xmpp": _Side(), "plain": object()}))
    values = {(s.labels["part"], s.labels["name"]): s.value for s in families["transport_part_value"].samples}
    assert values == {("xmpp", "connected"): 1.0, ("xmpp", "stanzas_in"): 7.0}  # numbers only, no bools
    sessions = {s.labels["part"]: s.value for s in families["transport_part_sessions"].samples}
    assert sessions == {"xmpp": 3.0}
    info = families["transport_info"].samples[0]
    assert info.labels["jid"] == "t.example" and info.value == 1.0


def _request(header: str | None) -> DummyRequest:
    request = DummyRequest([b""])
    if header is not None:
        request.requestHeaders.setRawHeaders(b"authorization", [header.encode()])
    return request


def test_token_check() -> None:
    basic = "Basic " + base64.b64encode(b"anyone:tok").decode()
    assert token_matches(_request(basic), "tok")
    assert token_matches(_request("Bearer tok"), "tok")
    assert not token_matches(_request("Bearer tok"), "")           # no token configured: nobody
    assert not token_matches(_request(None), "tok")
    assert not token_matches(_request("Bearer toke"), "tok")
    assert not token_matches(_request("Basic " + base64.b64encode(b"tok:").decode()), "tok")  # user name is not it
    assert not token_matches(_request("Basic !!notbase64"), "tok")
    assert not token_matches(_request("Digest tok"), "tok")


def test_sampler_rates_and_bounded_history() -> None:
    clock = task.Clock()
    wall = [1000.0]
    context = _Context({})
    pool = BackendPool(context.config, clock, clock=clock)
    gateway = Gateway(context.config, store=None, router=pool, clock=clock)
    context.gateway = gateway  # type: ignore[assignment]
    context.registry["backend_pool"] = pool
    sampler = StatusSampler(context, interval=10, history=60, clock=clock, wall=lambda: wall[0])
    sampler.start()
    for _ in range(10):  # the gateway's counters as traffic moves them
        wall[0] += 10
        gateway.counters.messages_from_frontend += 50
        gateway.counters.messages_to_frontend += 20
        clock.advance(10)
    sampler.stop()
    series = sampler.series()
    assert len(series["t"]) == 7  # history / interval + 1
    assert series["in_rate"][1:] == [5.0] * 6 and series["out_rate"][1:] == [2.0] * 6
    assert series["in_rate"][0] == 0.0
    assert series["t"] == sorted(series["t"])
    assert series["backends"] == [0] * 7 and series["memory_kib"][-1] > 0  # the main instance's own memory
