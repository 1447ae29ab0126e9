"""The sans-I/O multiplexer: id allocation, requests and answers, EOF, beacons, hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transport.mux import codec
from transport.mux import multiplexer as m
from transport.mux.multiplexer import Multiplexer, State


def pair() -> tuple[Multiplexer, Multiplexer]:
    client, server = Multiplexer(is_client=True), Multiplexer(is_client=False)
    assert server.receive_data(client.initiate()) == [m.VersionReceived(1)]
    assert client.receive_data(server.initiate()) == [m.VersionReceived(1)]
    return client, server


def open_channel(a: Multiplexer, b: Multiplexer, name: str = "x") -> int:
    cid, req = a.request_channel(name)
    assert b.receive_data(req) == [m.ChannelRequested(cid, name)]
    assert a.receive_data(b.accept(cid)) == [m.ChannelAccepted(cid, name)]
    return cid


def test_ids_by_side() -> None:
    client, server = pair()
    assert [open_channel(client, server) for _ in range(3)] == [1, 2, 3]
    assert [open_channel(server, client) for _ in range(2)] == [0x8000, 0x8001]


def test_request_answer_fixture_and_open_state() -> None:
    client, server = pair()
    cid, req = client.request_channel("git://x")
    assert req == codec.encode_request("git://x", 1, codec.REQUEST)
    assert client.state(cid) is State.REQUESTED_OUT
    server.receive_data(req)
    assert server.state(cid) is State.REQUESTED_IN
    ans = server.accept(cid)
    assert ans == codec.encode_request("git://x", 1, codec.ACCEPT)  # the answer repeats name and id
    assert server.state(cid) is State.OPEN
    client.receive_data(ans)
    assert client.state(cid) is State.OPEN


def test_decline_frees_the_id_and_other_channels_carry_on() -> None:
    client, server = pair()
    kept = open_channel(client, server, "kept")
    cid, req = client.request_channel("refused")
    server.receive_data(req)
    assert client.receive_data(server.decline(cid)) == [m.ChannelDeclined(cid, "refused")]
    assert client.state(cid) is None and server.state(cid) is None
    assert server.receive_data(client.send(kept, b"still")) == [m.DataReceived(kept, b"still")]
    assert open_channel(client, server) == cid  # the declined id is free again


def test_unknown_state_counts_as_decline() -> None:
    client, _ = pair()
    cid, _req = client.request_channel("x")
    odd = codec.encode_data(codec.CONTROL_CHANNEL, __import__("msgpack").packb(["x", cid, 7]))
    assert client.receive_data(odd) == [m.ChannelDeclined(cid, "x")]


def test_reserved_and_busy_ids_are_declined_by_the_protocol() -> None:
    client, server = pair()
    cid = open_channel(client, server)
    for bad in (0, 0xFFFF, cid):
        events = server.receive_data(codec.encode_request("evil", bad, codec.REQUEST))
        assert isinstance(events[0], m.ChannelRefused)
        assert server.data_to_send() == codec.encode_request("evil", bad, codec.DECLINE)
    assert server.state(cid) is State.OPEN  # the existing channel is untouched


def test_allocation_skips_ids_in_use_and_reuses_lowest() -> None:
    client, server = pair()
    # the server opens a channel whose id lies in the client's range: the client must skip it
    server_mux_req = codec.encode_request("theirs", 2, codec.REQUEST)
    client.receive_data(server_mux_req)
    client.accept(2)
    ids = [client.request_channel("c")[0] for _ in range(3)]
    assert ids == [1, 3, 4]
    for cid in ids:
        server.receive_data(codec.encode_request("c", cid, codec.REQUEST))
    # close 3 and 1 (both sides' EOF), then the lowest comes back first
    for cid in (3, 1):
        server.accept(cid)
        client._channels[cid].state = State.OPEN
        server.receive_data(client.send_eof(cid))
        client.receive_data(server.data_to_send())
        assert client.state(cid) is None
    assert client.request_channel("again")[0] == 1
    assert client.request_channel("again")[0] == 3
    assert client.request_channel("again")[0] == 5


def test_channel_limit() -> None:
    client = Multiplexer(is_client=True)
    for _ in range(m.MAX_CHANNELS):
        client.request_channel("x")
    assert client.channels_in_use == 65534
    with pytest.raises(m.ChannelLimitReached):
        client.request_channel("one too many")
    assert 0 not in client._channels and 0xFFFF not in client._channels


def test_eof_both_ways_and_data_before_eof_is_delivered() -> None:
    client, server = pair()
    cid = open_channel(client, server)
    wire = client.send(cid, b"last words") + client.send_eof(cid)
    assert client.state(cid) is State.CLOSING
    assert client.send(cid, b"after eof") == b""
    assert server.receive_data(wire) == [m.DataReceived(cid, b"last words"), m.ChannelClosed(cid)]
    reply = server.data_to_send()
    assert reply == codec.encode_eof(cid)
    assert server.state(cid) is None
    assert client.receive_data(reply) == [m.ChannelClosed(cid)]
    assert client.state(cid) is None
    # and from the server's side
    cid2 = open_channel(client, server)
    assert client.receive_data(server.send_eof(cid2)) == [m.ChannelClosed(cid2)]
    assert server.receive_data(client.data_to_send()) == [m.ChannelClosed(cid2)]


def test_unknown_channel_data_is_dropped_and_counted() -> None:
    client, server = pair()
    assert server.receive_data(codec.encode_frame(42, b"zzz")) == [m.UnknownChannelData(42, 3)]
    assert server.unknown_frames == 1 and server.unknown_bytes == 3
    # data for a channel still waiting for the application's answer is not delivered
    cid, req = client.request_channel("x")
    server.receive_data(req)
    assert server.receive_data(codec.encode_frame(cid, b"early")) == [m.UnknownChannelData(cid, 5)]


def test_beacons() -> None:
    client, server = pair()
    req = client.send_beacon()
    assert client.beacon_outstanding
    assert server.receive_data(req) == [m.BeaconRequested()]
    answer = server.data_to_send()
    assert answer == codec.encode_beacon(False)
    assert client.receive_data(answer) == [m.BeaconAnswered()]
    assert not client.beacon_outstanding


def test_unexpected_answers_are_ignored() -> None:
    client, server = pair()
    assert client.receive_data(codec.encode_request("x", 9, codec.ACCEPT)) == [m.UnexpectedAnswer(9, "x", 1)]
    assert client.state(9) is None


@pytest.mark.parametrize("body", [b"\xc1", b"\x92\x01\x02", b"\x93\x01\x02\x03",
                                  b"\x81\x92\x01\x02\x01"])  # the last: a map with an array as key
def test_broken_control_messages_raise(body: bytes) -> None:
    _, server = pair()
    with pytest.raises(codec.MuxProtocolError):
        server.receive_data(codec.encode_frame(codec.CONTROL_CHANNEL, body))


def test_broken_protocol_message_raises() -> None:
    _, server = pair()
    with pytest.raises(codec.MuxProtocolError):
        server.receive_data(codec.encode_frame(codec.PROTOCOL_CHANNEL, b"\x01"))
    _, server = pair()
    with pytest.raises(codec.MuxProtocolError):  # an unhashable map key: not a TypeError out of dataReceived
        server.receive_data(codec.encode_frame(codec.PROTOCOL_CHANNEL, b"\x81\x81\x01\x02\x03"))


@settings(max_examples=60)
@given(st.binary(max_size=2000))
def test_garbage_never_crashes_unexpectedly(data: bytes) -> None:
    _, server = pair()
    try:
        server.receive_data(data)
    except codec.MuxProtocolError:
        pass
    assert server._decoder.buffered <= codec.HEADER_SIZE + codec.MAX_BODY


def test_server_range_wraps_past_0xfffe_to_the_client_range() -> None:
    server = Multiplexer(is_client=False)
    ids = [server.request_channel("s")[0] for _ in range(0x8000 - 1)]
    assert ids[0] == 0x8000 and ids[-1] == 0xFFFE
    assert 0xFFFF not in ids
    assert server.request_channel("wrapped")[0] == 1
