"""chatd and the shared framing: byte fixtures for every command both ways, round-trips, bounds, login order."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transport.chatd import codec
from transport.chatd.codec import (
    CLIENT_COMMANDS,
    SERVER_COMMANDS,
    ClientId,
    Hello,
    InCall,
    InCallFlag,
    Join,
    JoinResult,
    Leave,
    Left,
    RtMsg,
    RtMsgDelivery,
)
from transport.chatd.rooms import ClientIdAllocator
from transport.chatd.wire import (
    Auth,
    AuthResult,
    Command,
    Decoder,
    Error,
    ErrorCode,
    KeepAlive,
    Oversized,
    Phase,
    UnknownOpcode,
    Violation,
)

CLIENT_FIXTURES = [
    (KeepAlive(), "00"),
    (Auth(0x0102030405060708, b"tok"), "01" "0807060504030201" "0300" "746f6b"),
    (Hello(1, 0), "02" "0100" "0000"),
    (Hello(0x0203, 0xFFFF), "02" "0302" "ffff"),
    (Join(0x1122334455667788), "03" "8877665544332211"),
    (Leave(5), "04" "0500000000000000"),
    (RtMsg(5, 2, 3, 0xAB, b"xy"), "05" "0500000000000000" "0200000000000000" "03000000" "ab" "020000" "7879"),
    (RtMsg(5, 0, 0, 0, b""), "05" "0500000000000000" "0000000000000000" "00000000" "00" "000000"),
    (InCall(5, 1), "06" "0500000000000000" "01"),
]

SERVER_FIXTURES = [
    (KeepAlive(), "00"),
    (AuthResult(0), "0100"),
    (AuthResult(1), "0101"),
    (ClientId(0x01020304), "02" "04030201"),
    (JoinResult(5, 0), "03" "0500000000000000" "00"),
    (JoinResult(5, 2), "03" "0500000000000000" "02"),
    (Left(5), "04" "0500000000000000"),
    (RtMsgDelivery(5, 2, 3, 0xAB, b"xy"), "05" "0500000000000000" "0200000000000000" "03000000" "ab" "020000" "7879"),
    (InCallFlag(5, 1), "06" "0500000000000000" "01"),
    (Error(2, b"too big"), "ff" "02" "0700" "746f6f20626967"),
]


@pytest.mark.parametrize(("command", "wire"), CLIENT_FIXTURES + SERVER_FIXTURES, ids=repr)
def test_encode_fixture(command: Command, wire: str) -> None:
    assert command.encode().hex() == wire


@pytest.mark.parametrize(("command", "wire"), CLIENT_FIXTURES, ids=repr)
def test_server_decodes_client_fixture(command: Command, wire: str) -> None:
    assert Decoder(CLIENT_COMMANDS).feed(bytes.fromhex(wire)) == [command]


@pytest.mark.parametrize(("command", "wire"), SERVER_FIXTURES, ids=repr)
def test_client_decodes_server_fixture(command: Command, wire: str) -> None:
    assert Decoder(SERVER_COMMANDS).feed(bytes.fromhex(wire)) == [command]


@pytest.mark.parametrize(("command", "wire"), CLIENT_FIXTURES + SERVER_FIXTURES, ids=repr)
def test_fixture_byte_by_byte(command: Command, wire: str) -> None:
    table = CLIENT_COMMANDS if (command, wire) in CLIENT_FIXTURES else SERVER_COMMANDS
    decoder = Decoder(table)
    out = []
    for byte in bytes.fromhex(wire):
        out += decoder.feed(bytes([byte]))
    assert out == [command]
    assert decoder.buffered == 0


def test_every_opcode_has_a_fixture() -> None:
    assert {type(c) for c, _ in CLIENT_FIXTURES} == set(CLIENT_COMMANDS.values())
    assert {type(c) for c, _ in SERVER_FIXTURES} == set(SERVER_COMMANDS.values())


def test_error_text_is_utf8_and_bounded() -> None:
    error = Error.of(ErrorCode.NOT_IN_ROOM, "é" * 40000)
    assert len(error.text_bytes) == 65535
    assert Error(1, b"\xff").text == "\ufffd"


def test_fields_are_checked() -> None:
    with pytest.raises(ValueError):
        Join(1 << 64)
    with pytest.raises(ValueError):
        RtMsg(1, 0, 0, 256, b"")
    with pytest.raises(ValueError):
        ClientId(-1)
    with pytest.raises(ValueError):
        RtMsg(1, 0, 0, 0, b"x" * (1 << 24))


# round trips -------------------------------------------------------------------------------------


def command_strategy(cls: type[Command]) -> st.SearchStrategy[Command]:
    names = [f.name for f in dataclasses.fields(cls)]
    parts: list[st.SearchStrategy[object]] = [st.integers(0, (1 << (8 * size)) - 1) for size in cls.FIELDS]
    if cls.LENGTH:
        parts.append(st.binary(max_size=300))
    assert len(parts) == len(names)
    return st.tuples(*parts).map(lambda values: cls(*values))


def commands_of(table: dict[int, type[Command]]) -> st.SearchStrategy[list[Command]]:
    return st.lists(st.one_of([command_strategy(cls) for cls in table.values()]), max_size=30)


def check_round_trip(table: dict[int, type[Command]], data: st.DataObject) -> None:
    commands = data.draw(commands_of(table))
    wire = b"".join(c.encode() for c in commands)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    decoder = Decoder(table, max_size=1000)
    out: list[object] = []
    start = 0
    for cut in cuts + [len(wire)]:
        out += decoder.feed(wire[start:cut])
        start = cut
    assert out == commands
    assert decoder.buffered == 0


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_round_trip_client_to_server(data: st.DataObject) -> None:
    check_round_trip(CLIENT_COMMANDS, data)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_round_trip_server_to_client(data: st.DataObject) -> None:
    check_round_trip(SERVER_COMMANDS, data)


# bounds ------------------------------------------------------------------------------------------


def test_oversized_payload_is_reported_and_skipped_across_chunks() -> None:
    decoder = Decoder(CLIENT_COMMANDS, max_size=100)
    big = RtMsg(1, 0, 0, 7, b"z" * 1000).encode()
    after = Join(9).encode()
    wire = big + after
    out: list[object] = []
    for i in range(0, len(wire), 64):
        out += decoder.feed(wire[i:i + 64])
        assert decoder.buffered <= RtMsg.HEAD + 100
    assert out == [Oversized(codec.OP_RTMSG, 1000), Join(9)]


def test_payload_at_the_limit_is_accepted() -> None:
    decoder = Decoder(CLIENT_COMMANDS, max_size=100)
    assert decoder.feed(RtMsg(1, 0, 0, 7, b"z" * 100).encode()) == [RtMsg(1, 0, 0, 7, b"z" * 100)]


def test_unknown_opcode_stops_decoding() -> None:
    decoder = Decoder(CLIENT_COMMANDS)
    assert decoder.feed(Join(1).encode() + b"\x07" + Join(2).encode()) == [Join(1), UnknownOpcode(7)]
    assert decoder.feed(Join(3).encode()) == []
    assert decoder.dead


def test_server_only_opcode_is_unknown_to_the_server() -> None:
    assert Decoder(CLIENT_COMMANDS).feed(b"\xff\x01\x00\x00") == [UnknownOpcode(255)]


# login order (ServerConnection) -------------------------------------------------------------------


def login() -> bytes:
    return Auth(1, b"t").encode() + Hello(1).encode()


def test_pipelined_login_then_commands() -> None:
    conn = codec.server_connection(1000)
    events = conn.receive_data(login() + Join(4).encode() + KeepAlive().encode())
    assert events == [Auth(1, b"t"), Hello(1), Join(4), KeepAlive()]
    assert conn.phase is Phase.READY


@pytest.mark.parametrize("first", [KeepAlive(), Hello(1), Join(3), RtMsg(1, 0, 0, 0, b"")], ids=repr)
def test_anything_but_auth_first_is_fatal(first: Command) -> None:
    conn = codec.server_connection(1000)
    events = conn.receive_data(first.encode() + login())
    assert len(events) == 1 and isinstance(events[0], Violation)
    assert events[0].code == ErrorCode.AUTH_REQUIRED and events[0].fatal
    assert conn.phase is Phase.CLOSED
    assert conn.receive_data(login()) == []


def test_commands_before_hello_are_fatal() -> None:
    conn = codec.server_connection(1000)
    events = conn.receive_data(Auth(1, b"t").encode() + KeepAlive().encode() + Join(3).encode())
    assert events[:2] == [Auth(1, b"t"), KeepAlive()]
    assert events[2] == Violation(ErrorCode.STATE, "HELLO must follow AUTH", fatal=True)


@pytest.mark.parametrize("again", [Hello(1), Auth(1, b"t")], ids=repr)
def test_repeated_login_commands_are_fatal(again: Command) -> None:
    conn = codec.server_connection(1000)
    events = conn.receive_data(login() + again.encode())
    assert isinstance(events[-1], Violation) and events[-1].fatal and events[-1].code == ErrorCode.STATE


def test_oversized_is_not_fatal() -> None:
    conn = codec.server_connection(100)
    events = conn.receive_data(login() + RtMsg(1, 0, 0, 0, b"q" * 101).encode() + Join(2).encode())
    assert isinstance(events[2], Violation) and events[2].code == ErrorCode.TOO_LARGE and not events[2].fatal
    assert events[3] == Join(2)
    assert conn.phase is Phase.READY


def test_unknown_opcode_is_fatal() -> None:
    conn = codec.server_connection(100)
    events = conn.receive_data(login() + b"\x42" + Join(2).encode())
    assert events[-1] == Violation(ErrorCode.PROTOCOL, "unknown opcode 66", fatal=True)


# client ids -----------------------------------------------------------------------------------------


def test_client_ids_start_at_one_and_increase() -> None:
    ids = ClientIdAllocator()
    assert [ids.allocate() for _ in range(3)] == [1, 2, 3]


def test_client_id_wraparound_skips_zero_and_ids_in_use() -> None:
    ids = ClientIdAllocator(start=1)
    first = [ids.allocate() for _ in range(3)]  # 1, 2, 3 stay in use
    ids.release(2)
    ids._next = 0xFFFFFFFE  # as after ~4 billion connections
    assert ids.allocate() == 0xFFFFFFFE
    assert ids.allocate() == 0xFFFFFFFF
    assert ids.allocate() == 2  # 0 skipped, 1 in use, 2 free again
    assert ids.allocate() == 4  # 3 in use
    assert first == [1, 2, 3]
    assert 0 not in ids._in_use
