"""The backend protocol codec: byte fixtures, round trips, splits, limits, garbage."""

from __future__ import annotations

import struct

import pytest
from google.protobuf.message import Message

from transport.backend import transport_pb2 as pb
from transport.backend.codec import PAYLOAD_TYPES, FrameDecoder, FrameTooLarge, Packet, encode, type_name

W = pb.WrapperMessage
USER = "alice@example.org"

# Every message type of the protocol, in each direction it travels (spec table
# "WrapperMessage.Type"): M = main instance, B = backend.
FIXTURES: list[tuple[str, int, object]] = [
    ("B>M", W.TYPE_CONNECTED, pb.Connected(user=USER)),
    (
        "B>M",
        W.TYPE_DISCONNECTED,
        pb.Disconnected(user=USER, error=pb.CONNECTION_ERROR_AUTHENTICATION_FAILED, message="bad password"),
    ),
    (
        "M>B",
        W.TYPE_LOGIN,
        pb.Login(
            user=USER,
            legacyName="alice",
            password="pw",
            extraFields=["x", "y"],
            settings=pb.Login.UserSettings(value={"a": "1"}),
        ),
    ),
    ("M>B", W.TYPE_LOGOUT, pb.Logout(user=USER, legacyName="alice")),
    (
        "M>B",
        W.TYPE_BUDDY_CHANGED,
        pb.Buddy(userName=USER, buddyName="bob", alias="Bob", group=["Friends"], blocked=True),
    ),
    (
        "B>M",
        W.TYPE_BUDDY_CHANGED,
        pb.Buddy(
            userName=USER,
            buddyName="bob",
            alias="Bob",
            group=["A", "B"],
            status=pb.STATUS_DND,
            statusMessage="busy",
            iconHash="abc",
        ),
    ),
    ("M>B", W.TYPE_BUDDY_REMOVED, pb.Buddy(userName=USER, buddyName="bob")),
    ("B>M", W.TYPE_BUDDY_REMOVED, pb.Buddy(userName=USER, buddyName="bob")),
    (
        "M>B",
        W.TYPE_CONV_MESSAGE,
        pb.ConversationMessage(userName=USER, buddyName="bob", message="hi", xhtml="<b>hi</b>", id="m1"),
    ),
    (
        "B>M",
        W.TYPE_CONV_MESSAGE,
        pb.ConversationMessage(
            userName=USER,
            buddyName="#room",
            message="hey",
            nickname="carol",
            timestamp="20260101T120000",
            attachment=[pb.Attachment(url="https://x/y.png", mimeType="image/png", description="a picture")],
        ),
    ),
    (
        "B>M",
        W.TYPE_CONV_MESSAGE,
        pb.ConversationMessage(
            userName=USER, buddyName="bob", message="from my phone", carbon=True, headline=False, pm=True
        ),
    ),
    ("M>B", W.TYPE_PING, None),
    ("B>M", W.TYPE_PONG, None),
    ("M>B", W.TYPE_JOIN_ROOM, pb.Room(userName=USER, nickname="alice", room="#room", password="secret")),
    ("M>B", W.TYPE_LEAVE_ROOM, pb.Room(userName=USER, nickname="alice", room="#room")),
    (
        "B>M",
        W.TYPE_PARTICIPANT_CHANGED,
        pb.Participant(
            userName=USER,
            room="#room",
            nickname="carol",
            flag=pb.PARTICIPANT_FLAG_MODERATOR | pb.PARTICIPANT_FLAG_ME,
            status=pb.STATUS_AWAY,
            statusMessage="lunch",
            newname="caro",
            iconHash="h",
            alias="Carol",
        ),
    ),
    ("B>M", W.TYPE_ROOM_NICKNAME_CHANGED, pb.Room(userName=USER, nickname="alice_", room="#room")),
    ("M>B", W.TYPE_ROOM_SUBJECT_CHANGED, pb.ConversationMessage(userName=USER, buddyName="#room", message="new topic")),
    (
        "B>M",
        W.TYPE_ROOM_SUBJECT_CHANGED,
        pb.ConversationMessage(userName=USER, buddyName="#room", message="topic", nickname="carol"),
    ),
    ("M>B", W.TYPE_VCARD, pb.VCard(userName=USER, buddyName="bob", id=7)),
    ("M>B", W.TYPE_VCARD, pb.VCard(userName=USER, buddyName="", id=0, nickname="Al", photo=b"\x89PNG\x00\xff")),
    (
        "B>M",
        W.TYPE_VCARD,
        pb.VCard(userName=USER, buddyName="bob", id=7, fullname="Bob B.", nickname="bob", photo=bytes(range(256))),
    ),
    ("M>B", W.TYPE_STATUS_CHANGED, pb.Status(userName=USER, status=pb.STATUS_XA, statusMessage="away")),
    ("M>B", W.TYPE_BUDDY_TYPING, pb.Buddy(userName=USER, buddyName="bob")),
    ("B>M", W.TYPE_BUDDY_TYPING, pb.Buddy(userName=USER, buddyName="bob")),
    ("M>B", W.TYPE_BUDDY_STOPPED_TYPING, pb.Buddy(userName=USER, buddyName="bob")),
    ("B>M", W.TYPE_BUDDY_STOPPED_TYPING, pb.Buddy(userName=USER, buddyName="bob")),
    ("M>B", W.TYPE_BUDDY_TYPED, pb.Buddy(userName=USER, buddyName="bob")),
    ("B>M", W.TYPE_BUDDY_TYPED, pb.Buddy(userName=USER, buddyName="bob")),
    ("B>M", W.TYPE_AUTH_REQUEST, pb.Buddy(userName=USER, buddyName="dave")),
    ("M>B", W.TYPE_ATTENTION, pb.ConversationMessage(userName=USER, buddyName="bob", message="")),
    ("B>M", W.TYPE_ATTENTION, pb.ConversationMessage(userName=USER, buddyName="bob", message="look!")),
    ("B>M", W.TYPE_STATS, pb.Stats(res=51200, init_res=40000, shared=8000, id="4242")),
    ("M>B", W.TYPE_FT_START, pb.File(userName=USER, buddyName="bob", fileName="a.txt", size=10, ftID=1)),
    ("M>B", W.TYPE_FT_FINISH, pb.File(userName=USER, buddyName="bob", fileName="a.txt", size=10)),
    ("B>M", W.TYPE_FT_DATA, pb.FileTransferData(ftID=1, data=b"\x00" * 10)),
    ("M>B", W.TYPE_FT_PAUSE, pb.File(userName=USER, buddyName="bob", fileName="a.txt", size=10, ftID=1)),
    ("M>B", W.TYPE_FT_CONTINUE, pb.File(userName=USER, buddyName="bob", fileName="a.txt", size=10, ftID=1)),
    ("M>B", W.TYPE_EXIT, None),
    ("B>M", W.TYPE_BACKEND_CONFIG, pb.BackendConfig(config="[features]\nmuc=1\nreceipts=1\n")),
    ("M>B", W.TYPE_QUERY, pb.BackendConfig(config="online_users_count")),
    ("B>M", W.TYPE_ROOM_LIST, pb.RoomList(room=["#a", "#b"], name=["A", "B"], user=USER)),
    ("B>M", W.TYPE_CONV_MESSAGE_ACK, pb.ConversationMessage(userName=USER, buddyName="bob", message="", id="m1")),
    ("M>B", W.TYPE_RAW_XML, "<message to='x@y'><body>é</body></message>"),
    ("B>M", W.TYPE_RAW_XML, "<presence/>"),
    (
        "M>B",
        W.TYPE_BUDDIES,
        pb.Buddies(
            buddy=[pb.Buddy(userName=USER, buddyName="bob"), pb.Buddy(userName=USER, buddyName="eve", group=["G"])]
        ),
    ),
    ("M>B", W.TYPE_API_VERSION, pb.APIVersion(version=1)),
    ("B>M", W.TYPE_API_VERSION, pb.APIVersion(version=1)),
]


