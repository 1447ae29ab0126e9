"""The XMPP frontend end to end: a real Prosody, real slixmpp clients, ``twistd -n transport`` and the echo backend.

One Prosody and one main instance serve the whole module (the tests build on
each other's registrations, in file order, as a user would); each test uses its
own account where it can. The clients run on an asyncio loop in a thread
(:class:`tests.peers.prosody.ClientLoop`), the main instance and Prosody are
processes, so nothing here runs on the Twisted reactor.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.backends import MainInstance
from tests.peers.prosody import ClientLoop, ProsodyServer, XmppClient, prosody_server, xmpp_loop  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

C = "{jabber:client}"
NS_MUC_USER = "{http://jabber.org/protocol/muc#user}"
NS_RECEIPTS = "{urn:xmpp:receipts}"
NS_CHATSTATES = "{http://jabber.org/protocol/chatstates}"
NS_STANZAS = "{urn:ietf:params:xml:ns:xmpp-stanzas}"
MAX_QUEUED = 5


@pytest.fixture(scope="module")
def gateway(prosody_server: ProsodyServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MainInstance]:  # noqa: F811
    ini = ("[xmpp]\nenabled = true\nreconnect_initial_delay = 0.5\nreconnect_max_delay = 2\nsession_grace = 20\n"
           "[websocket]\nenabled = false\n")
    instance = MainInstance(tmp_path_factory.mktemp("gateway"), ini, jid=prosody_server.component,
                            server="127.0.0.1", port=prosody_server.component_port,
                            password=prosody_server.component_secret, max_queued_per_user=MAX_QUEUED,
                            login_retry_delay=4.0, admin_jid=prosody_server.jid("erin"))
    try:
        instance.start()
        yield instance
    finally:
        instance.cleanup()


@pytest.fixture
def run(xmpp_loop: ClientLoop, gateway: MainInstance) -> Callable[..., Any]:  # noqa: F811
    """``run(coro)``: run a scenario on the clients' loop; the gateway's log is shown when it fails."""
    def runner(coro: Any, timeout: float = 240.0) -> Any:
        try:
            return xmpp_loop.run(coro, timeout)
        except BaseException:
            print(gateway.log()[-6000:])
            raise
    return runner


def is_presence(frm_prefix: str, type_: str | None = None) -> Callable[[Any], bool]:
    def match(e: Any) -> bool:
        return (e.tag == C + "presence" and e.get("from", "").startswith(frm_prefix)
                and e.get("type") == type_)
    return match


def body_of(e: Any) -> str | None:
    b = e.find(C + "body")
    return b.text if b is not None else None


def error_condition(e: Any) -> str | None:
    err = e.find(C + "error")
    if err is None:
        return None
    for c in err:
        if c.tag.startswith(NS_STANZAS) and not c.tag.endswith("}text"):
            return c.tag.split("}", 1)[1]
    return None


async def registered(server: ProsodyServer, account: str, resource: str = "test",
                     legacy: str | None = None) -> XmppClient:
    """A started client of *account* registered with the transport, the echo buddy online in its roster."""
    client = await XmppClient(server, account, resource).start()
    mark = len(client.received)
    answer = await client.iq(f"<iq type='set' to='{server.component}'><query xmlns='jabber:iq:register'>"
                             f"<username>{legacy or account}</username><password>pw</password></query></iq>")
    assert answer.get("type") == "result", answer
    await client.wait_for(is_presence(f"echo@{server.component}"), 60, mark)
    return client


async def gateway_log_has(gateway: MainInstance, text: str, timeout: float = 60.0) -> bool:
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in gateway.log():
            return True
        await asyncio.sleep(0.1)
    return False


# ---------------------------------------------------------------------------


def test_register_log_in_and_echo_in_roster(run: Any, prosody_server: ProsodyServer) -> None:  # noqa: F811
    server = prosody_server

    async def scenario() -> None:
        alice = await XmppClient(server, "alice").start()
        form = await alice.iq(f"<iq type='get' to='{server.component}'><query xmlns='jabber:iq:register'/></iq>")
        assert form.get("type") == "result"
        assert form.find("{jabber:iq:register}query/{jabber:iq:register}username") is not None
        answer = await alice.iq(f"<iq type='set' to='{server.component}'><query xmlns='jabber:iq:register'>"
                                "<username>Alice Liddell</username><password>pw</password></query></iq>")
        assert answer.get("type") == "result"
        # the transport asks for the user's presence; slixmpp approves, the user's server sends presence,
        # the gateway logs the user in; the echo buddy asks to be added with its nick, then is online
        subscribe = await alice.wait_for(is_presence(f"echo@{server.component}", "subscribe"))
        assert subscribe.find("{http://jabber.org/protocol/nick}nick").text == "Echo"
        online = await alice.wait_for(is_presence(f"echo@{server.component}"))
        assert online.find(C + "status").text == "I repeat everything"
        transport = await alice.wait_for(is_presence(server.component))
        assert transport.find("{http://jabber.org/protocol/caps}c") is not None
        # the registration is stored: a second form shows it
        form = await alice.iq(f"<iq type='get' to='{server.component}'><query xmlns='jabber:iq:register'/></iq>")
        assert form.find("{jabber:iq:register}query/{jabber:iq:register}registered") is not None
        assert form.find("{jabber:iq:register}query/{jabber:iq:register}username").text == "Alice Liddell"
        roster = alice.xmpp.client_roster
        assert f"echo@{server.component}" in roster
        await alice.stop()

    run(scenario())


def test_discovery_ping_version_and_gateway_translation(run: Any, prosody_server: ProsodyServer) -> None:  # noqa: F811
    server = prosody_server

    async def scenario() -> None:
        bob = await XmppClient(server, "bob").start()
        info = await bob.iq(f"<iq type='get' to='{server.component}'>"
                            "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        q = "{http://jabber.org/protocol/disco#info}"
        identities = [(i.get("category"), i.get("type")) for i in info.iter(q + "identity")]
        features = {f.get("var") for f in info.iter(q + "feature")}
        assert ("gateway", "echo") in identities
        assert {"jabber:iq:register", "jabber:iq:gateway", "urn:xmpp:ping", "jabber:iq:version",
                "http://jabber.org/protocol/commands", "urn:xmpp:receipts", "vcard-temp"} <= features
        assert "http://jabber.org/protocol/muc" in features  # the echo backend announced MUC
        buddy = await bob.iq(f"<iq type='get' to='someone@{server.component}'>"
                             "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        assert ("client", "pc") in [(i.get("category"), i.get("type")) for i in buddy.iter(q + "identity")]
        room = await bob.iq(f"<iq type='get' to='echo@{server.component}'>"
                            "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        assert ("conference", "text") in [(i.get("category"), i.get("type")) for i in room.iter(q + "identity")]
        assert "http://jabber.org/protocol/muc" in {f.get("var") for f in room.iter(q + "feature")}
        items = await bob.iq(f"<iq type='get' to='{server.component}'>"
                             "<query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        jids = {i.get("jid") for i in items.iter("{http://jabber.org/protocol/disco#items}item")}
        assert f"echo@{server.component}" in jids  # the echo room from ROOM_LIST
        pong = await bob.iq(f"<iq type='get' to='{server.component}'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert pong.get("type") == "result"
        version = await bob.iq(f"<iq type='get' to='{server.component}'><query xmlns='jabber:iq:version'/></iq>")
        assert version.find("{jabber:iq:version}query/{jabber:iq:version}name").text
        translated = await bob.iq(f"<iq type='set' to='{server.component}'><query xmlns='jabber:iq:gateway'>"
                                  "<prompt>John Doe</prompt></query></iq>")
        assert translated.find("{jabber:iq:gateway}query/{jabber:iq:gateway}jid").text == \
            f"\\4aohn\\20\\44oe@{server.component}"
        unknown = await bob.iq(f"<iq type='get' to='{server.component}'><query xmlns='urn:example:nothing'/></iq>")
        assert unknown.get("type") == "error" and error_condition(unknown) == "service-unavailable"
        # unregistered users cannot send messages through the transport
        await bob.stop()

    run(scenario())


def test_messages_receipts_chat_states_attention_and_vcard(run: Any, prosody_server: ProsodyServer) -> None:  # noqa: F811
    server = prosody_server
    echo = f"echo@{server.component}"

    async def scenario() -> None:
        carol = await registered(server, "carol")
        mark = len(carol.received)
        carol.send_raw(f"<message to='{echo}' type='chat' id='m1'><body>hello &amp; welcome</body>"
                       "<request xmlns='urn:xmpp:receipts'/><active xmlns='http://jabber.org/protocol/chatstates'/>"
                       "</message>")
        back = await carol.wait_for(lambda e: e.tag == C + "message" and body_of(e) == "hello & welcome", 60, mark)
        assert back.get("from") == echo and back.get("type") == "chat"
        receipt = await carol.wait_for(lambda e: e.find(NS_RECEIPTS + "received") is not None, 60, mark)
        assert receipt.find(NS_RECEIPTS + "received").get("id") == "m1" and receipt.get("from") == echo
        assert receipt.get("to") == carol.jid  # to the resource that asked
        # chat states both ways
        mark = len(carol.received)
        carol.send_raw(f"<message to='{echo}' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/>"
                       "</message>")
        await carol.wait_for(lambda e: e.find(NS_CHATSTATES + "composing") is not None, 60, mark)
        carol.send_raw(f"<message to='{echo}' type='chat'><paused xmlns='http://jabber.org/protocol/chatstates'/>"
                       "</message>")
        await carol.wait_for(lambda e: e.find(NS_CHATSTATES + "paused") is not None, 60, mark)
        # attention both ways
        carol.send_raw(f"<message to='{echo}' type='headline'><attention xmlns='urn:xmpp:attention:0'/>"
                       "<body>buzz</body></message>")
        buzz = await carol.wait_for(lambda e: e.find("{urn:xmpp:attention:0}attention") is not None, 60, mark)
        assert buzz.get("from") == echo
        # the buddy's vCard comes from the backend
        card = await carol.iq(f"<iq type='get' to='{echo}'><vCard xmlns='vcard-temp'/></iq>")
        assert card.get("type") == "result", card
        assert card.find("{vcard-temp}vCard/{vcard-temp}FN").text
        assert card.find("{vcard-temp}vCard/{vcard-temp}PHOTO/{vcard-temp}BINVAL").text
        await carol.stop()

    run(scenario())


def test_many_messages_come_back_complete_and_in_order(run: Any, prosody_server: ProsodyServer) -> None:  # noqa: F811
    server = prosody_server
    echo = f"echo@{server.component}"
    count = 300

    async def scenario() -> None:
        carol = await XmppClient(server, "carol", "burst").start()
        await carol.wait_for(is_presence(echo), 60)
        mark = len(carol.received)
        for i in range(count):
            carol.send_raw(f"<message to='{echo}' type='chat'><body>burst {i}</body></message>")
        await carol.wait_for(lambda e: body_of(e) == f"burst {count - 1}", 120, mark)
        bodies = [body_of(e) for e in carol.received[mark:] if (body_of(e) or "").startswith("burst ")]
        assert bodies == [f"burst {i}" for i in range(count)]
        await carol.stop()

    run(scenario())


def test_muc_join_groupchat_subject_nick_change_and_leave(run: Any, prosody_server: ProsodyServer) -> None:  # noqa: F811
    server = prosody_server
    room = f"echo@{server.component}"

    async def scenario() -> None:
        dave = await registered(server, "dave")
        mark = len(dave.received)
        dave.send_raw(f"<presence to='{room}/dj'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        me = await dave.wait_for(lambda e: e.tag == C + "presence" and e.get("from") == f"{room}/dj"
                                 and any(s.get("code") == "110" for s in e.iter(NS_MUC_USER + "status")), 60, mark)
        occupants = [e for e in dave.received[mark:] if e.tag == C + "presence" and e.get("from", "").startswith(room + "/")]
        assert occupants[0].get("from") == f"{room}/echo"  # the occupant list comes before the self-presence
        assert occupants[0].find(f"{NS_MUC_USER}x/{NS_MUC_USER}item").get("role") == "moderator"
        assert me.get("type") is None
        subject = await dave.wait_for(lambda e: e.find(C + "subject") is not None and e.find(C + "subject").text,
                                      60, mark)
        assert subject.get("type") == "groupchat"
        # groupchat round trip: the room reflects our message, then echo repeats it
        mark = len(dave.received)
        dave.send_raw(f"<message to='{room}' type='groupchat' id='g1'><body>hi room</body></message>")
        await dave.wait_for(lambda e: e.get("from") == f"{room}/dj" and body_of(e) == "hi room", 60, mark)
        await dave.wait_for(lambda e: e.get("from") == f"{room}/echo" and body_of(e) == "hi room", 60, mark)
        # subject change
        dave.send_raw(f"<message to='{room}' type='groupchat'><subject>new topic</subject></message>")
        await dave.wait_for(lambda e: e.find(C + "subject") is not None and e.find(C + "subject").text == "new topic",
                            60, mark)
        # nick change: 303 from the old nick, then the self-presence with the new one
        mark = len(dave.received)
        dave.send_raw(f"<presence to='{room}/dave2'/>")
        gone = await dave.wait_for(lambda e: e.get("from") == f"{room}/dj" and e.get("type") == "unavailable", 60,
                                   mark)
        assert "303" in [s.get("code") for s in gone.iter(NS_MUC_USER + "status")]
        assert gone.find(f"{NS_MUC_USER}x/{NS_MUC_USER}item").get("nick") == "dave2"
        await dave.wait_for(lambda e: e.get("from") == f"{room}/dave2" and e.get("type") is None
                            and any(s.get("code") == "110" for s in e.iter(NS_MUC_USER + "status")), 60, mark)
        # a nickname the room refuses
        mark = len(dave.received)
        dave.send_raw(f"<presence to='room2@{server.component}/echo'><x xmlns='http://jabber.org/protocol/muc'/>"
                      "</presence>")
        refused = await dave.wait_for(lambda e: e.get("from") == f"room2@{server.component}/echo"
                                      and e.get("type") == "error", 60, mark)
        assert error_condition(refused) == "conflict"
        # leave
        mark = len(dave.received)
        dave.send_raw(f"<presence to='{room}/dave2' type='unavailable'/>")
        await dave.wait_for(lambda e: e.get("from") == f"{room}/dave2" and e.get("type") == "unavailable", 60, mark)
        await dave.stop()

    run(scenario())


def test_roster_changes_and_own_vcard_reach_the_legacy_network(run: Any, prosody_server: ProsodyServer,  # noqa: F811
                                                                gateway: MainInstance) -> None:
    server = prosody_server
    friend = f"new\\20friend@{server.component}"

    async def scenario() -> None:
        carol = await XmppClient(server, "carol", "roster").start()
        await carol.wait_for(is_presence(f"echo@{server.component}"), 60)
        mark = len(carol.received)
        # adding a contact through the transport: the backend confirms it (BUDDY_CHANGED), it shows online
        carol.send_raw(f"<presence to='{friend}' type='subscribe'/>")
        await carol.wait_for(is_presence(friend, "subscribed"), 60, mark)
        await carol.wait_for(is_presence(friend), 60, mark)
        # removing it
        carol.send_raw(f"<presence to='{friend}' type='unsubscribe'/>")
        assert await gateway_log_has(gateway, "carol@localhost removed buddy new friend")
        # the user's own vCard, set on the transport, goes to the backend
        answer = await carol.iq(f"<iq type='set' to='{server.component}'><vCard xmlns='vcard-temp'>"
                                "<NICKNAME>Caro</NICKNAME></vCard></iq>")
        assert answer.get("type") == "result"
        assert await gateway_log_has(gateway, "carol@localhost updated their vCard (nickname 'Caro'")
        await carol.stop()

    run(scenario())


def test_two_resources_combine_into_one_status(run: Any, prosody_server: ProsodyServer,  # noqa: F811
                                               gateway: MainInstance) -> None:
    server = prosody_server

    async def scenario() -> None:
        first = await registered(server, "erin", "laptop")
        second = await XmppClient(server, "erin", "phone").start()
        await second.wait_for(is_presence(f"echo@{server.component}"), 60)  # a new resource sees the buddies
        # an explicit choice on one resource is the user's presence (the core's rule)
        second.xmpp.send_presence(pshow="dnd", pstatus="busy")
        assert await gateway_log_has(gateway, "erin@localhost is now STATUS_DND ('busy')")
        # that resource leaves: the one left (online) is what counts
        await second.stop()
        assert await gateway_log_has(gateway, "erin@localhost is now STATUS_ONLINE")
        # messages from the backend reach the bare JID, so the remaining resource gets them
        mark = len(first.received)
        first.send_raw(f"<message to='echo@{server.component}' type='chat'><body>still here</body></message>")
        await first.wait_for(lambda e: body_of(e) == "still here", 60, mark)
        await first.stop()

    run(scenario())


def test_admin_commands_for_admin_jid_only(run: Any, prosody_server: ProsodyServer) -> None:  # noqa: F811
    server = prosody_server

    async def scenario() -> None:
        erin = await XmppClient(server, "erin", "admin").start()  # erin is [service] admin_jid
        items = await erin.iq(f"<iq type='get' to='{server.component}'><query "
                              "xmlns='http://jabber.org/protocol/disco#items' "
                              "node='http://jabber.org/protocol/commands'/></iq>")
        nodes = {i.get("node") for i in items.iter("{http://jabber.org/protocol/disco#items}item")}
        assert {"settings", "status", "online_users", "backends", "crashed_backends"} <= nodes
        status = await erin.iq(f"<iq type='set' to='{server.component}'><command "
                               "xmlns='http://jabber.org/protocol/commands' node='online_users' "
                               "action='execute'/></iq>")
        assert status.get("type") == "result", status
        values = [v.text for v in status.iter("{jabber:x:data}value")]
        assert "carol@localhost" in values or "alice@localhost" in values or values
        settings = await erin.iq(f"<iq type='set' to='{server.component}'><command "
                                 "xmlns='http://jabber.org/protocol/commands' node='settings' action='execute'/></iq>")
        assert settings.find("{http://jabber.org/protocol/commands}command").get("status") == "executing"
        bob = await XmppClient(server, "bob", "nosy").start()
        refused = await bob.iq(f"<iq type='set' to='{server.component}'><command "
                               "xmlns='http://jabber.org/protocol/commands' node='status' action='execute'/></iq>")
        assert refused.get("type") == "error" and error_condition(refused) == "forbidden"
        await bob.stop()
        await erin.stop()

    run(scenario())


def test_backend_killed_mid_conversation_loses_nothing(run: Any, prosody_server: ProsodyServer,  # noqa: F811
                                                       gateway: MainInstance) -> None:
    server = prosody_server
    echo = f"echo@{server.component}"

    async def scenario() -> None:
        import asyncio

        alice = await XmppClient(server, "alice", "kill").start()
        await alice.wait_for(is_presence(echo), 60)
        for pid in gateway.backend_pids():
            os.kill(pid, signal.SIGKILL)
        # the gateway notices, shows the transport as reconnecting and logs alice in again
        mark = len(alice.received)
        await alice.wait_for(lambda e: is_presence(server.component)(e) and e.findtext(C + "show") == "xa", 60, mark)
        # while the new backend starts, messages queue up to the bound; beyond it: resource-constraint
        count = MAX_QUEUED + 5
        for i in range(count):
            alice.send_raw(f"<message to='{echo}' type='chat' id='k{i}'><body>queued {i}</body></message>")
        answered: dict[int, str] = {}
        deadline = asyncio.get_event_loop().time() + 120
        while len(answered) < count and asyncio.get_event_loop().time() < deadline:
            await asyncio.sleep(0.2)
            for e in alice.received[mark:]:
                if e.tag != C + "message":
                    continue
                if e.get("type") == "error" and (e.get("id") or "").startswith("k"):
                    answered[int(e.get("id")[1:])] = "error:" + str(error_condition(e))
                elif (body_of(e) or "").startswith("queued "):
                    answered[int(body_of(e).split()[1])] = "echoed"
        assert sorted(answered) == list(range(count)), answered  # every message accounted for
        assert list(answered.values()).count("echoed") >= 1
        assert set(answered.values()) <= {"echoed", "error:resource-constraint"}
        assert "error:resource-constraint" in answered.values()
        # the echoed ones came back in order
        echoed = [int(body_of(e).split()[1]) for e in alice.received[mark:]
                  if e.tag == C + "message" and (body_of(e) or "").startswith("queued ")]
        assert echoed == sorted(echoed)
        await alice.stop()

    run(scenario())


def test_messages_in_flight_when_the_backend_dies_arrive_after_the_relogin(
        run: Any, prosody_server: ProsodyServer, gateway: MainInstance) -> None:  # noqa: F811
    server = prosody_server
    echo = f"echo@{server.component}"

    async def scenario() -> None:
        alice = await XmppClient(server, "alice", "inflight").start()
        await alice.wait_for(is_presence(echo), 60)
        mark = len(alice.received)
        for i in range(MAX_QUEUED - 1):
            alice.send_raw(f"<message to='{echo}' type='chat'><body>in flight {i}</body></message>")
        for pid in gateway.backend_pids():  # right away, while the messages travel
            os.kill(pid, signal.SIGKILL)
        for i in range(MAX_QUEUED - 1):
            await alice.wait_for(lambda e, i=i: body_of(e) == f"in flight {i}", 120, mark)
        assert not [e for e in alice.received[mark:] if e.tag == C + "message" and e.get("type") == "error"]
        await alice.stop()

    run(scenario())


def test_prosody_restart_component_reconnects_and_user_is_back(run: Any, prosody_server: ProsodyServer,  # noqa: F811
                                                               gateway: MainInstance) -> None:
    server = prosody_server
    echo = f"echo@{server.component}"

    async def scenario_before() -> XmppClient:
        carol = await XmppClient(server, "carol", "stay").start()
        await carol.wait_for(is_presence(echo), 60)
        mark = len(carol.received)
        carol.send_raw(f"<presence to='echo@{server.component}/carol'><x xmlns='http://jabber.org/protocol/muc'/>"
                       "</presence>")
        await carol.wait_for(lambda e: e.get("from") == f"echo@{server.component}/carol" and e.get("type") is None,
                             60, mark)
        carol.reconnect = True  # as real clients do
        return carol

    carol = run(scenario_before())
    connections = gateway.log().count("XMPP component transport.localhost connected")
    before = len(carol.received)
    server.restart()

    async def scenario_after() -> None:
        await carol.wait_session(2, 120)
        # without the user doing anything: the component is back, carol is logged in, echo is online again
        await carol.wait_for(is_presence(echo), 120, before)
        # and the room carol was in was joined again (a new self-presence with status 110)
        await carol.wait_for(lambda e: e.get("from") == f"echo@{server.component}/carol" and e.get("type") is None
                             and any(s.get("code") == "110" for s in e.iter(NS_MUC_USER + "status")), 120, before)
        start = len(carol.received)
        carol.send_raw(f"<message to='{echo}' type='chat'><body>after the restart</body></message>")
        await carol.wait_for(lambda e: body_of(e) == "after the restart", 120, start)
        carol.send_raw(f"<message to='echo@{server.component}' type='groupchat'><body>room again</body></message>")
        await carol.wait_for(lambda e: e.get("from") == f"echo@{server.component}/echo"
                             and body_of(e) == "room again", 120, start)
        await carol.stop()

    run(scenario_after())
    assert gateway.log().count("XMPP component transport.localhost connected") > connections


def test_unregister_removes_the_transport_and_buddies(run: Any, prosody_server: ProsodyServer,  # noqa: F811
                                                     gateway: MainInstance) -> None:
    server = prosody_server

    async def scenario() -> None:
        bob = await registered(server, "bob", "unreg")
        mark = len(bob.received)
        answer = await bob.iq(f"<iq type='set' to='{server.component}'><query xmlns='jabber:iq:register'>"
                              "<remove/></query></iq>")
        assert answer.get("type") == "result"
        await bob.wait_for(is_presence(f"echo@{server.component}", "unsubscribed"), 60, mark)
        await bob.wait_for(is_presence(server.component, "unsubscribed"), 60, mark)
        form = await bob.iq(f"<iq type='get' to='{server.component}'><query xmlns='jabber:iq:register'/></iq>")
        assert form.find("{jabber:iq:register}query/{jabber:iq:register}registered") is None
        # no longer registered: a message to a buddy is refused, not lost
        mark = len(bob.received)
        bob.send_raw(f"<message to='echo@{server.component}' type='chat' id='late'><body>hi?</body></message>")
        refused = await bob.wait_for(lambda e: e.get("id") == "late" and e.get("type") == "error", 60, mark)
        assert error_condition(refused) == "recipient-unavailable"
        await bob.stop()

        assert await gateway_log_has(gateway, "bob@localhost logged out")

    run(scenario())


def test_wrong_component_secret_is_a_fatal_logged_error(prosody_server: ProsodyServer,  # noqa: F811
                                                        tmp_path: Path) -> None:
    instance = MainInstance(tmp_path, "[xmpp]\nenabled = true\n[websocket]\nenabled = false\n",
                            jid=prosody_server.component, server="127.0.0.1", port=prosody_server.component_port,
                            password="not-the-secret")
    try:
        with open(instance.log_path, "wb") as log:
            instance.process = subprocess.Popen(
                [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", "-l",
                 "-", "transport", "-c", str(instance.config_path)],
                cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        instance.process.wait(90)  # it stops by itself instead of retrying forever
        text = instance.log()
        assert "XMPP component configuration error" in text, text[-3000:]
        assert "not-authorized" in text
        assert text.count("XMPP component transport.localhost connected") == 0
    finally:
        instance.cleanup()
