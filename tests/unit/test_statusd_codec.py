"""statusd commands: byte fixtures both ways, round-trips, login order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_chatd_codec import check_round_trip
from transport.chatd.wire import Auth, AuthResult, Command, Decoder, Error, ErrorCode, KeepAlive, Phase, Violation
from transport.statusd import codec
from transport.statusd.codec import CLIENT_COMMANDS, SERVER_COMMANDS, Hello, Pres, SetPres

CLIENT_FIXTURES = [
    (KeepAlive(), "00"),
    (Auth(7, b"\x01\x02"), "01" "0700000000000000" "0200" "0102"),
    (Hello(1, 0x04, 0), "02" "0100" "04" "00"),
    (Hello(0x0102, 0x83, 0), "02" "0201" "83" "00"),
    (SetPres(0x05), "04" "05"),
    (SetPres(0x82), "04" "82"),
]

SERVER_FIXTURES = [
    (KeepAlive(), "00"),
    (AuthResult(0), "0100"),
    (Pres(0x0102030405060708, 4), "03" "0807060504030201" "04"),
    (Pres(0, 5), "03" "0000000000000000" "05"),
    (Error(3, b"AUTH"), "ff" "03" "0400" "41555448"),
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


def test_every_opcode_has_a_fixture() -> None:
    assert {type(c) for c, _ in CLIENT_FIXTURES} == set(CLIENT_COMMANDS.values())
    assert {type(c) for c, _ in SERVER_FIXTURES} == set(SERVER_COMMANDS.values())


def test_presence_byte_msb_is_the_automatic_flag() -> None:
    assert SetPres.of(3, automatic=True).presence == 0x83
    assert SetPres(0x83).value == 3 and SetPres(0x83).automatic
    assert SetPres(0x03).value == 3 and not SetPres(0x03).automatic
    assert Hello(1, 0x85).value == 5 and Hello(1, 0x85).automatic


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_round_trip_client_to_server(data: st.DataObject) -> None:
    check_round_trip(CLIENT_COMMANDS, data)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_round_trip_server_to_client(data: st.DataObject) -> None:
    check_round_trip(SERVER_COMMANDS, data)


def test_login_order() -> None:
    conn = codec.server_connection(1000)
    events = conn.receive_data(Auth(1, b"t").encode() + Hello(1, 4).encode() + SetPres(3).encode())
    assert events == [Auth(1, b"t"), Hello(1, 4), SetPres(3)]
    assert conn.phase is Phase.READY


def test_setpres_before_hello_is_fatal() -> None:
    conn = codec.server_connection(1000)
    events = conn.receive_data(Auth(1, b"t").encode() + SetPres(3).encode())
    assert events[-1] == Violation(ErrorCode.STATE, "HELLO must follow AUTH", fatal=True)


def test_chatd_opcodes_are_unknown_to_statusd() -> None:
    conn = codec.server_connection(1000)
    events = conn.receive_data(Auth(1, b"t").encode() + Hello(1, 4).encode() + b"\x05")
    assert events[-1] == Violation(ErrorCode.PROTOCOL, "unknown opcode 5", fatal=True)
