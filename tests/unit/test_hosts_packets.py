"""The hosts packet codec: byte fixtures, hypothesis round-trips, malformed input."""

from __future__ import annotations

import struct
from dataclasses import fields, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transport.hosts.packets import (
    MAX_BLOB_DATA,
    MAX_PACKET_SIZE,
    PACKET_TYPES,
    AdminAvail,
    Announce,
    BlobReader,
    BlobWriter,
    ChatReply,
    ChatReq,
    Header,
    HostedInfo,
    HostInfoReply,
    HostInfoReq,
    HostInviteAnnounceReply,
    HostInviteAnnounceReq,
    HostInviteMoreReply,
    HostInviteMoreReq,
    HostInviteSearchReply,
    HostInviteSearchReq,
    HostJoinReply,
    HostJoinReq,
    HostLeaveReply,
    HostLeaveReq,
    HostOfferReply,
    HostOfferReq,
    HostSearchReply,
    HostSearchReq,
    HostUnjoinReply,
    HostUnjoinReq,
    HostUserInfoReply,
    HostUserInfoReq,
    HostUserListMoreReply,
    HostUserListMoreReq,
    HostUserListReply,
    HostUserListReq,
    MalformedPacket,
    MemberInfo,
    OnlineId,
    Packet,
    PacketDecoder,
    RandConnectReply,
    RandConnectReq,
    decode,
    decode_blob,
    encode,
    encode_blob,
)

A = OnlineId(bytes(range(1, 17)))
B = OnlineId(bytes(range(0x11, 0x21)))
S = OnlineId(bytes(0xA0 + i for i in range(16)))
COMMON: dict[str, Any] = {"src": A, "dst": B, "seq": 7, "plugin_num": 4}

