"""The core end to end with the real echo backend process, driven by a test frontend."""

from __future__ import annotations

import os
import signal

import pytest
import pytest_twisted

from tests.peers.backends import RecordingFrontend, wait_until
from transport.core import events as ev
from transport.core import presence as pr
from transport.core.gateway import NotConnected, NotRegistered, RegistrationRefused, VCardTimeout

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest_twisted.inlineCallbacks
def test_login_message_typing_vcard_room(gateway_factory):
    gw = yield gateway_factory()
    g, fe = gw.gateway, gw.frontend
    yield wait_until(lambda: gw.gateway.features.receipts)  # BACKEND_CONFIG of the first backend
    assert gw.gateway.features.muc
    yield gw.login("alice@example.org")
    buddy = yield fe.wait_for(lambda e: isinstance(e, ev.BuddyChanged) and e.buddy.name == "echo")
    assert buddy.buddy.presence == pr.ONLINE and buddy.buddy.alias == "Echo"
    # the roster entry was persisted through the store
    record = yield gw.store.get_user("alice@example.org")
    buddies = yield gw.store.get_buddies(record.id)
    assert [b.name for b in buddies] == ["echo"]

    yield g.send_message("alice@example.org", "echo", "hello", id="m1")
    got = yield fe.wait_for(lambda e: isinstance(e, ev.MessageReceived) and e.body == "hello")
    assert got.buddy == "echo" and got.user == "alice@example.org"
    ack = yield fe.wait_for(lambda e: isinstance(e, ev.MessageAcked))
    assert ack.id == "m1"

    g.typing("alice@example.org", "echo", "composing")
    t = yield fe.wait_for(lambda e: isinstance(e, ev.Typing))
    assert t.state == "composing" and t.buddy == "echo"

    card = yield g.request_vcard("alice@example.org", "echo")
    assert card.buddy == "echo" and card.photo

    g.join_room("alice@example.org", "echo", "alice")
    me = yield fe.wait_for(lambda e: isinstance(e, ev.ParticipantChanged) and e.flags & 16)
    assert me.room == "echo"
    yield g.send_room_message("alice@example.org", "echo", "hi room")
    yield fe.wait_for(lambda e: isinstance(e, ev.MessageReceived) and e.buddy == "echo" and e.nickname == "echo"
                      and e.body == "hi room")
    assert g.user_state("alice@example.org").rooms == ("echo",)
    assert g.counters.messages_from_frontend == 2

    yield g.session_closed("alice@example.org", "s1")
    assert g.user_state("alice@example.org").state == "offline"
    yield wait_until(lambda: not any(b.users for b in gw.pool.backends.values()))


@pytest_twisted.inlineCallbacks
def test_registration_policy_and_auth_failure(gateway_factory):
    gw = yield gateway_factory(registration__enable_public_registration="false",
                               registration__allowed_usernames="[a-z]+")
    g, fe = gw.gateway, gw.frontend
    with pytest.raises(RegistrationRefused):
        yield g.register("bob@example.org", "bob", "pw")
    with pytest.raises(RegistrationRefused):
        yield g.register("bob@example.org", "Bob1", "pw", admin=True)
    with pytest.raises(NotRegistered):
        yield g.session_opened(fe, "bob@example.org", "s1", pr.ONLINE)
    yield g.register("bob@example.org", "fail", "pw", admin=True)  # the echo backend refuses "fail"
    yield g.session_opened(fe, "bob@example.org", "s1", pr.ONLINE)
    d = yield fe.wait_for(lambda e: isinstance(e, ev.Disconnected))
    assert d.error == 2  # AUTHENTICATION_FAILED
    with pytest.raises(NotConnected):
        yield g.send_message("bob@example.org", "echo", "x")
    assert (yield g.unregister("bob@example.org")) is True
    assert (yield gw.store.get_user("bob@example.org")) is None


@pytest_twisted.inlineCallbacks
def test_auto_register_and_presence_aggregation(gateway_factory):
    gw = yield gateway_factory(registration__auto_register="true")
    g = gw.gateway
    other = RecordingFrontend("other")
    g.add_frontend(other)
    yield g.session_opened(gw.frontend, "carol@example.org", "a", pr.FREE_FOR_CHAT)
    yield gw.frontend.wait_for(lambda e: isinstance(e, ev.Connected))
    yield g.session_opened(other, "carol@example.org", "b", pr.ONLINE)
    state = g.user_state("carol@example.org")
    assert state.presence == pr.ONLINE and set(state.sessions) == {"a", "b"}
    yield g.presence_changed("carol@example.org", "a", pr.AWAY, automatic=True)
    assert g.user_state("carol@example.org").presence == pr.ONLINE  # most chatty wins
    yield g.session_closed("carol@example.org", "b")
    assert g.user_state("carol@example.org").presence == pr.AWAY
    # both frontends saw the events while they had sessions
    assert other.of(ev.BuddyChanged) == [] or other.of(ev.BuddyChanged)[0].user == "carol@example.org"
    yield g.send_message("carol@example.org", "echo", "still here")
    yield gw.frontend.wait_for(lambda e: isinstance(e, ev.MessageReceived) and e.body == "still here")
    assert not other.of(ev.MessageReceived)  # no session on "other" any more


@pytest_twisted.inlineCallbacks
def test_vcard_timeout_when_backend_stopped(gateway_factory):
    gw = yield gateway_factory()
    yield gw.login("dave@example.org")
    gw.gateway.vcard_timeout = 0.5
    backend = gw.pool.users["dave@example.org"]
    os.kill(backend.pid, signal.SIGSTOP)
    try:
        with pytest.raises(VCardTimeout):
            yield gw.gateway.request_vcard("dave@example.org", "echo")
    finally:
        os.kill(backend.pid, signal.SIGCONT)


@pytest_twisted.inlineCallbacks
def test_a_backend_that_cannot_start_ends_in_disconnected(gateway_factory, tmp_path):
    gw = yield gateway_factory(backend=str(tmp_path / "no-such-backend"), login_retry_delay=0.05,
                               login_attempts=2, start_backends=0)
    yield gw.gateway.register("erin@example.org", "erin", "")
    yield gw.gateway.session_opened(gw.frontend, "erin@example.org", "s1", pr.ONLINE)
    yield gw.gateway.send_message("erin@example.org", "echo", "queued", id="q")
    d = yield gw.frontend.wait_for(lambda e: isinstance(e, ev.Disconnected))
    assert "no backend could log you in" in d.message
    assert [f.id for f in gw.frontend.of(ev.MessageFailed)] == ["q"]
    assert len(gw.pool.crashes) == 3 and gw.pool.backends == {}
