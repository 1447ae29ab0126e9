"""The network host's directory (sans-I/O): paging, expiry, targeted and text search."""

from __future__ import annotations

import os

from twisted.internet.task import Clock

from transport.hosts.directory import Directory
from transport.hosts.packets import MAX_BLOB_DATA, ECommErr, EHostType, HostedInfo, OnlineId

GROUP, CHAT, RANDOM = EHostType.GROUP, EHostType.CHAT_ROOM, EHostType.RANDOM_CONNECT


def info(oid: OnlineId | None = None, title: str = "title", description: str = "description",
         url: str = "ptop://127.0.0.1:1") -> HostedInfo:
    return HostedInfo(oid or OnlineId(os.urandom(16)), 1, url, title, description, OnlineId(b"\x01" * 16))


def chain(d: Directory, host_type: int, text: str = "") -> list[HostedInfo]:
    page = d.search(host_type, text)
    out = list(page.entries)
    while page.more_exist:
        page = d.search(host_type, text, start=page.next_id)
        assert page.comm_err == ECommErr.NONE
        out += page.entries
    return out


def test_search_by_type_finds_each_once() -> None:
    d = Directory(Clock().seconds)
    g, c = info(), info()
    assert d.announce(GROUP, g) == ECommErr.NONE
    assert d.announce(CHAT, c) == ECommErr.NONE
    assert d.announce(GROUP, g) == ECommErr.NONE  # a re-announce replaces
    assert chain(d, GROUP) == [g]
    assert chain(d, CHAT) == [c]
    assert d.search(RANDOM).comm_err == ECommErr.SEARCH_NO_MATCH


def test_same_id_under_two_types_is_two_entries() -> None:
    d = Directory(Clock().seconds)
    oid = OnlineId(os.urandom(16))
    d.announce(GROUP, info(oid))
    d.announce(CHAT, info(oid, title="other"))
    assert len(d) == 2
    assert chain(d, CHAT)[0].title == "other"


def test_chain_of_1000_returns_every_entry_once() -> None:
    d = Directory(Clock().seconds, page_size=37)
    entries = [info() for _ in range(1000)]
    for e in entries:
        d.announce(GROUP, e)
    got = chain(d, GROUP)
    assert len(got) == 1000
    assert {e.online_id for e in got} == {e.online_id for e in entries}


def test_pages_are_bounded_by_the_blob() -> None:
    d = Directory(Clock().seconds, page_size=1000)
    for _ in range(30):
        d.announce(GROUP, info(description="d" * 2000))
    page = d.search(GROUP)
    assert page.more_exist
    assert sum(e.size() for e in page.entries) <= MAX_BLOB_DATA
    assert len(chain(d, GROUP)) == 30


def test_chain_survives_announcements_and_expiry_in_between() -> None:
    clock = Clock()
    d = Directory(clock.seconds, expiry=100, page_size=10)
    old = [info() for _ in range(50)]
    for e in old:
        d.announce(GROUP, e)
    page = d.search(GROUP)
    seen = list(page.entries)
    d.announce(GROUP, info())  # a newcomer may or may not be in this chain, but nothing repeats
    while page.more_exist:
        page = d.search(GROUP, start=page.next_id)
        seen += page.entries
    assert len({e.online_id for e in seen}) == len(seen)
    assert {e.online_id for e in old} <= {e.online_id for e in seen}


def test_entry_vanishes_after_expiry_unless_reannounced() -> None:
    clock = Clock()
    d = Directory(clock.seconds, expiry=1800)
    quiet, busy = info(), info()
    d.announce(GROUP, quiet)
    d.announce(GROUP, busy)
    clock.advance(900)
    d.announce(GROUP, busy)  # re-announced every 15 minutes
    clock.advance(900)
    assert chain(d, GROUP) == [busy]
    assert d.lookup(GROUP, quiet.online_id) is None
    clock.advance(1800)
    assert d.search(GROUP).comm_err == ECommErr.SEARCH_NO_MATCH


