"""The hosts' membership store on SQLite and PostgreSQL (the ``database`` fixture)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest_twisted

from transport.hosts.packets import EFriendState, EJoinState, OnlineId
from transport.hosts.store import MembershipStore
from transport.storage.database import Database

ALICE = OnlineId(b"\x0a" * 16)
BOB = OnlineId(b"\x0b" * 16)


@pytest_twisted.inlineCallbacks
def test_membership_records(database: Database) -> Generator[Any, Any, None]:
    store = MembershipStore(database)
    yield store.migrate()
    yield store.migrate()  # idempotent
    assert (yield store.member("g", ALICE)) is None
    yield store.set_member("g", ALICE, EJoinState.JOIN_REQUESTED, "alice", "hi", "let me in", 5)
    yield store.set_member("g", BOB, EJoinState.JOIN_IS_GRANTED, "bob", "", None, 6)
    yield store.set_member("other", ALICE, EJoinState.JOIN_IS_GRANTED, "alice", "", None, 7)
    alice = yield store.member("g", ALICE)
    assert (alice.join_state, alice.name, alice.motto, alice.message) == (EJoinState.JOIN_REQUESTED, "alice", "hi",
                                                                          "let me in")
    pending = yield store.members("g", (EJoinState.JOIN_REQUESTED,))
    assert [m.online_id for m in pending] == [ALICE]
    assert [m.online_id for m in (yield store.members("g"))] == [ALICE, BOB]
    assert (yield store.count_members("g")) == 1
    assert (yield store.decide("g", ALICE, True, 9))
    assert not (yield store.decide("g", OnlineId(b"\x0c" * 16), True, 9))
    alice = yield store.member("g", ALICE)
    assert alice.join_state == EJoinState.JOIN_IS_GRANTED and alice.message == "let me in"
    # None keeps stored fields
    yield store.set_member("g", ALICE, EJoinState.JOIN_DENIED, None, None, None, 10)
    alice = yield store.member("g", ALICE)
    assert (alice.join_state, alice.name) == (EJoinState.JOIN_DENIED, "alice")
    assert (yield store.delete_member("g", ALICE))
    assert not (yield store.delete_member("g", ALICE))
    assert (yield store.member("g", ALICE)) is None
    assert (yield store.member("other", ALICE)) is not None


@pytest_twisted.inlineCallbacks
def test_friend_levels(database: Database) -> Generator[Any, Any, None]:
    store = MembershipStore(database)
    yield store.migrate()
    assert (yield store.friend_state("g", ALICE)) == EFriendState.ANONYMOUS
    yield store.set_friend_state("g", ALICE, EFriendState.FRIEND)
    yield store.set_friend_state("g", BOB, EFriendState.IGNORE)
    assert (yield store.friend_state("g", ALICE)) == EFriendState.FRIEND
    assert (yield store.friend_state("g", BOB)) == EFriendState.IGNORE
    assert (yield store.friend_state("h", ALICE)) == EFriendState.ANONYMOUS
    yield store.set_friend_state("g", ALICE, EFriendState.ADMIN)
    assert (yield store.friends("g")) == [(ALICE, EFriendState.ADMIN), (BOB, EFriendState.IGNORE)]
    yield store.set_friend_state("g", ALICE, EFriendState.ANONYMOUS)
    assert (yield store.friends("g")) == [(BOB, EFriendState.IGNORE)]


@pytest_twisted.inlineCallbacks
def test_settings_stamp(database: Database) -> Generator[Any, Any, None]:
    store = MembershipStore(database)
    yield store.migrate()
    assert (yield store.settings_modified("g", "d1", 100)) == 100
    assert (yield store.settings_modified("g", "d1", 200)) == 100
    assert (yield store.settings_modified("g", "d2", 300)) == 300


@pytest_twisted.inlineCallbacks
def test_members_paged_in_id_order(database: Database) -> Generator[Any, Any, None]:
    store = MembershipStore(database)
    yield store.migrate()
    ids = [OnlineId(bytes([b]) * 16) for b in (0x0F, 0xA0, 0x1B, 0xFF, 0x9C, 0xC3, 0x00)]
    for i, oid in enumerate(ids):
        yield store.set_member("g", oid, EJoinState.JOIN_IS_GRANTED, f"m{i}", "", None, i)
    yield store.set_member("g", OnlineId(b"\x55" * 16), EJoinState.JOIN_DENIED, "denied", "", None, 9)
    ordered = sorted(ids)
    states = (EJoinState.JOIN_REQUESTED, EJoinState.JOIN_IS_GRANTED)
    assert [m.online_id for m in (yield store.members("g", states))] == ordered
    page = yield store.members("g", states, None, 3)
    assert [m.online_id for m in page] == ordered[:3]
    rest = yield store.members("g", states, ordered[3], 10)
    assert [m.online_id for m in rest] == ordered[3:]
