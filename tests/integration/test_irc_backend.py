"""The IRC backend as a real process against a real IRC server (ngircd), with a real IRC user on the other side.

The main instance's side is played by the SDK's harness (the backend protocol
frames are checked one by one); the XMPP-level tests through Prosody live with
the XMPP frontend's suite.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor, threads

from tests.peers.ircd import IRCServer, connect_peer
from transport.backend import transport_pb2 as pb
from transport.sdk.harness import BackendPeer, MainSideHarness

W = pb.WrapperMessage
USER = "alice@example.org"
COMMAND = [sys.executable, "-m", "transport_backends.irc", "-v"]


def config_file(tmp_path: Path, server: IRCServer, **extra: str) -> Path:
    keys = {"irc_server": server.host, "irc_port": str(server.port), "irc_send_rate": "20",
            "irc_reconnect_initial_delay": "0.2", "irc_reconnect_max_delay": "1", "irc_who_interval": "2"}
    keys.update(extra)
    path = tmp_path / "transport.ini"
    path.write_text("[service]\nping_interval = 20\n[backend]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()))
    return path


class Backend:
    def __init__(self, harness: MainSideHarness, peer: BackendPeer) -> None:
        self.harness = harness
        self.peer = peer

    async def login(self, legacy_name: str, password: str = "") -> pb.Connected | pb.Disconnected:
        self.peer.send(W.TYPE_LOGIN, pb.Login(user=USER, legacyName=legacy_name, password=password))
        packet = await self.peer.expect(lambda p: p.type in (W.TYPE_CONNECTED, W.TYPE_DISCONNECTED), timeout=30)
        return packet.payload  # type: ignore[return-value]

    async def join(self, room: str, nickname: str) -> list[pb.Participant]:
        self.peer.send(W.TYPE_JOIN_ROOM, pb.Room(userName=USER, room=room, nickname=nickname))
        occupants = []
        while True:
            packet = await self.peer.expect(W.TYPE_PARTICIPANT_CHANGED, timeout=30)
            occupants.append(packet.payload)
            if packet.payload.flag & pb.PARTICIPANT_FLAG_ME:  # type: ignore[union-attr]
                return occupants

    def expect(self, type_: int, timeout: float = 30, **fields: Any) -> Any:
        def match(packet: Any) -> bool:
            return packet.type == type_ and all(getattr(packet.payload, k) == v for k, v in fields.items())
        return self.peer.expect(match, timeout=timeout)


@pytest_twisted.async_yield_fixture
async def backend(ircd: IRCServer, tmp_path: Path) -> AsyncIterator[Backend]:
    harness = MainSideHarness(reactor, COMMAND, str(config_file(tmp_path, ircd)))
    harness.output = lambda line: print("backend:", line, file=sys.stderr)  # shown when a test fails
    peer = await harness.start()
    yield Backend(harness, peer)
    await harness.stop()


@pytest_twisted.ensureDeferred
async def test_login_join_and_talk_both_ways(ircd: IRCServer, tmp_path: Path) -> None:
    harness = MainSideHarness(reactor, COMMAND, str(config_file(tmp_path, ircd)))
    harness.output = lambda line: print("backend:", line, file=sys.stderr)  # shown when a test fails
    peer = await harness.start()
    b = Backend(harness, peer)
    try:
        config = await peer.expect(W.TYPE_BACKEND_CONFIG)
        assert "muc=1" in config.payload.config  # type: ignore[union-attr]
        bob = await connect_peer(ircd, "bob")
        bob.join("#chat")
        await bob.wait_for(lambda e: e[0] == "names" and e[1] == "#chat")
        assert isinstance(await b.login("alice"), pb.Connected)

        occupants = await b.join("#chat", "alice")
        names = {o.nickname: o.flag for o in occupants}
        assert names["alice"] & pb.PARTICIPANT_FLAG_ME
        assert names["bob"] & pb.PARTICIPANT_FLAG_MODERATOR  # the channel's creator is an operator
        await bob.wait_for(lambda e: e[:3] == ("join", "alice", "#chat"))

        # room message, user → IRC
        peer.send(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=USER, buddyName="#chat", message="hello irc",
                                                              id="m1"))
        await bob.wait_for(lambda e: e == ("privmsg", "alice", "#chat", "hello irc"))
        await b.expect(W.TYPE_CONV_MESSAGE_ACK, id="m1")
        # room message, IRC → user, with the speaker as nickname
        bob.msg("#chat", "hi alice, ünïcode")
        got = await b.expect(W.TYPE_CONV_MESSAGE, buddyName="#chat", nickname="bob")
        assert got.payload.message == "hi alice, ünïcode"
        # /me both ways
        bob.describe("#chat", "waves")
        got = await b.expect(W.TYPE_CONV_MESSAGE, buddyName="#chat", nickname="bob")
        assert got.payload.message == "/me waves"
        peer.send(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=USER, buddyName="#chat", message="/me smiles"))
        await bob.wait_for(lambda e: e == ("action", "alice", "#chat", "smiles"))

        # a private message from an occupant comes as a room private message (pm)
        bob.msg("alice", "psst")
        got = await b.expect(W.TYPE_CONV_MESSAGE, buddyName="#chat", nickname="bob", pm=True)
        assert got.payload.message == "psst"
        # and the user answers privately
        peer.send(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=USER, buddyName="#chat", nickname="bob",
                                                              message="psst back", pm=True))
        await bob.wait_for(lambda e: e == ("privmsg", "alice", "alice", "psst back") or
                           e == ("privmsg", "alice", "bob", "psst back"))

        # topic: change from IRC, then from the user
        bob.topic("#chat", "new topic")
        got = await b.expect(W.TYPE_ROOM_SUBJECT_CHANGED, buddyName="#chat", nickname="bob")
        assert got.payload.message == "new topic"
        # with +t, a non-operator is refused, and told so in the room
        bob.mode("#chat", True, "t")
        await bob.wait_for(lambda e: e[0] == "mode" and e[4] == "t")
        peer.send(W.TYPE_ROOM_SUBJECT_CHANGED, pb.ConversationMessage(userName=USER, buddyName="#chat",
                                                                      message="refused"))
        got = await b.expect(W.TYPE_CONV_MESSAGE, buddyName="#chat", nickname="")
        assert "not changed" in got.payload.message
        # bob makes alice an operator: her flags change
        bob.mode("#chat", True, "o", user="alice")
        got = await b.expect(W.TYPE_PARTICIPANT_CHANGED, nickname="alice")
        assert got.payload.flag & pb.PARTICIPANT_FLAG_MODERATOR and got.payload.flag & pb.PARTICIPANT_FLAG_ME
        peer.send(W.TYPE_ROOM_SUBJECT_CHANGED, pb.ConversationMessage(userName=USER, buddyName="#chat",
                                                                      message="set by alice"))
        await bob.wait_for(lambda e: e[0] == "topic" and e[3] == "set by alice")

        # someone joins, renames, leaves
        carol = await connect_peer(ircd, "carol")
        carol.join("#chat")
        await b.expect(W.TYPE_PARTICIPANT_CHANGED, nickname="carol", status=pb.STATUS_ONLINE)
        carol.setNick("carol2")
        got = await b.expect(W.TYPE_PARTICIPANT_CHANGED, nickname="carol", newname="carol2")
        carol.part("#chat")
        await b.expect(W.TYPE_PARTICIPANT_CHANGED, nickname="carol2", status=pb.STATUS_NONE)
        carol.quit("bye")

        # leave
        peer.send(W.TYPE_LEAVE_ROOM, pb.Room(userName=USER, room="#chat", nickname="alice"))
        await bob.wait_for(lambda e: e[:3] == ("part", "alice", "#chat"))
        bob.quit("done")
    finally:
        await harness.stop()


@pytest_twisted.ensureDeferred
async def test_topic_on_join_and_private_buddy(backend: Backend, ircd: IRCServer) -> None:
    assert isinstance(await backend.login("alice"), pb.Connected)
    await backend.join("#preset", "alice")
    got = await backend.expect(W.TYPE_ROOM_SUBJECT_CHANGED, buddyName="#preset")
    assert got.payload.message == "the preset topic"
    # a private message from someone sharing no room: a buddy appears, then the message
    dave = await connect_peer(ircd, "dave")
    dave.msg("alice", "hello stranger")
    await backend.expect(W.TYPE_BUDDY_CHANGED, buddyName="dave")
    got = await backend.expect(W.TYPE_CONV_MESSAGE, buddyName="dave")
    assert got.payload.message == "hello stranger" and not got.payload.pm
    backend.peer.send(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=USER, buddyName="dave", message="hi dave"))
    await dave.wait_for(lambda e: e == ("privmsg", "alice", "alice", "hi dave") or e[3:] == ("hi dave",))
    # vCard: WHOIS answers with the real name
    backend.peer.send(W.TYPE_VCARD, pb.VCard(userName=USER, buddyName="dave", id=7))
    card = await backend.expect(W.TYPE_VCARD, id=7)
    assert card.payload.nickname == "dave"
    dave.quit("bye")


@pytest_twisted.ensureDeferred
async def test_nickname_in_use(backend: Backend, ircd: IRCServer) -> None:
    taken = await connect_peer(ircd, "taken")
    # at login: DISCONNECTED with NAME_IN_USE
    result = await backend.login("taken")
    assert isinstance(result, pb.Disconnected) and result.error == pb.CONNECTION_ERROR_NAME_IN_USE
    # joining a room with a nick that is in use: CONFLICT for that room
    assert isinstance(await backend.login("alice"), pb.Connected)
    backend.peer.send(W.TYPE_JOIN_ROOM, pb.Room(userName=USER, room="#x", nickname="taken"))
    got = await backend.expect(W.TYPE_PARTICIPANT_CHANGED, room="#x")
    assert got.payload.flag & pb.PARTICIPANT_FLAG_CONFLICT
    taken.quit("bye")


@pytest_twisted.ensureDeferred
async def test_bad_legacy_name_and_unreachable_server(backend: Backend, ircd: IRCServer) -> None:
    result = await backend.login("#notanick")
    assert isinstance(result, pb.Disconnected) and result.error == pb.CONNECTION_ERROR_INVALID_USERNAME
    port = ircd.port
    await threads.deferToThread(ircd.stop)
    result = await backend.login(f"alice@127.0.0.1:{port}")
    assert isinstance(result, pb.Disconnected) and result.error == pb.CONNECTION_ERROR_NETWORK_ERROR


@pytest_twisted.ensureDeferred
async def test_away_both_ways(backend: Backend, ircd: IRCServer) -> None:
    erin = await connect_peer(ircd, "erin")
    erin.join("#away")
    await erin.wait_for(lambda e: e[0] == "names")
    assert isinstance(await backend.login("alice"), pb.Connected)
    await backend.join("#away", "alice")
    # the user goes away: IRC sees it (RPL_AWAY when messaged)
    backend.peer.send(W.TYPE_STATUS_CHANGED, pb.Status(userName=USER, status=pb.STATUS_AWAY, statusMessage="lunch"))
    for _ in range(50):
        erin.msg("alice", "there?")
        try:
            event = await erin.wait_for(lambda e: e[0] == "away" and e[1] == "alice", timeout=1)
            break
        except Exception:
            continue
    else:
        raise AssertionError("alice never showed as away on IRC")
    assert event[2] == "lunch"
    # an occupant goes away: the WHO poll reports it as a participant status
    erin.away("brb")
    await backend.expect(W.TYPE_PARTICIPANT_CHANGED, nickname="erin", status=pb.STATUS_AWAY)
    erin.back()
    await backend.expect(W.TYPE_PARTICIPANT_CHANGED, nickname="erin", status=pb.STATUS_ONLINE)
    erin.quit("bye")


@pytest_twisted.ensureDeferred
async def test_server_restart_reconnects_and_rejoins(backend: Backend, ircd: IRCServer) -> None:
    assert isinstance(await backend.login("alice"), pb.Connected)
    await backend.join("#persist", "alice")
    await threads.deferToThread(ircd.restart)
    # the backend reconnects by itself and joins #persist again (the user is told the occupants again)
    got = await backend.expect(W.TYPE_PARTICIPANT_CHANGED, room="#persist", nickname="alice", timeout=60)
    assert got.payload.flag & pb.PARTICIPANT_FLAG_ME
    frank = await connect_peer(ircd, "frank")
    frank.join("#persist")
    await frank.wait_for(lambda e: e[0] == "names" and "alice" in " ".join(e[2]))
    frank.msg("#persist", "welcome back")
    got = await backend.expect(W.TYPE_CONV_MESSAGE, buddyName="#persist", nickname="frank")
    assert got.payload.message == "welcome back"
    # no DISCONNECTED was sent: the user stayed logged in throughout
    assert not any(p.type == W.TYPE_DISCONNECTED for p in backend.peer.history)
    frank.quit("bye")


@pytest_twisted.ensureDeferred
async def test_legacy_charset_fallback(backend: Backend, ircd: IRCServer) -> None:
    assert isinstance(await backend.login("alice"), pb.Connected)
    await backend.join("#latin", "alice")
    gina = await connect_peer(ircd, "gina")
    gina.join("#latin")
    await backend.expect(W.TYPE_PARTICIPANT_CHANGED, nickname="gina")
    gina.transport.write("PRIVMSG #latin :caf\xe9 cr\xe8me\r\n".encode("latin-1"))  # type: ignore[union-attr]
    got = await backend.expect(W.TYPE_CONV_MESSAGE, buddyName="#latin", nickname="gina")
    assert got.payload.message == "café crème"
    gina.quit("bye")


@pytest_twisted.ensureDeferred
async def test_exit_quits_irc(backend: Backend, ircd: IRCServer) -> None:
    hank = await connect_peer(ircd, "hank")
    hank.join("#bye")
    await hank.wait_for(lambda e: e[0] == "names")
    assert isinstance(await backend.login("alice"), pb.Connected)
    await backend.join("#bye", "alice")
    backend.peer.send(W.TYPE_EXIT)
    await hank.wait_for(lambda e: e[0] == "quit" and e[1] == "alice")
    assert await backend.harness.wait_exit(10) == 0
    hank.quit("bye")


@pytest_twisted.ensureDeferred
async def test_conformance_kit_passes(ircd: IRCServer, tmp_path: Path) -> None:
    """transport-backend-check plays the main instance against the IRC backend (no echo buddy: n/a)."""
    from twisted.internet import utils

    config = config_file(tmp_path, ircd)
    out, err, code = await utils.getProcessOutputAndValue(
        sys.executable, ["-m", "transport.cli.backend_check", "--config", str(config), "--legacy-name", "alice",
                         "--", sys.executable, "-m", "transport_backends.irc"], env=dict(__import__("os").environ))
    text = out.decode() + err.decode()
    assert code == 0, text
    assert ", 0 failed" in text, text


@pytest_twisted.ensureDeferred
async def test_undeliverable_messages_are_answered_not_dropped(backend: Backend, ircd: IRCServer) -> None:
    # no IRC session for this user: the backend says so instead of dropping the message
    backend.peer.send(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName="nobody@example.org", buddyName="bob",
                                                                  message="lost?"))
    got = await backend.expect(W.TYPE_CONV_MESSAGE, userName="nobody@example.org", buddyName="bob")
    assert got.payload.headline and "not delivered" in got.payload.message
    # a private message in a room with no occupant named: refused with the reason
    assert isinstance(await backend.login("alice"), pb.Connected)
    await backend.join("#pm", "alice")
    backend.peer.send(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=USER, buddyName="#pm", message="who?",
                                                                  pm=True))
    got = await backend.expect(W.TYPE_CONV_MESSAGE, buddyName="#pm", headline=True)
    assert "nickname" in got.payload.message
