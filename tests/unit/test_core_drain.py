"""Gateway.drain, the first step of a shutdown: every accepted message is confirmed or fails, nothing is silent."""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.unit.test_core_gateway import Rig
from transport.backend import transport_pb2 as pb
from transport.core import events as ev
from transport.core.gateway import DRAIN_QUIET, NotConnected, ShuttingDown

W = pb.WrapperMessage


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    pytest_twisted.blockon(r.stop())


@pytest_twisted.inlineCallbacks
def test_drain_confirms_or_fails_every_accepted_message_and_refuses_new_ones(rig):
    peer = yield rig.start(receipts=False)  # confirmation by PING/PONG
    yield rig.open(peer, user="alice")
    yield rig.open(peer, user="bob", session="b", connect=False)  # logging in: its message is queued
    for i in range(3):
        yield rig.gateway.send_message("alice", "echo", f"a{i}", id=f"a{i}")
    yield rig.gateway.send_message("bob", "echo", "queued", id="b0")
    assert rig.gateway.user_state("alice").unconfirmed == 3
    peer.take()
    done = rig.gateway.drain(2.0)
    assert W.TYPE_PING in [p.type for p in peer.take()]  # asked to confirm what it has
    # the queued message fails at once, a new one is refused (NotConnected for the frontends that know no more)
    assert [(f.user, f.id) for f in rig.frontend.of(ev.MessageFailed)] == [("bob", "b0")]
    with pytest.raises(ShuttingDown):
        yield rig.gateway.send_message("alice", "echo", "late")
    assert issubclass(ShuttingDown, NotConnected)
    peer.pong()  # the backend confirms the three written messages
    rig.clock.advance(DRAIN_QUIET / 2)
    assert not done.called  # the links are not quiet yet: "late" was refused just now
    rig.clock.advance(DRAIN_QUIET)
    assert done.called
    assert rig.gateway.user_state("alice").unconfirmed == 0
    assert [f.id for f in rig.frontend.of(ev.MessageFailed)] == ["b0"]  # confirmed ones do not fail
    assert W.TYPE_LOGIN not in [p.type for p in peer.take()]


@pytest_twisted.inlineCallbacks
def test_drain_fails_what_the_backend_does_not_confirm_within_the_grace(rig):
    peer = yield rig.start(receipts=True)
    yield rig.open(peer, user="alice")
    for i in range(3):
        yield rig.gateway.send_message("alice", "echo", f"a{i}", id=f"a{i}")
    peer.send(W.TYPE_CONV_MESSAGE_ACK, pb.ConversationMessage(userName="alice", buddyName="echo", message="",
                                                              id="a0"))
    done = rig.gateway.drain(1.0)
    rig.clock.advance(0.5)
    assert not done.called
    rig.clock.advance(0.6)
    assert done.called
    failed = rig.frontend.of(ev.MessageFailed)
    assert [(f.id, f.body) for f in failed] == [("a1", "a1"), ("a2", "a2")]
    assert all("stopped" in f.reason for f in failed)
    assert rig.gateway.user_state("alice").unconfirmed == 0


@pytest_twisted.inlineCallbacks
def test_drain_with_nothing_in_flight_ends_after_the_quiet_time(rig):
    peer = yield rig.start()
    yield rig.open(peer, user="alice")
    done = rig.gateway.drain(5.0)
    rig.clock.advance(DRAIN_QUIET + 0.1)
    assert done.called
    assert rig.frontend.of(ev.MessageFailed) == []
