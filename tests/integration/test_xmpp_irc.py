"""XMPP ↔ IRC end to end: a slixmpp user in an IRC channel through Prosody, the gateway and the IRC backend.

Real processes all the way: Prosody (component ``irc.localhost``), ``twistd -n
transport`` running ``transport_backends.irc``, and ngircd; on the IRC side a
plain IRC client (a few lines of asyncio) is the other person.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.backends import MainInstance
from tests.peers.ircd import IRCServer
from tests.peers.prosody import ClientLoop, ProsodyServer, XmppClient, xmpp_loop  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

C = "{jabber:client}"
MUC_USER = "{http://jabber.org/protocol/muc#user}"
COMPONENT = "irc.localhost"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProsodyServer, IRCServer, MainInstance]]:
    prosody = ProsodyServer(component=COMPONENT)
    directory = Path(tempfile.mkdtemp(prefix="ngircd-"))
    os.chmod(directory, 0o755)
    ircd = IRCServer(directory)
    gateway = MainInstance(tmp_path_factory.mktemp("irc-gateway"))
    gateway.config_path.write_text(
        "[service]\n"
        f"backend = {sys.executable} -m transport_backends.irc\n"
        "protocol = irc\n"
        f"state_dir = {gateway.state}\nportfile = {gateway.portfile}\nweb_port =\n"
        f"jid = {COMPONENT}\nserver = 127.0.0.1\nport = {prosody.component_port}\n"
        f"password = {prosody.component_secret}\n"
        "[xmpp]\nenabled = true\n[websocket]\nenabled = false\n"
        f"[backend]\nirc_server = 127.0.0.1\nirc_port = {ircd.port}\nirc_tls = false\n")
    try:
        prosody.start()
        ircd.start()
        gateway.start()
        yield prosody, ircd, gateway
    finally:
        gateway.cleanup()
        ircd.stop()
        shutil.rmtree(directory, ignore_errors=True)
        prosody.cleanup()


class IrcUser:
    """A plain IRC client on asyncio: the person on the other side."""

    def __init__(self, nick: str) -> None:
        self.nick = nick
        self.lines: list[str] = []
        self._changed = asyncio.Event()

    async def connect(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self._task = asyncio.ensure_future(self._read())
        self.send(f"NICK {self.nick}")
        self.send(f"USER {self.nick} 0 * :{self.nick}")
        await self.wait_for(lambda line: " 001 " in line)

    async def _read(self) -> None:
        while True:
            raw = await self.reader.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("PING"):
                self.send("PONG" + line[4:])
            self.lines.append(line)
            self._changed.set()

    def send(self, line: str) -> None:
        self.writer.write((line + "\r\n").encode())

    async def wait_for(self, match: Any, timeout: float = 60.0) -> str:
        loop = asyncio.get_event_loop()
        deadline = loop.time() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if match(line):
                    return line
            seen = len(self.lines)
            if loop.time() > deadline:
                raise TimeoutError(f"IRC {self.nick}: nothing matching; last lines: {self.lines[-10:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), 1.0)
            except TimeoutError:
                pass

    async def close(self) -> None:
        self.send("QUIT :bye")
        self.writer.close()
        self._task.cancel()


def test_xmpp_user_in_an_irc_channel(xmpp_loop: ClientLoop,  # noqa: F811
                                     stack: tuple[ProsodyServer, IRCServer, MainInstance]) -> None:
    prosody, ircd, gateway = stack
    room = f"#preset@{COMPONENT}"

    async def scenario() -> None:
        dave = await XmppClient(prosody, "dave").start()
        mark = len(dave.received)
        answer = await dave.iq(f"<iq type='set' to='{COMPONENT}'><query xmlns='jabber:iq:register'>"
                               "<username>davex</username><password></password></query></iq>")
        assert answer.get("type") == "result", answer
        # logged in to IRC: the transport comes online
        await dave.wait_for(lambda e: e.tag == C + "presence" and e.get("from") == COMPONENT
                            and e.get("type") is None, 90, mark)
        dave.send_raw(f"<presence to='{room}/davex'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        await dave.wait_for(lambda e: e.get("from") == f"{room}/davex" and e.get("type") is None
                            and any(s.get("code") == "110" for s in e.iter(MUC_USER + "status")), 90, mark)
        await dave.wait_for(lambda e: e.findtext(C + "subject") == "the preset topic", 60, mark)
        # someone on IRC joins and talks
        peer = IrcUser("ircpeer")
        await peer.connect(ircd.port)
        peer.send("JOIN #preset")
        await peer.wait_for(lambda line: " 366 " in line)  # end of NAMES
        await dave.wait_for(lambda e: e.get("from") == f"{room}/ircpeer" and e.tag == C + "presence"
                            and e.get("type") is None, 60, mark)
        peer.send("PRIVMSG #preset :hello from irc")
        said = await dave.wait_for(lambda e: e.findtext(C + "body") == "hello from irc", 60, mark)
        assert said.get("from") == f"{room}/ircpeer" and said.get("type") == "groupchat"
        # and back
        dave.send_raw(f"<message to='{room}' type='groupchat'><body>hello from xmpp</body></message>")
        line = await peer.wait_for(lambda line: "PRIVMSG #preset :hello from xmpp" in line)
        assert line.startswith(":davex!")
        # a private message from the channel member
        peer.send("PRIVMSG davex :psst")
        private = await dave.wait_for(lambda e: e.findtext(C + "body") == "psst", 60, mark)
        assert private.get("from") == f"{room}/ircpeer" and private.get("type") == "chat"
        # and a private message back to them, through the room
        dave.send_raw(f"<message to='{room}/ircpeer' type='chat'><body>psst back</body>"
                      "<x xmlns='http://jabber.org/protocol/muc#user'/></message>")
        line = await peer.wait_for(lambda line: "PRIVMSG ircpeer :psst back" in line)
        assert line.startswith(":davex!")
        # leaving the room parts the channel
        dave.send_raw(f"<presence to='{room}/davex' type='unavailable'/>")
        await peer.wait_for(lambda line: line.startswith(":davex!") and " PART #preset" in line)
        await peer.close()
        await dave.stop()

    xmpp_loop.run(scenario(), 240)
