"""Real gateways and backend processes for the tests.

``ECHO``
    The echo backend's command line in this checkout (``python -m transport_backends.echo``).

:class:`RecordingFrontend`
    A frontend (``IFrontend``) that records every event and lets a test wait for
    one: ``yield frontend.wait_for(lambda e: isinstance(e, Connected))``. It is
    how the test suite drives the core end to end.

``gateway_factory`` fixture (function scope)
    ``gw = yield gateway_factory(users_per_backend=10, ping_interval=0.5)`` builds
    an in-process main instance on the real reactor: SQLite in ``tmp_path``, the
    real :class:`~transport.backend.pool.BackendPool` spawning real echo backend
    processes, the :class:`~transport.core.gateway.Gateway`, and a
    :class:`RecordingFrontend` registered on it. Keyword arguments are
    ``[service]`` keys (``section__key=...`` for other sections). Everything is
    shut down, and every backend process reaped, at the end of the test.

:class:`MainInstance` / ``main_instance`` fixture
    ``twistd -n transport -c FILE`` as a real process with a generated config in
    ``tmp_path`` (free backend port written to a portfile, admin socket in the
    state directory); ``ctl(*args)`` runs ``transportctl``; ``backend_pids()``
    lists the echo backends it spawned (found in ``/proc`` by their ``--port``).
    Killed (SIGKILL) at the end of the test if still running, with its backends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from zope.interface import implementer

from transport import config as configuration
from transport.backend.pool import BackendPool
from transport.core import events as ev
from transport.core.gateway import Gateway
from transport.core.interfaces import IFrontend
from transport.storage.database import open_sqlite
from transport.storage.gateway import GatewayStore

__all__ = ["ECHO", "MainInstance", "RecordingFrontend", "TestGateway", "gateway_factory", "main_instance",
           "process_alive", "wait_until", "make_config"]

ROOT = Path(__file__).resolve().parents[2]
ECHO = f"{sys.executable} -m transport_backends.echo"


def make_config(tmp_path: Path, text: str = "", **service: Any) -> configuration.Config:
    """A Config with ``[service] backend`` = the echo backend, state in *tmp_path*, plus *service* keys."""
    overrides = [f"service.state_dir={tmp_path / 'state'}", f"service.backend={ECHO}", "service.web_port="]
    for key, value in service.items():
        section, _, name = key.rpartition("__")
        overrides.append(f"{section or 'service'}.{name}={value}")
    return configuration.load_text(text, None, overrides)


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0, interval: float = 0.02) -> defer.Deferred[None]:
    """Fire when *predicate()* is true (polled on the reactor); fail with TimeoutError after *timeout*."""
    d: defer.Deferred[None] = defer.Deferred()
    deadline = time.monotonic() + timeout

    def check() -> None:
        try:
            ok = predicate()
        except Exception as e:
            d.errback(e)
            return
        if ok:
            d.callback(None)
        elif time.monotonic() > deadline:
            d.errback(TimeoutError(f"condition not met within {timeout} s"))
        else:
            reactor.callLater(interval, check)

    check()
    return d


@implementer(IFrontend)
class RecordingFrontend:
    """Records every event delivered to it."""

    def __init__(self, name: str = "test") -> None:
        self.name = name
        self.events: list[ev.Event] = []
        self._waiters: list[tuple[Callable[[ev.Event], bool], defer.Deferred[ev.Event]]] = []

    def deliver(self, event: Any) -> None:
        self.events.append(event)
        for waiter in list(self._waiters):
            if waiter[0](event):
                self._waiters.remove(waiter)
                waiter[1].callback(event)

    def of(self, kind: type, user: str | None = None) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and (user is None or e.user == user)]

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float = 60.0,
                 past: bool = True) -> defer.Deferred[Any]:
        """Fire with the first event matching *predicate* (already received ones count when *past*)."""
        if past:
            for e in self.events:
                if predicate(e):
                    return defer.succeed(e)
        d: defer.Deferred[Any] = defer.Deferred()
        entry = (predicate, d)
        self._waiters.append(entry)

        def expire() -> None:
            if entry in self._waiters:
                self._waiters.remove(entry)
                d.errback(TimeoutError(f"no matching event within {timeout} s"))

        call = reactor.callLater(timeout, expire)
        d.addBoth(lambda r: (call.cancel() if call.active() else None, r)[1])
        return d


class TestGateway:
    """An in-process main instance (see the module docstring)."""

    __test__ = False

    def __init__(self, config: configuration.Config) -> None:
        self.config = config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.database = open_sqlite(config.state_dir / "gateway.sqlite3", reactor)
        self.store = GatewayStore(self.database)
        self.pool = BackendPool(config, reactor)
        self.gateway = Gateway(config, self.store, self.pool, reactor)
        self.frontend = RecordingFrontend()
        self.gateway.add_frontend(self.frontend)

    @defer.inlineCallbacks
    def start(self) -> Any:
        self.database.start()
        yield self.store.start()
        yield self.pool.start()

    @defer.inlineCallbacks
    def stop(self) -> Any:
        yield self.pool.shutdown()
        yield self.database.close()

    @defer.inlineCallbacks
    def login(self, user: str, session: str = "s1", presence: int = 4) -> Any:
        """Register *user* (legacy name = user), open a session and wait for Connected."""
        yield self.gateway.register(user, user, "")
        yield self.gateway.session_opened(self.frontend, user, session, presence)
        yield self.frontend.wait_for(lambda e: isinstance(e, ev.Connected) and e.user == user)

    def backend_pids(self) -> list[int]:
        return sorted(b.process.pid for b in self.pool.backends.values()
                      if b.process is not None and not b.process.ended and b.process.pid)


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., defer.Deferred[TestGateway]]]:
    made: list[TestGateway] = []

    @defer.inlineCallbacks
    def make(**service: Any) -> Any:
        gw = TestGateway(make_config(tmp_path, **service))
        made.append(gw)
        yield gw.start()
        return gw

    yield make
    for gw in made:
        pids = [b.process.pid for b in gw.pool.backends.values() if b.process is not None and b.process.pid]
        pytest_twisted.blockon(gw.stop())
        for pid in pids:
            _kill_quietly(pid)


def _kill_quietly(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def process_alive(pid: int) -> bool:
    """Whether *pid* exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def backend_processes(port: int) -> list[int]:
    """Pids of live processes whose command line has ``--port PORT`` (the backends of one main instance)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        for i, arg in enumerate(argv[:-1]):
            if arg == b"--port" and argv[i + 1] == str(port).encode() and process_alive(int(entry)):
                found.append(int(entry))
                break
    return sorted(found)


class MainInstance:
    """``twistd -n transport`` as a real process (see the module docstring)."""

    def __init__(self, tmp_path: Path, extra_ini: str = "", **service: Any) -> None:
        self.dir = tmp_path
        self.state = tmp_path / "state"
        self.portfile = tmp_path / "backend.port"
        self.config_path = tmp_path / "transport.ini"
        lines = ["[service]", f"backend = {ECHO}", f"state_dir = {self.state}", f"portfile = {self.portfile}",
                 "web_port = "]
        lines += [f"{k} = {v}" for k, v in service.items()]
        self.config_path.write_text("\n".join(lines) + "\n" + extra_ini)
        self.log_path = tmp_path / "twistd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float = 60.0) -> None:
        env = dict(os.environ)
        self.portfile.unlink(missing_ok=True)  # written again once the new instance listens
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", "-l", "-",
                 "transport", "-c",
                 str(self.config_path)], cwd=self.dir, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        sock = self.state / "admin.sock"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"twistd exited with {self.process.returncode}:\n{self.log()}")
            if self.portfile.exists() and self.portfile.read_text().strip() and sock.exists():
                self.port = int(self.portfile.read_text())
                return
            time.sleep(0.05)  # start-up polling in a fixture, outside the reactor
        raise TimeoutError(f"twistd did not start within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``transportctl -c FILE ARGS...``."""
        result = subprocess.run([sys.executable, "-m", "transport.cli.ctl", "-c", str(self.config_path), *args],
                                capture_output=True, text=True, timeout=120, cwd=self.dir)
        if check and result.returncode != 0:
            raise AssertionError(f"transportctl {args} failed ({result.returncode}): {result.stderr}")
        return result

    def backend_pids(self) -> list[int]:
        return backend_processes(self.port)

    def wait_backends(self, count: int, timeout: float = 120.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.backend_pids()
            if len(pids) >= count:
                return pids
            time.sleep(0.1)
        raise TimeoutError(f"{len(self.backend_pids())} backends instead of {count}:\n{self.log()[-3000:]}")

    def wait_ready(self, count: int, timeout: float = 120.0) -> list[int]:
        """Wait until ``transportctl status`` shows *count* ready backends; their pids."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.ctl("status", check=False)
            if result.returncode != 0:  # not listening yet
                time.sleep(0.1)
                continue
            lines = result.stdout.splitlines()
            ready = [line for line in lines if ": ready, pid " in line]
            if len(ready) >= count:
                return sorted(int(line.split("pid ")[1].split(",")[0]) for line in ready)
            time.sleep(0.1)
        raise TimeoutError(f"fewer than {count} ready backends:\n{self.log()[-3000:]}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait (twistd shuts backends down first)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout)
        return self.process.returncode

    def cleanup(self) -> None:
        pids = self.backend_pids() if self.port else []
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        for pid in pids:
            _kill_quietly(pid)


@pytest.fixture
def main_instance(tmp_path: Path) -> Iterator[Callable[..., MainInstance]]:
    made: list[MainInstance] = []

    def make(extra_ini: str = "", start: bool = True, **service: Any) -> MainInstance:
        instance = MainInstance(tmp_path, extra_ini, **service)
        made.append(instance)
        if start:
            instance.start()
        return instance

    yield make
    for instance in made:
        instance.cleanup()
