"""The XMPP frontend at stanza level: the real Gateway, the real pool (an in-memory backend peer), SQLite.

Stanzas go in through :meth:`XmppFrontend.stanza_received` as the component
link would hand them over; what the frontend sends is collected. Timers run on
a ``task.Clock``.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.words.xish import domish

from tests.peers.backends import wait_until
from tests.unit.test_pool_harness import PeerBackend, make_pool
from transport.backend import transport_pb2 as pb
from transport.core.gateway import Gateway
from transport.frontends.xmpp.disco import caps_ver
from transport.frontends.xmpp.frontend import XmppFrontend
from transport.storage.database import open_sqlite
from transport.storage.gateway import GatewayStore

W = pb.WrapperMessage
T = "transport.example.org"
ALICE = "alice@example.org"


def parse(xml: str) -> domish.Element:
    out: list[domish.Element] = []
    stream = domish.elementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = out.append
    stream.DocumentEndEvent = lambda: None
    stream.parse(b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>")
    stream.parse(xml.encode())
    return out[0]


class XmppRig:
    def __init__(self, tmp_path: Any, **service: Any) -> None:
        self.pool, self.clock, _ = make_pool(tmp_path, jid=T, admin_jid="boss@example.org", **service)
        self.database = open_sqlite(tmp_path / "gw.sqlite3")
        self.store = GatewayStore(self.database)
        self.gateway = Gateway(self.pool.config, self.store, self.pool, self.clock)
        self.sent: list[domish.Element] = []
        self.frontend = XmppFrontend(self.gateway, self.pool.config, self.clock, send=self.sent.append,
                                     registry={"backend_pool": self.pool})
        self.gateway.add_frontend(self.frontend)
        self.peer: PeerBackend | None = None

    @defer.inlineCallbacks
    def start(self) -> Any:
        self.database.start()
        yield self.store.start()
        peer = self.peer = PeerBackend(self.pool)
        peer.send(W.TYPE_BACKEND_CONFIG, pb.BackendConfig(config="[features]\nreceipts=1\nmuc=1\n"))
        peer.pong()
        peer.take()
        return peer

    def inject(self, xml: str) -> None:
        self.frontend.stanza_received(parse(xml))

    def frames(self, type_: int) -> list[Any]:
        assert self.peer is not None
        return [p.payload for p in self.peer.received() if p.type == type_]

    def find(self, predicate: Any) -> list[domish.Element]:
        return [s for s in self.sent if predicate(s)]

    def wait_sent(self, predicate: Any, timeout: float = 30.0) -> defer.Deferred[None]:
        return wait_until(lambda: bool(self.find(predicate)), timeout)

    @defer.inlineCallbacks
    def logged_in(self, resource: str = "pc") -> Any:
        """alice registered, one resource available, CONNECTED."""
        yield self.gateway.register(ALICE, "alice", "pw")
        self.inject(f"<presence from='{ALICE}/{resource}' to='{T}'/>")
        yield wait_until(lambda: bool(self.frames(W.TYPE_LOGIN)), 30)
        assert self.peer is not None
        self.peer.send(W.TYPE_CONNECTED, pb.Connected(user=ALICE))

    def stop(self) -> defer.Deferred[None]:
        return self.database.close()


@pytest.fixture
def rig(tmp_path: Any) -> Any:
    r = XmppRig(tmp_path)
    yield r
    pytest_twisted.blockon(r.stop())


def condition(stanza: domish.Element) -> str | None:
    for err in stanza.elements():
        if err.name == "error":
            for c in err.elements():
                if c.uri == "urn:ietf:params:xml:ns:xmpp-stanzas" and c.name != "text":
                    return str(c.name)
    return None


def has_child(stanza: domish.Element, uri: str, name: str) -> bool:
    return any(c.uri == uri and c.name == name for c in stanza.elements())


@pytest_twisted.inlineCallbacks
def test_registration_form_register_and_login(rig: XmppRig) -> None:
    yield rig.start()
    rig.inject(f"<iq type='get' id='r1' from='{ALICE}/pc' to='{T}'><query xmlns='jabber:iq:register'/></iq>")
    yield rig.wait_sent(lambda s: s.getAttribute("id") == "r1")
    form = rig.find(lambda s: s.getAttribute("id") == "r1")[0]
    assert form["type"] == "result" and form["from"] == T and form["to"] == f"{ALICE}/pc"
    rig.inject(f"<iq type='set' id='r2' from='{ALICE}/pc' to='{T}'><query xmlns='jabber:iq:register'>"
               "<username>Alice A</username><password>pw</password></query></iq>")
    yield rig.wait_sent(lambda s: s.getAttribute("id") == "r2")
    assert rig.find(lambda s: s.getAttribute("id") == "r2")[0]["type"] == "result"
    record = yield rig.store.get_user(ALICE)
    assert record.legacy_name == "Alice A" and record.password == "pw"
    assert rig.find(lambda s: s.name == "presence" and s.getAttribute("type") == "subscribe" and s["to"] == ALICE)
    # available presence -> LOGIN; CONNECTED -> the transport's presence with caps
    rig.inject(f"<presence from='{ALICE}/pc' to='{T}'><show>chat</show></presence>")
    yield wait_until(lambda: bool(rig.frames(W.TYPE_LOGIN)), 30)
    assert rig.frames(W.TYPE_LOGIN)[0].legacyName == "Alice A"
    rig.peer.send(W.TYPE_CONNECTED, pb.Connected(user=ALICE))
    online = rig.find(lambda s: s.name == "presence" and s["from"] == T and not s.getAttribute("type"))
    assert online and has_child(online[-1], "http://jabber.org/protocol/caps", "c")
    # a buddy: subscription request with nick the first time, then its presence
    rig.peer.send(W.TYPE_BUDDY_CHANGED, pb.Buddy(userName=ALICE, buddyName="Bob Smith", alias="Bob",
                                                 status=pb.STATUS_AWAY, statusMessage="out", iconHash="abc"))
    bob = f"\\42ob\\20\\53mith@{T}"
    sub = rig.find(lambda s: s.name == "presence" and s["from"] == bob and s.getAttribute("type") == "subscribe")
    assert len(sub) == 1 and str(sub[0].nick) == "Bob"
    pres = rig.find(lambda s: s.name == "presence" and s["from"] == bob and not s.getAttribute("type"))
    assert str(pres[-1].show) == "away" and str(pres[-1].status) == "out"
    rig.peer.send(W.TYPE_BUDDY_CHANGED, pb.Buddy(userName=ALICE, buddyName="Bob Smith", status=pb.STATUS_ONLINE))
    assert len(rig.find(lambda s: s["from"] == bob and s.getAttribute("type") == "subscribe")) == 1
    # a second resource with dnd -> one STATUS_CHANGED, as the core's rule says
    rig.inject(f"<presence from='{ALICE}/phone' to='{T}'><show>dnd</show><status>busy</status></presence>")
    yield wait_until(lambda: bool(rig.frames(W.TYPE_STATUS_CHANGED)), 30)
    statuses = [(s.status, s.statusMessage) for s in rig.frames(W.TYPE_STATUS_CHANGED)]
    assert statuses[-1] == (pb.STATUS_DND, "busy")
    # both resources gone -> LOGOUT
    rig.inject(f"<presence from='{ALICE}/phone' to='{T}' type='unavailable'/>")
    rig.inject(f"<presence from='{ALICE}/pc' to='{T}' type='unavailable'/>")
    assert [p.user for p in rig.frames(W.TYPE_LOGOUT)] == [ALICE]


@pytest_twisted.inlineCallbacks
def test_messages_receipts_chat_states_and_queue_bound(tmp_path: Any) -> None:
    rig = XmppRig(tmp_path, max_queued_per_user=2)
    try:
        yield rig.start()
        yield rig.logged_in()
        rig.inject(f"<message from='{ALICE}/pc' to='bob@{T}' type='chat' id='m1'><body>hi</body>"
                   "<request xmlns='urn:xmpp:receipts'/><composing xmlns='http://jabber.org/protocol/chatstates'/>"
                   "</message>")
        sent = rig.frames(W.TYPE_CONV_MESSAGE)
        assert [(m.buddyName, m.message, m.id) for m in sent] == [("bob", "hi", "m1")]
        assert rig.frames(W.TYPE_BUDDY_TYPING)
        rig.peer.send(W.TYPE_CONV_MESSAGE_ACK, pb.ConversationMessage(userName=ALICE, buddyName="bob", message="",
                                                                      id="m1"))
        receipt = rig.find(lambda s: s.name == "message" and has_child(s, "urn:xmpp:receipts", "received"))
        assert receipt and receipt[0]["to"] == f"{ALICE}/pc" and receipt[0]["from"] == f"bob@{T}"
        # from the backend: to the bare JID, with delay and xhtml
        rig.peer.send(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=ALICE, buddyName="bob", message="yo",
                                                                  timestamp="20240102T030405",
                                                                  xhtml="<b>yo</b>"))
        got = rig.find(lambda s: s.name == "message" and s.getAttribute("from") == f"bob@{T}" and s.body)
        assert got[-1]["to"] == ALICE and str(got[-1].body) == "yo"
        assert got[-1].delay["stamp"] == "2024-01-02T03:04:05Z"
        assert got[-1].html is not None
        rig.peer.send(W.TYPE_BUDDY_TYPED, pb.Buddy(userName=ALICE, buddyName="bob"))
        assert rig.find(lambda s: has_child(s, "http://jabber.org/protocol/chatstates", "paused"))
        # the backend goes away: messages queue up to the bound, then resource-constraint
        rig.peer.lose("crash")
        for i in range(4):
            rig.inject(f"<message from='{ALICE}/pc' to='bob@{T}' type='chat' id='q{i}'><body>q{i}</body></message>")
        errors = rig.find(lambda s: s.getAttribute("type") == "error" and s.getAttribute("id", "").startswith("q"))
        assert [(e["id"], condition(e)) for e in errors] == [("q2", "resource-constraint"),
                                                              ("q3", "resource-constraint")]
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_disco_ping_version_and_errors(rig: XmppRig) -> None:
    yield rig.start()
    rig.inject(f"<iq type='get' id='d1' from='x@example.org/r' to='{T}'>"
               "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    info = rig.find(lambda s: s.getAttribute("id") == "d1")[0]
    identities = [(i["category"], i["type"]) for i in info.query.elements() if i.name == "identity"]
    features = {f["var"] for f in info.query.elements() if f.name == "feature"}
    assert ("gateway", "echo") in identities and ("conference", "text") in identities
    assert {"jabber:iq:register", "urn:xmpp:ping", "http://jabber.org/protocol/muc"} <= features
    disco = rig.frontend.handlers["disco"]
    assert disco.ver() == caps_ver(disco.identities(), disco.transport_features())
    rig.inject(f"<iq type='get' id='p1' from='x@example.org/r' to='bob@{T}'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert rig.find(lambda s: s.getAttribute("id") == "p1")[0]["type"] == "result"
    rig.inject(f"<iq type='get' id='u1' from='x@example.org/r' to='{T}'><nothing xmlns='urn:example'/></iq>")
    assert condition(rig.find(lambda s: s.getAttribute("id") == "u1")[0]) == "service-unavailable"
    rig.inject(f"<iq type='get' id='u2' from='@@@' to='{T}'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert condition(rig.find(lambda s: s.getAttribute("id") == "u2")[0]) == "jid-malformed"
    # no 'from' (a broken server): no one to answer, dropped; no 'to': jid-malformed to the sender
    sent, bad = len(rig.sent), rig.frontend.counters["bad_stanzas"]
    rig.inject(f"<iq type='get' id='u3' to='{T}'><ping xmlns='urn:xmpp:ping'/></iq>")
    rig.inject(f"<message to='{T}' from=''><body>hi</body></message>")
    assert len(rig.sent) == sent and rig.frontend.counters["bad_stanzas"] == bad + 2
    rig.inject("<iq type='get' id='u4' from='x@example.org/r'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert condition(rig.find(lambda s: s.getAttribute("id") == "u4")[0]) == "jid-malformed"
    rig.inject(f"<iq type='get' from='x@example.org/r' to='{T}'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert condition(rig.sent[-1]) == "bad-request"
    rig.inject(f"<iq type='set' id='c1' from='x@example.org/r' to='{T}'>"
               "<command xmlns='http://jabber.org/protocol/commands' node='status'/></iq>")
    assert condition(rig.find(lambda s: s.getAttribute("id") == "c1")[0]) == "forbidden"
    # a message from someone who is not logged in: an error, not silence
    rig.inject(f"<message from='x@example.org/r' to='bob@{T}' id='n1' type='chat'><body>hey</body></message>")
    assert condition(rig.find(lambda s: s.getAttribute("id") == "n1")[0]) == "recipient-unavailable"
    # every stanza the frontend sent has a from
    assert all(s.getAttribute("from") for s in rig.sent)


@pytest_twisted.inlineCallbacks
def test_vcard_of_a_buddy_and_its_timeout(rig: XmppRig) -> None:
    yield rig.start()
    yield rig.logged_in()
    rig.inject(f"<iq type='get' id='v1' from='{ALICE}/pc' to='bob@{T}'><vCard xmlns='vcard-temp'/></iq>")
    yield wait_until(lambda: bool(rig.frames(W.TYPE_VCARD)), 30)
    request = rig.frames(W.TYPE_VCARD)[0]
    rig.peer.send(W.TYPE_VCARD, pb.VCard(userName=ALICE, buddyName="bob", id=request.id, fullname="Bob B",
                                         photo=b"\x89PNG...."))
    yield rig.wait_sent(lambda s: s.getAttribute("id") == "v1")
    card = rig.find(lambda s: s.getAttribute("id") == "v1")[0]
    assert card["type"] == "result" and str(card.vCard.FN) == "Bob B" and str(card.vCard.PHOTO.TYPE) == "image/png"
    rig.inject(f"<iq type='get' id='v2' from='{ALICE}/pc' to='carl@{T}'><vCard xmlns='vcard-temp'/></iq>")
    rig.clock.advance(41)
    yield rig.wait_sent(lambda s: s.getAttribute("id") == "v2")
    assert condition(rig.find(lambda s: s.getAttribute("id") == "v2")[0]) == "remote-server-timeout"


@pytest_twisted.inlineCallbacks
def test_muc_join_occupants_self_presence_and_refusal(rig: XmppRig) -> None:
    yield rig.start()
    yield rig.logged_in()
    room = f"lobby@{T}"
    rig.inject(f"<presence from='{ALICE}/pc' to='{room}/al'><x xmlns='http://jabber.org/protocol/muc'>"
               "<password>s3</password></x></presence>")
    join = rig.frames(W.TYPE_JOIN_ROOM)
    assert [(j.room, j.nickname, j.password) for j in join] == [("lobby", "al", "s3")]
    rig.peer.send(W.TYPE_PARTICIPANT_CHANGED, pb.Participant(userName=ALICE, room="lobby", nickname="op", flag=1,
                                                             status=pb.STATUS_ONLINE))
    rig.peer.send(W.TYPE_PARTICIPANT_CHANGED, pb.Participant(userName=ALICE, room="lobby", nickname="al", flag=16,
                                                             status=pb.STATUS_ONLINE))
    presences = [s for s in rig.sent if s.name == "presence" and s["from"].startswith(room + "/")]
    assert [p["from"] for p in presences] == [f"{room}/op", f"{room}/al"]
    assert presences[0].x.item["role"] == "moderator"
    assert [c["code"] for c in presences[1].x.elements() if c.name == "status"] == ["110"]
    assert rig.find(lambda s: s.name == "message" and s.getAttribute("type") == "groupchat" and s.subject)
    # groupchat both ways
    rig.inject(f"<message from='{ALICE}/pc' to='{room}' type='groupchat' id='g1'><body>hello</body></message>")
    assert [(m.buddyName, m.message) for m in rig.frames(W.TYPE_CONV_MESSAGE)] == [("lobby", "hello")]
    rig.peer.send(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=ALICE, buddyName="lobby", nickname="op",
                                                              message="welcome"))
    msg = rig.find(lambda s: s.name == "message" and s.getAttribute("from") == f"{room}/op")
    assert msg[-1]["type"] == "groupchat" and msg[-1]["to"] == f"{ALICE}/pc"
    # a rename of another participant: 303
    rig.peer.send(W.TYPE_PARTICIPANT_CHANGED, pb.Participant(userName=ALICE, room="lobby", nickname="op",
                                                             newname="boss", flag=1, status=pb.STATUS_ONLINE))
    gone = rig.find(lambda s: s.getAttribute("from") == f"{room}/op" and s.getAttribute("type") == "unavailable")
    assert gone and gone[0].x.item["nick"] == "boss"
    # a room refusing the nickname
    rig.inject(f"<presence from='{ALICE}/pc' to='other@{T}/op'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    rig.peer.send(W.TYPE_PARTICIPANT_CHANGED, pb.Participant(userName=ALICE, room="other", nickname="op", flag=2,
                                                             status=pb.STATUS_NONE))
    err = rig.find(lambda s: s.getAttribute("from") == f"other@{T}/op" and s.getAttribute("type") == "error")
    assert err and condition(err[0]) == "conflict"
    # leaving
    rig.inject(f"<presence from='{ALICE}/pc' to='{room}/al' type='unavailable'/>")
    assert [r.room for r in rig.frames(W.TYPE_LEAVE_ROOM)][-1] == "lobby"
    # a groupchat message to a room one is not in
    rig.inject(f"<message from='{ALICE}/pc' to='{room}' type='groupchat' id='g2'><body>late</body></message>")
    assert condition(rig.find(lambda s: s.getAttribute("id") == "g2")[0]) == "not-acceptable"


@pytest_twisted.inlineCallbacks
def test_roster_item_exchange_for_clients_that_announce_it(rig: XmppRig) -> None:
    yield rig.start()
    yield rig.gateway.register(ALICE, "alice", "pw")
    rig.inject(f"<presence from='{ALICE}/pc' to='{T}'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
               "node='https://client.example' ver='abc='/></presence>")
    yield wait_until(lambda: bool(rig.frames(W.TYPE_LOGIN)), 30)
    query = rig.find(lambda s: s.name == "iq" and s["to"] == f"{ALICE}/pc" and s.query is not None)
    assert query and query[0].query["node"] == "https://client.example#abc="
    rig.inject(f"<iq type='result' id='{query[0]['id']}' from='{ALICE}/pc' to='{T}'>"
               "<query xmlns='http://jabber.org/protocol/disco#info'>"
               "<feature var='http://jabber.org/protocol/rosterx'/></query></iq>")
    rig.peer.send(W.TYPE_CONNECTED, pb.Connected(user=ALICE))
    rig.peer.send(W.TYPE_BUDDY_CHANGED, pb.Buddy(userName=ALICE, buddyName="bob", alias="Bob", group=["Friends"],
                                                 status=pb.STATUS_ONLINE))
    exchange = rig.find(lambda s: s.name == "message" and has_child(s, "http://jabber.org/protocol/rosterx", "x"))
    assert exchange and exchange[0].x.item["jid"] == f"bob@{T}" and str(exchange[0].x.item.group) == "Friends"
    assert not rig.find(lambda s: s.getAttribute("type") == "subscribe" and s["from"] == f"bob@{T}")


@pytest_twisted.inlineCallbacks
def test_hostile_input_is_answered_and_leaves_nothing_behind(rig: XmppRig) -> None:
    yield rig.start()
    for i in range(50):
        rig.inject(f"<presence from='stranger{i}@example.net/x' to='{T}'/>")
        rig.inject(f"<presence from='stranger{i}@example.net/x' to='room@{T}/nick'/>")
    yield wait_until(lambda: len(rig.find(lambda s: s.getAttribute("type") == "error")) >= 50, 30)
    assert rig.frontend.users == {}  # made-up JIDs leave no state
    assert all(condition(s) == "registration-required" for s in rig.find(lambda s: s.getAttribute("type") == "error"))
    yield rig.logged_in()
    big = "x" * (64 * 1024 + 10)
    rig.inject(f"<message from='{ALICE}/pc' to='bob@{T}' id='big' type='chat'><body>{big}</body></message>")
    assert condition(rig.find(lambda s: s.getAttribute("id") == "big")[0]) == "not-acceptable"
    rig.inject(f"<iq type='weird' id='w1' from='{ALICE}/pc' to='{T}'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert condition(rig.find(lambda s: s.getAttribute("id") == "w1")[0]) == "bad-request"
    rig.inject(f"<iq type='set' id='w2' from='{ALICE}/pc' to='bob@{T}'><vCard xmlns='vcard-temp'/></iq>")
    assert condition(rig.find(lambda s: s.getAttribute("id") == "w2")[0]) == "not-allowed"
    rig.inject(f"<message from='{ALICE}/pc' to='x@other.example' id='w3'><body>?</body></message>")
    assert condition(rig.find(lambda s: s.getAttribute("id") == "w3")[0]) == "item-not-found"
    # the user is still served
    rig.inject(f"<message from='{ALICE}/pc' to='bob@{T}' type='chat'><body>fine</body></message>")
    assert [m.message for m in rig.frames(W.TYPE_CONV_MESSAGE)] == ["fine"]


@pytest_twisted.inlineCallbacks
def test_backend_events_become_the_right_stanzas(rig: XmppRig) -> None:
    yield rig.start()
    yield rig.logged_in()
    peer = rig.peer
    assert peer is not None
    # headline with an attachment: type headline, OOB url, url in the body
    msg = pb.ConversationMessage(userName=ALICE, buddyName="bob", message="look", headline=True)
    msg.attachment.add(url="https://files.example/cat.png", mimeType="image/png", description="a cat")
    peer.send(W.TYPE_CONV_MESSAGE, msg)
    got = rig.find(lambda s: s.name == "message" and s.getAttribute("type") == "headline")
    assert got and got[0].x.uri == "jabber:x:oob" and str(got[0].x.url) == "https://files.example/cat.png"
    assert "https://files.example/cat.png" in str(got[0].body)
    # someone asks to add the user
    peer.send(W.TYPE_AUTH_REQUEST, pb.Buddy(userName=ALICE, buddyName="carl"))
    assert rig.find(lambda s: s.getAttribute("type") == "subscribe" and s["from"] == f"carl@{T}")
    # attention
    peer.send(W.TYPE_ATTENTION, pb.ConversationMessage(userName=ALICE, buddyName="bob", message="hey!"))
    assert rig.find(lambda s: has_child(s, "urn:xmpp:attention:0", "attention") and s["from"] == f"bob@{T}")
    # a buddy removed on the legacy side
    peer.send(W.TYPE_BUDDY_CHANGED, pb.Buddy(userName=ALICE, buddyName="bob", status=pb.STATUS_ONLINE))
    peer.send(W.TYPE_BUDDY_REMOVED, pb.Buddy(userName=ALICE, buddyName="bob"))
    types = [s.getAttribute("type") for s in rig.sent if s.getAttribute("from") == f"bob@{T}" and s.name == "presence"]
    assert types[-3:] == ["unavailable", "unsubscribe", "unsubscribed"]
    # kicked from a room
    rig.inject(f"<presence from='{ALICE}/pc' to='lobby@{T}/al'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    peer.send(W.TYPE_PARTICIPANT_CHANGED, pb.Participant(userName=ALICE, room="lobby", nickname="al", flag=16,
                                                         status=pb.STATUS_ONLINE))
    peer.send(W.TYPE_PARTICIPANT_CHANGED, pb.Participant(userName=ALICE, room="lobby", nickname="al", flag=16 | 32,
                                                         status=pb.STATUS_NONE))
    kicked = rig.find(lambda s: s.getAttribute("from") == f"lobby@{T}/al" and s.getAttribute("type") == "unavailable")
    assert kicked and {c["code"] for c in kicked[0].x.elements() if c.name == "status"} == {"110", "307"}
    # disconnected by the legacy network: a message with the reason, the transport goes unavailable
    peer.send(W.TYPE_DISCONNECTED, pb.Disconnected(user=ALICE, error=2, message="wrong password"))
    notice = rig.find(lambda s: s.name == "message" and s["from"] == T)
    assert notice and "wrong password" in str(notice[-1].body)
    gone = rig.find(lambda s: s.name == "presence" and s["from"] == T and s.getAttribute("type") == "unavailable")
    assert gone and str(gone[-1].status) == "wrong password"


@pytest_twisted.inlineCallbacks
def test_a_queued_message_that_cannot_be_delivered_comes_back_as_an_error(rig: XmppRig) -> None:
    yield rig.start()
    yield rig.gateway.register(ALICE, "alice", "pw")
    rig.inject(f"<presence from='{ALICE}/pc' to='{T}'/>")
    yield wait_until(lambda: bool(rig.frames(W.TYPE_LOGIN)), 30)
    # still logging in: the message waits in the gateway's queue
    rig.inject(f"<message from='{ALICE}/pc' to='bob@{T}' type='chat' id='w1'><body>wait for me</body>"
               "<request xmlns='urn:xmpp:receipts'/></message>")
    assert not rig.find(lambda s: s.getAttribute("type") == "error")
    rig.peer.send(W.TYPE_DISCONNECTED, pb.Disconnected(user=ALICE, error=2, message="bad password"))
    failed = rig.find(lambda s: s.name == "message" and s.getAttribute("type") == "error")
    assert failed and failed[0]["id"] == "w1" and failed[0]["to"] == f"{ALICE}/pc"
    assert condition(failed[0]) == "recipient-unavailable" and str(failed[0].body) == "wait for me"


@pytest_twisted.inlineCallbacks
def test_registration_policy_refusals_are_stanza_errors(tmp_path: Any) -> None:
    rig = XmppRig(tmp_path, registration__allowed_usernames="[a-z]+")
    try:
        yield rig.start()
        rig.inject(f"<iq type='set' id='r1' from='{ALICE}/pc' to='{T}'><query xmlns='jabber:iq:register'>"
                   "<username>Not Allowed!</username><password>pw</password></query></iq>")
        yield rig.wait_sent(lambda s: s.getAttribute("id") == "r1")
        refused = rig.find(lambda s: s.getAttribute("id") == "r1")[0]
        assert condition(refused) == "not-acceptable" and "not allowed" in str(refused.error.text)
        rig.inject(f"<iq type='set' id='r2' from='{ALICE}/pc' to='{T}'><query xmlns='jabber:iq:register'>"
                   "<password>pw</password></query></iq>")
        yield rig.wait_sent(lambda s: s.getAttribute("id") == "r2")
        assert condition(rig.find(lambda s: s.getAttribute("id") == "r2")[0]) == "not-acceptable"
        rig.inject(f"<iq type='set' id='r3' from='{ALICE}/pc' to='{T}'><query xmlns='jabber:iq:register'>"
                   "<remove/></query></iq>")
        yield rig.wait_sent(lambda s: s.getAttribute("id") == "r3")
        assert condition(rig.find(lambda s: s.getAttribute("id") == "r3")[0]) == "registration-required"
        assert (yield rig.store.get_user(ALICE)) is None
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_closed_registration_is_not_allowed(tmp_path: Any) -> None:
    rig = XmppRig(tmp_path, registration__enable_public_registration="false")
    try:
        yield rig.start()
        rig.inject(f"<iq type='set' id='r1' from='{ALICE}/pc' to='{T}'><query xmlns='jabber:x:data'/>"
                   "</iq>")
        assert condition(rig.find(lambda s: s.getAttribute("id") == "r1")[0]) == "service-unavailable"
        rig.inject(f"<iq type='set' id='r2' from='{ALICE}/pc' to='{T}'><query xmlns='jabber:iq:register'>"
                   "<x xmlns='jabber:x:data' type='submit'><field var='username'><value>alice</value></field>"
                   "</x></query></iq>")
        yield rig.wait_sent(lambda s: s.getAttribute("id") == "r2")
        assert condition(rig.find(lambda s: s.getAttribute("id") == "r2")[0]) == "not-allowed"
    finally:
        yield rig.stop()


TEMPLATES = [
    "<iq type='{t}' id='{i}' from='{f}' to='{to}'><query xmlns='{ns}'{attr}>{text}</query></iq>",
    "<iq type='{t}' id='{i}' from='{f}' to='{to}'><command xmlns='http://jabber.org/protocol/commands' "
    "node='{at}' action='{t}'/></iq>",
    "<iq type='{t}' id='{i}' from='{f}' to='{to}'><vCard xmlns='vcard-temp'><PHOTO><BINVAL>{text}</BINVAL></PHOTO>"
    "<NICKNAME>{text}</NICKNAME></vCard></iq>",
    "<message type='{t}' id='{i}' from='{f}' to='{to}'><body>{text}</body><request xmlns='urn:xmpp:receipts'/>"
    "<html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>{text}</body>"
    "</html></message>",
    "<message type='{t}' id='{i}' from='{f}' to='{to}'><subject>{text}</subject>"
    "<composing xmlns='http://jabber.org/protocol/chatstates'/><attention xmlns='urn:xmpp:attention:0'/></message>",
    "<presence type='{t}' from='{f}' to='{to}'><show>{text}</show><status>{text}</status>"
    "<x xmlns='http://jabber.org/protocol/muc'><password>{text}</password></x>"
    "<c xmlns='http://jabber.org/protocol/caps' node='{at}' ver='{at}' hash='sha-1'/>"
    "<x xmlns='vcard-temp:x:update'><photo>{text}</photo></x></presence>",
    "<presence from='{f}' to='{to}'/>",
]
NAMESPACES = ["http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items", "jabber:iq:register",
              "jabber:iq:gateway", "jabber:iq:version", "urn:xmpp:ping", "urn:x", ""]
TYPES = ["get", "set", "result", "error", "chat", "groupchat", "headline", "normal", "unavailable", "subscribe",
         "subscribed", "unsubscribe", "unsubscribed", "probe", "execute", "cancel", "bogus", ""]


def _junk(rnd: Any) -> str:
    pieces = ["", "a", "Bob Smith", "&lt;b&gt;", "&amp;", "\\20", "\\zz", "é", "#chan", "x" * 300, "0", "/", "@",
              "room/nick", "<b>bold</b>", "AAAA", "====", "\u200f\u0627"]
    return "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 3)))


@pytest_twisted.inlineCallbacks
def test_random_stanzas_never_raise_and_every_iq_is_answered(rig: XmppRig) -> None:
    import random

    from twisted.logger import globalLogPublisher

    failures: list[Any] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_failure") is not None and "xmpp" in str(event.get("log_namespace", "")):
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield rig.start()
        yield rig.logged_in()
        rnd = random.Random(4242)
        senders = [f"{ALICE}/pc", f"{ALICE}/other", "mallory@evil.example/x", "evil.example", f"{ALICE}"]
        targets = [T, f"bob@{T}", f"lobby@{T}/nick", f"\\41x@{T}", f"lobby@{T}", f"{T}/res", "elsewhere.example"]
        ids = []
        for n in range(1500):
            template = rnd.choice(TEMPLATES)
            stanza_id = f"z{n}"
            text = _junk(rnd)
            xml = template.format(t=rnd.choice(TYPES), i=stanza_id, f=rnd.choice(senders), to=rnd.choice(targets),
                                  ns=rnd.choice(NAMESPACES), attr=rnd.choice(["", " node='x'", " node=''"]),
                                  text=text, at=text.replace("<", "&lt;").replace("'", "&apos;"))
            if xml.startswith("<iq") and (" type='get'" in xml or " type='set'" in xml) \
                    and "elsewhere" not in xml:
                ids.append(stanza_id)
            rig.inject(xml)
            if n % 100 == 0:  # the backend says things too
                rig.peer.send(W.TYPE_PARTICIPANT_CHANGED, pb.Participant(
                    userName=ALICE, room="lobby", nickname=text or "n", flag=rnd.choice([0, 1, 2, 16, 32, 64]),
                    status=pb.STATUS_ONLINE))
                rig.peer.send(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(
                    userName=ALICE, buddyName=text or "b", message=text, xhtml=text, nickname=rnd.choice(["", "n"])))
        rig.clock.advance(60)  # vCard requests time out
        answered = lambda: {s.getAttribute("id") for s in rig.sent if s.name == "iq"}  # noqa: E731
        yield wait_until(lambda: set(ids) <= answered(), 60)
        assert len(ids) > 30 and failures == []
        assert all(s.getAttribute("from") for s in rig.sent)
    finally:
        globalLogPublisher.removeObserver(observe)


@pytest_twisted.inlineCallbacks
def test_auto_register_users_who_add_the_transport(tmp_path: Any) -> None:
    rig = XmppRig(tmp_path, registration__auto_register="true")
    try:
        yield rig.start()
        rig.inject(f"<presence from='{ALICE}' to='{T}' type='subscribe'/>")
        yield rig.wait_sent(lambda s: s.getAttribute("type") == "subscribe" and s["to"] == ALICE)
        assert rig.find(lambda s: s.getAttribute("type") == "subscribed" and s["to"] == ALICE)
        rig.inject(f"<presence from='{ALICE}/pc' to='{T}'/>")
        yield wait_until(lambda: bool(rig.frames(W.TYPE_LOGIN)), 30)
        assert rig.frames(W.TYPE_LOGIN)[0].legacyName == "alice"
        assert (yield rig.store.get_user(ALICE)) is not None
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_strangers_adding_the_transport_are_refused(rig: XmppRig) -> None:
    yield rig.start()
    rig.inject(f"<presence from='{ALICE}' to='{T}' type='subscribe'/>")
    yield rig.wait_sent(lambda s: s.getAttribute("type") == "unsubscribed" and s["to"] == ALICE)


@pytest_twisted.inlineCallbacks
def test_raw_xml_from_a_backend_is_checked_before_it_goes_out(rig: XmppRig) -> None:
    yield rig.start()
    yield rig.logged_in()
    peer = rig.peer
    before = len(rig.sent)
    peer.send(W.TYPE_RAW_XML, f"<message to='{ALICE}/pc' from='bob@{T}'><body>raw</body></message>")
    peer.send(W.TYPE_RAW_XML, f"<message to='{ALICE}'><body>from the transport</body></message>")
    peer.send(W.TYPE_RAW_XML, f"<message to='{ALICE}' from='admin@example.org'><body>forged</body></message>")
    peer.send(W.TYPE_RAW_XML, "<message to='mallory@example.net'><body>elsewhere</body></message>")
    peer.send(W.TYPE_RAW_XML, "<message><body>unclosed")
    out = [s for s in rig.sent[before:] if s.name == "message"]
    assert [(s["from"], str(s.body)) for s in out] == [(f"bob@{T}", "raw"), (T, "from the transport")]


@pytest_twisted.inlineCallbacks
def test_stay_connected_keeps_the_legacy_session_without_clients(rig: XmppRig) -> None:
    yield rig.start()
    record = yield rig.gateway.register(ALICE, "alice", "pw")
    # the setting through the ad-hoc command, as a client would set it
    rig.inject(f"<iq type='set' id='s1' from='{ALICE}/pc' to='{T}'><command xmlns='http://jabber.org/protocol/commands'"
               " node='settings' action='complete'><x xmlns='jabber:x:data' type='submit'>"
               "<field var='stay_connected'><value>1</value></field></x></command></iq>")
    yield rig.wait_sent(lambda s: s.getAttribute("id") == "s1")
    assert (yield rig.store.get_settings(record.id)) == {"stay_connected": "1"}
    rig.inject(f"<presence from='{ALICE}/pc' to='{T}'/>")
    yield wait_until(lambda: bool(rig.frames(W.TYPE_LOGIN)), 30)
    rig.peer.send(W.TYPE_CONNECTED, pb.Connected(user=ALICE))
    yield wait_until(lambda: rig.frontend.users[ALICE].settings is not None, 30)
    rig.inject(f"<presence from='{ALICE}/pc' to='{T}' type='unavailable'/>")
    assert rig.frames(W.TYPE_LOGOUT) == []  # still logged in, shown as xa
    assert [s.status for s in rig.frames(W.TYPE_STATUS_CHANGED)][-1] == pb.STATUS_XA
    rig.peer.send(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=ALICE, buddyName="bob", message="later"))
    kept = rig.find(lambda s: s.name == "message" and s.body is not None and str(s.body) == "later")
    assert kept and kept[0]["to"] == ALICE  # the bare JID: the user's server keeps it
    # a client comes back: no new login, the placeholder goes
    rig.inject(f"<presence from='{ALICE}/phone' to='{T}'/>")
    yield wait_until(lambda: rig.gateway.user_state(ALICE).sessions.keys() == {"phone"}, 30)
    assert len(rig.frames(W.TYPE_LOGIN)) == 1
    assert [s.status for s in rig.frames(W.TYPE_STATUS_CHANGED)][-1] == pb.STATUS_ONLINE


@pytest_twisted.inlineCallbacks
def test_each_resource_joins_a_room_on_its_own(rig: XmppRig) -> None:
    yield rig.start()
    yield rig.logged_in()
    room = f"lobby@{T}"
    rig.inject(f"<presence from='{ALICE}/pc' to='{room}/al'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    rig.peer.send(W.TYPE_PARTICIPANT_CHANGED, pb.Participant(userName=ALICE, room="lobby", nickname="op", flag=1,
                                                             status=pb.STATUS_ONLINE))
    rig.peer.send(W.TYPE_PARTICIPANT_CHANGED, pb.Participant(userName=ALICE, room="lobby", nickname="al", flag=16,
                                                             status=pb.STATUS_ONLINE))
    # a second resource joins: the room is not joined again, that resource is shown what the room looks like
    rig.inject(f"<presence from='{ALICE}/phone' to='{T}'/>")
    yield wait_until(lambda: "phone" in rig.gateway.user_state(ALICE).sessions, 30)
    rig.inject(f"<presence from='{ALICE}/phone' to='{room}/al'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    yield rig.wait_sent(lambda s: s["to"] == f"{ALICE}/phone" and s.getAttribute("from") == f"{room}/al")
    assert len(rig.frames(W.TYPE_JOIN_ROOM)) == 1
    to_phone = [s["from"] for s in rig.sent if s.name == "presence" and s["to"] == f"{ALICE}/phone"
                and s["from"].startswith(room)]
    assert to_phone == [f"{room}/op", f"{room}/al"]
    # room messages go to both resources
    rig.peer.send(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=ALICE, buddyName="lobby", nickname="op",
                                                              message="both"))
    assert sorted(s["to"] for s in rig.sent if s.name == "message" and s.body is not None
                  and str(s.body) == "both") == [f"{ALICE}/pc", f"{ALICE}/phone"]
    # the first leaves: the legacy room stays; the last leaves: LEAVE_ROOM
    rig.inject(f"<presence from='{ALICE}/pc' to='{room}/al' type='unavailable'/>")
    assert rig.frames(W.TYPE_LEAVE_ROOM) == []
    rig.inject(f"<presence from='{ALICE}/phone' to='{T}' type='unavailable'/>")
    assert [r.room for r in rig.frames(W.TYPE_LEAVE_ROOM)] == ["lobby"]


@pytest_twisted.inlineCallbacks
def test_a_room_is_joined_again_after_the_xmpp_server_ended_the_session(rig: XmppRig) -> None:
    yield rig.start()
    yield rig.logged_in()
    room = f"lobby@{T}"
    rig.inject(f"<presence from='{ALICE}/pc' to='{room}/al'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    rig.peer.send(W.TYPE_PARTICIPANT_CHANGED, pb.Participant(userName=ALICE, room="lobby", nickname="al", flag=16,
                                                             status=pb.STATUS_ONLINE))
    # a graceful server restart: the session's last unavailable goes to the transport, then to the occupant JID
    rig.inject(f"<presence from='{ALICE}/pc' to='{T}' type='unavailable'/>")
    rig.inject(f"<presence from='{ALICE}/pc' to='{room}/al' type='unavailable'/>")
    assert [r.room for r in rig.frames(W.TYPE_LEAVE_ROOM)] == ["lobby"]
    assert "lobby" in rig.frontend.users[ALICE].rejoin
    logins = len(rig.frames(W.TYPE_LOGIN))
    rig.inject(f"<presence from='{ALICE}/pc' to='{T}'/>")
    yield wait_until(lambda: len(rig.frames(W.TYPE_LOGIN)) > logins, 30)
    rig.peer.send(W.TYPE_CONNECTED, pb.Connected(user=ALICE))
    assert [(j.room, j.nickname) for j in rig.frames(W.TYPE_JOIN_ROOM)][-1] == ("lobby", "al")
    # a client still online that leaves the room explicitly: not joined again
    rig.peer.send(W.TYPE_PARTICIPANT_CHANGED, pb.Participant(userName=ALICE, room="lobby", nickname="al", flag=16,
                                                             status=pb.STATUS_ONLINE))
    rig.inject(f"<presence from='{ALICE}/pc' to='{room}/al' type='unavailable'/>")
    assert "lobby" not in rig.frontend.users[ALICE].rejoin


@pytest_twisted.inlineCallbacks
def test_rooms_the_gateway_joins_again_after_a_restart_are_usable(rig: XmppRig) -> None:
    # the main instance restarted: the store has alice in lobby, the XMPP frontend remembers nothing
    yield rig.start()
    yield rig.gateway.register(ALICE, "alice", "pw")
    record = yield rig.store.get_user(ALICE)
    yield rig.store.add_room(record.id, "lobby", "al", "s3")
    rig.inject(f"<presence from='{ALICE}/pc' to='{T}'/>")
    yield wait_until(lambda: bool(rig.frames(W.TYPE_LOGIN)), 30)
    rig.peer.send(W.TYPE_CONNECTED, pb.Connected(user=ALICE))
    assert [(j.room, j.nickname, j.password) for j in rig.frames(W.TYPE_JOIN_ROOM)] == [("lobby", "al", "s3")]
    rig.peer.send(W.TYPE_PARTICIPANT_CHANGED, pb.Participant(userName=ALICE, room="lobby", nickname="op", flag=1,
                                                             status=pb.STATUS_ONLINE))
    rig.peer.send(W.TYPE_PARTICIPANT_CHANGED, pb.Participant(userName=ALICE, room="lobby", nickname="al", flag=16,
                                                             status=pb.STATUS_ONLINE))
    room = f"lobby@{T}"
    shown = [s for s in rig.sent if s.name == "presence" and s["to"] == f"{ALICE}/pc" and s["from"].startswith(room)]
    assert [p["from"] for p in shown] == [f"{room}/op", f"{room}/al"]
    assert [c["code"] for c in shown[1].x.elements() if c.name == "status"] == ["110"]
    # the client, still in the room on its side, chats: accepted
    rig.inject(f"<message from='{ALICE}/pc' to='{room}' type='groupchat' id='g1'><body>back</body></message>")
    assert [(m.buddyName, m.message) for m in rig.frames(W.TYPE_CONV_MESSAGE)] == [("lobby", "back")]
    assert not rig.find(lambda s: s.getAttribute("id") == "g1")
    # another client of alice that comes back later and chats in the room is an occupant again too
    rig.inject(f"<presence from='{ALICE}/phone' to='{T}'/>")
    yield wait_until(lambda: "phone" in rig.gateway.user_state(ALICE).sessions, 30)
    rig.inject(f"<message from='{ALICE}/phone' to='{room}' type='groupchat' id='g2'><body>me too</body></message>")
    assert [m.message for m in rig.frames(W.TYPE_CONV_MESSAGE)][-1] == "me too"
    assert rig.find(lambda s: s["to"] == f"{ALICE}/phone" and s.getAttribute("from") == f"{room}/al")
    # a room the gateway is not in is still refused
    rig.inject(f"<message from='{ALICE}/pc' to='other@{T}' type='groupchat' id='g3'><body>no</body></message>")
    assert condition(rig.find(lambda s: s.getAttribute("id") == "g3")[0]) == "not-acceptable"


@pytest_twisted.inlineCallbacks
def test_a_new_avatar_hash_fetches_the_users_vcard_for_the_backend(rig: XmppRig) -> None:
    yield rig.start()
    yield rig.logged_in()
    rig.inject(f"<presence from='{ALICE}/pc' to='{T}'><status>new pic</status>"
               "<x xmlns='vcard-temp:x:update'><photo>0123abcd</photo></x></presence>")
    yield rig.wait_sent(lambda s: s.name == "iq" and s["to"] == ALICE)
    query = rig.find(lambda s: s.name == "iq" and s["to"] == ALICE)[0]
    rig.inject(f"<iq type='result' id='{query['id']}' from='{ALICE}' to='{T}'><vCard xmlns='vcard-temp'>"
               "<NICKNAME>Al</NICKNAME><PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0K</BINVAL></PHOTO></vCard></iq>")
    own = rig.frames(W.TYPE_VCARD)
    assert own and own[-1].nickname == "Al" and own[-1].photo == b"\x89PNG\r\n"


@pytest_twisted.inlineCallbacks
def test_an_iq_answer_from_someone_else_than_the_asked_jid_is_ignored(rig: XmppRig) -> None:
    # the transport's iq ids are predictable: a forged answer must not set alice's vCard on the legacy network
    yield rig.start()
    yield rig.logged_in()
    rig.inject(f"<presence from='{ALICE}/pc' to='{T}'><status>new pic</status>"
               "<x xmlns='vcard-temp:x:update'><photo>0123abcd</photo></x></presence>")
    yield rig.wait_sent(lambda s: s.name == "iq" and s["to"] == ALICE)
    query = rig.find(lambda s: s.name == "iq" and s["to"] == ALICE)[0]
    rig.inject(f"<iq type='result' id='{query['id']}' from='mallory@evil.example/x' to='{T}'>"
               "<vCard xmlns='vcard-temp'><NICKNAME>pwned</NICKNAME></vCard></iq>")
    assert rig.frames(W.TYPE_VCARD) == []
    rig.inject(f"<iq type='result' id='{query['id']}' from='{ALICE}' to='{T}'><vCard xmlns='vcard-temp'>"
               "<NICKNAME>Al</NICKNAME></vCard></iq>")
    own = rig.frames(W.TYPE_VCARD)
    assert own and own[-1].nickname == "Al"


@pytest_twisted.inlineCallbacks
def test_a_failing_registration_does_not_log_the_password(rig: XmppRig, monkeypatch: Any) -> None:
    from twisted.logger import globalLogPublisher

    yield rig.start()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(rig.gateway, "register", broken)
    logged: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        from twisted.logger import formatEvent
        logged.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    try:
        rig.inject(f"<iq type='set' id='r9' from='{ALICE}/pc' to='{T}'><query xmlns='jabber:iq:register'>"
                   "<username>alice</username><password>s3cret-pw</password></query></iq>")
        yield rig.wait_sent(lambda s: s.getAttribute("id") == "r9")
    finally:
        globalLogPublisher.removeObserver(observer)
    assert condition(rig.find(lambda s: s.getAttribute("id") == "r9")[0]) == "internal-server-error"
    assert any("r9" in line for line in logged)
    assert not any("s3cret-pw" in line for line in logged)


def test_loggable_withholds_forms_with_private_fields() -> None:
    from transport.frontends.xmpp.stanzas import loggable

    form = parse(f"<iq type='set' id='c1' from='{ALICE}/pc' to='{T}'><command xmlns='http://jabber.org/protocol/"
                 "commands'><x xmlns='jabber:x:data' type='submit'><field var='secret' type='text-private'><value>"
                 "hunter2</value></field></x></command></iq>")
    assert "hunter2" not in loggable(form) and "c1" in loggable(form)
    assert "hello" in loggable(parse(f"<message from='{ALICE}/pc' to='bob@{T}'><body>hello</body></message>"))


@pytest_twisted.inlineCallbacks
def test_stopping_the_frontend_cancels_the_timers_of_its_iq_requests(rig: XmppRig) -> None:
    yield rig.start()
    yield rig.logged_in()
    rig.inject(f"<presence from='{ALICE}/pc' to='{T}'><status>new pic</status>"
               "<x xmlns='vcard-temp:x:update'><photo>0123abcd</photo></x></presence>")
    yield rig.wait_sent(lambda s: s.name == "iq" and s["to"] == ALICE)

    def iq_timers() -> list[Any]:
        return [c for c in rig.clock.getDelayedCalls() if getattr(c.func, "__name__", "") == "_iq_timeout"]

    assert iq_timers()
    rig.frontend.stop()
    assert iq_timers() == []


def test_jid_parse_errors_include_nameprep_index_error() -> None:
    """A domain with an empty label ('b..c') makes Twisted's nameprep raise IndexError: it is a bad address."""
    from twisted.words.protocols.jabber import jid as jidmod

    from transport.frontends.xmpp import stanzas

    with pytest.raises(stanzas.JID_ERRORS):
        jidmod.internJID("a@b..c")


@pytest_twisted.inlineCallbacks
def test_only_xmpp_accounts_are_probed_when_the_component_comes_up(rig: XmppRig) -> None:
    """The store holds every frontend's users: a WebSocket user id ("w0") must not be probed as a domain."""
    yield rig.start()
    yield rig.store.register_user(ALICE, "alice", "pw")
    yield rig.store.register_user("w0", "w0", "")  # a WebSocket frontend user
    rig.frontend.handlers["login"].component_up()
    yield rig.wait_sent(lambda s: s.getAttribute("type") == "probe")
    probed = {s.getAttribute("to") for s in rig.find(lambda s: s.getAttribute("type") == "probe")}
    assert probed == {ALICE}
