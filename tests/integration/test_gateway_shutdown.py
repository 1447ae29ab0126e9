"""The shutdown sequence with the real echo backend: drain (every accepted message answered), then the pool stops."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.application import service
from twisted.internet import defer

from tests.peers.backends import wait_until
from transport.core import events as ev
from transport.core.gateway import ShuttingDown
from transport.service import ServiceContext, TransportRoot

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest_twisted.inlineCallbacks
def test_drain_answers_every_accepted_message_before_the_backends_stop(gateway_factory):
    gw = yield gateway_factory(shutdown_grace=2.0)
    g, fe = gw.gateway, gw.frontend
    yield wait_until(lambda: g.features.receipts)
    yield gw.login("alice@example.org")
    ids = [f"m{i}" for i in range(30)]
    for i in ids:
        yield g.send_message("alice@example.org", "echo", f"body {i}", id=i)
    yield g.drain(2.0)
    with pytest.raises(ShuttingDown):
        yield g.send_message("alice@example.org", "echo", "too late", id="late")
    echoed = {e.body for e in fe.of(ev.MessageReceived)}
    acked = {e.id for e in fe.of(ev.MessageAcked)}
    failed = {e.id for e in fe.of(ev.MessageFailed)}
    for i in ids:  # delivered (echoed and acknowledged) or failed, never neither, never both
        assert (f"body {i}" in echoed and i in acked) != (i in failed), i
    assert g.user_state("alice@example.org").unconfirmed == 0
    assert gw.backend_pids()  # the backends still ran during the drain; the pool stops them afterwards


class _Recorder(service.Service):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        self.log.append(self.name)
        return defer.succeed(None)


class _Gateway:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def drain(self, grace: float) -> defer.Deferred[None]:
        self.log.append(f"drain {grace:g}")
        return defer.succeed(None)


class _Config:
    def get(self, section: str, key: str) -> float:
        assert (section, key) == ("service", "shutdown_grace")
        return 3.0


@pytest_twisted.inlineCallbacks
def test_root_stops_in_order_drain_frontends_gateway_database():
    log: list[str] = []
    context = ServiceContext(config=_Config(), reactor=None, database=None, web_root=None,  # type: ignore[arg-type]
                             gateway=_Gateway(log))
    root = TransportRoot(context)
    for name in ("database", "gateway", "xmpp", "websocket", "ops"):
        _Recorder(name, log).setServiceParent(root)
    root.startService()
    yield root.stopService()
    assert log[0] == "drain 3"
    assert sorted(log[1:4]) == ["ops", "websocket", "xmpp"]
    assert log[4:] == ["gateway", "database"]
