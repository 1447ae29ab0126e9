"""transportctl against a running main instance (twistd), and the backend port refusing QUERY."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time

import pytest

from transport.backend import transport_pb2 as pb
from transport.backend.codec import FrameDecoder, encode
from transport.backend.pool import QUERY_REFUSAL

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
W = pb.WrapperMessage


def test_queries_register_and_socket_permissions(main_instance):
    instance = main_instance()
    instance.wait_ready(1)
    sock = instance.state / "admin.sock"
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    status = instance.ctl("status").stdout
    assert status.startswith("Running (0 users connected using 1 backends)")
    assert "backend-1: ready, pid " in status
    for command, expected in [("online_users_count", "0"), ("backends_count", "1"),
                              ("crashed_backends_count", "0"), ("messages_from_frontend", "0"),
                              ("messages_to_frontend", "0"), ("online_users", ""), ("crashed_backends", ""),
                              ("average_memory_per_user", "0")]:
        assert instance.ctl(command).stdout.strip() == expected, command
    assert int(instance.ctl("uptime").stdout) >= 0
    res, shr, used = (int(instance.ctl(c).stdout) for c in ("res_memory", "shr_memory", "used_memory"))
    assert res > 20000 and 0 < shr < res and used == res - shr  # main instance + one echo backend, KiB
    assert "backend-1" in instance.ctl("online_users_per_backend").stdout
    helptext = instance.ctl("help").stdout
    for name in ("status", "uptime", "online_users_per_backend", "register", "unregister"):
        assert name in helptext
    assert instance.ctl("register", "alice@example.org", "alice", "pw").stdout.strip() == \
        "User alice@example.org registered."
    assert instance.ctl("unregister", "alice@example.org").stdout.strip() == "User alice@example.org unregistered."
    assert "not registered" in instance.ctl("unregister", "alice@example.org").stdout
    bad = instance.ctl("no_such_command", check=False)
    assert bad.returncode == 1 and "unknown command" in bad.stderr
    usage = instance.ctl("register", check=False)
    assert usage.returncode == 1 and "usage: register" in usage.stderr


def test_admin_token(main_instance):
    instance = main_instance(admin_token="s3cret")
    assert "Running" in instance.ctl("status").stdout  # token taken from the configuration
    wrong = instance.ctl("--token", "guess", "status", check=False)
    assert wrong.returncode == 1 and "unauthorized" in wrong.stderr
    # a plain-text line is refused when a token is configured
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(20)
        s.connect(str(instance.state / "admin.sock"))
        s.sendall(b"status\n")
        assert b'"ok": false' in s.recv(65536)


def test_unreachable_main_instance(tmp_path):
    result = subprocess.run([sys.executable, "-m", "transport.cli.ctl", "--socket", f"unix:{tmp_path}/none.sock",
                             "status"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "cannot reach" in result.stderr


def test_query_on_the_backend_port_is_refused(main_instance):
    instance = main_instance()
    decoder = FrameDecoder()
    with socket.create_connection(("127.0.0.1", instance.port), timeout=20) as s:
        s.sendall(encode(W.TYPE_QUERY, pb.BackendConfig(config="status")))
        packets = []
        while not any(p.type == W.TYPE_QUERY for p in packets):
            data = s.recv(65536)
            assert data, "connection closed without an answer"
            packets += decoder.feed(data)
    answer = next(p for p in packets if p.type == W.TYPE_QUERY)
    assert answer.payload.config == QUERY_REFUSAL


def test_twistd_without_configuration_runs_echo_and_sqlite(tmp_path):
    """``twistd -n transport`` with no -c: the echo backend, SQLite in ./state, transportctl status works."""
    proc = subprocess.Popen([sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
                             "--pidfile=", "-l", "twistd.log", "transport", "service.web_port="],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        status = ""
        while time.monotonic() < deadline:
            result = subprocess.run([sys.executable, "-m", "transport.cli.ctl", "status"], cwd=tmp_path,
                                    capture_output=True, text=True, timeout=60)
            status = result.stdout
            if "backend-1: ready" in status:
                break
            assert proc.poll() is None, (tmp_path / "twistd.log").read_text()
            time.sleep(0.2)
        assert "backend-1: ready" in status, (tmp_path / "twistd.log").read_text()
        assert (tmp_path / "state" / "transport.sqlite3").exists()
    finally:
        proc.terminate()
        proc.wait(60)
    log = (tmp_path / "twistd.log").read_text()
    assert "backend-1: exited with status 0" in log