# Header: length, type, pluginNum 4, seq 7, routeFlags, version 1, src 01..10, dst 11..20.
# Blobs start with 01 01 00 01 | dataType 0000 | dataIdx 0000 | blobLen | maxBlobLen 37f0 | 00000000.
FIXTURES: list[tuple[Packet, str]] = [
    (Announce(name="me", motto="hi", url="ptop://h:1", **COMMON),
     "00600001040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200101000100000000001d37f000000000000000036d650000"
     "0000036869000000000b70746f703a2f2f683a31000000000000000000000000"),
    (ChatReq(text="hey", sent_ms=1000, **COMMON),
     "00500007040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200101000100000000001037f0000000000000000468657900"
     "00000000000003e80000000000000000"),
    (ChatReply(text="hey", sent_ms=1000, route_flags=2, **COMMON),
     "00500008040702010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200101000100000000001037f0000000000000000468657900"
     "00000000000003e80000000000000000"),
    (HostJoinReq(host_type=4, session_id=S, **COMMON),
     "0040004d040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200400000000000000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"),
    (HostJoinReply(host_type=4, access=1, join_state=6, session_id=S, **COMMON),
     "0040004e040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200401000600000000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"),
    (HostUnjoinReq(host_type=4, session_id=S, **COMMON),
     "0040004f040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200400000000000000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"),
    (HostUnjoinReply(host_type=4, access=1, join_state=0, session_id=S, **COMMON),
     "00400050040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200401000000000000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"),
    (HostLeaveReq(host_type=4, session_id=S, **COMMON),
     "00400051040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200400000000000000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"),
    (HostLeaveReply(host_type=4, access=1, join_state=8, session_id=S, **COMMON),
     "00400052040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200401000800000000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"),
    (HostOfferReq(host_type=4, session_id=S, message="pls", **COMMON),
     "00600053040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200400000000000000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
     "0101000100000000000837f00000000000000004706c73000000000000000000"),
    (HostOfferReply(host_type=4, access=2, join_state=4, session_id=S, message="", **COMMON),
     "00600054040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200402000400000000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
     "0101000100000000000537f00000000000000001000000000000000000000000"),
    (HostSearchReq(host_type=4, session_id=S, text="bob", **COMMON),
     "00600055040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200400000000000000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
     "0101000100000000000837f00000000000000004626f62000000000000000000"),
    (HostSearchReply(host_type=4, session_id=S, users=(MemberInfo(A, "bob", 6, True),), **COMMON),
     "00800056040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f20040000000001000000000000a0a1a2a3a4a5a6a7a8a9aaab"
     "acadaeaf000000000000000000000000000000000101000100000000001a37f0"
     "00000000090a0b0c0d0e0f10010203040506070800000004626f620006010000"),
    (HostInfoReq(host_type=5, session_id=S, **COMMON),
     "0040006c040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200500000000000000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"),
    (HostInfoReply(host_type=5, session_id=S, title="T", description="D", thumb_id=B, last_modified_ms=5, member_count=2, **COMMON),
     "0080006d040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200500000000000000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
     "0101000100000000002837f000000000000000025400000000024400191a1b1c"
     "1d1e1f2011121314151617180000000000000005000000020000000000000000"),
    (HostInviteAnnounceReq(host_type=4, session_id=S, last_modified_ms=1, url="u", title="t", description="d", thumb_id=B, **COMMON),
     "0080006e040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200400000000000000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
     "0101000100000000002a37f00000000000000000000000010000000275000000"
     "00027400000000026400191a1b1c1d1e1f201112131415161718000000000000"),
    (HostInviteAnnounceReply(host_type=4, comm_err=1, session_id=S, **COMMON),
     "0040006f040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200401000000000000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"),
    (HostInviteSearchReq(host_type=6, session_id=S, specific_id=B, text="", **COMMON),
     "00700070040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200600000000000000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
     "1112131415161718191a1b1c1d1e1f200101000100000000000537f000000000"
     "00000001000000000000000000000000"),
    (HostInviteSearchReply(host_type=4, more_exist=True, session_id=S, next_id=B, entries=(HostedInfo(A, 9, "u", "t", "d", B),), **COMMON),
     "00a00071040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f20040100000001000000000000a0a1a2a3a4a5a6a7a8a9aaab"
     "acadaeaf1112131415161718191a1b1c1d1e1f200101000100000000003a37f0"
     "00000000090a0b0c0d0e0f100102030405060708000000000000000900000002"
     "7500000000027400000000026400191a1b1c1d1e1f2011121314151617180000"),
    (HostInviteMoreReq(host_type=4, session_id=S, next_id=B, **COMMON),
     "00500072040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200400000000000000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
     "1112131415161718191a1b1c1d1e1f20"),
    (HostInviteMoreReply(host_type=4, comm_err=5, session_id=S, **COMMON),
     "00700073040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f20040005000000000000000000a0a1a2a3a4a5a6a7a8a9aaab"
     "acadaeaf000000000000000000000000000000000101000100000000000037f0"
     "00000000000000000000000000000000"),
    (HostUserInfoReq(target=B, **COMMON),
     "00400087040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f201112131415161718191a1b1c1d1e1f200000000000000000"),
    (HostUserInfoReply(online_id=B, name="n", motto="m", friend_state=3, online=True, **COMMON),
     "00600088040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200101000100000000001e37f000000000191a1b1c1d1e1f20"
     "1112131415161718000000026e00000000026d00030100000000000000000000"),
    (HostUserListReq(host_type=4, session_id=S, **COMMON),
     "0040008b040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200400000000000000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"),
    (HostUserListReply(host_type=4, session_id=S, users=(MemberInfo(A, "n", 6, True),), **COMMON),
     "0080008c040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f20040000000001000000000000a0a1a2a3a4a5a6a7a8a9aaab"
     "acadaeaf000000000000000000000000000000000101000100000000001837f0"
     "00000000090a0b0c0d0e0f100102030405060708000000026e00060100000000"),
    (HostUserListMoreReq(host_type=4, session_id=S, next_id=A, **COMMON),
     "0050008d040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200400000000000000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
     "0102030405060708090a0b0c0d0e0f10"),
    (HostUserListMoreReply(host_type=4, more_exist=True, session_id=S, next_id=B, users=(MemberInfo(A, "n", 4, False),), **COMMON),
     "0080008e040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f20040100000001000000000000a0a1a2a3a4a5a6a7a8a9aaab"
     "acadaeaf1112131415161718191a1b1c1d1e1f200101000100000000001837f0"
     "00000000090a0b0c0d0e0f100102030405060708000000026e00040000000000"),
    (RandConnectReq(action=3, user_id=A, host_id=B, to_user_id=S, **COMMON),
     "00600097040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f2003000000000000000102030405060708090a0b0c0d0e0f10"
     "1112131415161718191a1b1c1d1e1f20a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"),
    (RandConnectReply(action=3, user_id=A, host_id=B, to_user_id=S, route_flags=8, **COMMON),
     "00600098040708010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f2003000000000000000102030405060708090a0b0c0d0e0f10"
     "1112131415161718191a1b1c1d1e1f20a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"),
    (AdminAvail(available=True, **COMMON),
     "0030009b040700010102030405060708090a0b0c0d0e0f101112131415161718"
     "191a1b1c1d1e1f200100000000000000"),
]


