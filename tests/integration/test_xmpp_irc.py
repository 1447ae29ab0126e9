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
        f"[backend]\nirc_server = 127.0.0.1\nirc_port = {ircd.port}\nirc_tls = false\n"
        "irc_who_interval = 2\nirc_reconnect_initial_delay = 0.5\nirc_reconnect_max_delay = 2\n")
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


MUC_NS = "{http://jabber.org/protocol/muc}"
STANZAS = "{urn:ietf:params:xml:ns:xmpp-stanzas}"


async def _online(prosody: ProsodyServer, account: str, legacy: str) -> tuple[XmppClient, int]:
    """An XMPP user registered with legacy nick *legacy* and logged in to IRC."""
    client = await XmppClient(prosody, account).start()
    mark = len(client.received)
    answer = await client.iq(f"<iq type='set' to='{COMPONENT}'><query xmlns='jabber:iq:register'>"
                             f"<username>{legacy}</username><password></password></query></iq>")
    assert answer.get("type") == "result", answer
    await client.wait_for(lambda e: e.tag == C + "presence" and e.get("from") == COMPONENT
                          and e.get("type") is None, 90, mark)
    return client, mark


async def _join(client: XmppClient, room: str, nick: str, mark: int) -> None:
    client.send_raw(f"<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    await client.wait_for(lambda e: e.get("from") == f"{room}/{nick}" and e.get("type") is None
                          and any(s.get("code") == "110" for s in e.iter(MUC_USER + "status")), 90, mark)


def test_subject_both_ways_and_nickname_conflict(xmpp_loop: ClientLoop,  # noqa: F811
                                                 stack: tuple[ProsodyServer, IRCServer, MainInstance]) -> None:
    prosody, ircd, gateway = stack
    room = f"#topics@{COMPONENT}"

    async def scenario() -> None:
        erin, mark = await _online(prosody, "erin", "erinx")
        await _join(erin, room, "erinx", mark)  # first in the channel: an IRC operator
        peer = IrcUser("topicpeer")
        await peer.connect(ircd.port)
        peer.send("JOIN #topics")
        await peer.wait_for(lambda line: " 366 " in line)
        # the XMPP user changes the subject: IRC sees TOPIC
        erin.send_raw(f"<message to='{room}' type='groupchat'><subject>from xmpp</subject></message>")
        await peer.wait_for(lambda line: "TOPIC #topics :from xmpp" in line and line.startswith(":erinx!"))
        # IRC changes it: the XMPP user sees the MUC subject, from the occupant who set it
        peer.send("TOPIC #topics :from irc")
        said = await erin.wait_for(lambda e: e.findtext(C + "subject") == "from irc", 60, mark)
        assert said.get("from") == f"{room}/topicpeer"
        # joining another channel with a nickname that is taken on IRC: a MUC conflict error
        taken = IrcUser("takennick")
        await taken.connect(ircd.port)
        other = f"#clash@{COMPONENT}"
        erin.send_raw(f"<presence to='{other}/takennick'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        error = await erin.wait_for(lambda e: e.get("from") == f"{other}/takennick" and e.get("type") == "error",
                                    60, mark)
        assert error.find(f"{C}error/{STANZAS}conflict") is not None
        await taken.close()
        await peer.close()
        await erin.stop()

    xmpp_loop.run(scenario(), 240)


def test_away_both_ways(xmpp_loop: ClientLoop,  # noqa: F811
                        stack: tuple[ProsodyServer, IRCServer, MainInstance]) -> None:
    prosody, ircd, gateway = stack
    room = f"#awayroom@{COMPONENT}"

    async def scenario() -> None:
        carol, mark = await _online(prosody, "carol", "carolx")
        await _join(carol, room, "carolx", mark)
        peer = IrcUser("awaypeer")
        await peer.connect(ircd.port)
        peer.send("JOIN #awayroom")
        await peer.wait_for(lambda line: " 366 " in line)
        # the XMPP user goes away: on IRC, messaging them answers RPL_AWAY with the status text
        carol.send_raw("<presence><show>away</show><status>at lunch</status></presence>")
        for _ in range(30):
            peer.send("PRIVMSG carolx :there?")
            try:
                line = await peer.wait_for(lambda line: " 301 awaypeer carolx " in line, 2)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("carolx never showed as away on IRC")
        assert line.endswith(":at lunch")
        # the IRC user goes away: the occupant's presence shows away
        peer.send("AWAY :brb")
        await carol.wait_for(lambda e: e.get("from") == f"{room}/awaypeer" and e.findtext(C + "show") == "away",
                             60, mark)
        peer.send("AWAY")
        await carol.wait_for(lambda e: e.get("from") == f"{room}/awaypeer" and e.tag == C + "presence"
                             and e.get("type") is None and e.find(C + "show") is None, 60,
                             len(carol.received) - 1)
        await peer.close()
        await carol.stop()

    xmpp_loop.run(scenario(), 240)


def test_irc_server_restart_reconnects_and_rejoins(xmpp_loop: ClientLoop,  # noqa: F811
                                                   stack: tuple[ProsodyServer, IRCServer, MainInstance]) -> None:
    prosody, ircd, gateway = stack
    room = f"#persist@{COMPONENT}"

    async def scenario() -> None:
        bob, mark = await _online(prosody, "bob", "bobx")
        await _join(bob, room, "bobx", mark)
        restarted = len(bob.received)
        await asyncio.get_event_loop().run_in_executor(None, ircd.restart)
        # the backend reconnects and joins again: the user is shown in the room again (self-presence 110)
        await bob.wait_for(lambda e: e.get("from") == f"{room}/bobx" and e.get("type") is None
                           and any(s.get("code") == "110" for s in e.iter(MUC_USER + "status")), 120, restarted)
        peer = IrcUser("backagain")
        await peer.connect(ircd.port)
        peer.send("JOIN #persist")
        names = await peer.wait_for(lambda line: " 353 " in line)
        assert "bobx" in names
        peer.send("PRIVMSG #persist :welcome back")
        said = await bob.wait_for(lambda e: e.findtext(C + "body") == "welcome back", 60, restarted)
        assert said.get("from") == f"{room}/backagain"
        # the user was never logged out of the gateway meanwhile
        assert not any(e.tag == C + "presence" and e.get("from") == COMPONENT and e.get("type") == "unavailable"
                       for e in bob.received[restarted:])
        await peer.close()
        await bob.stop()

    xmpp_loop.run(scenario(), 300)
