"""Reload: what changes live, what needs a restart, refusing a bad file; the ops service around it."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task

from transport import config as configuration
from transport.admin.commands import AdminCommands, AdminError
from transport.ops.logs import LevelPolicy
from transport.ops.notify import Notifier
from transport.ops.reload import ConfigReloader, compare
from transport.ops.service import OpsService
from transport.web.site import WebRoot

BASE = """[service]
users_per_backend = 10
ping_interval = 20
password = old-secret
[registration]
enable_public_registration = true
[logging]
level = info
[backend]
colour = blue
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_compare_sorts_changes() -> None:
    old = configuration.load_text(BASE, "a.ini")
    new = configuration.load_text(
        BASE.replace("users_per_backend = 10", "users_per_backend = 3").replace("ping_interval = 20", "ping_interval = 5")
        .replace("old-secret", "new-secret").replace("level = info", "level = debug\nlevels = backend:warn")
        .replace("colour = blue", "colour = red")
        + "[websocket-channel:general]\ndisplay_name = General\n", "a.ini")
    plan = compare(old, new)
    assert sorted(c.name for c in plan.apply) == ["[logging] level", "[logging] levels",
                                                   "[service] users_per_backend"]
    assert sorted(c.name for c in plan.restart) == ["[service] password", "[service] ping_interval"]
    secret = next(c for c in plan.restart if c.key == "password")
    assert "new-secret" not in secret.describe() and "old-secret" not in secret.describe()
    assert any("[websocket-channel:general] is new" in n for n in plan.notes)
    assert any("[backend] changed" in n for n in plan.notes)
    assert compare(old, configuration.load_text(BASE, "a.ini")).apply == []


def test_reloader_applies_in_place_and_reports(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.ini", BASE)
    running = configuration.load(path)
    seen: list[Any] = []

    class Part:
        def reload(self, config: Any) -> None:
            seen.append(("part", config.get("registration", "enable_public_registration")))

    reloader = ConfigReloader(running, parts={"hosts": Part(), "other": object()})
    reloader.add_listener(lambda c: seen.append(("listener", c.get("service", "users_per_backend"))))
    _write(path, BASE.replace("users_per_backend = 10", "users_per_backend = 2")
           .replace("enable_public_registration = true", "enable_public_registration = false")
           .replace("ping_interval = 20", "ping_interval = 7"))
    result = reloader.reload()
    assert result.ok
    assert running.get("service", "users_per_backend") == 2          # applied, in the object parts read
    assert running.get("registration", "enable_public_registration") is False
    assert running.get("service", "ping_interval") == 20.0             # needs a restart: unchanged
    assert [c.name for c in result.restart] == ["[service] ping_interval"]
    assert seen == [("listener", 2), ("part", False)]
    assert running.where("service", "users_per_backend") == f"{path}:2"
    summary = result.summary()
    assert "users_per_backend: 10 -> 2" in summary and "need a restart: [service] ping_interval: 20.0 -> 7.0" in summary


def test_a_bad_file_is_refused_and_the_running_config_stays(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.ini", BASE)
    running = configuration.load(path)
    reloader = ConfigReloader(running)
    _write(path, BASE.replace("users_per_backend = 10", "users_per_backend = 2").replace("ping_interval = 20",
                                                                                          "ping_interval = soon"))
    result = reloader.reload()
    assert not result.ok
    assert f"{path}:3:" in result.error and "ping_interval" in result.error
    assert running.get("service", "users_per_backend") == 10
    assert "refused" in result.summary()
    _write(path, BASE + "[logging]\nlevels = transport.core:loud\n")
    result = reloader.reload()
    assert not result.ok and "levels" in result.error
    path.unlink()
    assert "cannot read" in reloader.reload().error


def test_command_line_overrides_are_kept(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.ini", BASE)
    running = configuration.load(path, ["service.users_per_backend=50"])
    reloader = ConfigReloader(running, ["service.users_per_backend=50"])
    _write(path, BASE.replace("users_per_backend = 10", "users_per_backend = 3"))
    result = reloader.reload()
    assert result.ok and result.applied == [] and running.get("service", "users_per_backend") == 50


class _Reactor(task.Clock):
    """task.Clock that is already running (callWhenRunning calls at once)."""

    def callWhenRunning(self, f: Any, *args: Any, **kw: Any) -> None:
        f(*args, **kw)


class _Context:
    def __init__(self, config: configuration.Config, reactor: Any) -> None:
        self.config = config
        self.reactor = reactor
        self.web_root = WebRoot()
        self.gateway = None
        self.registry: dict[str, Any] = {}
        self.database = None


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"transport-ops-{os.getpid()}-{id(object())}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    yield "@" + name, sock
    sock.close()


def _messages(sock: socket.socket) -> list[dict[str, str]]:
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines()))
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(5)
    return out


@pytest_twisted.ensureDeferred
async def test_ops_service_notifies_and_reloads(tmp_path: Path, notify_socket: tuple[str, socket.socket]) -> None:
    address, sock = notify_socket
    path = _write(tmp_path / "t.ini", BASE)
    config = configuration.load(path)
    reactor = _Reactor()
    context = _Context(config, reactor)
    from transport.ops.service import make_service

    ops = make_service(context)
    assert isinstance(ops, OpsService)
    ops.notifier = Notifier({"NOTIFY_SOCKET": address})
    ops.install_signals = False
    ops.policy = LevelPolicy.from_config(config)
    assert context.registry["ops"] is ops
    assert b"metrics" in context.web_root.children and b"status" in context.web_root.children
    ops.startService()
    assert _messages(sock) == [{"READY": "1", "STATUS": "0 users online, 0 backends"}]
    reactor.advance(10)  # the sampler and the status loop run on the clock
    assert len(ops.sampler.samples) == 2

    _write(path, BASE.replace("level = info", "level = warn\nlevels = transport.backend:debug"))
    commands = AdminCommands(gateway=None, pool=None)
    commands.registry = context.registry
    output = await commands.run("reload")
    assert "applied: [logging] level: info -> warn" in output
    assert ops.policy.threshold("transport.core") == "warn"
    assert ops.policy.threshold("transport.backend.pool") == "debug"
    sent = _messages(sock)
    assert [list(m)[0] for m in sent] == ["RELOADING", "READY"]

    _write(path, "[service]\nusers_per_backend = many\n")
    with pytest.raises(AdminError) as refused:
        await commands.run("reload")
    assert f"{path}:2:" in str(refused.value)
    assert ops.policy.threshold("transport.core") == "warn"
    sent = _messages(sock)
    assert sent[-1]["READY"] == "1" and sent[-1]["STATUS"].startswith("reload refused")

    ops.stopService()
    assert _messages(sock) == [{"STOPPING": "1"}]
    assert not ops.sampler._loop


def test_reload_without_ops_is_an_error() -> None:
    commands = AdminCommands(gateway=None, pool=None)
    d = commands.run("reload")
    failures: list[Any] = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(AdminError)
