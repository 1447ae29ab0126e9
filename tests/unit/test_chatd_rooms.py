"""chatd's hub without sockets: routing, JOIN rights, the in-call flag on a task.Clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from transport.chatd.codec import (
    JOIN_NO_SUCH_ROOM,
    JOIN_NOT_A_MEMBER,
    JOIN_OK,
    SERVER_COMMANDS,
    InCall,
    InCallFlag,
    JoinResult,
    Left,
    RtMsg,
    RtMsgDelivery,
)
from transport.chatd.directory import Directory, DirectoryView
from transport.chatd.rooms import ChatClient, ChatHub
from transport.chatd.store import RoomRecord, Snapshot
from transport.chatd.wire import Command, Decoder, ErrorCode


def view(rooms: dict[int, tuple[bool, set[int]]], generation: int = 1) -> DirectoryView:
    records = {c: RoomRecord(c, f"room {c}", is_open, frozenset(members)) for c, (is_open, members) in rooms.items()}
    return DirectoryView(Snapshot(generation, records, {}))


def make_hub(rooms: dict[int, tuple[bool, set[int]]], call_timeout: float = 10.0) -> tuple[ChatHub, Clock]:
    clock = Clock()
    directory = Directory(None, clock, refresh_interval=0)  # type: ignore[arg-type]  # the view is set directly
    directory.view = view(rooms)
    return ChatHub(directory, clock, call_timeout), clock


class Inbox:
    def __init__(self) -> None:
        self.decoder = Decoder(SERVER_COMMANDS)
        self.items: list[Command] = []

    def __call__(self, data: bytes) -> None:
        self.items += self.decoder.feed(data)  # type: ignore[arg-type]

    def take(self) -> list[Command]:
        items, self.items = self.items, []
        return items


def connect(hub: ChatHub, userid: int) -> tuple[ChatClient, Inbox]:
    inbox = Inbox()
    return hub.connect(userid, inbox), inbox


def test_join_rights() -> None:
    hub, _ = make_hub({1: (False, {10}), 2: (True, set())})
    client, inbox = connect(hub, 11)
    hub.join(client, 1)
    hub.join(client, 2)
    hub.join(client, 3)
    assert inbox.take() == [JoinResult(1, JOIN_NOT_A_MEMBER), JoinResult(2, JOIN_OK), InCallFlag(2, 0),
                            JoinResult(3, JOIN_NO_SUCH_ROOM)]


def test_addressing_modes_and_sender_rule() -> None:
    hub, _ = make_hub({1: (False, {10, 20, 30})})
    clients = {}
    for userid in (10, 20, 30):
        for n in (1, 2):
            c, box = connect(hub, userid)
            hub.join(c, 1)
            box.take()
            clients[(userid, n)] = (c, box)
    sender, _ = clients[(10, 1)]

    def receivers() -> set[tuple[int, int]]:
        got = set()
        for key, (_, box) in clients.items():
            items = box.take()
            if items:
                assert items == [RtMsgDelivery(1, 10, sender.client_id, 0x9C, b"m")]
                got.add(key)
        return got

    assert hub.rtmsg(sender, RtMsg(1, 0, 0, 0x9C, b"m")) is None
    assert receivers() == set(clients)  # everyone, the sender too
    assert hub.rtmsg(sender, RtMsg(1, 20, 0, 0x9C, b"m")) is None
    assert receivers() == {(20, 1), (20, 2)}
    assert hub.rtmsg(sender, RtMsg(1, 10, 0, 0x9C, b"m")) is None
    assert receivers() == {(10, 1), (10, 2)}
    target = clients[(30, 2)][0]
    assert hub.rtmsg(sender, RtMsg(1, 30, target.client_id, 0x9C, b"m")) is None
    assert receivers() == {(30, 2)}
    assert hub.rtmsg(sender, RtMsg(1, 10, sender.client_id, 0x9C, b"m")) is None
    assert receivers() == set()  # addressed itself by client: excluded


def test_refusals() -> None:
    hub, _ = make_hub({1: (False, {10, 20, 30}), 2: (False, {10})})
    a, _ = connect(hub, 10)
    b, _ = connect(hub, 20)
    c, cbox = connect(hub, 30)
    hub.join(a, 1)
    hub.join(b, 1)
    cbox.take()
    assert hub.rtmsg(a, RtMsg(1, 30, 0, 0, b"")).code == ErrorCode.NOT_IN_ROOM  # type: ignore[union-attr]
    assert hub.rtmsg(a, RtMsg(1, 99, 0, 0, b"")).code == ErrorCode.NOT_IN_ROOM  # type: ignore[union-attr]
    assert hub.rtmsg(a, RtMsg(1, 20, c.client_id, 0, b"")).code == ErrorCode.NOT_IN_ROOM  # type: ignore[union-attr]
    assert hub.rtmsg(a, RtMsg(1, 0, 5, 0, b"")).code == ErrorCode.BAD_VALUE  # type: ignore[union-attr]
    assert hub.rtmsg(a, RtMsg(2, 0, 0, 0, b"")).code == ErrorCode.NOT_JOINED  # type: ignore[union-attr]
    assert hub.rtmsg(c, RtMsg(1, 0, 0, 0, b"")).code == ErrorCode.NOT_JOINED  # type: ignore[union-attr]
    assert cbox.take() == []


def in_call_room(call_timeout: float = 10.0) -> tuple[ChatHub, Clock, dict[str, tuple[ChatClient, Inbox]]]:
    hub, clock = make_hub({1: (False, {10, 20, 30, 40})}, call_timeout)
    named = {}
    for name, userid in (("a1", 10), ("a2", 10), ("b", 20), ("c", 30)):
        client, box = connect(hub, userid)
        hub.join(client, 1)
        box.take()
        named[name] = (client, box)
    return hub, clock, named


def flags(named: dict[str, tuple[ChatClient, Inbox]]) -> dict[str, list[Command]]:
    return {name: box.take() for name, (_, box) in named.items()}


def test_one_user_in_a_call_is_not_a_call() -> None:
    hub, clock, named = in_call_room()
    hub.in_call(named["a1"][0], InCall(1, 1))
    hub.in_call(named["a2"][0], InCall(1, 1))  # the same user on another device
    for _ in range(10):
        clock.advance(3)
        hub.in_call(named["a1"][0], InCall(1, 1))
    assert flags(named) == {name: [] for name in named}
    assert hub.rooms[1].flag == 0


def test_two_users_set_the_flag_once_and_a_missed_heartbeat_clears_it() -> None:
    hub, clock, named = in_call_room(call_timeout=10)
    hub.in_call(named["a1"][0], InCall(1, 1))
    hub.in_call(named["b"][0], InCall(1, 1))
    assert flags(named) == {name: [InCallFlag(1, 1)] for name in named}
    hub.in_call(named["c"][0], InCall(1, 1))  # a third user: no change, no broadcast
    for _ in range(5):
        clock.advance(4)
        for name in ("a1", "b"):
            hub.in_call(named[name][0], InCall(1, 1))
    assert flags(named) == {name: [] for name in named}
    # c stopped long ago (expired, flag unchanged: a and b remain). Now b stops too.
    for _ in range(2):
        clock.advance(4)
        hub.in_call(named["a1"][0], InCall(1, 1))
    assert flags(named) == {name: [] for name in named}
    clock.advance(3)  # b's last heartbeat is now 11 s old
    assert flags(named) == {name: [InCallFlag(1, 0)] for name in named}


def test_status_zero_and_disconnect_end_the_call() -> None:
    hub, clock, named = in_call_room()
    hub.in_call(named["a1"][0], InCall(1, 1))
    hub.in_call(named["b"][0], InCall(1, 1))
    flags(named)
    hub.in_call(named["b"][0], InCall(1, 0))
    assert flags(named) == {name: [InCallFlag(1, 0)] for name in named}
    hub.in_call(named["b"][0], InCall(1, 1))
    flags(named)
    hub.disconnect(named["b"][0])
    assert flags(named) == {"a1": [InCallFlag(1, 0)], "a2": [InCallFlag(1, 0)], "b": [], "c": [InCallFlag(1, 0)]}
    assert list(hub.rooms[1].calls) == [named["a1"][0]]
    assert len([d for d in clock.getDelayedCalls() if d.active()]) == 1


def test_late_joiner_gets_the_current_flag() -> None:
    hub, _, named = in_call_room()
    hub.in_call(named["a1"][0], InCall(1, 1))
    hub.in_call(named["b"][0], InCall(1, 1))
    late, box = connect(hub, 40)
    hub.join(late, 1)
    assert box.take() == [JoinResult(1, JOIN_OK), InCallFlag(1, 1)]


def test_bad_status_and_not_joined() -> None:
    hub, _, named = in_call_room()
    assert hub.in_call(named["a1"][0], InCall(1, 2)).code == ErrorCode.BAD_VALUE  # type: ignore[union-attr]
    assert hub.in_call(named["a1"][0], InCall(9, 1)).code == ErrorCode.NOT_JOINED  # type: ignore[union-attr]


def test_leave_and_disconnect_forget_the_client() -> None:
    hub, _, named = in_call_room()
    a1, box = named["a1"]
    hub.leave(a1, 1)
    assert box.take() == [Left(1)]
    assert a1.client_id not in {c.client_id for c in hub.rooms[1].clients()}
    for client, _ in named.values():
        hub.disconnect(client)
    assert hub.rooms == {} and hub.clients == {} and len(hub.ids) == 0


def test_losing_membership_makes_the_client_leave() -> None:
    hub, _, named = in_call_room()
    old = hub.directory.view
    new = view({1: (False, {10, 30, 40})}, generation=2)
    hub.directory.view = new
    hub.directory_changed(old, new)
    assert named["b"][1].take() == [Left(1)]
    assert named["a1"][1].take() == []
    assert 20 not in hub.rooms[1].by_user