def test_every_packet_type_has_a_fixture() -> None:
    assert {type(p) for p, _ in FIXTURES} == set(PACKET_TYPES.values())


@pytest.mark.parametrize(("packet", "hexdata"), FIXTURES, ids=[type(p).__name__ for p, _ in FIXTURES])
def test_fixture(packet: Packet, hexdata: str) -> None:
    data = bytes.fromhex(hexdata)
    assert encode(packet) == data
    assert decode(data) == packet
    assert len(data) % 16 == 0
    assert int.from_bytes(data[:2], "big") == len(data)
    assert int.from_bytes(data[2:4], "big") == packet.TYPE


def test_header_fixture() -> None:
    header = Header(0x60, 1, 4, 7, 0x02, 1, A, B)
    data = header.encode()
    assert data.hex() == ("00600001" "04070201" "0102030405060708" "090a0b0c0d0e0f10"
                          "1112131415161718" "191a1b1c1d1e1f20")
    assert Header.decode(data) == header
    assert header.src.hi == 0x0102030405060708 and header.src.lo == 0x090A0B0C0D0E0F10
    assert OnlineId.from_hi_lo(header.src.hi, header.src.lo) == A


def test_blob_fixture() -> None:
    w = BlobWriter()
    w.string("ab")
    w.u8(9)
    w.u32(0x01020304)
    w.i64(-2)
    w.online_id(A)
    data = encode_blob(w.data())
    assert data.hex() == ("0101000100000000" "002437f000000000"
                          "00000003616200" "09" "01020304" "fffffffffffffffe"
                          "090a0b0c0d0e0f10" "0102030405060708")
    r = BlobReader(decode_blob(data))
    assert (r.string(), r.u8(), r.u32(), r.i64(), r.online_id()) == ("ab", 9, 0x01020304, -2, A)
    assert r.remaining == 0


# ---------------------------------------------------------------------------
# hypothesis round trips

ids = st.binary(min_size=16, max_size=16).map(OnlineId)
u8 = st.integers(0, 255)
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
i64 = st.integers(-(2**63), 2**63 - 1)
hosted = st.builds(HostedInfo, ids, i64, text, text, text, ids)
member = st.builds(MemberInfo, ids, text, u8, st.booleans())

FIELD_STRATEGIES: dict[str, Any] = {
    "src": ids, "dst": ids, "seq": u8, "plugin_num": u8, "route_flags": u8, "host_type": u8, "access": u8,
    "comm_err": u8, "join_state": u8, "session_id": ids, "next_id": ids, "specific_id": ids, "target": ids,
    "online_id": ids, "thumb_id": ids, "user_id": ids, "host_id": ids, "to_user_id": ids, "action": u8,
    "friend_state": u8, "online": st.booleans(), "available": st.booleans(), "more_exist": st.booleans(),
    "name": text, "motto": text, "url": text, "text": text, "message": text, "title": text,
    "description": text, "sent_ms": i64, "last_modified_ms": i64, "member_count": st.integers(0, 2**32 - 1),
    "entries": st.lists(hosted, max_size=5).map(tuple), "users": st.lists(member, max_size=5).map(tuple),
}


def packet_strategy(cls: type[Packet]) -> Any:
    return st.builds(cls, **{f.name: FIELD_STRATEGIES[f.name] for f in fields(cls)})


any_packet = st.one_of([packet_strategy(cls) for cls in PACKET_TYPES.values()])


@given(any_packet)
@settings(max_examples=400)
def test_round_trip(packet: Packet) -> None:
    data = encode(packet)
    assert len(data) % 16 == 0 and len(data) <= MAX_PACKET_SIZE
    assert decode(data) == packet


@given(st.lists(any_packet, min_size=1, max_size=6), st.data())
def test_stream_split_anywhere(packets: list[Packet], data: st.DataObject) -> None:
    stream = b"".join(encode(p) for p in packets)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = PacketDecoder()
    out: list[Packet] = []
    last = 0
    for cut in cuts + [len(stream)]:
        out += decoder.receive_data(stream[last:cut])
        last = cut
    assert out == packets
    assert decoder.buffered == 0


