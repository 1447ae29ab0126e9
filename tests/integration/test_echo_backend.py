"""The echo backend as a real process, driven by a main-side harness on a free loopback port."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from transport.backend import transport_pb2 as pb
from transport.backend.codec import Packet
from transport.sdk.harness import MainSideHarness

pytestmark = pytest.mark.integration

W = pb.WrapperMessage
U = "alice@example.org"
ECHO_MODULE = [sys.executable, "-m", "transport_backends.echo"]
NODE_ECHO = ["node", str(Path(__file__).resolve().parents[2] / "backends" / "node-echo" / "index.js")]
#: The same behaviour is expected from the Python echo backend and its JavaScript twin.
BACKENDS = pytest.mark.parametrize("command", [ECHO_MODULE, NODE_ECHO], ids=["python", "node"])
WAIT = 30.0  # generous: a loaded 2-core machine


def write_config(tmp_path: Path, text: str = "") -> str:
    path = tmp_path / "transport.ini"
    path.write_text("[service]\n" + text + "\n[backend]\n")
    return str(path)


async def started(tmp_path: Path, command: list[str] | None = None, config: str = "") -> tuple[MainSideHarness, Any]:
    harness = MainSideHarness(reactor, command or ECHO_MODULE, write_config(tmp_path, config))
    peer = await harness.start(WAIT)
    return harness, peer


def payload(packet: Packet) -> Any:
    return packet.payload


@BACKENDS
@pytest_twisted.ensureDeferred
async def test_full_session(tmp_path: Path, command: list[str]) -> None:
    harness, peer = await started(tmp_path, command)
    try:
        peer.send(W.TYPE_PING)
        await peer.expect(W.TYPE_PONG, WAIT)
        stats = payload(await peer.expect(W.TYPE_STATS, WAIT))
        assert stats.id == str(harness.process.pid)
        assert stats.res > 1000 and stats.init_res > 1000  # a Python process: several MiB
        assert peer.take(W.TYPE_BACKEND_CONFIG) is not None

        peer.send(W.TYPE_LOGIN, pb.Login(user=U, legacyName="alice", password="pw"))
        assert payload(await peer.expect(W.TYPE_CONNECTED, WAIT)).user == U
        assert payload(await peer.expect(W.TYPE_BUDDY_CHANGED, WAIT)).buddyName == "echo"

        peer.send(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=U, buddyName="echo", message="ping?", id="1"))
        assert payload(await peer.expect(W.TYPE_CONV_MESSAGE_ACK, WAIT)).id == "1"
        assert payload(await peer.expect(W.TYPE_CONV_MESSAGE, WAIT)).message == "ping?"

        peer.send(W.TYPE_JOIN_ROOM, pb.Room(userName=U, nickname="al", room="echo"))
        first = payload(await peer.expect(W.TYPE_PARTICIPANT_CHANGED, WAIT))
        me = payload(await peer.expect(W.TYPE_PARTICIPANT_CHANGED, WAIT))
        assert first.nickname == "echo" and me.nickname == "al" and me.flag & pb.PARTICIPANT_FLAG_ME
        await peer.expect(W.TYPE_ROOM_SUBJECT_CHANGED, WAIT)
        peer.send(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=U, buddyName="echo", message="all"))
        said = [payload(await peer.expect(W.TYPE_CONV_MESSAGE, WAIT)) for _ in range(2)]
        assert [(m.nickname, m.message) for m in said] == [("al", "all"), ("echo", "all")]

        peer.send(W.TYPE_VCARD, pb.VCard(userName=U, buddyName="echo", id=9))
        vcard = payload(await peer.expect(W.TYPE_VCARD, WAIT))
        assert vcard.id == 9 and vcard.photo.startswith(b"\x89PNG")

        peer.send(W.TYPE_LOGOUT, pb.Logout(user=U, legacyName="alice"))
        peer.send(W.TYPE_EXIT)
        assert await harness.wait_exit(WAIT) == 0
        assert peer.skipped == 0
    finally:
        await harness.stop()


@BACKENDS
@pytest_twisted.ensureDeferred
async def test_many_users_and_messages_arrive_complete_and_in_order(tmp_path: Path, command: list[str]) -> None:
    harness, peer = await started(tmp_path, command)
    try:
        users = [f"user{i}@example.org" for i in range(20)]
        for user in users:
            peer.send(W.TYPE_LOGIN, pb.Login(user=user, legacyName=user, password=""))
        for user in users:
            await peer.expect(lambda p, u=user: p.type == W.TYPE_CONNECTED and p.payload.user == u, WAIT)
        for n in range(50):
            for user in users:
                peer.send(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=user, buddyName="echo", message=str(n)))
        for user in users:
            got = [
                payload(
                    await peer.expect(lambda p, u=user: p.type == W.TYPE_CONV_MESSAGE and p.payload.userName == u, WAIT)
                ).message
                for _ in range(50)
            ]
            assert got == [str(n) for n in range(50)]
        assert peer.take(W.TYPE_CONV_MESSAGE) is None  # nothing extra
    finally:
        await harness.stop()


@BACKENDS
@pytest_twisted.ensureDeferred
async def test_exits_when_the_main_instance_closes_the_connection(tmp_path: Path, command: list[str]) -> None:
    harness, peer = await started(tmp_path, command)
    try:
        peer.close()
        assert await harness.wait_exit(WAIT) == 0
    finally:
        await harness.stop()


@BACKENDS
@pytest_twisted.ensureDeferred
async def test_exits_after_three_missed_pings(tmp_path: Path, command: list[str]) -> None:
    harness, peer = await started(tmp_path, command, config="ping_interval = 0.2")
    try:
        # answered PINGs keep it alive well past three intervals...
        for _ in range(6):
            peer.send(W.TYPE_PING)
            await peer.expect(W.TYPE_PONG, WAIT)
        assert harness.running
        # ...silence makes it give up (after 0.6 s; generous wait for a loaded machine)
        assert await harness.wait_exit(WAIT) == 1
        assert any("ping timeout" in line or "no PING" in line for line in harness.output_lines)
    finally:
        await harness.stop()


@pytest_twisted.ensureDeferred
async def test_console_script(tmp_path: Path) -> None:
    script = shutil.which("transport-backend-echo")
    assert script is not None, "transport-backend-echo is not installed (pip install -e .)"
    harness, peer = await started(tmp_path, [script])
    try:
        peer.send(W.TYPE_PING)
        await peer.expect(W.TYPE_PONG, WAIT)
        peer.send(W.TYPE_EXIT)
        assert await harness.wait_exit(WAIT) == 0
    finally:
        await harness.stop()


@pytest_twisted.ensureDeferred
async def test_nothing_listening_exits_with_failure(tmp_path: Path) -> None:
    harness = MainSideHarness(reactor, ECHO_MODULE, write_config(tmp_path))
    await harness.listen()
    port = harness.listening_port
    await harness.stop()  # the port is closed again: the backend's connection is refused
    harness.spawn(port)
    try:
        assert await harness.wait_exit(WAIT) == 1
        assert any("cannot connect" in line for line in harness.output_lines)
    finally:
        await harness.stop()


@pytest_twisted.ensureDeferred
async def test_unreadable_config_exits_with_usage_error(tmp_path: Path) -> None:
    harness = MainSideHarness(reactor, ECHO_MODULE, str(tmp_path / "missing.ini"))
    await harness.listen()
    harness.spawn()
    try:
        assert await harness.wait_exit(WAIT) == 2
    finally:
        await harness.stop()


@pytest_twisted.ensureDeferred
async def test_bad_config_value_exits_with_usage_error(tmp_path: Path) -> None:
    harness = MainSideHarness(reactor, ECHO_MODULE, write_config(tmp_path, "ping_interval = soon"))
    await harness.listen()
    harness.spawn()
    try:
        assert await harness.wait_exit(WAIT) == 2
        assert any("ping_interval" in line for line in harness.output_lines)
    finally:
        await harness.stop()


@BACKENDS
@pytest_twisted.ensureDeferred
async def test_garbage_is_skipped_and_an_oversized_frame_stops_the_backend(tmp_path: Path, command: list[str]) -> None:
    harness, peer = await started(tmp_path, command, config="max_frame_size = 1 KiB")
    try:
        peer.send_raw(b"\x00\x00\x00\x03\xff\xfe\xfd")  # not a WrapperMessage
        peer.send_raw(b"\x00\x00\x00\x04\x08\x01\x12\x00")  # CONNECTED without its required user
        peer.send(W.TYPE_PING)
        await peer.expect(W.TYPE_PONG, WAIT)
        assert harness.running
        peer.send_raw(b"\x00\x00\x08\x00")  # announces 2 KiB: over the backend's limit
        assert await harness.wait_exit(WAIT) == 1
    finally:
        await harness.stop()
