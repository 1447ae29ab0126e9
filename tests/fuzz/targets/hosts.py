"""Hosts: the packet codec, and a peer connection to the network host fed raw bytes."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tests.fuzz.script import build, records, stream
from tests.fuzz.targets import FailureWatch, target
from transport.hosts.directory import Directory
from transport.hosts.network import NetworkHost
from transport.hosts.packets import (
    HEADER_SIZE,
    MAX_PACKET_SIZE,
    Announce,
    EHostType,
    HostedInfo,
    HostInviteAnnounceReq,
    HostInviteMoreReq,
    HostInviteSearchReq,
    MalformedPacket,
    OnlineId,
    Packet,
    PacketDecoder,
    decode,
    encode,
)
from transport.hosts.protocol import PeerConnection


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
