"""Hosts: the packet codec, and a peer connection to the network host fed raw bytes."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import fields
from types import SimpleNamespace
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tests.fuzz.script import build, records, stream
from tests.fuzz.targets import FailureWatch, target
from tests.fuzz.targets.syncdb import result, started
from transport.hosts.directory import Directory
from transport.hosts.network import NetworkHost
from transport.hosts.packets import (
    HEADER_SIZE,
    MAX_PACKET_SIZE,
    PACKET_TYPES,
    ZERO_ID,
    Announce,
    ChatReq,
    EFriendState,
    EHostType,
    HostedInfo,
    HostInfoReq,
    HostInviteAnnounceReq,
    HostInviteMoreReq,
    HostInviteSearchReq,
    HostJoinReq,
    HostLeaveReq,
    HostOfferReq,
    HostUnjoinReq,
    HostUserInfoReq,
    HostUserListReq,
    MalformedPacket,
    MemberInfo,
    OnlineId,
    Packet,
    PacketDecoder,
    RandConnectReq,
    decode,
    encode,
)
from transport.hosts.protocol import PeerConnection
from transport.hosts.store import MembershipStore
from transport.hosts.userhost import UserHost, UserHostSettings


def _fixture_packets() -> list[bytes]:
    from tests.unit.test_hosts_packets import FIXTURES  # the codec's own byte fixtures

    return [bytes.fromhex(hexdata) for _packet, hexdata in FIXTURES]


def _codec_seeds() -> Iterator[bytes]:
    packets = _fixture_packets()
    for data in packets:
        yield stream(data)
        yield build([(0x80, data)])
    yield stream(b"".join(packets), 1, 2, 39, 40, 41, 100)
    yield stream(b"\x00\x31" + b"\x00" * 47)  # length not a multiple of 16


@target("hosts_packets", _codec_seeds)
def hosts_packets(data: bytes) -> None:
    """``PacketDecoder.receive_data`` and ``decode``.

    Contract: both raise only ``MalformedPacket`` (then the stream is closed).
    Invariants: the packets do not depend on how the bytes were split; every
    decoded packet encodes again and decodes to an equal packet; the decoder
    never buffers a whole packet's worth (16,384 bytes) or more.
    """
    decoder = PacketDecoder()
    got: list[Packet] = []
    whole = bytearray()
    failed = False
    for op, payload in records(data):
        if op & 0x80:
            try:
                got_one = decode(payload)
            except MalformedPacket:
                continue
            assert decode(encode(got_one)) == got_one
            continue
        if failed:
            continue
        whole += payload
        try:
            got += decoder.receive_data(payload)
        except MalformedPacket:
            failed = True
            continue
        assert decoder.buffered < MAX_PACKET_SIZE, decoder.buffered
    try:
        once = PacketDecoder().receive_data(bytes(whole))
    except MalformedPacket:
        assert failed, "one read raised MalformedPacket, the split reads did not"
    else:
        assert not failed, "the split reads raised MalformedPacket, one read did not"
        assert once == got
    for packet in got:
        assert decode(encode(packet)) == packet, packet


# ---------------------------------------------------------------------------
# a peer connection to the network host

PEER = OnlineId(bytes(range(1, 17)))
HOST = OnlineId(bytes(range(0x40, 0x50)))
OP_STAMPED = 1  # payload made into a packet from PEER: length fixed, padded, source set
OP_CLOCK = 2


def stamp(payload: bytes, src: OnlineId = PEER) -> bytes:
    """*payload* with a consistent length field and *src* as its source (passes the framing and the src check)."""
    raw = bytearray(payload[:MAX_PACKET_SIZE - 16])
    if len(raw) < HEADER_SIZE:
        raw += bytes(HEADER_SIZE - len(raw))
    raw += bytes(-len(raw) % 16)
    raw[0:2] = len(raw).to_bytes(2, "big")
    raw[8:24] = src.raw
    return bytes(raw)


def _network_seeds() -> Iterator[bytes]:
    common: dict[str, Any] = {"src": PEER, "dst": HOST, "seq": 3, "plugin_num": EHostType.GROUP}
    session = OnlineId(b"\x07" * 16)
    ann = encode(Announce(name="peer", motto="m", url="ptop://127.0.0.1:1", **common))
    reg = encode(HostInviteAnnounceReq(host_type=EHostType.GROUP, session_id=session, url="ptop://127.0.0.1:1",
                                       title="Group", description="about", last_modified_ms=5, **common))
    search = encode(HostInviteSearchReq(host_type=EHostType.GROUP, session_id=session, text="gro", **common))
    more = encode(HostInviteMoreReq(host_type=EHostType.GROUP, session_id=session, next_id=HOST, **common))
    yield stream(ann + reg + search + more, 17, 100)
    yield build([(OP_STAMPED, reg), (OP_CLOCK, b"\xff"), (OP_STAMPED, search)])
    yield build([(0, encode(Announce(name="x", src=HOST)))])  # forged source
    for data in _fixture_packets():
        yield build([(OP_STAMPED, data)])


def _check_replies(transport: StringTransport, decoder: PacketDecoder) -> None:
    out = transport.value()
    transport.clear()
    for reply in decoder.receive_data(out):
        assert reply.src == HOST and reply.dst in (PEER, OnlineId()), reply


@target("hosts_network", _network_seeds)
def hosts_network(data: bytes) -> None:
    """A :class:`PeerConnection` (TLS identity taken as done) to the :class:`NetworkHost` over a StringTransport.

    Contract: ``dataReceived`` never raises and no handler fails (logged
    failures are findings); a malformed or forged packet closes the
    connection; every reply is a well-formed packet from the host to the peer.
    """
    clock = Clock()
    clock.advance(1_700_000_000)
    host = NetworkHost(Directory(clock.seconds, page_size=3, max_entries=50), HOST)
    identity: Any = SimpleNamespace(online_id=HOST)
    conn = PeerConnection(host, identity, Announce(name="network", src=HOST), reactor=clock)
    transport = StringTransport()
    replies = PacketDecoder()
    with FailureWatch():
        conn.makeConnection(transport)
        conn.peer_id = PEER  # what handshakeCompleted() learns from the certificate
        conn.send(conn._announce)
        host.connection_made(conn)
        for op, payload in records(data):
            if op == OP_STAMPED:
                conn.dataReceived(stamp(payload))
            elif op == OP_CLOCK:
                clock.advance(payload[0] * 60 if payload else 60)
                host.directory.announce(EHostType.GROUP, HostedInfo(HOST, 0, "ptop://h:1", "t", "d", HOST)) \
                    if payload[:1] == b"\x00" else None
            else:
                conn.dataReceived(payload)
            _check_replies(transport, replies)
            if transport.disconnecting or conn._closed:
                break
        conn.connectionLost()


# ---------------------------------------------------------------------------
# a user host with three peers (an admin, a friend, a stranger)

PEERS = [OnlineId(bytes([0x10 + i] * 16)) for i in range(3)]
IDS = [HOST, ZERO_ID, *PEERS]
HOST_TYPES = [EHostType.GROUP, EHostType.CHAT_ROOM, EHostType.RANDOM_CONNECT]
PERMISSIONS = [EFriendState.ANONYMOUS, EFriendState.GUEST, EFriendState.FRIEND, EFriendState.ADMIN,
               EFriendState.IGNORE]
PACKET_CLASSES = [PACKET_TYPES[t] for t in sorted(PACKET_TYPES)]

KIND_RAW = 0       # raw bytes from peer (op & 3) % 3
KIND_STAMPED = 1   # payload stamped as a packet from that peer (see stamp())
KIND_BUILT = 2     # a packet built field by field: payload[0] picks the class
KIND_LOST = 3      # the peer disconnects (and connects again)
KIND_DECIDE = 4    # the admin grants (payload[0] odd) or denies the peer's pending request; the host polls
KIND_CLOCK = 5     # time passes (payload[0] seconds)


class _Fields:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        self.pos += 1
        return self.data[self.pos - 1] if self.pos <= len(self.data) else 0

    def text(self) -> str:
        n = self.byte() % 24
        self.pos += n
        return self.data[self.pos - n:self.pos].decode("utf-8", "replace").replace("\x00", "")

    def online_id(self) -> OnlineId:
        return IDS[self.byte() % len(IDS)]


def build_packet(payload: bytes, src: OnlineId, host_type: int) -> bytes | None:
    """A packet of the class payload[0] picks, its fields read from the rest (ids from a small set)."""
    r = _Fields(payload)
    cls = PACKET_CLASSES[r.byte() % len(PACKET_CLASSES)]
    values: dict[str, Any] = {"src": src, "dst": HOST}
    for f in fields(cls):
        if f.name in ("src", "dst"):
            continue
        if f.name == "host_type" or f.name == "plugin_num":
            values[f.name] = host_type if r.byte() % 4 else r.byte() % 8
        elif f.type == "int":
            values[f.name] = r.byte() if f.name not in ("last_modified_ms", "sent_ms") else r.byte() << 20
        elif f.type == "str":
            values[f.name] = r.text()
        elif f.type == "bool":
            values[f.name] = bool(r.byte() & 1)
        elif f.type == "OnlineId":
            values[f.name] = r.online_id()
        elif f.type == "tuple[MemberInfo, ...]":
            values[f.name] = tuple(MemberInfo(r.online_id(), r.text(), r.byte() % 9, bool(r.byte() & 1))
                                   for _ in range(r.byte() % 3))
        elif f.type == "tuple[HostedInfo, ...]":
            values[f.name] = tuple(HostedInfo(r.online_id(), r.byte(), r.text(), r.text(), r.text(), r.online_id())
                                   for _ in range(r.byte() % 3))
    try:
        return encode(cls(**values))
    except (ValueError, OverflowError, struct.error):
        return None


class _Peer:
    def __init__(self, host: UserHost, peer_id: OnlineId, clock: Clock) -> None:
        self.peer_id = peer_id
        self.transport = StringTransport()
        identity: Any = SimpleNamespace(online_id=HOST)
        self.conn = PeerConnection(host, identity, host.announce_packet(), reactor=clock)
        self.conn.makeConnection(self.transport)
        self.conn.peer_id = peer_id  # what handshakeCompleted() learns from the certificate
        self.conn.send(host.announce_packet())
        host.connection_made(self.conn)
        self.conn.dataReceived(encode(Announce(name=f"peer {peer_id.raw[0]}", motto="m", src=peer_id, dst=HOST)))
        self.replies = PacketDecoder()
        self.lost = False

    def lose(self) -> None:
        if not self.lost:
            self.lost = True
            self.conn.connectionLost()  # also after an abort: StringTransport does not call it

    def check(self) -> None:
        out = self.transport.value()
        self.transport.clear()
        for reply in self.replies.receive_data(out):
            assert reply.dst == self.peer_id or isinstance(reply, Announce), reply  # addressed to this peer ...
            assert reply.src == HOST or reply.src in PEERS, reply  # ... from the host, or relayed from a peer


def _userhost_seeds() -> Iterator[bytes]:
    def built(peer: int, cls: type[Packet], *rest: int) -> tuple[int, bytes]:
        # class, then seq 1, plugin_num = the host type, route flags 0, then the class's own fields
        return KIND_BUILT << 2 | peer, bytes([PACKET_CLASSES.index(cls), 1, 1, 0, *rest])

    join = [built(i, HostJoinReq, 1, 2 + i) for i in range(3)]
    yield bytes([0, 2]) + build(join + [  # a group for friends: the stranger waits for the admin
        built(0, ChatReq, 2, 104, 105, 3), built(2, ChatReq, 2, 104, 105, 3), (KIND_DECIDE << 2 | 2, b"\x01"),
        built(1, ChatReq, 3, 104, 101, 121, 9), built(1, HostUserListReq, 1, 2), built(1, HostUserInfoReq, 4),
        built(0, HostInfoReq, 1, 2), built(1, HostLeaveReq, 1, 3), (KIND_LOST << 2 | 0, b""),
        built(2, HostUnjoinReq, 1, 4), (KIND_CLOCK << 2, b"\x3c")])
    yield bytes([2, 0]) + build([built(i, RandConnectReq, 1, 2 + i, 0, 2 + (i + 1) % 3) for i in range(3)])
    yield bytes([1, 3]) + build(join + [(KIND_DECIDE << 2 | 1, b"\x00"), built(1, HostOfferReq, 1, 3, 2, 104, 105)])
    yield bytes([0, 4]) + build(join)
    yield bytes([1, 0]) + build(join + [built(2, ChatReq, 2, 104, 105, 3), (KIND_LOST << 2 | 1, b""),
                                        (KIND_STAMPED << 2, encode(ChatReq(text="x", src=PEERS[0])))])


@target("hosts_userhost", _userhost_seeds)
def hosts_userhost(data: bytes) -> None:
    """A :class:`UserHost` (group, chat room or random connect; any permission) with three connected peers.

    Peer 0 is an admin, peer 1 a friend, peer 2 a stranger. Packets arrive raw,
    stamped, or built field by field; the admin decides pending joins; peers
    leave and come back. The store is SQLite through the real MembershipStore.

    Contract: nothing raises out of ``dataReceived`` and no handler fails (a
    handler exception is logged and closes the connection: that log is the
    finding). Every reply is a well-formed packet addressed to its peer, from
    the host or relayed from a peer.
    """
    if len(data) < 2:
        return
    clock = Clock()
    clock.advance(1_700_000_000)
    db = started()
    store = MembershipStore(db)
    result(store.migrate())
    settings = UserHostSettings(name="fuzz", host_type=HOST_TYPES[data[0] % 3], title="Fuzz", description="d",
                                url="ptop://127.0.0.1:1", thumb_id=HOST, permission=PERMISSIONS[data[1] % 5],
                                page_size=2, max_pending=2)
    host = UserHost(settings, HOST, store, lambda: int(clock.seconds() * 1000))
    result(store.set_friend_state("fuzz", PEERS[0], EFriendState.ADMIN))
    result(store.set_friend_state("fuzz", PEERS[1], EFriendState.FRIEND))
    with FailureWatch():
        peers = [_Peer(host, p, clock) for p in PEERS]
        for op, payload in records(data[2:]):
            kind, index = op >> 2, (op & 3) % 3
            peer = peers[index]
            if peer.conn._closed:
                peer.lose()
                peer = peers[index] = _Peer(host, PEERS[index], clock)
            if kind == KIND_STAMPED:
                peer.conn.dataReceived(stamp(payload, PEERS[index]))
            elif kind == KIND_BUILT:
                packet = build_packet(payload, PEERS[index], settings.host_type)
                if packet is not None:
                    peer.conn.dataReceived(packet)
            elif kind == KIND_LOST:
                peer.lose()
            elif kind == KIND_DECIDE:
                result(store.decide("fuzz", PEERS[index], bool(payload[:1] and payload[0] & 1)))
                result(host.poll_pending())
            elif kind == KIND_CLOCK:
                clock.advance(payload[0] if payload else 1)
            else:
                peer.conn.dataReceived(payload)
            for p in peers:
                p.check()
        for p in peers:
            p.lose()
        assert not host.clients and not host.members, "connections left behind"
    result(db.close())
