"""The backend pool with real echo backend processes: assignment, ping kills, crashes under traffic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from tests.peers.backends import process_alive, wait_until
from transport.core import events as ev
from transport.core import presence as pr

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


@defer.inlineCallbacks
def _login_all(gw, users, chunk=50):
    for u in users:
        yield gw.gateway.register(u, u, "")
    for i in range(0, len(users), chunk):
        yield defer.gatherResults([gw.gateway.session_opened(gw.frontend, u, "s", pr.ONLINE)
                                   for u in users[i:i + chunk]], consumeErrors=True)
    connected = {u for u in users}
    yield wait_until(lambda: connected <= {e.user for e in gw.frontend.of(ev.Connected)}, timeout=240)


@pytest.mark.slow
@pytest_twisted.inlineCallbacks
def test_250_users_10_per_backend_make_25_processes(gateway_factory):
    gw = yield gateway_factory(users_per_backend=10)
    users = [f"user{i:03d}@example.org" for i in range(250)]
    yield _login_all(gw, users)
    pids = gw.backend_pids()
    assert len(pids) == 25
    assert all(process_alive(p) for p in pids)
    assert sorted(len(b.users) for b in gw.pool.ready_backends()) == [10] * 25
    assert len(gw.gateway.online_users()) == 250
    assert gw.pool.crashes == []


@pytest_twisted.inlineCallbacks
def test_sigstopped_backend_is_killed_and_its_users_logged_in_elsewhere(gateway_factory):
    gw = yield gateway_factory(users_per_backend=5, ping_interval=0.5, login_retry_delay=0.1)
    users = [f"u{i}@example.org" for i in range(10)]
    yield _login_all(gw, users)
    victim = gw.pool.users[users[0]]
    victims = sorted(victim.users)
    pid = victim.pid
    assert len(victims) == 5
    os.kill(pid, signal.SIGSTOP)
    yield wait_until(lambda: not process_alive(pid), timeout=30)
    assert [c.reason for c in gw.pool.crashes] == ["ping timeout"]
    # every user of the stopped backend: told, then connected again on a live backend
    for u in victims:
        yield gw.frontend.wait_for(lambda e, u=u: isinstance(e, ev.Reconnecting) and e.user == u)
    yield wait_until(lambda: sum(1 for e in gw.frontend.of(ev.Connected)) == 15, timeout=60)
    for u in victims:
        assert gw.pool.users[u] is not victim and gw.pool.users[u].state == "ready"
    assert sorted(gw.gateway.online_users()) == sorted(users)
    # and they work
    yield gw.gateway.send_message(victims[0], "echo", "after")
    yield gw.frontend.wait_for(lambda e: isinstance(e, ev.MessageReceived) and e.body == "after")


@pytest_twisted.inlineCallbacks
def test_sigkill_during_traffic_every_message_arrives_exactly_once_in_order(gateway_factory):
    gw = yield gateway_factory(users_per_backend=4, ping_interval=1.0, login_retry_delay=0.1,
                               max_queued_per_user=100000)
    users = [f"t{i}@example.org" for i in range(8)]
    yield _login_all(gw, users)
    per_user = 400
    sent: dict[str, list[str]] = {u: [] for u in users}
    refused = []

    def send_some():
        for u in users:
            n = len(sent[u])
            if n < per_user:
                body = f"{u}#{n}"
                sent[u].append(body)
                gw.gateway.send_message(u, "echo", body).addErrback(refused.append)

    loop = task.LoopingCall(send_some)
    done = loop.start(0.004)
    victim = gw.pool.users[users[0]]
    yield wait_until(lambda: len(sent[users[0]]) >= per_user // 3)
    os.kill(victim.pid, signal.SIGKILL)  # in the middle of the traffic
    yield wait_until(lambda: all(len(v) == per_user for v in sent.values()), timeout=120)
    loop.stop()
    yield done
    assert refused == []

    def received(u):
        return [e.body for e in gw.frontend.events
                if isinstance(e, ev.MessageReceived) and e.user == u and e.buddy == "echo"]

    yield wait_until(lambda: all(len(received(u)) >= per_user for u in users), timeout=120)
    yield task.deferLater(reactor, 0.5, lambda: None)  # a duplicate would show up by now
    for u in users:
        assert received(u) == sent[u], u
    assert len(gw.pool.crashes) == 1
    assert gw.gateway.counters.relogins >= 4  # the victim's users were logged in again
    assert gw.gateway.counters.messages_failed == 0


@pytest_twisted.inlineCallbacks
def test_a_backend_started_by_hand_is_served_as_remote(gateway_factory):
    gw = yield gateway_factory(start_backends=0, ping_interval=0.5, login_retry_delay=0.1)
    proc = subprocess.Popen([sys.executable, "-m", "transport_backends.echo", "--host", "127.0.0.1",
                             "--port", str(gw.pool.port_number), "--service.backend_id=manual",
                             gw.pool.config_path or ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield wait_until(lambda: gw.pool.ready_backends(), timeout=60)
        remote = gw.pool.ready_backends()[0]
        assert remote.remote and remote.process is None and remote.pid == proc.pid
        yield _login_all(gw, ["r@example.org"])
        assert gw.pool.users["r@example.org"] is remote and gw.backend_pids() == []
        proc.kill()  # a remote backend crashing: its users go to a spawned one
        yield wait_until(lambda: gw.pool.users.get("r@example.org") not in (None, remote)
                         and gw.gateway.user_state("r@example.org").state == "online", timeout=60)
        assert not gw.pool.users["r@example.org"].remote and len(gw.backend_pids()) == 1
        assert "connection lost" in gw.pool.crashes[0].reason
    finally:
        proc.kill()
        proc.wait(30)


@pytest_twisted.inlineCallbacks
def test_backend_output_to_per_backend_log_files(gateway_factory, tmp_path):
    gw = yield gateway_factory(backend_log_dir=str(tmp_path / "logs"))
    yield gw.login("l@example.org")
    log = tmp_path / "logs" / "backend-1.log"
    yield wait_until(lambda: log.exists() and "l@example.org logged in" in log.read_text(), timeout=30)