def test_sweep_drops_expired() -> None:
    clock = Clock()
    d = Directory(clock.seconds, expiry=10)
    for _ in range(5):
        d.announce(CHAT, info())
    clock.advance(5)
    d.announce(CHAT, info())
    clock.advance(6)
    assert d.sweep() == 5
    assert len(d) == 1


def test_more_from_a_vanished_entry_is_no_match() -> None:
    clock = Clock()
    d = Directory(clock.seconds, expiry=10, page_size=1)
    a, b = info(OnlineId(b"\x01" * 16)), info(OnlineId(b"\x02" * 16))
    d.announce(GROUP, a)
    d.announce(GROUP, b)
    page = d.search(GROUP)
    assert page.entries == (a,) and page.next_id == b.online_id
    assert d.remove(GROUP, b.online_id)
    assert d.search(GROUP, start=page.next_id).comm_err == ECommErr.SEARCH_NO_MATCH


def test_targeted_search() -> None:
    d = Directory(Clock().seconds)
    entries = [info() for _ in range(10)]
    for e in entries:
        d.announce(GROUP, e)
    page = d.search(GROUP, specific=entries[3].online_id)
    assert page.entries == (entries[3],) and not page.more_exist
    assert d.search(CHAT, specific=entries[3].online_id).comm_err == ECommErr.SEARCH_NO_MATCH
    assert d.search(GROUP, specific=OnlineId(os.urandom(16))).comm_err == ECommErr.SEARCH_NO_MATCH


def test_text_search() -> None:
    d = Directory(Clock().seconds, page_size=2)
    cats = [info(title=f"Cats {i}") for i in range(5)]
    for e in cats + [info(title="Dogs", description="woof")]:
        d.announce(GROUP, e)
    assert {e.online_id for e in chain(d, GROUP, "cats")} == {e.online_id for e in cats}
    assert [e.title for e in chain(d, GROUP, "WOOF")] == ["Dogs"]
    assert d.search(GROUP, "ca").comm_err == ECommErr.SEARCH_TEXT_TOO_SHORT
    assert d.search(GROUP, "c" * 65).comm_err == ECommErr.SEARCH_TEXT_TOO_LONG


def test_invalid_announcements_are_refused() -> None:
    d = Directory(Clock().seconds)
    assert d.announce(EHostType.NETWORK, info()) == ECommErr.INVALID_HOST_TYPE
    assert d.announce(GROUP, info(title="")) == ECommErr.INVALID_PKT
    assert d.announce(GROUP, info(url="")) == ECommErr.INVALID_PKT
    assert d.announce(GROUP, info(description="")) == ECommErr.INVALID_PKT
    assert d.announce(GROUP, info(title="t" * 300)) == ECommErr.INVALID_PKT
    no_thumb = HostedInfo(OnlineId(os.urandom(16)), 1, "u", "t", "d", OnlineId())
    assert d.announce(GROUP, no_thumb) == ECommErr.INVALID_PKT
    no_time = HostedInfo(OnlineId(os.urandom(16)), 0, "u", "t", "d", OnlineId(b"\x01" * 16))
    assert d.announce(GROUP, no_time) == ECommErr.INVALID_PKT
    assert d.search(EHostType.PEER_USER).comm_err == ECommErr.INVALID_HOST_TYPE
    assert len(d) == 0


def test_directory_is_bounded() -> None:
    clock = Clock()
    d = Directory(clock.seconds, expiry=10, max_entries=3)
    first = [info() for _ in range(3)]
    for e in first:
        assert d.announce(GROUP, e) == ECommErr.NONE
    assert d.announce(CHAT, info()) == ECommErr.INVALID_PKT  # full
    assert d.announce(GROUP, first[0]) == ECommErr.NONE  # known hosts still refresh
    clock.advance(5)
    assert d.announce(GROUP, first[0]) == ECommErr.NONE
    clock.advance(6)  # the two others expired: room again
    assert d.announce(CHAT, info()) == ECommErr.NONE
    assert len(d) == 2
