"""The whole gateway at its edges: XMPP stanzas, backend frames and WebSocket commands in, nothing crashing.

No server and no process: the XMPP frontend gets parsed stanzas through
``XmppFrontend.stanza_received`` (as the component link hands them over), the
real :class:`BackendPool` gets bytes through a :class:`BackendLink` over a
StringTransport (a backend peer), the WebSocket frontend gets commands through
``ChatServer.data_received``, and the real :class:`Gateway` sits between them
on a synchronous SQLite store and a ``task.Clock``.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from google.protobuf.descriptor import FieldDescriptor
from twisted.internet.task import Clock
from twisted.words.xish import domish

from tests.fuzz.script import build, records
from tests.fuzz.targets import FailureWatch, target
from tests.fuzz.targets.syncdb import result, started
from tests.fuzz.targets.websocket import FakePeer, _check, _hash, command_from
from tests.peers.backends import make_config
from tests.unit.test_pool_harness import PeerBackend
from transport.backend import transport_pb2 as pb
from transport.backend.codec import PAYLOAD_TYPES, encode
from transport.backend.pool import BackendPool
from transport.core.gateway import Gateway
from transport.frontends.websocket.channels import LocalChannel
from transport.frontends.websocket.server import ChatServer, Settings
from transport.frontends.websocket.store import Store
from transport.frontends.xmpp.frontend import XmppFrontend
from transport.storage.gateway import GatewayStore

W = pb.WrapperMessage
T = "transport.example.org"
ALICE = "alice@example.org"
STATE = Path(tempfile.mkdtemp(prefix="transport-fuzz-"))  # [service] state_dir; nothing is written there
atexit.register(shutil.rmtree, STATE, True)
CONFIG = make_config(STATE, jid=T, admin_jid="boss@example.org")
TYPES = sorted(PAYLOAD_TYPES)
STREAM_HEAD = (b"<stream:stream xmlns='jabber:component:accept' "
               b"xmlns:stream='http://etherx.jabber.org/streams'>")

OP_XML = 0        # raw XML bytes on the component stream (may split or join stanzas)
OP_STANZA = 1     # a stanza from TEMPLATES: payload[0] picks it, payload[1] the sender, the rest fills {a} {b} {c}
OP_FRAME = 2      # a backend frame: payload[0] picks the type, the rest is the payload
OP_PROTO = 3      # a backend message built field by field (strings from the payload, user = alice)
OP_BACKEND = 4    # raw bytes from the backend
OP_CLOCK = 5      # advance the clock by payload[0] seconds
OP_WS = 6         # a WebSocket command (as in websocket_server) from alice's connection
OP_BACKEND_LOST = 7

SENDERS = [f"{ALICE}/pc", f"{ALICE}/phone", "stranger@example.net/x", "boss@example.org/admin", "@@@", ""]
TEMPLATES = [
    "<iq type='get' id='{c}' from='{s}' to='{T}'><query xmlns='jabber:iq:register'/></iq>",
    "<iq type='set' id='{c}' from='{s}' to='{T}'><query xmlns='jabber:iq:register'><username>{a}</username>"
    "<password>{b}</password></query></iq>",
    "<iq type='set' id='{c}' from='{s}' to='{T}'><query xmlns='jabber:iq:register'><remove/></query></iq>",
    "<presence from='{s}' to='{T}'><show>{a}</show><status>{b}</status></presence>",
    "<presence from='{s}' to='{T}' type='{a}'/>",
    "<presence from='{s}' to='{a}@{T}' type='{b}'/>",
    "<message from='{s}' to='{a}@{T}' type='chat' id='{c}'><body>{b}</body>"
    "<request xmlns='urn:xmpp:receipts'/><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
    "<message from='{s}' to='{a}@{T}' type='{c}'><composing xmlns='http://jabber.org/protocol/chatstates'/>"
    "<attention xmlns='urn:xmpp:attention:0'/></message>",
    "<iq type='get' id='{c}' from='{s}' to='{a}@{T}'><vCard xmlns='vcard-temp'/></iq>",
    "<iq type='set' id='{c}' from='{s}' to='{T}'><vCard xmlns='vcard-temp'><NICKNAME>{a}</NICKNAME>"
    "<PHOTO><TYPE>image/png</TYPE><BINVAL>{b}</BINVAL></PHOTO></vCard></iq>",
    "<presence from='{s}' to='{a}@{T}/{b}'><x xmlns='http://jabber.org/protocol/muc'><password>{c}</password>"
    "</x></presence>",
    "<presence from='{s}' to='{a}@{T}/{b}' type='unavailable'/>",
    "<message from='{s}' to='{a}@{T}' type='groupchat' id='{c}'><body>{b}</body></message>",
    "<message from='{s}' to='{a}@{T}' type='groupchat'><subject>{b}</subject></message>",
    "<message from='{s}' to='{a}@{T}/{b}' type='chat'><body>{c}</body></message>",
    "<iq type='get' id='{c}' from='{s}' to='{T}'><query xmlns='http://jabber.org/protocol/disco#info' node='{a}'/>"
    "</iq>",
    "<iq type='get' id='{c}' from='{s}' to='{a}@{T}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
    "<iq type='get' id='{c}' from='{s}' to='{T}'><ping xmlns='urn:xmpp:ping'/></iq>",
    "<iq type='get' id='{c}' from='{s}' to='{T}'><query xmlns='jabber:iq:version'/></iq>",
    "<iq type='set' id='{c}' from='{s}' to='{T}'><query xmlns='jabber:iq:gateway'><prompt>{a}</prompt></query></iq>",
    "<iq type='set' id='{c}' from='{s}' to='{T}'><command xmlns='http://jabber.org/protocol/commands' node='{a}' "
    "action='{b}'/></iq>",
    "<iq type='get' id='{c}' from='{s}' to='{T}'><query xmlns='http://jabber.org/protocol/disco#items' "
    "node='http://jabber.org/protocol/commands'/></iq>",
    "<iq type='{a}' id='{c}' from='{s}' to='{T}'><{b} xmlns='urn:example'/></iq>",
    "<iq type='result' id='{c}' from='{s}' to='{T}'/>",
]


def _fill(payload: bytes) -> bytes:
    index = payload[0] if payload else 0
    sender = SENDERS[(payload[1] if len(payload) > 1 else 0) % len(SENDERS)]
    parts = payload[2:].decode("utf-8", "replace").split("\x00") + ["", "", ""]
    a, b, c = (escape(p, {"'": "&apos;", '"': "&quot;"}) for p in parts[:3])
    return TEMPLATES[index % len(TEMPLATES)].format(s=sender, T=T, a=a, b=b, c=c).encode("utf-8")


def _proto(payload: bytes) -> bytes:
    type_ = TYPES[(payload[0] if payload else 0) % len(TYPES)]
    cls = PAYLOAD_TYPES[type_]
    if cls is None or cls is str:
        return encode(type_, payload[2:].decode("utf-8", "replace") if cls is str else None)
    message: Any = cls()
    flags = payload[1] if len(payload) > 1 else 0
    strings = iter(payload[2:].decode("utf-8", "replace").split("\x00"))
    numbers = iter(payload[2:])
    for field in message.DESCRIPTOR.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            value = ALICE if field.name in ("user", "userName") and not flags & 1 else next(strings, "")
            if field.is_repeated:
                getattr(message, field.name).append(value)
            else:
                setattr(message, field.name, value)
        elif field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
                            FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_ENUM, FieldDescriptor.TYPE_BOOL):
            if not field.is_repeated:
                value_int = next(numbers, 0) % 8
                if field.type == FieldDescriptor.TYPE_BOOL:
                    setattr(message, field.name, bool(value_int & 1))
                elif field.type == FieldDescriptor.TYPE_ENUM:
                    values = field.enum_type.values
                    setattr(message, field.name, values[value_int % len(values)].number)
                else:
                    setattr(message, field.name, value_int)
    return encode(type_, message.SerializePartialToString())


class Rig:
    """The gateway with both frontends and one connected backend, all in memory."""

    def __init__(self) -> None:
        self.clock = clock = Clock()
        self.pool = BackendPool(CONFIG, reactor=None, clock=clock, spawn=lambda backend, argv: None)
        self.db = started()
        self.store = GatewayStore(self.db)
        self.gateway = Gateway(CONFIG, self.store, self.pool, clock)
        self.pool.start_routing(self.gateway)
        self.pool.port_number = 4242
        self.pool.config_path = "/etc/transport.ini"
        self.pool.supervise()
        self.sent: list[domish.Element] = []
        self.xmpp = XmppFrontend(self.gateway, CONFIG, clock, send=self.sent.append,
                                 registry={"backend_pool": self.pool})
        self.gateway.add_frontend(self.xmpp)
        self.ws_store = Store(self.db)
        self.ws = ChatServer(Settings(rate_burst=8), self.ws_store, [LocalChannel("general")], clock,
                             gateway=self.gateway, secret=b"s" * 32, hasher=_hash, checker=_check)
        self.gateway.add_frontend(self.ws)
        self.ws_peer: FakePeer | None = None
        result(self.store.start())
        result(self.ws_store.migrate())
        self.ws.mark_ready()
        self.peer = PeerBackend(self.pool)
        self.peer.send(W.TYPE_BACKEND_CONFIG, pb.BackendConfig(config="[features]\nreceipts=1\nmuc=1\nrawxml=1\n"))
        self.peer.pong()
        self.peer.take()
        self._new_stream()

    def _new_stream(self) -> None:
        self.stream = domish.elementStream()
        self.stream.DocumentStartEvent = lambda root: None
        self.stream.ElementEvent = self._element
        self.stream.DocumentEndEvent = lambda: None
        self.stream.parse(STREAM_HEAD)

    def _element(self, stanza: domish.Element) -> None:
        self.xmpp.stanza_received(stanza)

    def xml(self, data: bytes) -> None:
        try:
            self.stream.parse(data)
        except domish.ParserError:
            self._new_stream()  # the component link closes a stream that does not parse

    def websocket(self, payload: bytes) -> None:
        if self.ws_peer is None or self.ws_peer.closed:
            self.ws_peer = FakePeer(self.ws)
            result(self.ws.data_received(self.ws_peer.conn, b'{"cmd":"login","username":"alice","password":"pw"}'))
            result(self.ws.data_received(self.ws_peer.conn,
                                         b'{"cmd":"register","username":"alice","password":"pw-alice"}'))
            result(self.ws.data_received(self.ws_peer.conn, b'{"cmd":"login","username":"alice",'
                                                            b'"password":"pw-alice"}'))
        result(self.ws.data_received(self.ws_peer.conn, command_from(payload)))

    def check_sent(self) -> None:
        for stanza in self.sent:
            xml = stanza.toXml()  # everything sent serializes ...
            assert stanza.name in ("iq", "message", "presence"), xml[:200]
            # from our domain, except an error, which comes from where the stanza was sent
            sender = stanza.getAttribute("from", "")
            assert stanza.getAttribute("type") == "error" or sender == T or sender.split("/")[0].endswith("@" + T), \
                xml[:200]
        self.sent.clear()


def _seeds() -> Iterator[bytes]:
    def stanza(index: int, sender: int = 0, *fields: str) -> tuple[int, bytes]:
        return OP_STANZA, bytes([index, sender]) + "\x00".join(fields).encode()

    def frame(type_: int, message: Any) -> tuple[int, bytes]:
        return OP_BACKEND, encode(type_, message)

    login = [stanza(1, 0, "alice", "pw", "r1"), stanza(3, 0, "chat", "here"),
             frame(W.TYPE_CONNECTED, pb.Connected(user=ALICE))]
    yield build(login + [
        stanza(6, 0, "bob", "hello", "m1"), stanza(7, 0, "bob", "", "chat"),
        frame(W.TYPE_BUDDY_CHANGED, pb.Buddy(userName=ALICE, buddyName="Bob Smith", alias="Bob",
                                              status=pb.STATUS_AWAY, statusMessage="out", iconHash="abc")),
        frame(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=ALICE, buddyName="Bob Smith", message="hi")),
        stanza(8, 0, "bob", "", "v1"), stanza(10, 0, "lobby", "al", ""),
        frame(W.TYPE_PARTICIPANT_CHANGED, pb.Participant(userName=ALICE, room="lobby", nickname="al", flag=pb.PARTICIPANT_FLAG_ME,
                                                                  status=pb.STATUS_ONLINE)),
        stanza(12, 0, "lobby", "hello room", "g1"), stanza(13, 0, "lobby", "topic"), stanza(11, 0, "lobby", "al"),
        (OP_CLOCK, b"\x15"), stanza(4, 0, "unavailable")])
    yield build(login + [(OP_WS, b"\x00"), (OP_WS, bytes([1, 1, 0, 2])),
                         frame(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=ALICE, buddyName="echo",
                                                                           message="to both frontends"))])
    yield build([stanza(i, i % len(SENDERS), "a", "b", "c") for i in range(len(TEMPLATES))])
    yield build([(OP_XML, b"<message from='alice@example.org/pc' to='bob@" + T.encode() + b"'><bo"),
                 (OP_XML, b"dy>split</body></message><iq/>"), (OP_XML, b"<<<")])
    yield build(login + [(OP_PROTO, bytes([i, 0]) + b"bob\x00text\x00x") for i in range(len(TYPES))])
    yield build(login + [(OP_BACKEND_LOST, b""), (OP_CLOCK, b"\x3c"), stanza(6, 0, "bob", "queued", "m2")])


@target("xmpp_stanzas", _seeds)
def xmpp_stanzas(data: bytes) -> None:
    """XMPP stanzas (parsed from raw XML and from templates), backend frames and WebSocket commands
    into the real gateway.

    Contract: nothing raises out of ``stanza_received``, ``BackendLink.dataReceived``
    or ``ChatServer.data_received``, and nothing logs a failure (the frontends
    answer a handler exception with internal-server-error / "Internal server
    error" and log it: that is the finding). Bad XML only resets the stream.
    Every stanza sent is an iq, message or presence from the transport's domain (errors: from where
    the stanza was addressed).
    """
    rig = Rig()
    with FailureWatch():
        for op, payload in records(data):
            kind = op & 7
            if kind == OP_XML:
                rig.xml(payload)
            elif kind == OP_STANZA:
                rig.xml(_fill(payload))
            elif kind == OP_FRAME:
                rig.peer.link.dataReceived(encode(TYPES[(payload[0] if payload else 0) % len(TYPES)], payload[1:]))
            elif kind == OP_PROTO:
                rig.peer.link.dataReceived(_proto(payload))
            elif kind == OP_BACKEND:
                rig.peer.link.dataReceived(payload)
            elif kind == OP_CLOCK:
                rig.clock.advance(payload[0] if payload else 1)
            elif kind == OP_WS:
                rig.websocket(payload)
            elif kind == OP_BACKEND_LOST:
                rig.peer.lose()
                rig.peer = PeerBackend(rig.pool)
                rig.peer.pong()
            rig.check_sent()
            rig.peer.take()
    rig.pool.stop() if hasattr(rig.pool, "stop") else None
    result(rig.db.close())
