"""sd_notify: address forms, message format, datagrams to a real AF_UNIX socket."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from transport.ops.notify import Notifier, format_message, socket_address


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"transport-test-{os.getpid()}-{id(object())}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    yield "@" + name, sock
    sock.close()


def _fields(data: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in data.decode().splitlines())


def test_socket_address_forms() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abstract/name") == b"\0abstract/name"
    assert socket_address("") is None
    assert socket_address("vsock:2:1234") is None
    assert socket_address("relative") is None


def test_format_message_one_line_per_field() -> None:
    assert format_message({"READY": 1, "STATUS": "a\nb"}) == b"READY=1\nSTATUS=a b\n"


def test_without_notify_socket_nothing_is_sent() -> None:
    n = Notifier(environ={})
    assert not n.enabled
    assert n.ready("x") is False
    assert n.sent == []


def test_ready_to_abstract_socket(abstract_socket: tuple[str, socket.socket]) -> None:
    address, sock = abstract_socket
    n = Notifier(environ={"NOTIFY_SOCKET": address})
    assert n.ready("3 users online") is True
    assert _fields(sock.recv(4096)) == {"READY": "1", "STATUS": "3 users online"}
    assert n.reloading()
    got = _fields(sock.recv(4096))
    assert got["RELOADING"] == "1" and int(got["MONOTONIC_USEC"]) > 0
    assert n.stopping()
    assert _fields(sock.recv(4096)) == {"STOPPING": "1"}
    n.close()


def test_ready_to_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    if len(str(path)) > 100:  # AF_UNIX paths are short
        pytest.fail(f"tmp_path too long for an AF_UNIX socket: {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        n = Notifier(environ={"NOTIFY_SOCKET": str(path)})
        assert n.notify(READY=1)
        assert sock.recv(100) == b"READY=1\n"
        n.close()
    finally:
        sock.close()


def test_unreachable_socket_is_reported_not_raised(tmp_path: Path) -> None:
    n = Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert n.enabled
    assert n.ready() is False
    assert n.ready() is False  # logged once, still no exception
    assert n.sent == []


def test_watchdog_interval_from_environment() -> None:
    assert Notifier(environ={"WATCHDOG_USEC": "4000000"}).watchdog_interval == 4.0
    assert Notifier(environ={"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}).watchdog_interval is None
    mine = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(environ=mine).watchdog_interval == 2.0
    assert Notifier(environ={}).watchdog_interval is None


def test_unset_environment_keeps_the_socket_from_children(monkeypatch: pytest.MonkeyPatch,
                                                         abstract_socket: tuple[str, socket.socket]) -> None:
    address, sock = abstract_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    n = Notifier(unset_environment=True)
    assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_USEC" not in os.environ
    assert n.ready() and sock.recv(100) == b"READY=1\n"


def test_the_record_of_sent_messages_is_bounded(abstract_socket: tuple[str, socket.socket]) -> None:
    # WATCHDOG=1 goes out every few seconds for the life of the process: the record must not grow with it
    from transport.ops.notify import MAX_SENT

    address, sock = abstract_socket
    n = Notifier(environ={"NOTIFY_SOCKET": address})
    for i in range(MAX_SENT + 50):
        assert n.status(f"line {i}")
        sock.recv(4096)
    assert len(n.sent) == MAX_SENT and n.sent[-1] == {"STATUS": f"line {MAX_SENT + 49}"}
    n.close()
