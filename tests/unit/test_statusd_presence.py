"""statusd's hub without sockets: the dump, the draft's A/B example, who is told."""

from __future__ import annotations

from twisted.internet.task import Clock

from transport.chatd.directory import Directory, DirectoryView
from transport.chatd.store import RoomRecord, Snapshot
from transport.chatd.wire import Command, Decoder
from transport.core.presence import AWAY, DND, FREE_FOR_CHAT, ONLINE, XA
from transport.statusd.codec import SERVER_COMMANDS, Pres
from transport.statusd.server import PresenceHub, StatusClient


def view(rooms: dict[int, set[int]], contacts: dict[int, set[int]], generation: int = 1) -> DirectoryView:
    records = {c: RoomRecord(c, "", False, frozenset(m)) for c, m in rooms.items()}
    return DirectoryView(Snapshot(generation, records, {u: frozenset(c) for u, c in contacts.items()}))


def make_hub(rooms: dict[int, set[int]], contacts: dict[int, set[int]]) -> PresenceHub:
    directory = Directory(None, Clock(), refresh_interval=0)  # type: ignore[arg-type]  # the view is set directly
    directory.view = view(rooms, contacts)
    return PresenceHub(directory)


class Inbox:
    def __init__(self) -> None:
        self.decoder = Decoder(SERVER_COMMANDS)
        self.items: list[Command] = []

    def __call__(self, data: bytes) -> None:
        self.items += self.decoder.feed(data)  # type: ignore[arg-type]

    def take(self) -> list[Command]:
        items, self.items = self.items, []
        return items


def login(hub: PresenceHub, userid: int, value: int, automatic: bool = False) -> tuple[StatusClient, Inbox]:
    inbox = Inbox()
    client = StatusClient(userid, inbox)
    hub.hello(client, value, automatic)
    return client, inbox


def test_dump_lists_visible_online_users_then_own_presence() -> None:
    # 1 has 2 in its contact list; 1 and 3 share a room; 4 is a stranger; 5 is a contact but offline.
    hub = make_hub({7: {1, 3}}, {1: {2, 5}})
    login(hub, 2, AWAY)
    login(hub, 3, DND)
    login(hub, 4, ONLINE)
    _, inbox = login(hub, 1, XA)
    assert inbox.take() == [Pres(2, AWAY), Pres(3, DND), Pres(0, XA)]


def test_draft_example() -> None:
    hub = make_hub({}, {9: {1}})
    _, watcher = login(hub, 9, ONLINE)
    assert watcher.take() == [Pres(0, ONLINE)]
    a, a_box = login(hub, 1, FREE_FOR_CHAT)
    assert a_box.take() == [Pres(0, FREE_FOR_CHAT)]
    assert watcher.take() == [Pres(1, FREE_FOR_CHAT)]
    b, b_box = login(hub, 1, ONLINE)  # B connects, explicitly online
    assert b_box.take() == [Pres(0, ONLINE)]
    assert a_box.take() == [Pres(0, ONLINE)]
    assert watcher.take() == [Pres(1, ONLINE)]
    hub.set_presence(a, AWAY, automatic=True)  # A's idle timer: max(away, online) = online
    assert hub.presence(1) == ONLINE
    assert a_box.take() == [Pres(0, ONLINE)]  # A learns what took effect
    assert b_box.take() == []
    assert watcher.take() == []
    hub.disconnect(b)  # only A (away, automatic) is left
    assert a_box.take() == [Pres(0, AWAY)]
    assert watcher.take() == [Pres(1, AWAY)]
    hub.disconnect(a)
    assert watcher.take() == [Pres(1, 0)]
    assert hub.presence(1) == 0


def test_changes_reach_exactly_the_entitled() -> None:
    # 1's watchers: 2 (has 1 as a contact) and 3 (room peer); not 4 (1 has 4 as a contact, not the reverse).
    hub = make_hub({7: {1, 3}}, {2: {1}, 1: {4}})
    boxes = {u: login(hub, u, ONLINE)[1] for u in (2, 3, 4, 5)}
    for box in boxes.values():
        box.take()
    client, own = login(hub, 1, DND)
    own.take()
    second, own2 = login(hub, 1, DND)
    own2.take()
    assert own.take() == []  # the second client's HELLO changed nothing
    assert [boxes[u].take() for u in (2, 3, 4, 5)] == [[Pres(1, DND)], [Pres(1, DND)], [], []]
    hub.set_presence(client, FREE_FOR_CHAT)
    assert boxes[2].take() == [Pres(1, FREE_FOR_CHAT)]
    assert boxes[3].take() == [Pres(1, FREE_FOR_CHAT)]
    assert boxes[4].take() == []
    assert boxes[5].take() == []
    assert own.take() == [Pres(0, FREE_FOR_CHAT)]
    assert own2.take() == [Pres(0, FREE_FOR_CHAT)]


def test_new_contact_learns_presence_and_removed_one_gets_zero() -> None:
    hub = make_hub({}, {})
    _, one = login(hub, 1, ONLINE)
    _, two = login(hub, 2, AWAY)
    one.take()
    two.take()
    old = hub.directory.view
    new = view({}, {1: {2}}, generation=2)
    hub.directory.view = new
    hub.directory_changed(old, new)
    assert one.take() == [Pres(2, AWAY)]
    assert two.take() == []
    newer = view({}, {}, generation=3)
    hub.directory.view = newer
    hub.directory_changed(new, newer)
    assert one.take() == [Pres(2, 0)]


def test_joining_a_room_as_member_shows_the_room_peers() -> None:
    hub = make_hub({7: {1}}, {})
    _, one = login(hub, 1, ONLINE)
    _, two = login(hub, 2, DND)
    _, three = login(hub, 3, AWAY)
    for box in (one, two, three):
        box.take()
    old = hub.directory.view
    new = view({7: {1, 2}}, {}, generation=2)  # 2 becomes a member of room 7
    hub.directory.view = new
    hub.directory_changed(old, new)
    assert one.take() == [Pres(2, DND)]
    assert two.take() == [Pres(1, ONLINE)]
    assert three.take() == []
