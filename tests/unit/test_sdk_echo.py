"""The echo backend's behaviour, packet by packet (StringTransport + task.Clock)."""

from __future__ import annotations

import struct
import zlib
from typing import Any

from transport_backends.echo import EchoBackend
from transport_backends.echo.png import echo_avatar
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from transport.backend import transport_pb2 as pb
from transport.backend.codec import FrameDecoder, Packet, encode
from transport.sdk import BackendConfigFile

W = pb.WrapperMessage
U = "alice@example.org"


def start() -> tuple[EchoBackend, StringTransport, list[Packet]]:
    plugin = EchoBackend(BackendConfigFile(), clock=Clock())
    transport = StringTransport()
    plugin.makeConnection(transport)
    return plugin, transport, take(transport)


def take(transport: StringTransport) -> list[Packet]:
    packets = FrameDecoder().feed(transport.value())
    transport.clear()
    return packets


def feed(plugin: EchoBackend, transport: StringTransport, type_: int, payload: object = None) -> list[Packet]:
    plugin.dataReceived(encode(type_, payload))  # type: ignore[arg-type]
    return take(transport)


def login(plugin: EchoBackend, transport: StringTransport, name: str = "alice", password: str = "pw") -> list[Packet]:
    return feed(plugin, transport, W.TYPE_LOGIN, pb.Login(user=U, legacyName=name, password=password))


def test_announces_features_and_rooms_at_connect() -> None:
    _, _, first = start()
    assert [p.type for p in first] == [W.TYPE_BACKEND_CONFIG, W.TYPE_ROOM_LIST]
    config: Any = first[0].payload
    parsed = BackendConfigFile.from_text(config.config)
    assert parsed.get("features", "receipts") == "1"
    assert parsed.get("features", "muc") == "1"
    assert parsed.get("registration", "needPassword") == "0"
    rooms: Any = first[1].payload
    assert list(rooms.room) == ["echo"] and not rooms.HasField("user")


def test_login_connects_and_shows_the_echo_buddy() -> None:
    plugin, transport, _ = start()
    connected, buddy = login(plugin, transport)
    assert connected == Packet(W.TYPE_CONNECTED, pb.Connected(user=U))
    assert buddy.type == W.TYPE_BUDDY_CHANGED
    payload: Any = buddy.payload
    assert (payload.buddyName, payload.alias, payload.status) == ("echo", "Echo", pb.STATUS_ONLINE)
    assert payload.HasField("status")
    assert plugin.users == {U: "alice"}


def test_fail_in_name_or_password_is_refused() -> None:
    for name, password in (("failing", "pw"), ("alice", "please FAIL")):
        plugin, transport, _ = start()
        (answer,) = login(plugin, transport, name, password)
        assert answer.type == W.TYPE_DISCONNECTED
        payload: Any = answer.payload
        assert payload.user == U and payload.error == pb.CONNECTION_ERROR_AUTHENTICATION_FAILED
        assert plugin.users == {}


def test_message_is_echoed_with_a_receipt() -> None:
    plugin, transport, _ = start()
    login(plugin, transport)
    out = feed(
        plugin,
        transport,
        W.TYPE_CONV_MESSAGE,
        pb.ConversationMessage(userName=U, buddyName="echo", message="hi", id="m1"),
    )
    assert out == [
        Packet(W.TYPE_CONV_MESSAGE_ACK, pb.ConversationMessage(userName=U, buddyName="echo", message="", id="m1")),
        Packet(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=U, buddyName="echo", message="hi")),
    ]
    # no id, no receipt; any buddy answers for itself
    out = feed(
        plugin, transport, W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=U, buddyName="bob", message="yo")
    )
    assert out == [Packet(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=U, buddyName="bob", message="yo"))]


def test_chat_states_and_attention_are_echoed() -> None:
    plugin, transport, _ = start()
    login(plugin, transport)
    for kind in (W.TYPE_BUDDY_TYPING, W.TYPE_BUDDY_TYPED, W.TYPE_BUDDY_STOPPED_TYPING):
        assert feed(plugin, transport, kind, pb.Buddy(userName=U, buddyName="echo")) == [
            Packet(kind, pb.Buddy(userName=U, buddyName="echo"))
        ]
    attention = pb.ConversationMessage(userName=U, buddyName="echo", message="hey")
    assert feed(plugin, transport, W.TYPE_ATTENTION, attention) == [Packet(W.TYPE_ATTENTION, attention)]


def test_join_room_lists_echo_then_the_user_last_then_the_subject() -> None:
    plugin, transport, _ = start()
    login(plugin, transport)
    out = feed(plugin, transport, W.TYPE_JOIN_ROOM, pb.Room(userName=U, nickname="al", room="echo"))
    assert [p.type for p in out] == [
        W.TYPE_PARTICIPANT_CHANGED,
        W.TYPE_PARTICIPANT_CHANGED,
        W.TYPE_ROOM_SUBJECT_CHANGED,
    ]
    first: Any = out[0].payload
    me: Any = out[1].payload
    assert first.nickname == "echo" and not first.flag & pb.PARTICIPANT_FLAG_ME
    assert me.nickname == "al" and me.flag & pb.PARTICIPANT_FLAG_ME and me.status == pb.STATUS_ONLINE
    subject: Any = out[2].payload
    assert subject.buddyName == "echo" and subject.nickname == "echo" and subject.message


