"""A configuration file written for Spectrum 2 starts the gateway (the keys that carry over, and those ignored)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.peers.backends import ECHO, _kill_quietly, backend_processes

pytestmark = pytest.mark.integration

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def spectrum2_file(tmp_path: Path, server_mode: int = 0) -> str:
    """A transport file as Spectrum 2 operators write them (its key names, its comments, 1/0 booleans)."""
    return f"""[service]
# The name of user/group Spectrum runs as.
user=spectrum
group=spectrum
jid = echo.localhost
password = secret
server = 127.0.0.1
port = 5347
server_mode = {server_mode}
backend_host = 127.0.0.1
# backend_port=10001
users_per_backend=10
backend={ECHO}
protocol=prpl-echo
pidfile=/var/run/spectrum2/echo.pid
admin_jid=admin@localhost
admin_password=test
web_directory=/var/lib/spectrum2/media
web_url=http://localhost/media

[identity]
name=Spectrum Echo Transport
type=echo
category=gateway

[logging]
config = /etc/spectrum2/logging.cfg
backend_config = /etc/spectrum2/backend-logging.cfg

[database]
type = sqlite3
database = {tmp_path / 'database.sql'}
prefix = echo_

[registration]
enable_public_registration=1
"""


def _ctl(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "transport.cli.ctl", "-c", str(path), *args], capture_output=True,
                          text=True, timeout=60)


def test_a_spectrum2_file_starts_the_gateway(tmp_path: Path) -> None:
    path = tmp_path / "echo.cfg"
    path.write_text(spectrum2_file(tmp_path))
    log_path = tmp_path / "twistd.log"
    with open(log_path, "wb") as log:
        # the one addition: a free web port (Spectrum 2 has none; the default 8080 may be taken on a test machine)
        process = subprocess.Popen([*TWISTD, "-n", "--pidfile=", "transport", "-c", str(path),
                                    "service.web_port=tcp:0:interface=127.0.0.1"], cwd=tmp_path,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        status = ""
        while time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            result = _ctl(path, "status")
            if result.returncode == 0 and ": ready, pid" in result.stdout:
                status = result.stdout
                break
            time.sleep(0.1)  # polling a real process from a synchronous test
        assert status.startswith("Running"), log_path.read_text()[-3000:]
        assert (tmp_path / "database.sql").exists()  # the Spectrum 2 database path is used
        text = log_path.read_text()
        for key in ("[service] user", "[service] group", "[service] pidfile", "[service] admin_password",
                    "[logging] config", "[logging] backend_config"):
            assert f"{key} is a Spectrum 2 key without effect here" in text, key
        assert f"{path}:3: [service] user" in text  # where it was set
        assert "secret" not in text and "admin_password=test" not in text
        assert "0" == _ctl(path, "online_users_count").stdout.strip()
    finally:
        port = None
        for line in log_path.read_text().splitlines():
            if "backend port 127.0.0.1:" in line:
                port = int(line.rsplit(":", 1)[1])
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
        if port is not None:
            for pid in backend_processes(port):
                _kill_quietly(pid)


def test_spectrum2_server_mode_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "echo.cfg"
    path.write_text(spectrum2_file(tmp_path, server_mode=1))
    result = subprocess.run([*TWISTD, "-n", "--pidfile=", "transport", "-c", str(path)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"{path}:9: [service] server_mode = true" in result.stdout + result.stderr
