"""Regression: room memberships survive a restart of the main instance (found by the chaos suite).

The gateway kept the rooms a user had joined in memory only, so a restart of the main instance lost them
(``gateway_rooms`` of a WebSocket user came back empty), although ``docs/storage.md`` promises that the
``gateway_rooms`` table makes a restart rejoin them. Two incarnations of an in-process gateway share one
SQLite file and real echo backend processes: a room joined in the first is joined again in the second at
login, without the frontend asking; a room left is not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from tests.peers.backends import TestGateway, make_config
from transport.core import events as ev

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
ME = 16  # pbnetwork.PARTICIPANT_FLAG_ME


def joined(room: str) -> Any:
    return lambda e: isinstance(e, ev.ParticipantChanged) and e.room == room and e.flags & ME and e.presence


@pytest_twisted.inlineCallbacks
def test_rooms_joined_before_a_restart_are_joined_again(tmp_path: Path) -> Any:
    made: list[TestGateway] = []

    @defer.inlineCallbacks
    def incarnation() -> Any:
        gw = TestGateway(make_config(tmp_path, start_backends=0))
        made.append(gw)
        yield gw.start()
        yield gw.login("alice@example.org")
        return gw

    try:
        first = yield incarnation()
        first.gateway.join_room("alice@example.org", "kept", "al")
        first.gateway.join_room("alice@example.org", "left", "al")
        yield first.frontend.wait_for(joined("kept"))
        yield first.frontend.wait_for(joined("left"))
        first.gateway.leave_room("alice@example.org", "left")
        # SQLite has one writer thread: a read queued now runs after the writes above
        record = yield first.store.get_user("alice@example.org")
        yield first.store.get_rooms(record.id)
        yield first.stop()

        second = yield incarnation()
        event = yield second.frontend.wait_for(joined("kept"))
        assert event.nickname == "al"
        assert second.gateway.user_state("alice@example.org").rooms == ("kept",)
        assert not [e for e in second.frontend.events if isinstance(e, ev.ParticipantChanged) and e.room == "left"]
    finally:
        for gw in made:
            try:
                yield gw.stop()
            except Exception:
                pass