def test_room_messages_are_reflected_then_repeated_by_echo() -> None:
    plugin, transport, _ = start()
    login(plugin, transport)
    feed(plugin, transport, W.TYPE_JOIN_ROOM, pb.Room(userName=U, nickname="al", room="lobby"))
    out = feed(
        plugin,
        transport,
        W.TYPE_CONV_MESSAGE,
        pb.ConversationMessage(userName=U, buddyName="lobby", message="hello all"),
    )
    assert out == [
        Packet(
            W.TYPE_CONV_MESSAGE,
            pb.ConversationMessage(userName=U, buddyName="lobby", message="hello all", nickname="al"),
        ),
        Packet(
            W.TYPE_CONV_MESSAGE,
            pb.ConversationMessage(userName=U, buddyName="lobby", message="hello all", nickname="echo"),
        ),
    ]


def test_subject_can_be_set_and_is_kept_for_the_next_join() -> None:
    plugin, transport, _ = start()
    login(plugin, transport)
    feed(plugin, transport, W.TYPE_JOIN_ROOM, pb.Room(userName=U, nickname="al", room="lobby"))
    out = feed(
        plugin,
        transport,
        W.TYPE_ROOM_SUBJECT_CHANGED,
        pb.ConversationMessage(userName=U, buddyName="lobby", message="news"),
    )
    assert out == [
        Packet(
            W.TYPE_ROOM_SUBJECT_CHANGED,
            pb.ConversationMessage(userName=U, buddyName="lobby", message="news", nickname="al"),
        )
    ]
    assert feed(plugin, transport, W.TYPE_LEAVE_ROOM, pb.Room(userName=U, nickname="al", room="lobby")) == []
    # after leaving, the room is not a room any more: a message goes to a buddy of that name
    out = feed(
        plugin, transport, W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=U, buddyName="lobby", message="x")
    )
    assert out == [Packet(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=U, buddyName="lobby", message="x"))]
    out = feed(plugin, transport, W.TYPE_JOIN_ROOM, pb.Room(userName=U, nickname="al", room="lobby"))
    subject: Any = out[-1].payload
    assert out[-1].type == W.TYPE_ROOM_SUBJECT_CHANGED and subject.message == "news"


def test_nickname_echo_conflicts() -> None:
    plugin, transport, _ = start()
    login(plugin, transport)
    out = feed(plugin, transport, W.TYPE_JOIN_ROOM, pb.Room(userName=U, nickname="echo", room="echo"))
    last: Any = out[-1].payload
    assert last.flag & pb.PARTICIPANT_FLAG_CONFLICT
    assert ("alice@example.org", "echo") not in plugin.rooms


def test_vcard_request_is_answered_with_a_png() -> None:
    plugin, transport, _ = start()
    login(plugin, transport)
    (answer,) = feed(plugin, transport, W.TYPE_VCARD, pb.VCard(userName=U, buddyName="echo", id=42))
    payload: Any = answer.payload
    assert answer.type == W.TYPE_VCARD
    assert (payload.id, payload.buddyName, payload.fullname, payload.nickname) == (42, "echo", "Echo", "echo")
    assert payload.photo.startswith(b"\x89PNG\r\n\x1a\n")


def test_vcard_photos_kept_are_bounded() -> None:
    """Users may ask for the vCard of any name: the backend does not keep a photo for each."""
    plugin, transport, _ = start()
    login(plugin, transport)
    for n in range(300):
        (answer,) = feed(plugin, transport, W.TYPE_VCARD, pb.VCard(userName=U, buddyName=f"b{n}", id=n + 1))
        assert answer.payload.photo.startswith(b"\x89PNG")  # type: ignore[union-attr]
    assert len(plugin._avatars) <= 256


def test_own_vcard_update_is_stored_and_not_answered() -> None:
    plugin, transport, _ = start()
    login(plugin, transport)
    update = pb.VCard(userName=U, buddyName="", id=0, nickname="Al", photo=b"img")
    assert feed(plugin, transport, W.TYPE_VCARD, update) == []
    assert plugin.own_vcards[U] == update


def test_buddy_changes_are_confirmed_and_status_and_logout_accepted() -> None:
    plugin, transport, _ = start()
    login(plugin, transport)
    (confirm,) = feed(
        plugin, transport, W.TYPE_BUDDY_CHANGED, pb.Buddy(userName=U, buddyName="bob", alias="Bobby", group=["G"])
    )
    payload: Any = confirm.payload
    assert (payload.buddyName, payload.alias, list(payload.group)) == ("bob", "Bobby", ["G"])
    assert feed(plugin, transport, W.TYPE_BUDDY_REMOVED, pb.Buddy(userName=U, buddyName="bob")) == []
    assert (
        feed(plugin, transport, W.TYPE_STATUS_CHANGED, pb.Status(userName=U, status=pb.STATUS_AWAY, statusMessage="x"))
        == []
    )
    feed(plugin, transport, W.TYPE_JOIN_ROOM, pb.Room(userName=U, nickname="al", room="echo"))
    assert feed(plugin, transport, W.TYPE_LOGOUT, pb.Logout(user=U, legacyName="alice")) == []
    assert plugin.users == {} and plugin.rooms == {}


def test_avatar_is_a_valid_png() -> None:
    data = echo_avatar("echo", 16)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset = 8
    chunks = []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc
        chunks.append((kind, body))
        offset += 12 + length
    assert [k for k, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert (width, height) == (16, 16)
    assert len(zlib.decompress(chunks[1][1])) == 16 * (1 + 16 * 3)