def _ids() -> list[str]:
    return [f"{d}-{type_name(t)}" for d, t, _ in FIXTURES]


def test_fixtures_cover_every_type() -> None:
    covered = {t for _, t, _ in FIXTURES}
    assert covered == set(W.Type.values())
    assert covered == set(PAYLOAD_TYPES)


@pytest.mark.parametrize(("direction", "type_", "payload"), FIXTURES, ids=_ids())
def test_round_trip_every_type(direction: str, type_: int, payload: object) -> None:
    frame = encode(type_, payload)  # type: ignore[arg-type]
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    wrapper = W()
    wrapper.ParseFromString(frame[4:])
    assert wrapper.type == type_
    decoder = FrameDecoder()
    packets = decoder.feed(frame)
    assert packets == [Packet(type_, payload)]  # type: ignore[arg-type]
    assert decoder.skipped == 0 and decoder.buffered == 0
    if isinstance(payload, Message):
        assert isinstance(packets[0].payload, type(payload))
        assert packets[0].payload.SerializeToString() == payload.SerializeToString()


# Hand-assembled bytes (field tag = number << 3 | wire type; 0 varint, 2 length-delimited).
HAND_CHECKED = [
    (W.TYPE_PING, None, bytes.fromhex("000000020809")),
    (W.TYPE_PONG, None, bytes.fromhex("00000002080a")),
    (W.TYPE_EXIT, None, bytes.fromhex("00000002081d")),
    # WrapperMessage{type=1, payload=Connected{user="a"}}
    (W.TYPE_CONNECTED, pb.Connected(user="a"), bytes.fromhex("00000007080112030a0161")),
    # Disconnected{user="u", error=2, message="x"}
    (
        W.TYPE_DISCONNECTED,
        pb.Disconnected(user="u", error=2, message="x"),
        bytes.fromhex("0000000c080212080a017510021a0178"),
    ),
    # Status{userName="u", status=AWAY}: field 3 (there is no field 2) -> tag 0x18
    (
        W.TYPE_STATUS_CHANGED,
        pb.Status(userName="u", status=pb.STATUS_AWAY),
        bytes.fromhex("00000009081112050a01751801"),
    ),
    # Stats{res=1, init_res=2, shared=3, id="9"}
    (
        W.TYPE_STATS,
        pb.Stats(res=1, init_res=2, shared=3, id="9"),
        bytes.fromhex("0000000d08171209080110021803220139"),
    ),
    # raw XML travels as the payload bytes themselves
    (W.TYPE_RAW_XML, "<a/>", bytes.fromhex("0000000808221204") + b"<a/>"),
    # Buddy{userName="u", buddyName="b", status=ONLINE(0)}: an explicit default is still sent in proto2
    (
        W.TYPE_BUDDY_CHANGED,
        pb.Buddy(userName="u", buddyName="b", status=pb.STATUS_ONLINE),
        bytes.fromhex("0000000c080612080a01751201622800"),
    ),
]


