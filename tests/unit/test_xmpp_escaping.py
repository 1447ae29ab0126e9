"""XEP-0106 escaping of legacy names: every name round-trips and is a valid, already-prepared localpart."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as s
from twisted.words.protocols.jabber import jid
from twisted.words.protocols.jabber.xmpp_stringprep import nodeprep

from transport.frontends.xmpp.component import backoff_delay
from transport.frontends.xmpp.disco import caps_ver
from transport.frontends.xmpp.escaping import MAX_NODE_BYTES, EscapeError, escape_node, unescape_node


@pytest.mark.parametrize(("name", "node"), [
    ("alice", "alice"),
    ("john doe", "john\\20doe"),
    ("d'artagnan@musketeers", "d\\27artagnan\\40musketeers"),
    ('a"b&c/d:e<f>g', "a\\22b\\26c\\2fd\\3ae\\3cf\\3eg"),
    ("back\\slash", "back\\5cslash"),
    ("\\20", "\\5c20"),  # a name that looks like an escape stays itself
    ("Alice", "\\41lice"),  # nodeprep would fold the case: escaped instead
    ("#room", "#room"),
    ("čaj", "čaj"),
])
def test_known_names(name: str, node: str) -> None:
    assert escape_node(name) == node
    assert unescape_node(node) == name


@given(s.text(min_size=1, max_size=80))
@settings(max_examples=400, deadline=None)
def test_any_name_round_trips_and_is_a_prepared_localpart(name: str) -> None:
    try:
        node = escape_node(name)
    except EscapeError:
        assert len(name.encode("utf-8", "surrogatepass")) * 3 > MAX_NODE_BYTES
        return
    assert unescape_node(node) == name
    assert nodeprep.prepare(node) == node  # what a server does to the JID changes nothing
    parsed = jid.JID(f"{node}@transport.example.org")
    assert unescape_node(parsed.user or "") == name


def test_too_long_and_empty_names_are_refused() -> None:
    with pytest.raises(EscapeError):
        escape_node("")
    with pytest.raises(EscapeError):
        escape_node("@" * 400)


def test_hostile_localparts_unescape_without_error() -> None:
    assert unescape_node("a\\zz") == "a\\zz"
    assert unescape_node("\\ff\\fe") == "\ufffd\ufffd"
    assert unescape_node("end\\4") == "end\\4"


def test_backoff_doubles_up_to_the_cap_with_jitter_on_top() -> None:
    delays = [backoff_delay(n, 0.5, 8.0, 0.0) for n in range(1, 8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff_delay(3, 0.5, 8.0, 0.2, rand=lambda: 0.5) == pytest.approx(2.0 * 1.1)
    assert backoff_delay(10_000, 1.0, 60.0, 0.0) == 60.0


def test_caps_ver_is_the_xep_0115_example() -> None:
    # XEP-0115 section 5.2's simple example
    features = {"http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#info",
                "http://jabber.org/protocol/disco#items", "http://jabber.org/protocol/muc"}
    assert caps_ver([("client", "pc", "Exodus 0.9.1")], features) == "QgayPKawpkPSDYmwT/WM94uAlu0="
