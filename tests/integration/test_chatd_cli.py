"""chatd and statusd in ``twistd -n transport``, managed and used with ``transport-chatd`` (real processes)."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "transport.chatd.cli"]


def cli(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*CLI, "-c", str(config), *args], capture_output=True, text=True, timeout=120,
                            cwd=config.parent)
    if check and result.returncode != 0:
        raise AssertionError(f"transport-chatd {args} failed ({result.returncode}): {result.stdout}{result.stderr}")
    return result


def start(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, "-c", str(config), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=config.parent)


def read_until(process: subprocess.Popen[str], text: str, timeout: float = 60.0) -> list[str]:
    """Lines printed by *process* up to the first containing *text*."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{text!r} not printed within {timeout} s; got {lines}")
        ready, _, _ = select.select([process.stdout], [], [], remaining)
        if ready:
            line = process.stdout.readline()
            if not line:
                raise AssertionError(f"the process exited before printing {text!r}; got {lines}")
            lines.append(line.rstrip("\n"))
            if text in line:
                return lines


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_file(path: Path, instance: Any, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.05)  # polling a real process from a synchronous test
    raise TimeoutError(f"{path} not written:\n{instance.log()[-3000:]}")


def test_twistd_serves_chatd_and_statusd_managed_by_the_cli(main_instance: Any, tmp_path: Path) -> None:
    extra = (
        "[chatd]\nenabled = true\nlisten = tcp:0:interface=127.0.0.1\nportfile = chatd.port\nrefresh_interval = 0.2\n"
        "[statusd]\nenabled = true\nlisten = tcp:0:interface=127.0.0.1\nportfile = statusd.port\n"
    )
    web = _free_port()
    instance = main_instance(extra_ini=extra, start=False)
    text = instance.config_path.read_text()
    assert "web_port = \n" in text
    instance.config_path.write_text(text.replace("web_port = \n", f"web_port = tcp:{web}:interface=127.0.0.1\n"))
    instance.start()
    config = instance.config_path
    wait_file(tmp_path / "chatd.port", instance)
    wait_file(tmp_path / "statusd.port", instance)
    assert oct((instance.state / "tokens.key").stat().st_mode & 0o777) == "0o600"

    token = cli(config, "token", "1").stdout.strip()
    assert len(token) == 80
    cli(config, "room", "create", "7", "--name", "ops")
    assert cli(config, "member", "add", "7", "1", "2").stdout.startswith("2 member(s) added")
    cli(config, "contact", "add", "1", "3", "--mutual")
    assert cli(config, "room", "list").stdout.split("\n")[0].split("\t") == ["7", "members-only", "ops", "1 2"]
    assert cli(config, "contact", "list", "3").stdout.split() == ["1"]
    assert cli(config, "member", "add", "8", "1", check=False).returncode == 1

    # the running service notices the CLI's changes (refresh_interval): user 1 may join room 7
    deadline = time.monotonic() + 60
    while True:
        result = cli(config, "connect", "--user", "1", "--token", token, "--join", "7", check=False)
        if result.returncode == 0:
            break
        assert "refused" in result.stdout, result.stdout + result.stderr
        assert time.monotonic() < deadline, "room 7 never became joinable"
        time.sleep(0.1)
    assert "joined 7: in-call 0" in result.stdout
    assert cli(config, "connect", "--user", "3", "--join", "7", check=False).returncode == 1  # not a member
    # the WebSocket endpoint on the web port, through transportctl's delegation
    over_ws = subprocess.run([sys.executable, "-m", "transport.cli.ctl", "-c", str(config), "chatd", "connect",
                              "--user", "2", "--join", "7", "--address", f"ws://127.0.0.1:{web}/chatd"],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert over_ws.returncode == 0 and "joined 7: in-call 0" in over_ws.stdout, over_ws.stdout + over_ws.stderr
    statusd_ws = cli(config, "presence", "--user", "2", "--address", f"ws://127.0.0.1:{web}/statusd")
    assert statusd_ws.stdout.strip() == "pres self 4"

    watcher = start(config, "watch", "--user", "2", "--chat", "7", "--count", "1")
    try:
        read_until(watcher, "joined 7")
        sent = cli(config, "send", "--user", "1", "--chat", "7", "--type", "3", "hello there")
        assert sent.returncode == 0
        lines = read_until(watcher, "rtmsg")
        assert lines[-1].startswith("rtmsg chat 7 from 1/") and lines[-1].endswith("type 3: hello there")
        assert watcher.wait(60) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    refused = cli(config, "send", "--user", "1", "--chat", "7", "--to-user", "3", "x", check=False)
    assert refused.returncode == 1 and f"error {6}" in refused.stdout

    # statusd: 3 sees 1 (contacts); 1's login and logout reach it
    presence = start(config, "presence", "--user", "3", "--set", "2", "--watch", "--count", "2")
    try:
        assert read_until(presence, "pres self")[-1] == "pres self 2"
        assert cli(config, "presence", "--user", "1", "--set", "5").stdout.split("\n")[:2] == ["pres 3 2", "pres self 5"]
        assert read_until(presence, "pres 1 5")
        assert read_until(presence, "pres 1 0")
        assert presence.wait(60) == 0
    finally:
        if presence.poll() is None:
            presence.kill()
            presence.wait()
    assert instance.stop() in (0, -15)  # twistd re-raises SIGTERM after a clean shutdown
    assert "Traceback" not in instance.log()


def test_cli_reports_a_bad_configuration(tmp_path: Path) -> None:
    config = tmp_path / "bad.ini"
    config.write_text("[chatd]\ncall_timeout = soon\n")
    result = cli(config, "room", "list", check=False)
    assert result.returncode == 2 and "bad.ini:2" in result.stderr
    assert os.path.exists(config)
