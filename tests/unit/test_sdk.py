"""The SDK's NetworkPlugin with a StringTransport and a task.Clock: keep-alive, exit rules, dispatch, sending."""

from __future__ import annotations

import os
from typing import Any

import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from transport.backend import transport_pb2 as pb
from transport.backend.codec import FrameDecoder, Packet, encode
from transport.config import ConfigError
from transport.sdk import (
    MISSED_PINGS_LIMIT,
    BackendConfigFile,
    MemoryUsage,
    NetworkPlugin,
    Shutdown,
    memory_usage,
    parse_arguments,
)

W = pb.WrapperMessage
U = "alice@example.org"


class Recorder(NetworkPlugin):
    """Records every handler call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, object]] = []

    def _record(self, name: str, payload: object = None) -> None:
        self.calls.append((name, payload))

    def handle_login(self, login: pb.Login) -> None:
        self._record("login", login)

    def handle_logout(self, logout: pb.Logout) -> None:
        self._record("logout", logout)

    def handle_message(self, message: pb.ConversationMessage) -> None:
        self._record("message", message)

    def handle_buddy_changed(self, buddy: pb.Buddy) -> None:
        self._record("buddy_changed", buddy)

    def handle_buddy_removed(self, buddy: pb.Buddy) -> None:
        self._record("buddy_removed", buddy)

    def handle_join_room(self, room: pb.Room) -> None:
        self._record("join_room", room)

    def handle_leave_room(self, room: pb.Room) -> None:
        self._record("leave_room", room)

    def handle_status_changed(self, status: pb.Status) -> None:
        self._record("status_changed", status)

    def handle_vcard_request(self, vcard: pb.VCard) -> None:
        self._record("vcard_request", vcard)

    def handle_vcard_update(self, vcard: pb.VCard) -> None:
        self._record("vcard_update", vcard)

    def handle_typing(self, buddy: pb.Buddy) -> None:
        self._record("typing", buddy)

    def handle_typed(self, buddy: pb.Buddy) -> None:
        self._record("typed", buddy)

    def handle_stopped_typing(self, buddy: pb.Buddy) -> None:
        self._record("stopped_typing", buddy)

    def handle_attention(self, message: pb.ConversationMessage) -> None:
        self._record("attention", message)

    def handle_room_subject(self, message: pb.ConversationMessage) -> None:
        self._record("room_subject", message)

    def handle_raw_xml(self, xml: str) -> None:
        self._record("raw_xml", xml)

    def handle_buddies(self, buddies: pb.Buddies) -> None:
        self._record("buddies", buddies)


def connect(cls: type[NetworkPlugin] = Recorder, config: str = "") -> tuple[Any, StringTransport, Clock]:
    clock = Clock()
    plugin = cls(BackendConfigFile.from_text(config), clock=clock, initial_memory=MemoryUsage(1000, 10))
    transport = StringTransport()
    plugin.makeConnection(transport)
    return plugin, transport, clock


def sent(transport: StringTransport) -> list[Packet]:
    packets = FrameDecoder().feed(transport.value())
    transport.clear()
    return packets


def lose(plugin: NetworkPlugin) -> None:
    plugin.connectionLost(Failure(ConnectionDone()))


def outcome(plugin: NetworkPlugin) -> Shutdown | None:
    results: list[Shutdown] = []

    def keep(value: Shutdown) -> Shutdown:
        results.append(value)
        return value

    plugin.stopped.addCallback(keep)
    return results[0] if results else None


# keep-alive and exit rules


def test_ping_is_answered_with_pong_then_stats() -> None:
    plugin, transport, _ = connect()
    plugin.dataReceived(encode(W.TYPE_PING))
    pong, stats = sent(transport)
    assert pong == Packet(W.TYPE_PONG)
    assert stats.type == W.TYPE_STATS
    payload: Any = stats.payload
    assert payload.id == str(os.getpid())
    assert payload.init_res == 1000
    assert payload.res > 0


def test_exit_stops_with_code_zero() -> None:
    plugin, transport, _ = connect()
    plugin.dataReceived(encode(W.TYPE_EXIT))
    assert transport.disconnecting
    assert outcome(plugin) is None  # not before the connection is really gone
    lose(plugin)
    result = outcome(plugin)
    assert result is not None and result.exit_code == 0 and "EXIT" in result.reason


def test_frames_after_exit_in_the_same_read_are_ignored() -> None:
    plugin, _, _ = connect()
    plugin.dataReceived(encode(W.TYPE_EXIT) + encode(W.TYPE_LOGIN, pb.Login(user=U, legacyName="a", password="")))
    assert plugin.calls == []


def test_eof_stops_with_code_zero() -> None:
    plugin, _, _ = connect()
    lose(plugin)
    result = outcome(plugin)
    assert result is not None and result.exit_code == 0 and "closed" in result.reason


def test_three_missed_pings_stop_the_backend() -> None:
    plugin, transport, clock = connect()
    interval = plugin.ping_interval
    assert interval == 20.0  # the default without a [service] ping_interval
    clock.advance(interval * MISSED_PINGS_LIMIT - 0.5)
    assert not transport.disconnecting
    clock.advance(1.0)
    assert transport.disconnecting
    lose(plugin)
    result = outcome(plugin)
    assert result is not None and result.exit_code == 1 and "ping timeout" in result.reason


def test_pings_keep_the_backend_alive() -> None:
    plugin, transport, clock = connect(config="[service]\nping_interval = 2\n")
    assert plugin.ping_interval == 2.0
    for _ in range(20):
        clock.advance(5.9)  # just under 3 intervals each time
        plugin.dataReceived(encode(W.TYPE_PING))
    assert not transport.disconnecting
    assert plugin.pings_received == 20
    clock.advance(6.1)
    assert transport.disconnecting


def test_other_traffic_does_not_count_as_a_ping() -> None:
    plugin, transport, clock = connect(config="[service]\nping_interval = 1\n")
    for _ in range(4):
        clock.advance(1)
        plugin.dataReceived(encode(W.TYPE_BUDDY_TYPING, pb.Buddy(userName=U, buddyName="b")))
    assert transport.disconnecting


def test_watchdog_is_cancelled_when_the_connection_goes() -> None:
    plugin, _, clock = connect()
    lose(plugin)
    assert clock.getDelayedCalls() == []


def test_oversized_frame_stops_the_backend() -> None:
    plugin, transport, _ = connect(config="[service]\nmax_frame_size = 1 KiB\n")
    plugin.dataReceived(b"\x00\x10\x00\x00")
    assert transport.disconnecting
    lose(plugin)
    result = outcome(plugin)
    assert result is not None and result.exit_code == 1


def test_garbage_frames_are_skipped() -> None:
    plugin, transport, _ = connect()
    plugin.dataReceived(b"\x00\x00\x00\x02\xff\xff" + encode(W.TYPE_PING))
    assert [p.type for p in sent(transport)] == [W.TYPE_PONG, W.TYPE_STATS]
    assert plugin.decoder.skipped == 1
    assert not transport.disconnecting


# dispatch

M_TO_B = [
    (W.TYPE_LOGIN, pb.Login(user=U, legacyName="alice", password="pw"), "login"),
    (W.TYPE_LOGOUT, pb.Logout(user=U, legacyName="alice"), "logout"),
    (W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=U, buddyName="b", message="m", id="1"), "message"),
    (W.TYPE_BUDDY_CHANGED, pb.Buddy(userName=U, buddyName="b", alias="B"), "buddy_changed"),
    (W.TYPE_BUDDY_REMOVED, pb.Buddy(userName=U, buddyName="b"), "buddy_removed"),
    (W.TYPE_JOIN_ROOM, pb.Room(userName=U, nickname="n", room="r"), "join_room"),
    (W.TYPE_LEAVE_ROOM, pb.Room(userName=U, nickname="n", room="r"), "leave_room"),
    (W.TYPE_STATUS_CHANGED, pb.Status(userName=U, status=pb.STATUS_AWAY), "status_changed"),
    (W.TYPE_VCARD, pb.VCard(userName=U, buddyName="b", id=3), "vcard_request"),
    (W.TYPE_VCARD, pb.VCard(userName=U, buddyName="", id=0, nickname="me"), "vcard_update"),
    (W.TYPE_BUDDY_TYPING, pb.Buddy(userName=U, buddyName="b"), "typing"),
    (W.TYPE_BUDDY_TYPED, pb.Buddy(userName=U, buddyName="b"), "typed"),
    (W.TYPE_BUDDY_STOPPED_TYPING, pb.Buddy(userName=U, buddyName="b"), "stopped_typing"),
    (W.TYPE_ATTENTION, pb.ConversationMessage(userName=U, buddyName="b", message=""), "attention"),
    (W.TYPE_ROOM_SUBJECT_CHANGED, pb.ConversationMessage(userName=U, buddyName="r", message="s"), "room_subject"),
    (W.TYPE_RAW_XML, "<presence/>", "raw_xml"),
    (W.TYPE_BUDDIES, pb.Buddies(buddy=[pb.Buddy(userName=U, buddyName="b")]), "buddies"),
]


@pytest.mark.parametrize(("type_", "payload", "handler"), M_TO_B, ids=[h for _, _, h in M_TO_B])
def test_each_message_reaches_its_handler(type_: int, payload: object, handler: str) -> None:
    plugin, transport, _ = connect()
    plugin.dataReceived(encode(type_, payload))  # type: ignore[arg-type]
    assert plugin.calls == [(handler, payload)]
    assert sent(transport) == []


def test_file_transfer_and_unknown_packets_are_ignored() -> None:
    plugin, transport, _ = connect()
    ft = pb.File(userName=U, buddyName="b", fileName="f", size=1)
    for t in (W.TYPE_FT_START, W.TYPE_FT_FINISH, W.TYPE_FT_PAUSE, W.TYPE_FT_CONTINUE):
        plugin.dataReceived(encode(t, ft))
    plugin.dataReceived(encode(W.TYPE_FT_DATA, pb.FileTransferData(ftID=1, data=b"x")))
    plugin.dataReceived(encode(W.TYPE_QUERY, pb.BackendConfig(config="status")))
    plugin.dataReceived(encode(W.TYPE_API_VERSION, pb.APIVersion(version=1)))
    plugin.dispatch(Packet(99))
    assert plugin.calls == []
    assert sent(transport) == []
    assert not transport.disconnecting


def test_a_failing_handler_does_not_stop_the_backend() -> None:
    class Broken(Recorder):
        def handle_message(self, message: pb.ConversationMessage) -> None:
            raise RuntimeError("bug in the backend")

    plugin, transport, _ = connect(Broken)
    message = pb.ConversationMessage(userName=U, buddyName="b", message="m")
    plugin.dataReceived(encode(W.TYPE_CONV_MESSAGE, message) + encode(W.TYPE_PING))
    assert [p.type for p in sent(transport)] == [W.TYPE_PONG, W.TYPE_STATS]
    assert not transport.disconnecting


def test_default_login_refuses() -> None:
    plugin, transport, _ = connect(NetworkPlugin)
    plugin.dataReceived(encode(W.TYPE_LOGIN, pb.Login(user=U, legacyName="a", password="")))
    (answer,) = sent(transport)
    assert answer.type == W.TYPE_DISCONNECTED
    assert answer.payload == pb.Disconnected(
        user=U, error=pb.CONNECTION_ERROR_OTHER_ERROR, message="login not implemented"
    )


# sending

SENDS = [
    ("send_connected", (U,), {}, W.TYPE_CONNECTED, pb.Connected(user=U)),
    (
        "send_disconnected",
        (U, pb.CONNECTION_ERROR_NETWORK_ERROR, "gone"),
        {},
        W.TYPE_DISCONNECTED,
        pb.Disconnected(user=U, error=0, message="gone"),
    ),
    (
        "send_buddy_changed",
        (U, "bob"),
        {
            "alias": "Bob",
            "groups": ["G"],
            "status": pb.STATUS_ONLINE,
            "status_message": "hi",
            "icon_hash": "h",
            "blocked": False,
        },
        W.TYPE_BUDDY_CHANGED,
        pb.Buddy(
            userName=U,
            buddyName="bob",
            alias="Bob",
            group=["G"],
            status=pb.STATUS_ONLINE,
            statusMessage="hi",
            iconHash="h",
            blocked=False,
        ),
    ),
    ("send_buddy_removed", (U, "bob"), {}, W.TYPE_BUDDY_REMOVED, pb.Buddy(userName=U, buddyName="bob")),
    ("send_auth_request", (U, "bob"), {}, W.TYPE_AUTH_REQUEST, pb.Buddy(userName=U, buddyName="bob")),
    (
        "send_message",
        (U, "bob", "hello"),
        {
            "xhtml": "<p>hello</p>",
            "timestamp": "20260101T000000",
            "id": "7",
            "carbon": True,
            "attachments": [{"url": "u", "mimeType": "image/png"}],
        },
        W.TYPE_CONV_MESSAGE,
        pb.ConversationMessage(
            userName=U,
            buddyName="bob",
            message="hello",
            xhtml="<p>hello</p>",
            timestamp="20260101T000000",
            id="7",
            carbon=True,
            attachment=[pb.Attachment(url="u", mimeType="image/png")],
        ),
    ),
    (
        "send_room_message",
        (U, "#r", "carol", "hey"),
        {"pm": False},
        W.TYPE_CONV_MESSAGE,
        pb.ConversationMessage(userName=U, buddyName="#r", message="hey", nickname="carol", pm=False),
    ),
    (
        "send_message_ack",
        (U, "bob", "7"),
        {},
        W.TYPE_CONV_MESSAGE_ACK,
        pb.ConversationMessage(userName=U, buddyName="bob", message="", id="7"),
    ),
    (
        "send_attention",
        (U, "bob", "hey"),
        {},
        W.TYPE_ATTENTION,
        pb.ConversationMessage(userName=U, buddyName="bob", message="hey"),
    ),
    ("send_typing", (U, "bob"), {}, W.TYPE_BUDDY_TYPING, pb.Buddy(userName=U, buddyName="bob")),
    ("send_typed", (U, "bob"), {}, W.TYPE_BUDDY_TYPED, pb.Buddy(userName=U, buddyName="bob")),
    ("send_stopped_typing", (U, "bob"), {}, W.TYPE_BUDDY_STOPPED_TYPING, pb.Buddy(userName=U, buddyName="bob")),
    (
        "send_participant_changed",
        (U, "#r", "carol"),
        {
            "flag": pb.PARTICIPANT_FLAG_MODERATOR,
            "status": pb.STATUS_AWAY,
            "status_message": "s",
            "newname": "c2",
            "icon_hash": "i",
            "alias": "C",
        },
        W.TYPE_PARTICIPANT_CHANGED,
        pb.Participant(
            userName=U,
            room="#r",
            nickname="carol",
            flag=1,
            status=pb.STATUS_AWAY,
            statusMessage="s",
            newname="c2",
            iconHash="i",
            alias="C",
        ),
    ),
    (
        "send_room_nickname_changed",
        (U, "#r", "al"),
        {},
        W.TYPE_ROOM_NICKNAME_CHANGED,
        pb.Room(userName=U, room="#r", nickname="al"),
    ),
    (
        "send_room_subject_changed",
        (U, "#r", "topic", "carol"),
        {},
        W.TYPE_ROOM_SUBJECT_CHANGED,
        pb.ConversationMessage(userName=U, buddyName="#r", message="topic", nickname="carol"),
    ),
    (
        "send_vcard",
        (U, "bob", 5),
        {"fullname": "Bob", "nickname": "b", "photo": b"\x89PNG"},
        W.TYPE_VCARD,
        pb.VCard(userName=U, buddyName="bob", id=5, fullname="Bob", nickname="b", photo=b"\x89PNG"),
    ),
    (
        "send_backend_config",
        ("[features]\nmuc=1\n",),
        {},
        W.TYPE_BACKEND_CONFIG,
        pb.BackendConfig(config="[features]\nmuc=1\n"),
    ),
    (
        "send_room_list",
        (["#a", "#b"], ["A", "B"], U),
        {},
        W.TYPE_ROOM_LIST,
        pb.RoomList(room=["#a", "#b"], name=["A", "B"], user=U),
    ),
    ("send_room_list", (["#a"],), {}, W.TYPE_ROOM_LIST, pb.RoomList(room=["#a"], name=["#a"])),
    ("send_raw_xml", ("<presence/>",), {}, W.TYPE_RAW_XML, "<presence/>"),
    ("send_api_version", (1,), {}, W.TYPE_API_VERSION, pb.APIVersion(version=1)),
    ("send_pong", (), {}, W.TYPE_PONG, None),
]


@pytest.mark.parametrize(("method", "args", "kwargs", "type_", "payload"), SENDS, ids=[s[0] for s in SENDS])
def test_send_methods(
    method: str, args: tuple[object, ...], kwargs: dict[str, object], type_: int, payload: object
) -> None:
    plugin, transport, _ = connect()
    getattr(plugin, method)(*args, **kwargs)
    assert sent(transport) == [Packet(type_, payload)]  # type: ignore[arg-type]


def test_backend_config_from_a_mapping() -> None:
    plugin, transport, _ = connect()
    plugin.send_backend_config({"features": {"muc": True, "receipts": 1}, "registration": {"needPassword": 0}})
    (packet,) = sent(transport)
    payload: Any = packet.payload
    parsed = BackendConfigFile.from_text(payload.config)
    assert parsed.section("features") == {"muc": "1", "receipts": "1"}
    assert parsed.get("registration", "needPassword") == "0"


def test_nothing_is_sent_once_stopping() -> None:
    plugin, transport, _ = connect()
    plugin.stop("test")
    plugin.send_connected(U)
    assert transport.value() == b""


# arguments, configuration, memory


def test_spectrum_command_line() -> None:
    args = parse_arguments(["--host", "localhost", "--port", "32453", "--service.backend_id=7", "/etc/t.cfg"])
    assert (args.host, args.port, args.backend_id, args.config_path) == ("localhost", 32453, "7", "/etc/t.cfg")


def test_command_line_tolerates_extra_options() -> None:
    args = parse_arguments(
        [
            "-j",
            "icq.example.org",
            "--unknown=1",
            "--host",
            "127.0.0.1",
            "--port",
            "5",
            "--service.backend_id=1",
            "--verbose",
            "t.cfg",
        ]
    )
    assert args.jid == "icq.example.org"
    assert args.port == 5 and args.verbose and args.config_path == "t.cfg"
    assert "--unknown=1" in args.extra


def test_seed_minimum_command_line() -> None:
    args = parse_arguments(["--host", "localhost", "--port", "32453"])
    assert args.config_path is None and args.backend_id == ""


def test_port_is_required() -> None:
    with pytest.raises(SystemExit):
        parse_arguments(["--host", "localhost"])


def test_backend_section_and_service_keys(tmp_path: Any) -> None:
    path = tmp_path / "t.ini"
    path.write_text(
        "[service]\nping_interval = 0.5\nmax_frame_size = 2 MiB\nunknown_spectrum_key = x\n"
        "[backend]\nserver = irc.example.org\nrooms = a, b\nrooms = c\nflood = 5\nsafe = yes\n"
    )
    config = BackendConfigFile.read(path)
    assert config.ping_interval == 0.5
    assert config.max_frame_size == 2 * 1024 * 1024
    assert config.backend["server"] == "irc.example.org"
    assert config.get_list("backend", "rooms") == ["a", "b", "c"]
    assert config.get_int("backend", "flood") == 5
    assert config.get_bool("backend", "safe") and not config.get_bool("backend", "missing")
    assert config.get("backend", "missing", "d") == "d"


def test_bad_service_value_names_the_file() -> None:
    config = BackendConfigFile.from_text("[service]\nping_interval = soon\n", "t.ini")
    with pytest.raises(ConfigError, match="t.ini"):
        _ = config.ping_interval


def test_memory_usage(tmp_path: Any) -> None:
    usage = memory_usage()
    assert usage.resident > 0 and usage.shared >= 0
    statm = tmp_path / "statm"
    statm.write_text("100 50 20 1 0 30 0\n")
    page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
    assert memory_usage(str(statm)) == MemoryUsage(50 * page_kib, 20 * page_kib)
    fallback = memory_usage(str(tmp_path / "missing"))
    assert fallback.resident > 0 and fallback.shared == 0


def test_optional_fields_are_absent_when_not_given_and_present_when_empty() -> None:
    """Spectrum 2 reads "no alias" (absent) and an empty one differently: None leaves a field unset."""
    plugin, transport, _ = connect()
    sent(transport)
    plugin.send_buddy_changed("u", "b", alias="", status=pb.STATUS_AWAY)
    plugin.send_message("u", "b", "hi", nickname="n")
    plugin.send_participant_changed("u", "#r", "n", newname="m")
    plugin.send_vcard("u", "b", 7, photo=b"")
    buddy, message, participant, vcard = (p.payload for p in sent(transport))
    assert buddy.HasField("alias") and buddy.HasField("status") and not buddy.HasField("statusMessage")
    assert not buddy.HasField("blocked") and not buddy.HasField("iconHash")
    assert message.nickname == "n" and not message.HasField("xhtml") and not message.HasField("id")
    assert participant.newname == "m" and not participant.HasField("alias")
    assert vcard.HasField("photo") and not vcard.HasField("fullname")