# ---------------------------------------------------------------------------
# malformed input


def _join_bytes() -> bytearray:
    return bytearray(encode(HostJoinReq(host_type=4, session_id=S, **COMMON)))


def test_length_not_multiple_of_16() -> None:
    data = _join_bytes()
    data[0:2] = struct.pack(">H", 65)
    with pytest.raises(MalformedPacket, match="multiple of 16"):
        PacketDecoder().receive_data(bytes(data) + b"\x00")


def test_length_too_long() -> None:
    with pytest.raises(MalformedPacket, match="exceeds"):
        PacketDecoder().receive_data(struct.pack(">HH", MAX_PACKET_SIZE + 16, 77))


def test_length_shorter_than_header() -> None:
    with pytest.raises(MalformedPacket, match="header"):
        PacketDecoder().receive_data(struct.pack(">HH", 32, 77) + b"\x00" * 28)


@pytest.mark.parametrize("ptype", [0, 2, 76, 999, 0xFFFF])
def test_invalid_type(ptype: int) -> None:
    data = _join_bytes()
    data[2:4] = struct.pack(">H", ptype)
    with pytest.raises(MalformedPacket, match="invalid packet type"):
        PacketDecoder().receive_data(bytes(data))


def test_body_shorter_than_needed() -> None:
    data = bytearray(encode(AdminAvail(available=True, **COMMON)))  # 48 bytes
    data[2:4] = struct.pack(">H", RandConnectReq.TYPE)  # needs 56 bytes of body
    with pytest.raises(MalformedPacket, match="truncated"):
        decode(bytes(data))


def test_truncated_blob() -> None:
    data = bytearray(encode(ChatReq(text="hello", sent_ms=1, **COMMON)))
    # blobLen (at 40 + 8) claims more data than the packet holds
    data[48:50] = struct.pack(">H", 200)
    with pytest.raises(MalformedPacket, match="blob truncated"):
        decode(bytes(data))


def test_blob_value_past_its_end() -> None:
    data = bytearray(encode(ChatReq(text="hello", sent_ms=1, **COMMON)))
    data[48:50] = struct.pack(">H", 6)  # the string says 6 bytes but the blob holds only 6 in all
    with pytest.raises(MalformedPacket, match="blob truncated"):
        decode(bytes(data))


def test_blob_too_long() -> None:
    data = bytearray(encode(ChatReq(text="hello", sent_ms=1, **COMMON)))
    data[48:50] = struct.pack(">H", MAX_BLOB_DATA + 1)
    with pytest.raises(MalformedPacket, match="exceeds"):
        decode(bytes(data))


def test_string_without_nul() -> None:
    data = bytearray(encode(ChatReq(text="hello", sent_ms=1, **COMMON)))
    data[56 + 4 + 5] = ord("!")  # the NUL after "hello"
    with pytest.raises(MalformedPacket, match="NUL"):
        decode(bytes(data))


def test_blob_not_network_order() -> None:
    data = bytearray(encode(ChatReq(text="hello", sent_ms=1, **COMMON)))
    data[40] = 0
    with pytest.raises(MalformedPacket, match="network byte order"):
        decode(bytes(data))


def test_record_count_beyond_blob() -> None:
    packet = HostUserListReply(host_type=4, session_id=S, users=(MemberInfo(A, "n", 6, True),), **COMMON)
    data = bytearray(encode(packet))
    data[44:46] = struct.pack(">H", 2)  # count says two records, the blob holds one
    with pytest.raises(MalformedPacket):
        decode(bytes(data))


def test_oversized_packet_is_not_encoded() -> None:
    with pytest.raises(OverflowError):
        encode(ChatReq(text="x" * (MAX_BLOB_DATA), **COMMON))


def test_relay_keeps_original_sender() -> None:
    req = ChatReq(text="hi", sent_ms=3, **COMMON)
    relayed = ChatReply(src=req.src, dst=S, text=req.text, sent_ms=req.sent_ms)
    assert decode(encode(relayed)).src == A
    assert replace(req, seq=9).seq == 9


def test_online_id_text() -> None:
    assert OnlineId.from_hex(A.hex()) == A
    assert not OnlineId()
    with pytest.raises(ValueError):
        OnlineId.from_hex("abc")
    assert isinstance(Announce(), Packet)
