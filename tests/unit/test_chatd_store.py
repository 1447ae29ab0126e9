"""Rooms, members and contacts in the database (SQLite and PostgreSQL), and the directory cache."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor

from transport.chatd import store
from transport.chatd.directory import Directory, DirectoryView

BIG = (1 << 64) - 1  # ids are unsigned 64-bit; SQL stores them signed


@pytest_twisted.ensureDeferred
async def test_rooms_members_contacts_round_trip(database) -> None:
    await database.migrate(store.MIGRATIONS)
    await database.migrate(store.MIGRATIONS)  # idempotent
    assert await database.run_interaction(store.create_room, BIG, "big", True) is True
    assert await database.run_interaction(store.create_room, 5, "five", False) is True
    assert await database.run_interaction(store.create_room, 5, "renamed", False) is False
    assert await database.run_interaction(store.add_members, 5, [1, BIG, 1 << 63]) == 3
    assert await database.run_interaction(store.add_members, 5, [1]) == 0
    assert await database.run_interaction(store.add_contacts, BIG, [2, 3], True) == 4
    rooms = await database.run_interaction(store.list_rooms)
    assert [(r.chatid, r.name, r.is_open, r.members) for r in rooms] == [
        (5, "renamed", False, frozenset({1, BIG, 1 << 63})), (BIG, "big", True, frozenset())]
    assert await database.run_interaction(store.list_contacts, BIG) == [2, 3]
    assert await database.run_interaction(store.list_contacts, 2) == [BIG]
    assert await database.run_interaction(store.remove_members, 5, [1]) == 1
    assert await database.run_interaction(store.remove_contacts, BIG, [2], True) == 2
    assert await database.run_interaction(store.delete_room, 5) is True
    assert await database.run_interaction(store.delete_room, 5) is False
    snapshot = await database.run_interaction(store.load)
    assert set(snapshot.rooms) == {BIG}
    assert snapshot.contacts == {BIG: frozenset({3}), 3: frozenset({BIG})}


@pytest_twisted.ensureDeferred
async def test_member_of_a_missing_room_is_refused(database) -> None:
    await database.migrate(store.MIGRATIONS)
    with pytest.raises(KeyError):
        await database.run_interaction(store.add_members, 9, [1])
    with pytest.raises(ValueError):
        await database.run_interaction(store.create_room, 0)


@pytest_twisted.ensureDeferred
async def test_directory_sees_api_changes_at_once_and_outside_changes_on_refresh(database) -> None:
    directory = Directory(database, reactor, refresh_interval=0)
    changes: list[tuple[DirectoryView, DirectoryView]] = []
    directory.add_listener(lambda old, new: changes.append((old, new)))
    await directory.start()
    await directory.start()  # shared, not repeated
    await directory.create_room(7, "seven")
    await directory.add_members(7, [1, 2])
    await directory.add_contacts(1, [3])
    view = directory.view
    assert view.may_join(7, 1) and not view.may_join(7, 3) and not view.may_join(8, 1)
    assert view.visible_to(1) == {2, 3}
    assert view.watchers_of(3) == {1}
    assert view.watchers_of(1) == {2}
    # a change made by another process (the CLI): noticed by the next refresh
    await database.run_interaction(store.add_members, 7, [3])
    count = len(changes)
    await directory.refresh(only_if_changed=True)
    assert len(changes) == count + 1
    assert directory.view.visible_to(3) == {1, 2}
    await directory.refresh(only_if_changed=True)
    assert len(changes) == count + 1  # nothing changed: no reload, no notification
    directory.stop()
