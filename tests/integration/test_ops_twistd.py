"""``twistd transport`` as an operator runs it: under a (fake) systemd, reloaded, daemonized, side by side.

Real processes only: twistd with a generated config, the echo backend, a
WebSocket client logged in through the bundled frontend, ``transportctl``. The
fake service manager is an AF_UNIX datagram socket bound by the test (abstract
name), passed as ``NOTIFY_SOCKET``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.peers.backends import ECHO, MainInstance, _kill_quietly, backend_processes, process_alive

pytestmark = pytest.mark.integration

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class FakeServiceManager:
    """The receiving end of NOTIFY_SOCKET."""

    def __init__(self) -> None:
        self.name = f"transport-test-notify-{os.getpid()}-{time.monotonic_ns()}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + self.name.encode())
        self.received: list[dict[str, str]] = []

    @property
    def address(self) -> str:
        return "@" + self.name

    def expect(self, key: str, timeout: float = 60.0) -> dict[str, str]:
        """The next message with *key* (earlier ones are kept in :attr:`received`)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {key} from the service within {timeout} s; got {self.received}")
            self.sock.settimeout(remaining)
            data = self.sock.recv(4096)
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.received.append(fields)
            if key in fields:
                return fields

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def service_manager() -> Iterator[FakeServiceManager]:
    manager = FakeServiceManager()
    yield manager
    manager.close()


