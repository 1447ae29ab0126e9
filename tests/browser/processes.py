"""``twistd -n transport`` as a real process serving the WebSocket frontend on a free port.

:class:`TwistdInstance` writes a config (echo backend, state in a temporary
directory, ``[service] web_port`` on a free loopback port), starts the process,
waits until the web port answers, and can stop and start it again (same state:
restarts keep the database). Everything it started is killed at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ECHO = f"{sys.executable} -m transport_backends.echo"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TwistdInstance:
    def __init__(self, directory: Path, extra_ini: str = "", port: int = 0, defaults: bool = False) -> None:
        """With *defaults*, no configuration file at all: only the web port is given (as an override argument)."""
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.defaults = defaults
        self.config_path = self.dir / "transport.ini"
        self.config_path.write_text(
            "[service]\n"
            f"backend = {ECHO}\n"
            f"state_dir = {self.dir / 'state'}\n"
            f"web_port = tcp:{self.port}:interface=127.0.0.1\n"
            f"admin_socket = unix:{self.dir / 'state' / 'admin.sock'}\n" + extra_ini)
        self.log_path = self.dir / "twistd.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, timeout: float = 60.0) -> None:
        env = dict(os.environ)  # the checkout first, so twistd finds its plugin and this code
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", "-l", "-",
                 "transport", *self._arguments()],
                cwd=self.dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"twistd exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(self.http_url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)  # start-up polling outside the reactor
        raise TimeoutError(f"twistd did not serve {self.http_url} within {timeout} s:\n{self.log()[-4000:]}")

    def _arguments(self) -> list[str]:
        if self.defaults:
            return [f"service.web_port=tcp:{self.port}:interface=127.0.0.1"]
        return ["-c", str(self.config_path)]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM, then wait; SIGKILL for the whole process group when it hangs."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # backends it spawned, if any are left
        except OSError:
            pass
        proc.wait(10)