@pytest.mark.parametrize(("type_", "payload", "wire"), HAND_CHECKED, ids=[type_name(t) for t, _, _ in HAND_CHECKED])
def test_exact_bytes(type_: int, payload: object, wire: bytes) -> None:
    assert encode(type_, payload) == wire  # type: ignore[arg-type]
    assert FrameDecoder().feed(wire) == [Packet(type_, payload)]  # type: ignore[arg-type]


def test_several_frames_in_one_read_and_one_frame_over_many() -> None:
    frames = [encode(t, p) for _, t, p in FIXTURES]  # type: ignore[arg-type]
    stream = b"".join(frames)
    decoder = FrameDecoder()
    assert [p.type for p in decoder.feed(stream)] == [t for _, t, _ in FIXTURES]
    decoder = FrameDecoder()
    out: list[Packet] = []
    for i in range(len(stream)):
        out.extend(decoder.feed(stream[i : i + 1]))
    assert [p.type for p in out] == [t for _, t, _ in FIXTURES]
    assert decoder.buffered == 0


def test_frame_limit() -> None:
    frame = encode(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName="u", buddyName="b", message="x" * 50))
    size = len(frame) - 4
    assert FrameDecoder(max_frame_size=size).feed(frame)  # exactly at the limit: fine
    decoder = FrameDecoder(max_frame_size=size - 1)
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(frame)
    assert info.value.length == size and info.value.limit == size - 1


