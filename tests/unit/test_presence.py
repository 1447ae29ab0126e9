import doctest

from hypothesis import given
from hypothesis import strategies as st

from transport.core import presence
from transport.core.presence import AWAY, FREE_FOR_CHAT, OFFLINE, ONLINE, PresenceAggregate


def test_doctests() -> None:
    assert doctest.testmod(presence).failed == 0


def test_draft_example_with_client_ids() -> None:
    p = PresenceAggregate()
    assert p.set(1, FREE_FOR_CHAT) == FREE_FOR_CHAT
    assert p.set(2, ONLINE) == ONLINE  # user's choice wins as specified
    assert p.set(1, AWAY, automatic=True) == ONLINE  # max(away, online)
    assert p.remove(2) == AWAY
    assert p.remove(1) == OFFLINE
    assert len(p) == 0


def test_status_type_round_trip() -> None:
    for value in (1, 2, 3, 4, 5):
        assert presence.from_status_type(presence.to_status_type(value)) == value
    assert presence.from_status_type(presence.STATUS_INVISIBLE) == OFFLINE


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 127), st.booleans()), min_size=1))
def test_automatic_sets_give_the_maximum(ops: list[tuple[int, int, bool]]) -> None:
    p = PresenceAggregate()
    for session, value, automatic in ops:
        result = p.set(session, value, automatic)
        if automatic:
            assert result == max(p.sessions().values())
        else:
            assert result == value
