"""The main instance (twistd) as a real process: no orphans when it is SIGKILLed, fuzzing its backend port."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import struct
import time

import pytest

from tests.peers.backends import process_alive
from transport.backend import transport_pb2 as pb
from transport.backend.codec import encode

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
W = pb.WrapperMessage


def _status(instance) -> str:
    return instance.ctl("status").stdout


def test_sigkilled_main_instance_leaves_no_backend(main_instance):
    instance = main_instance(start_backends=3)
    pids = instance.wait_ready(3)
    assert all(process_alive(p) for p in pids)
    instance.process.send_signal(signal.SIGKILL)
    instance.process.wait(30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(process_alive(p) for p in pids):
        time.sleep(0.1)
    assert [p for p in pids if process_alive(p)] == []
    assert instance.backend_pids() == []
    # the admin socket of the killed instance is stale; a new instance replaces it
    instance.start()
    instance.wait_ready(1)


def test_clean_shutdown_stops_backends(main_instance):
    instance = main_instance(start_backends=2, shutdown_grace=2)
    pids = instance.wait_ready(2)
    assert instance.stop() in (0, -signal.SIGTERM)  # twistd re-raises the signal it stopped for
    assert [p for p in pids if process_alive(p)] == []
    log = instance.log()
    assert "backend-1: exited with status 0" in log and "backend-2: exited with status 0" in log  # EXIT obeyed
    assert "sending signal" not in log
    # backend output, tagged with the backend id (whatever the log format)
    assert re.search(r"backend-2\W.*stderr: .*backend 2 starting", log)


def _frames(rng: random.Random) -> bytes:
    """A burst of random traffic: garbage, truncated and valid-looking frames, bad payloads."""
    out = b""
    for _ in range(rng.randint(1, 20)):
        kind = rng.random()
        if kind < 0.3:
            out += os.urandom(rng.randint(1, 64))
        elif kind < 0.6:
            body = os.urandom(rng.randint(0, 200))
            out += struct.pack(">I", len(body)) + body
        elif kind < 0.8:
            t = rng.choice([W.TYPE_CONNECTED, W.TYPE_CONV_MESSAGE, W.TYPE_BUDDY_CHANGED, W.TYPE_STATS,
                            W.TYPE_VCARD, W.TYPE_RAW_XML, W.TYPE_FT_DATA, W.TYPE_QUERY, 77])
            payload = os.urandom(rng.randint(0, 50))
            # WrapperMessage by hand (77 is no known type): field 1 varint, field 2 bytes
            body = bytes([0x08, t, 0x12, len(payload)]) + payload
            out += struct.pack(">I", len(body)) + body
        else:
            out += encode(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName="victim", buddyName="x",
                                                                     message="spoof"))
    return out


def test_fuzzing_the_backend_port(main_instance):
    instance = main_instance(start_backends=2)
    pids = instance.wait_ready(2)
    before = _status(instance)
    assert "backend-1: ready" in before and "backend-2: ready" in before
    rng = random.Random(1234)
    closed_by_server = 0
    for i in range(60):
        with socket.create_connection(("127.0.0.1", instance.port), timeout=10) as s:
            try:
                s.sendall(_frames(rng))
                if i % 3 == 0:
                    # a hostile length: the link must be closed, not buffered
                    s.sendall(struct.pack(">I", 0xFFFFFFF0) + b"x" * 100)
                    s.settimeout(20)
                    while s.recv(65536):
                        pass
                    closed_by_server += 1
            except (ConnectionResetError, BrokenPipeError):
                closed_by_server += 1  # closed by the main instance (possibly by the random burst already)
    assert closed_by_server >= 20
    assert instance.process.poll() is None
    after = _status(instance)
    for line in before.splitlines()[1:]:
        assert line.split(",")[:2] == next(a for a in after.splitlines() if a.startswith(line.split(":")[0])
                                           ).split(",")[:2]
    assert all(process_alive(p) for p in pids)
    assert instance.ctl("crashed_backends_count").stdout.strip() == "0"
    assert "oversized frame" in instance.log() or "exceeds the limit" in instance.log()
