"""``transport-backend-check`` as a real command, against the echo backend and deliberately broken ones."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ECHO = [sys.executable, "-m", "transport_backends.echo"]
NODE_ECHO = ["node", str(Path(__file__).resolve().parents[2] / "backends" / "node-echo" / "index.js")]
EVERY_CHECK = [
    "connect",
    "ping",
    "stats",
    "backend config",
    "login",
    "message round trip",
    "receipt",
    "typing",
    "logout",
    "frames",
    "exit",
    "eof",
    "ping timeout",
]

# A backend written by hand with plain sockets and the codec: it behaves well
# except for the flaw selected by its first argument.
BROKEN_BACKEND = r"""
import socket, sys, os
from transport.backend import transport_pb2 as pb
from transport.backend.codec import FrameDecoder, encode
W = pb.WrapperMessage
flaw = sys.argv[1]
args = sys.argv[2:]
port = int(args[args.index("--port") + 1])
s = socket.create_connection(("127.0.0.1", port))
decoder = FrameDecoder()
while True:
    data = s.recv(65536)
    if not data:
        break
    for packet in decoder.feed(data):
        if packet.type == W.TYPE_PING:
            if flaw == "no-pong":
                continue
            if flaw == "garbage":
                s.sendall(b"\x00\x00\x00\x03\xff\xfe\xfd")
            if flaw == "stats-first":
                s.sendall(encode(W.TYPE_STATS, pb.Stats(res=1000, init_res=1000, shared=0, id=str(os.getpid()))))
            s.sendall(encode(W.TYPE_PONG))
            if flaw not in ("no-stats", "stats-first"):
                s.sendall(encode(W.TYPE_STATS, pb.Stats(res=1000, init_res=1000, shared=0, id=str(os.getpid()))))
        elif packet.type == W.TYPE_LOGIN:
            if flaw != "silent-login":
                s.sendall(encode(W.TYPE_CONNECTED, pb.Connected(user=packet.payload.user)))
        elif packet.type == W.TYPE_EXIT:
            if flaw != "ignores-exit":
                sys.exit(0)
"""


def run_check(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    script = shutil.which("transport-backend-check")
    assert script is not None, "transport-backend-check is not installed (pip install -e .)"
    return subprocess.run([script, *args], capture_output=True, text=True, timeout=timeout)


def rows(output: str) -> dict[str, str]:
    """check name -> result, from the printed table."""
    result = {}
    for line in output.splitlines():
        if not line.startswith("  ") or line.startswith("  |"):
            continue
        parts = line.split()
        for outcome in ("pass", "fail", "n/a"):
            if outcome in parts:
                index = parts.index(outcome)
                result[" ".join(parts[:index])] = outcome
                break
    return result


@pytest.fixture
def broken(tmp_path: Path) -> list[str]:
    path = tmp_path / "broken_backend.py"
    path.write_text(BROKEN_BACKEND)
    return [sys.executable, str(path)]


@pytest.mark.parametrize("command", [ECHO, NODE_ECHO], ids=["python", "node"])
def test_echo_backends_pass_every_check(command: list[str]) -> None:
    done = run_check("--", *command)
    assert done.returncode == 0, done.stdout + done.stderr
    table = rows(done.stdout)
    assert table == {name: "pass" for name in EVERY_CHECK}, done.stdout
    assert "echoed: typing, paused, stopped" in done.stdout
    assert "OK: 13 passed, 0 failed, 0 n/a" in done.stdout


def test_echo_console_script_and_refused_login(tmp_path: Path) -> None:
    config = tmp_path / "t.ini"
    config.write_text("[service]\nping_interval = 5\n[backend]\n")
    echo = shutil.which("transport-backend-echo")
    assert echo is not None
    done = run_check("--config", str(config), "--legacy-name", "fail-me", "--", echo)
    assert done.returncode == 0, done.stdout + done.stderr
    table = rows(done.stdout)
    assert table["login"] == "pass" and "AUTHENTICATION_FAILED" in done.stdout
    assert table["message round trip"] == "n/a"
    # the ping-timeout check rewrote this configuration with a short interval
    assert table["ping timeout"] == "pass" and "ping_interval = 0.5" in done.stdout


def test_backend_without_pong_fails(broken: list[str]) -> None:
    done = run_check("--quick", "--timeout", "3", "--", *broken, "no-pong")
    assert done.returncode == 1, done.stdout
    table = rows(done.stdout)
    assert table["connect"] == "pass"
    assert table["ping"] == "fail"
    assert table["eof"] == table["ping timeout"] == "n/a"  # --quick
    assert "FAILED" in done.stdout


def test_backend_sending_garbage_fails(broken: list[str]) -> None:
    done = run_check("--quick", "--timeout", "3", "--", *broken, "garbage")
    assert done.returncode == 1, done.stdout
    table = rows(done.stdout)
    assert table["ping"] == "pass"
    assert table["frames"] == "fail"
    assert table["exit"] == "pass"


def test_backend_without_stats_or_login_answer_fails(broken: list[str]) -> None:
    done = run_check("--quick", "--timeout", "2", "--", *broken, "no-stats")
    assert done.returncode == 1 and rows(done.stdout)["stats"] == "fail", done.stdout
    done = run_check("--quick", "--timeout", "2", "--", *broken, "stats-first")
    assert done.returncode == 1 and "STATS came before PONG" in done.stdout, done.stdout
    done = run_check("--quick", "--timeout", "2", "--", *broken, "silent-login")
    table = rows(done.stdout)
    assert done.returncode == 1 and table["login"] == "fail", done.stdout
    # a backend that is not an echo backend: the round trip is not applicable, not failed
    assert table["message round trip"] == "n/a"


def test_backend_ignoring_exit_fails_and_is_killed(broken: list[str]) -> None:
    done = run_check("--quick", "--timeout", "3", "--exit-timeout", "2", "--", *broken, "ignores-exit")
    assert done.returncode == 1, done.stdout
    table = rows(done.stdout)
    assert table["exit"] == "fail"
    assert table["login"] == "pass"
    assert table["message round trip"] == "n/a"  # no echo buddy: not applicable


def test_backend_without_a_watchdog_fails_only_the_ping_timeout(broken: list[str]) -> None:
    done = run_check("--timeout", "3", "--", *broken, "none")
    assert done.returncode == 1, done.stdout
    table = rows(done.stdout)
    failed = {name for name, outcome in table.items() if outcome == "fail"}
    assert failed == {"ping timeout"}, done.stdout
    assert table["eof"] == "pass"


def test_missing_command_fails() -> None:
    done = run_check("--", "/nonexistent/backend")
    assert done.returncode == 1
    assert rows(done.stdout)["connect"] == "fail"


def test_usage_error() -> None:
    done = run_check()
    assert done.returncode == 2
    assert "command is missing" in done.stderr


def test_the_sdk_guide_example_passes(tmp_path: Path) -> None:
    """The complete example of docs/sdk.md runs and passes the kit."""
    guide = (Path(__file__).resolve().parents[2] / "docs" / "sdk.md").read_text()
    match = re.search(r"```python\n(.*?)```", guide, re.S)
    assert match is not None
    example = tmp_path / "shout.py"
    example.write_text(match.group(1))
    done = run_check("--buddy", "shouter", "--", sys.executable, str(example))
    assert done.returncode == 0, done.stdout + done.stderr
    table = rows(done.stdout)
    assert table["login"] == "pass" and table["message round trip"] == "pass"
    assert "answered by 'shouter'" in done.stdout