def test_huge_length_is_refused_from_the_header_alone() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"\xff\xff\xff\xff")  # 4 GiB announced, nothing buffered
    assert decoder.buffered == 4


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


GARBAGE = [
    pytest.param(b"\xff\xff\xff", id="not-protobuf"),
    pytest.param(b"\x08\x63", id="unknown-type-99"),
    pytest.param(b"\x12\x00", id="no-type"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\x08\x01\x12\x00", id="connected-without-user"),
    pytest.param(b"\x08\x08\x12\x03\x0a\x01u", id="message-missing-required"),
    pytest.param(b"\x08\x22\x12\x02\xff\xfe", id="raw-xml-not-utf8"),
    pytest.param(b"\x08\x01\x12\x03\x0a\x05a", id="truncated-payload"),
    # proto2 string fields that are not UTF-8 (upb would hand them over as bytes)
    pytest.param(b"\x08\x01\x12\x04\x0a\x02\xff\xfe", id="string-not-utf8"),
    pytest.param(b"\x08\x06\x12\x0a\x0a\x01a\x12\x01b\x22\x02\xc3\x28", id="repeated-string-not-utf8"),
    pytest.param(
        b"\x08\x03\x12\x11\x0a\x01a\x12\x01b\x1a\x01c\x2a\x08\x0a\x06\x0a\x01\xff\x12\x01x", id="map-key-not-utf8"
    ),
    pytest.param(b"\x08\x08\x12\x0e\x0a\x01a\x12\x01b\x1a\x01c\x5a\x03\x0a\x01\xff", id="nested-string-not-utf8"),
]


@pytest.mark.parametrize("body", GARBAGE)
def test_garbage_frames_are_skipped_and_counted(body: bytes) -> None:
    good = encode(W.TYPE_PONG)
    decoder = FrameDecoder()
    packets = decoder.feed(good + _frame(body) + good)
    assert packets == [Packet(W.TYPE_PONG), Packet(W.TYPE_PONG)]
    assert decoder.skipped == 1
    assert decoder.last_error


def test_non_ascii_text_and_binary_fields_are_fine() -> None:
    message = pb.ConversationMessage(
        userName="a@b", buddyName="Zoë", message="héllo 🙂", attachment=[pb.Attachment(url="https://x/é")]
    )
    vcard = pb.VCard(userName="a@b", buddyName="b", id=1, photo=b"\xff\xfe\x00")  # bytes need not be UTF-8
    packets = FrameDecoder().feed(encode(W.TYPE_CONV_MESSAGE, message) + encode(W.TYPE_VCARD, vcard))
    assert packets == [Packet(W.TYPE_CONV_MESSAGE, message), Packet(W.TYPE_VCARD, vcard)]


def test_unknown_types_are_counted_separately() -> None:
    decoder = FrameDecoder()
    decoder.feed(_frame(b"\x08\x63") + _frame(b"\xff"))
    assert decoder.skipped == 2
    assert decoder.unknown == 1


def test_type_names() -> None:
    assert type_name(W.TYPE_PING) == "TYPE_PING"
    assert type_name(5) == "TYPE_5?"
    assert Packet(W.TYPE_EXIT).type_name == "TYPE_EXIT"
