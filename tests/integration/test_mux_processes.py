"""Real processes: ``twistd -n transport`` with [mux] enabled, and ``transport-backend-host`` next to it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.peers.backends import ECHO
from transport.mux.identity import DeviceIdentity

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(what: str, check: Any, timeout: float = 120.0, log: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)  # a synchronous test driving real processes
    raise TimeoutError(f"{what} not reached within {timeout} s\n{log() if log else ''}")


def remote_ready(instance: Any) -> list[str]:
    result = instance.ctl("status", check=False)
    return [line for line in result.stdout.splitlines() if ": ready, remote," in line]


def start_host(path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "transport.mux.backend_host", "-c", str(path)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=path.parent)


def test_twistd_with_mux_serves_a_backend_host_and_survives_its_loss(tmp_path: Path, main_instance: Any) -> None:
    main_identity = DeviceIdentity.generate("main")
    main_identity.save(tmp_path / "state" / "mux")  # twistd loads it from state_dir/mux
    host_identity = DeviceIdentity.generate("host")
    host_state = tmp_path / "host-state"
    host_identity.save(host_state / "backend-host")
    port = free_port()
    instance = main_instance(
        extra_ini=f"[mux]\nenabled = true\nlisten = tcp:{port}:interface=127.0.0.1\n"
                  f"trusted_devices = {host_identity.device_id}\n",
        start_backends=0)
    host_ini = tmp_path / "host.ini"
    host_ini.write_text(
        f"[service]\nstate_dir = {host_state}\n\n[backend_host]\nmain = tcp:127.0.0.1:{port}\n"
        f"main_device = {main_identity.device_id}\nbackend = {ECHO}\nbackends = 2\nname = h1\nrestart_delay = 0.2\n")
    host_log = tmp_path / "host.log"
    host = start_host(host_ini, host_log)
    try:
        ready = poll("2 remote backends", lambda: len(remote_ready(instance)) >= 2 and remote_ready(instance),
                     log=lambda: instance.log()[-3000:] + host_log.read_text(errors="replace")[-3000:])
        assert len(ready) == 2
        assert main_identity.device_id in instance.log()  # the id is logged for pinning
        # the host dies (SIGKILL): both of its backends are crashes on the main side
        host.send_signal(signal.SIGKILL)
        host.wait(30)
        poll("2 crashes", lambda: int(instance.ctl("crashed_backends_count").stdout.strip() or 0) >= 2,
             log=lambda: instance.log()[-3000:])
        crashes = instance.ctl("crashed_backends").stdout.splitlines()
        assert len(crashes) == 2 and all("connection lost" in line for line in crashes), crashes
        assert remote_ready(instance) == []
        # a new host process takes over
        host = start_host(host_ini, host_log)
        poll("2 remote backends again", lambda: len(remote_ready(instance)) >= 2,
             log=lambda: instance.log()[-3000:] + host_log.read_text(errors="replace")[-3000:])
        host.send_signal(signal.SIGTERM)
        assert host.wait(60) == 0
        poll("the host's backends to be gone", lambda: remote_ready(instance) == [])
        assert instance.stop() in (0, -15)  # twistd re-raises SIGTERM after a clean shutdown
        assert "Traceback" not in instance.log()
        assert "Traceback" not in host_log.read_text(errors="replace"), host_log.read_text(errors="replace")[-3000:]
    finally:
        if host.poll() is None:
            host.kill()
            host.wait(30)
