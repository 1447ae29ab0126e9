"""A backend host carrying echo backends over one mux TLS connection to a main instance's pool."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from tests.peers.backends import ECHO, process_alive, wait_until
from transport.core import events as ev
from transport.core import presence as pr
from transport.mux.backend_host import BackendHost
from transport.mux.identity import DeviceIdentity
from transport.mux.manager import ConnectionManager
from transport.mux.service import MuxService

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@defer.inlineCallbacks
def _login(gw: Any, users: list[str]) -> Any:
    for u in users:
        yield gw.gateway.register(u, u, "")
    yield defer.gatherResults([gw.gateway.session_opened(gw.frontend, u, "s", pr.ONLINE) for u in users])
    yield wait_until(lambda: set(users) <= {e.user for e in gw.frontend.of(ev.Connected)}, timeout=120)


@defer.inlineCallbacks
def _echo_roundtrip(gw: Any, user: str, body: str) -> Any:
    yield gw.gateway.send_message(user, "echo", body)
    yield gw.frontend.wait_for(lambda e: isinstance(e, ev.MessageReceived) and e.user == user and e.body == body,
                               timeout=60)


@pytest_twisted.inlineCallbacks
def test_backend_host_serves_users_and_losing_it_is_a_backend_crash(gateway_factory: Any) -> Any:
    gw = yield gateway_factory(start_backends=0, users_per_backend=3, ping_interval=1.0, login_retry_delay=0.1)
    main_identity = DeviceIdentity.generate("main")
    host_identity = DeviceIdentity.generate("host")
    main_manager = ConnectionManager(main_identity, trusted_devices=[host_identity.device_id])
    mux = MuxService(main_manager, "tcp:0:interface=127.0.0.1", {"backend_pool": gw.pool}, remote_backends=True)
    mux.startService()
    host: BackendHost | None = None
    try:
        yield wait_until(lambda: mux.port is not None, timeout=30)
        host = BackendHost(ConnectionManager(host_identity), main=f"tcp:127.0.0.1:{mux.port.getHost().port}",
                           main_device=main_identity.device_id, command=ECHO, count=2,
                           config_path=gw.pool.config_path or "", reactor=reactor, name="h1", restart_delay=0.2)
        host.startService()
        yield wait_until(lambda: len(gw.pool.ready_backends()) == 2, timeout=90)
        remote = gw.pool.ready_backends()
        assert all(b.remote and b.process is None for b in remote)
        # both backends ride one TLS connection, one channel each
        [conn] = main_manager.connections()
        assert conn["device_id"] == host_identity.device_id
        assert sorted(c["name"] for c in conn["channels"]) == ["backend/h1-1", "backend/h1-2"]
        assert len(host.manager.connections()) == 1

        users = [f"r{i}@example.org" for i in range(6)]
        yield _login(gw, users)
        assert {gw.pool.users[u] for u in users} == set(remote)  # 3 users each on the two remote backends
        assert gw.backend_pids() == []  # nothing spawned locally
        for u in users:
            yield _echo_roundtrip(gw, u, f"hello from {u}")

        # the host's TLS connection dies: both backends are crashes, their users are logged in again
        crashes_before = gw.pool.crashes_total
        conn_to_main = host.manager.connection_to(main_identity.device_id)
        assert conn_to_main is not None
        conn_to_main.transport.transport.abortConnection()  # type: ignore[union-attr]
        yield wait_until(lambda: gw.pool.crashes_total >= crashes_before + 2, timeout=60)
        reasons = [c.reason for c in gw.pool.crashes[-2:]]
        assert all(r.startswith("connection lost") for r in reasons), reasons
        for u in users:
            yield gw.frontend.wait_for(lambda e, u=u: isinstance(e, ev.Reconnecting) and e.user == u, timeout=60)
        yield wait_until(lambda: sum(1 for e in gw.frontend.of(ev.Connected)) >= 2 * len(users), timeout=120)
        for u in users:
            yield _echo_roundtrip(gw, u, f"again {u}")
        # the host restarted its backends and carried them over a new connection
        yield wait_until(lambda: sum(1 for b in gw.pool.ready_backends() if b.remote) >= 2, timeout=90)
        assert host.manager.connection_to(main_identity.device_id) is not conn_to_main
        assert len(main_manager.connections()) == 1
    finally:
        pids = [p.pid for p in host.processes.values() if p.pid] if host is not None else []
        if host is not None:
            yield host.stopService()
        yield mux.stopService()
        for pid in pids:
            yield wait_until(lambda pid=pid: not process_alive(pid), timeout=30)


@pytest_twisted.inlineCallbacks
def test_untrusted_host_gets_no_backend_channel(gateway_factory: Any) -> Any:
    gw = yield gateway_factory(start_backends=0)
    main_identity = DeviceIdentity.generate("main")
    trusted = DeviceIdentity.generate("trusted")
    main_manager = ConnectionManager(main_identity, trusted_devices=[trusted.device_id])
    mux = MuxService(main_manager, "tcp:0:interface=127.0.0.1", {"backend_pool": gw.pool}, remote_backends=True)
    mux.startService()
    try:
        yield wait_until(lambda: mux.port is not None, timeout=30)
        intruder = ConnectionManager(DeviceIdentity.generate("intruder"))
        ep = f"tcp:127.0.0.1:{mux.port.getHost().port}"
        with pytest.raises(Exception):  # noqa: B017 - the TLS handshake fails (alert or reset)
            yield intruder.connect_device(main_identity.device_id, ep, "backend/evil-1")
        # a trusted device may not open anything but backend channels
        ok = ConnectionManager(trusted)
        from transport.mux.protocol import ChannelDeclinedError
        with pytest.raises(ChannelDeclinedError):
            yield ok.connect_device(main_identity.device_id, ep, "shell/please")
        yield ok.close_all()
        assert gw.pool.ready_backends() == []
    finally:
        yield mux.stopService()
