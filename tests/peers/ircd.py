"""A real IRC server for the tests (ngircd, Debian's package), and a plain IRC client.

``ircd`` starts a private ngircd on a free loopback port with a generated
configuration (no DNS, no ident, a pre-defined channel ``#preset`` with a topic),
and stops it after the test. ``restart()`` stops and starts it again on the same
port, for the reconnect tests. A missing ngircd binary is a test failure.

:class:`IRCPeer` is the other side of the conversation: a small IRC client
(Twisted's IRCClient) that records what it sees and lets a test wait for it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.words.protocols import irc

NGIRCD = "/usr/sbin/ngircd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class IRCServer:
    """One ngircd process; ``host``/``port`` to connect to."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        if not os.path.exists(NGIRCD):
            raise RuntimeError(f"{NGIRCD} is missing: install Debian's ngircd (scripts/install-test-deps)")
        self.directory = directory
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.config = directory / "ngircd.conf"
        self.config.write_text(
            "[Global]\n"
            "Name = irc.test.local\n"
            "Info = Transport test server\n"
            "AdminInfo1 = tests\nAdminInfo2 = loopback\nAdminEMail = tests@localhost\n"
            f"Listen = {self.host}\n"
            f"Ports = {self.port}\n"
            "MotdPhrase = Test server\n"
            "[Limits]\n"
            "MaxNickLength = 30\n"
            "PingTimeout = 120\n"
            "PongTimeout = 30\n"
            "MaxConnectionsIP = 0\n"
            "[Options]\n"
            "DNS = no\nIdent = no\nPAM = no\n"
            "[Channel]\n"
            "Name = #preset\n"
            "Topic = the preset topic\n"
            "Modes = +tn\n"
        )

    def start(self) -> None:
        self.log = open(self.directory / "ngircd.log", "ab")
        self.process = subprocess.Popen([NGIRCD, "--nodaemon", "--config", str(self.config)],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ngircd exited: {(self.directory / 'ngircd.log').read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("ngircd did not start listening within 20 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def ircd() -> Iterator[IRCServer]:
    directory = Path(tempfile.mkdtemp(prefix="ngircd-"))
    os.chmod(directory, 0o755)
    server = IRCServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


class IRCPeer(irc.IRCClient):
    """A plain IRC user for tests: records events as tuples and lets tests await them.

    Events: ("privmsg", nick, target, text), ("action", nick, target, text), ("join", nick, channel),
    ("part", nick, channel), ("quit", nick, message), ("topic", nick, channel, topic), ("nick", old, new),
    ("names", channel, [names]), ("signedon",), ("away", nick, message), ("mode", nick, channel, set, modes).
    """

    lineRate = None

    def __init__(self, nickname: str) -> None:
        self.nickname = nickname
        self.events: list[tuple[Any, ...]] = []
        self._waiters: list[tuple[Callable[[tuple[Any, ...]], bool], defer.Deferred[tuple[Any, ...]]]] = []
        self._names: dict[str, list[str]] = {}

    def _event(self, *event: Any) -> None:
        self.events.append(event)
        for item in list(self._waiters):
            match, d = item
            if match(event):
                self._waiters.remove(item)
                d.callback(event)

    def wait_for(self, match: Callable[[tuple[Any, ...]], bool], timeout: float = 20.0) -> defer.Deferred[tuple[Any, ...]]:
        for event in self.events:
            if match(event):
                self.events.remove(event)
                return defer.succeed(event)
        d: defer.Deferred[tuple[Any, ...]] = defer.Deferred()
        self._waiters.append((match, d))
        d.addTimeout(timeout, reactor)  # type: ignore[arg-type]
        return d

    def signedOn(self) -> None:
        self._event("signedon")

    def privmsg(self, user: str, channel: str, message: str) -> None:
        self._event("privmsg", user.split("!")[0], channel, message)

    def action(self, user: str, channel: str, data: str) -> None:
        self._event("action", user.split("!")[0], channel, data)

    def userJoined(self, user: str, channel: str) -> None:
        self._event("join", user.split("!")[0], channel)

    def userLeft(self, user: str, channel: str) -> None:
        self._event("part", user.split("!")[0], channel)

    def userQuit(self, user: str, quitMessage: str) -> None:
        self._event("quit", user.split("!")[0], quitMessage)

    def topicUpdated(self, user: str, channel: str, newTopic: str) -> None:
        self._event("topic", user.split("!")[0], channel, newTopic)

    def userRenamed(self, oldname: str, newname: str) -> None:
        self._event("nick", oldname, newname)

    def modeChanged(self, user: str, channel: str, set: bool, modes: str, args: tuple[Any, ...]) -> None:
        self._event("mode", user.split("!")[0], channel, set, modes)

    def irc_RPL_NAMREPLY(self, prefix: str, params: list[str]) -> None:
        self._names.setdefault(params[2].lower(), []).extend(params[3].split())

    def irc_RPL_ENDOFNAMES(self, prefix: str, params: list[str]) -> None:
        self._event("names", params[1].lower(), self._names.pop(params[1].lower(), []))

    def irc_RPL_AWAY(self, prefix: str, params: list[str]) -> None:
        self._event("away", params[1], params[-1])


async def connect_peer(server: IRCServer, nickname: str) -> IRCPeer:
    """A signed-on IRCPeer on *server*."""
    peer = IRCPeer(nickname)
    await connectProtocol(TCP4ClientEndpoint(reactor, server.host, server.port), peer)
    await peer.wait_for(lambda e: e[0] == "signedon")
    return peer