def _wait(predicate: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except FileNotFoundError:  # a log file between its rotation and its re-creation
            value = None
        if value:
            return value
        time.sleep(0.05)  # polling real processes from a synchronous test
    raise TimeoutError(f"{what} not met within {timeout} s")


def _web_port(instance: MainInstance) -> int:
    found = _wait(lambda: re.search(r"Site starting on (\d+)", instance.log()), what="web port in the log")
    return int(found.group(1))


def _recv(ws: ClientConnection, predicate: Any, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        packet = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if predicate(packet):
            return packet


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        return bytes(response.read())


def _log_lines(instance: MainInstance) -> list[dict[str, Any]]:
    return [json.loads(line) for line in instance.log().splitlines() if line.strip()]


def test_ready_reload_and_stop_under_the_service_manager(main_instance: Any, monkeypatch: pytest.MonkeyPatch,
                                                        service_manager: FakeServiceManager) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", service_manager.address)
    extra = "[websocket]\nenabled = true\n[logging]\nformat = json\nlevel = info\n"
    instance: MainInstance = main_instance(extra, start=False, admin_token="ctl-token")
    instance.config_path.write_text(instance.config_path.read_text().replace(
        "web_port = \n", "web_port = tcp:0:interface=127.0.0.1\n"))
    instance.start()
    ready = service_manager.expect("READY")
    assert ready["READY"] == "1" and "users online" in ready["STATUS"]
    port = _web_port(instance)
    pids = instance.wait_ready(1)
    for pid in pids:  # the backends do not inherit the service manager's socket
        assert b"NOTIFY_SOCKET=" not in Path(f"/proc/{pid}/environ").read_bytes()

    # a user logged in through the WebSocket frontend and the echo backend
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=30) as ws:
        _recv(ws, lambda p: p.get("cmd") == "handshake")
        ws.send(json.dumps({"cmd": "register", "username": "alice", "password": "secret-pw"}))
        _recv(ws, lambda p: p.get("cmd") == "gateway_status" and p.get("connected"))
        _wait(lambda: "alice" in instance.ctl("online_users").stdout, what="alice online")
        assert instance.ctl("register", "carol", "carol").returncode == 0  # before: anyone may register

        # an access line is logged at info before the reload ...
        _get(f"http://127.0.0.1:{port}/metrics")
        _wait(lambda: "GET /metrics" in instance.log(), what="access log line")

        text = instance.config_path.read_text()
        text = text.replace("level = info", "level = warn\nlevels = transport.ops:info")
        text += "[registration]\nusername_mask = ^alice$\n"
        text = text.replace("[service]\n", "[service]\nping_interval = 7\n", 1)
        instance.config_path.write_text(text)
        instance.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        service_manager.expect("RELOADING")
        assert service_manager.expect("READY")["READY"] == "1"
        _wait(lambda: any("reload: applied:" in line["message"] for line in _log_lines(instance)), what="reload log")
        messages = [line["message"] for line in _log_lines(instance)]
        applied = next(m for m in messages if m.startswith("reload: applied:"))
        assert "[logging] level: info -> warn" in applied and "[registration] username_mask" in applied
        assert any(m.startswith("reload: changed but need a restart: [service] ping_interval") for m in messages)

        # ... and not after it (info is below warn now); the new registration policy is in force
        _get(f"http://127.0.0.1:{port}/metrics")
        refused = instance.ctl("register", "bob", "bob", check=False)
        assert refused.returncode == 1 and "registration refused" in refused.stderr
        assert instance.log().count("GET /metrics") == 1

        # alice was not dropped: same connection, same backend, still chatting
        ws.send(json.dumps({"cmd": "message_new", "channel": "dm:echo", "content": "still here"}))
        _recv(ws, lambda p: p.get("cmd") == "message_new" and "still here" in json.dumps(p)
              and p.get("message", {}).get("user") != "alice")
        assert "alice" in instance.ctl("online_users").stdout
        assert instance.wait_ready(1) == pids

        # transportctl reload: a broken file is refused with file:line, the running config stays
        good = instance.config_path.read_text()
        instance.config_path.write_text(good + "[service]\nusers_per_backend = lots\n")
        broken = instance.ctl("reload", check=False)
        assert broken.returncode == 1
        line_no = len(good.splitlines()) + 2
        assert f"{instance.config_path}:{line_no}:" in broken.stderr and "users_per_backend" in broken.stderr
        assert service_manager.expect("READY")["STATUS"].startswith("reload refused")
        instance.config_path.write_text(good)
        assert instance.ctl("register", "bob", "bob", check=False).returncode == 1  # the policy in force stays
        instance.config_path.write_text(good.replace("^alice$", "^(alice|bob)$"))
        fixed = instance.ctl("reload")
        assert "username_mask" in fixed.stdout and "need a restart: [service] ping_interval" in fixed.stdout
        assert instance.ctl("register", "bob", "bob").returncode == 0

    assert instance.stop() in (0, -signal.SIGTERM)  # twistd re-raises the signal it stopped for
    service_manager.expect("STOPPING")
    for line in _log_lines(instance):  # every line is one JSON object
        assert {"time", "level", "namespace", "message"} <= set(line)
    assert not backend_processes(instance.port)


def _write_config(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.ini"
    path.write_text(f"[service]\njid = {name}.localhost\nbackend = {ECHO}\nstate_dir = {directory / 'state'}\n"
                    f"portfile = {directory / 'backend.port'}\nweb_port = tcp:0:interface=127.0.0.1\n")
    return path


def _pid_from(pidfile: Path) -> int:
    return int(_wait(lambda: pidfile.exists() and pidfile.read_text().strip(), what=f"{pidfile}"))


def test_daemon_mode_with_pidfiles_two_instances_side_by_side(tmp_path: Path) -> None:
    a_dir, b_dir = tmp_path / "irc", tmp_path / "echo"
    a_ini, b_ini = _write_config(a_dir, "irc"), _write_config(b_dir, "echo")
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    pids: list[int] = []
    try:
        # daemon with -l FILE; daemon without -l and with --rundir
        started = subprocess.run([*TWISTD, f"--pidfile={a_dir / 'twistd.pid'}", "-l", str(a_dir / "irc.log"),
                                  "transport", "-c", str(a_ini)], env=env, cwd=tmp_path, timeout=60,
                                 capture_output=True, text=True)
        assert started.returncode == 0, started.stderr
        started = subprocess.run([*TWISTD, f"--pidfile={b_dir / 'twistd.pid'}", f"--rundir={b_dir}",
                                  "transport", "-c", str(b_ini)], env=env, cwd=tmp_path, timeout=60,
                                 capture_output=True, text=True)
        assert started.returncode == 0, started.stderr
        pid_a, pid_b = _pid_from(a_dir / "twistd.pid"), _pid_from(b_dir / "twistd.pid")
        pids += [pid_a, pid_b]
        assert pid_a != pid_b and process_alive(pid_a) and process_alive(pid_b)
        for directory, ini in ((a_dir, a_ini), (b_dir, b_ini)):
            _wait(lambda d=directory: (d / "state" / "admin.sock").exists(), what="admin socket")
            ctl = [sys.executable, "-m", "transport.cli.ctl", "-c", str(ini)]
            status = _wait(lambda c=ctl: (r := subprocess.run([*c, "status"], capture_output=True, text=True,
                                                              timeout=60)).returncode == 0
                           and ": ready, pid" in r.stdout and r, what="a ready backend")
            assert status.stdout.startswith("Running")
        port_a = int((a_dir / "backend.port").read_text())
        port_b = int((b_dir / "backend.port").read_text())
        assert port_a != port_b and backend_processes(port_a) and backend_processes(port_b)
        # the logs went where twistd users expect them
        _wait(lambda: "ready:" in (a_dir / "irc.log").read_text(), what="irc.log")
        # without -l: twistd.log in the directory twistd was started from (twistd opens it before chdir)
        _wait(lambda: (tmp_path / "twistd.log").exists() and "ready:" in (tmp_path / "twistd.log").read_text(),
              what="twistd.log")
        first = (a_dir / "irc.log").read_text().splitlines()[0]
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info ", first), first

        # SIGUSR1 rotates the log file now, as twistd does for its own
        os.kill(pid_a, signal.SIGUSR1)
        _wait(lambda: (a_dir / "irc.log.1").exists(), what="irc.log rotated")
        _wait(lambda: "SIGUSR1: log file rotated" in (a_dir / "irc.log").read_text(), what="new irc.log")

        # stopping one leaves the other running; the pidfile goes, the backends too
        os.kill(pid_a, signal.SIGTERM)
        _wait(lambda: not process_alive(pid_a), what="irc instance stopped")
        assert not (a_dir / "twistd.pid").exists()
        _wait(lambda: not backend_processes(port_a), what="irc backends gone")
        assert process_alive(pid_b) and backend_processes(port_b)
        os.kill(pid_b, signal.SIGTERM)
        _wait(lambda: not process_alive(pid_b), what="echo instance stopped")
        assert not (b_dir / "twistd.pid").exists()
    finally:
        for pid in pids:
            if process_alive(pid):
                _kill_quietly(pid)
        for portfile in (a_dir / "backend.port", b_dir / "backend.port"):
            if portfile.exists():
                for pid in backend_processes(int(portfile.read_text())):
                    _kill_quietly(pid)
