"""The Gateway's rules with a task.Clock, in-memory backends (the real pool) and a real SQLite store."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer

from tests.peers.backends import RecordingFrontend, wait_until
from tests.unit.test_pool_harness import PeerBackend, make_pool
from transport.backend import transport_pb2 as pb
from transport.core import events as ev
from transport.core import presence as pr
from transport.core.gateway import Gateway, NotConnected, QueueFull, VCardTimeout
from transport.storage.database import open_sqlite
from transport.storage.gateway import GatewayStore

W = pb.WrapperMessage


class Rig:
    def __init__(self, tmp_path, **service):
        self.pool, self.clock, self.spawned = make_pool(tmp_path, **service)
        self.database = open_sqlite(tmp_path / "gw.sqlite3")
        self.store = GatewayStore(self.database)
        self.gateway = Gateway(self.pool.config, self.store, self.pool, self.clock)
        self.frontend = RecordingFrontend()
        self.gateway.add_frontend(self.frontend)
        self.peers: list[PeerBackend] = []

    @defer.inlineCallbacks
    def start(self, receipts=True):
        self.database.start()
        yield self.store.start()
        peer = self.connect_backend(receipts)
        return peer

    def connect_backend(self, receipts=True):
        peer = PeerBackend(self.pool, 50000 + len(self.peers))
        features = "[features]\nreceipts=1\n" if receipts else "[features]\n"
        peer.send(W.TYPE_BACKEND_CONFIG, pb.BackendConfig(config=features))
        peer.pong()
        peer.take()
        self.peers.append(peer)
        return peer

    def frames(self, peer, type_):
        return [p.payload for p in peer.received() if p.type == type_]

    @defer.inlineCallbacks
    def open(self, peer, user="alice", session="a", presence=pr.ONLINE, connect=True):
        yield self.gateway.register(user, user, "pw")
        yield self.gateway.session_opened(self.frontend, user, session, presence)
        yield wait_until(lambda: any(p.user == user for p in self.frames(peer, W.TYPE_LOGIN)), timeout=10)
        if connect:
            peer.send(W.TYPE_CONNECTED, pb.Connected(user=user))

    def stop(self):
        return self.database.close()


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    pytest_twisted.blockon(r.stop())


def statuses(rig, peer):
    return [(s.status, s.statusMessage) for s in rig.frames(peer, W.TYPE_STATUS_CHANGED)]


@pytest_twisted.inlineCallbacks
def test_presence_rule_gives_one_status_change_per_effective_change(rig):
    peer = yield rig.start()
    yield rig.open(peer, presence=pr.FREE_FOR_CHAT)
    assert rig.frontend.of(ev.Connected)
    assert statuses(rig, peer) == [(pb.STATUS_FFC, "")]
    g = rig.gateway
    yield g.session_opened(rig.frontend, "alice", "b", pr.ONLINE)  # explicit: as specified
    yield g.presence_changed("alice", "a", pr.AWAY, automatic=True)  # idle timer: the chattiest wins (online)
    yield g.presence_changed("alice", "b", pr.DND, "busy")
    yield g.session_closed("alice", "b")  # what is left: a (away)
    assert statuses(rig, peer) == [(pb.STATUS_FFC, ""), (pb.STATUS_ONLINE, ""), (pb.STATUS_DND, "busy"),
                                   (pb.STATUS_AWAY, "busy")]
    yield g.session_closed("alice", "a")
    assert [p.user for p in rig.frames(peer, W.TYPE_LOGOUT)] == ["alice"]
    assert g.user_state("alice").state == "offline" and "alice" not in rig.pool.users


@pytest_twisted.inlineCallbacks
def test_messages_queue_until_connected_and_go_out_in_order(rig):
    rig.pool.config._values["service"]["max_queued_per_user"] = 3
    peer = yield rig.start()
    yield rig.open(peer, connect=False)
    for i in range(3):
        yield rig.gateway.send_message("alice", "bob", f"m{i}", id=f"id{i}")
    with pytest.raises(QueueFull):
        yield rig.gateway.send_message("alice", "bob", "too many")
    assert rig.frames(peer, W.TYPE_CONV_MESSAGE) == []
    peer.send(W.TYPE_CONNECTED, pb.Connected(user="alice"))
    sent = rig.frames(peer, W.TYPE_CONV_MESSAGE)
    assert [(m.message, m.id) for m in sent] == [("m0", "id0"), ("m1", "id1"), ("m2", "id2")]
    peer.send(W.TYPE_CONV_MESSAGE_ACK, pb.ConversationMessage(userName="alice", buddyName="bob", message="",
                                                              id="id2"))
    assert rig.gateway.user_state("alice").unconfirmed == 0  # an ACK confirms what came before too
    assert [a.id for a in rig.frontend.of(ev.MessageAcked)] == ["id2"]
    assert rig.gateway.counters.messages_from_frontend == 3


@pytest_twisted.inlineCallbacks
def test_crash_resends_unconfirmed_messages_after_relogin(rig):
    peer = yield rig.start()
    yield rig.open(peer)
    rig.gateway.join_room("alice", "room", "al")
    for i in range(4):
        yield rig.gateway.send_message("alice", "bob", f"m{i}")
    ids = [m.id for m in rig.frames(peer, W.TYPE_CONV_MESSAGE)]
    assert len(set(ids)) == 4 and all(ids)  # receipts announced: every message carries an id
    peer.send(W.TYPE_CONV_MESSAGE_ACK, pb.ConversationMessage(userName="alice", buddyName="bob", message="",
                                                              id=ids[1]))
    peer.lose()
    assert [(e.attempt, "backend-1" in e.reason) for e in rig.frontend.of(ev.Reconnecting)] == [(1, True)]
    yield rig.gateway.send_message("alice", "bob", "during")  # queued behind the unconfirmed ones
    rig.clock.advance(1.0)  # login_retry_delay
    new = rig.connect_backend()
    yield wait_until(lambda: rig.frames(new, W.TYPE_LOGIN), timeout=10)
    assert rig.frames(new, W.TYPE_CONV_MESSAGE) == []
    new.send(W.TYPE_CONNECTED, pb.Connected(user="alice"))
    assert [r.room for r in rig.frames(new, W.TYPE_JOIN_ROOM)] == ["room"]  # rejoined
    resent = rig.frames(new, W.TYPE_CONV_MESSAGE)
    assert [m.message for m in resent] == ["m2", "m3", "during"]
    assert [m.id for m in resent[:2]] == ids[2:]
    assert rig.gateway.user_state("alice").state == "online"


@pytest_twisted.inlineCallbacks
def test_gives_up_after_login_attempts_and_fails_queued_messages(rig):
    rig.pool.config._values["service"]["login_attempts"] = 2
    peer = yield rig.start()
    yield rig.open(peer)
    peer.lose()
    yield rig.gateway.send_message("alice", "bob", "lost?", id="q1")
    delay = 1.0
    for _attempt in (1, 2):
        rig.clock.advance(delay)
        delay *= 2  # backoff doubles
        p = rig.connect_backend()
        yield wait_until(lambda p=p: rig.frames(p, W.TYPE_LOGIN), timeout=10)
        p.lose()
    failed = rig.frontend.of(ev.MessageFailed)
    assert [(f.id, f.body) for f in failed] == [("q1", "lost?")]
    disconnected = rig.frontend.of(ev.Disconnected)
    assert len(disconnected) == 1 and "no backend could log you in" in disconnected[0].message
    assert [e.attempt for e in rig.frontend.of(ev.Reconnecting)] == [1, 2]
    with pytest.raises(NotConnected):
        yield rig.gateway.send_message("alice", "bob", "x")


@pytest_twisted.inlineCallbacks
def test_login_timeout_counts_as_a_failed_attempt(rig):
    peer = yield rig.start()
    yield rig.open(peer, connect=False)
    rig.clock.advance(60)  # login_timeout
    assert [e.reason for e in rig.frontend.of(ev.Reconnecting)] == ["the backend did not answer the login in time"]


@pytest_twisted.inlineCallbacks
def test_login_timeout_logs_the_user_out_of_the_backend(rig):
    """The backend may still finish the timed-out login: it is told to drop it before the next attempt."""
    peer = yield rig.start()
    yield rig.open(peer, connect=False)
    peer.take()
    rig.clock.advance(60)  # login_timeout
    assert [(p.user, p.legacyName) for p in rig.frames(peer, W.TYPE_LOGOUT)] == [("alice", "alice")]
    assert "alice" not in rig.pool.users


@pytest_twisted.inlineCallbacks
def test_backend_disconnect_then_presence_logs_in_again(rig):
    peer = yield rig.start()
    yield rig.open(peer)
    peer.send(W.TYPE_DISCONNECTED, pb.Disconnected(user="alice", error=2, message="bad password"))
    assert [(d.error, d.message) for d in rig.frontend.of(ev.Disconnected)] == [(2, "bad password")]
    assert "alice" not in rig.pool.users
    peer.take()
    yield rig.gateway.presence_changed("alice", "a", pr.ONLINE)
    yield wait_until(lambda: rig.frames(peer, W.TYPE_LOGIN), timeout=10)


@pytest_twisted.inlineCallbacks
def test_vcard_answer_and_timeout(rig):
    peer = yield rig.start()
    yield rig.open(peer)
    d = rig.gateway.request_vcard("alice", "bob")
    req = rig.frames(peer, W.TYPE_VCARD)[0]
    peer.send(W.TYPE_VCARD, pb.VCard(userName="alice", buddyName="bob", id=req.id, fullname="Bob B"))
    card = yield d
    assert card.fullname == "Bob B"
    d2 = rig.gateway.request_vcard("alice", "carol")
    rig.clock.advance(40)
    with pytest.raises(VCardTimeout):
        yield d2


@pytest_twisted.inlineCallbacks
def test_buddies_are_persisted_and_events_translated(rig):
    peer = yield rig.start()
    yield rig.open(peer)
    peer.send(W.TYPE_BUDDY_CHANGED, pb.Buddy(userName="alice", buddyName="bob", alias="Bob", group=["Friends"],
                                             status=pb.STATUS_AWAY, statusMessage="out"))
    peer.send(W.TYPE_BUDDY_CHANGED, pb.Buddy(userName="alice", buddyName="bob", status=pb.STATUS_ONLINE))
    changed = rig.frontend.of(ev.BuddyChanged)
    assert changed[0].buddy == ev.Buddy("bob", "Bob", ("Friends",), pr.AWAY, "out")
    assert changed[1].buddy.alias == "Bob" and changed[1].buddy.groups == ("Friends",)  # empty = unchanged
    peer.send(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName="alice", buddyName="bob", message="hi",
                                                          timestamp="20240102T030405"))
    peer.send(W.TYPE_BUDDY_TYPED, pb.Buddy(userName="alice", buddyName="bob"))
    msg = rig.frontend.of(ev.MessageReceived)[0]
    assert msg.body == "hi" and msg.timestamp is not None and msg.timestamp.year == 2024
    assert rig.frontend.of(ev.Typing)[0].state == "paused"
    record = yield rig.store.get_user("alice")
    yield wait_until(lambda: True)
    buddies = yield rig.store.get_buddies(record.id)
    assert [(b.name, b.alias, tuple(b.groups)) for b in buddies] == [("bob", "Bob", ("Friends",))]
    peer.send(W.TYPE_BUDDY_REMOVED, pb.Buddy(userName="alice", buddyName="bob"))
    assert rig.frontend.of(ev.BuddyRemoved)[0].buddy_name == "bob"


@pytest_twisted.inlineCallbacks
def test_stored_buddies_go_out_at_login_when_the_backend_asks(rig):
    peer = yield rig.start()
    peer.send(W.TYPE_BACKEND_CONFIG, pb.BackendConfig(config="[features]\nsend_buddies_on_login=1\n"))
    record = yield rig.store.register_user("alice", "alice", "pw")
    from transport.storage.gateway import BuddyRecord
    yield rig.store.upsert_buddy(record.id, BuddyRecord("bob", "Bob", ("Friends",)))
    yield rig.open(peer, connect=False)
    yield wait_until(lambda: rig.frames(peer, W.TYPE_BUDDIES), timeout=10)
    types = [p.type for p in peer.received()]
    assert types.index(W.TYPE_LOGIN) < types.index(W.TYPE_BUDDIES)
    sent = rig.frames(peer, W.TYPE_BUDDIES)[0].buddy
    assert [(b.buddyName, b.alias, list(b.group)) for b in sent] == [("bob", "Bob", ["Friends"])]


@pytest_twisted.inlineCallbacks
def test_stop_cancels_the_gateway_timers(rig):
    """A stopping main instance leaves no re-login or vCard timer behind, and starts no login."""
    peer = yield rig.start()
    yield rig.open(peer)
    vcard = rig.gateway.request_vcard("alice", "bob")
    peer.lose()  # alice's backend crashed: a re-login is scheduled
    user = rig.gateway.users["alice"]
    assert user.timer is not None and user.timer.active()
    timer = user.timer
    rig.gateway.stop()
    assert not timer.active()
    with pytest.raises(VCardTimeout):
        yield vcard
    calls = len(rig.spawned)
    rig.clock.advance(120)
    assert len(rig.spawned) == calls and "alice" not in rig.pool.waiting


@pytest_twisted.inlineCallbacks
def test_password_the_store_cannot_keep_is_a_refused_registration(rig):
    """Frontends answer RegistrationRefused in their protocol; a store error would be an internal error."""
    from transport.core.gateway import RegistrationRefused

    yield rig.start()
    with pytest.raises(RegistrationRefused, match="encryption_key"):
        yield rig.gateway.register("m@x", "mallory", "enc1:looks-encrypted")


@pytest_twisted.inlineCallbacks
def test_stored_buddies_follow_a_login_that_waited_for_a_spawn(tmp_path):
    """BUDDIES is decided by the backend that gets the LOGIN, even when none was running at login time."""
    rig = Rig(tmp_path)
    try:
        rig.database.start()
        yield rig.store.start()
        record = yield rig.store.register_user("alice", "alice", "pw")
        from transport.storage.gateway import BuddyRecord
        yield rig.store.upsert_buddy(record.id, BuddyRecord("bob", "Bob", ("Friends",)))
        # no backend yet: the login waits for a spawn
        yield rig.gateway.session_opened(rig.frontend, "alice", "a", pr.ONLINE)
        yield wait_until(lambda: "alice" in rig.pool.waiting, timeout=10)
        peer = PeerBackend(rig.pool, 50000)
        peer.send(W.TYPE_BACKEND_CONFIG, pb.BackendConfig(config="[features]\nsend_buddies_on_login=1\n"))
        peer.pong()
        yield wait_until(lambda: rig.frames(peer, W.TYPE_BUDDIES), timeout=10)
        types = [p.type for p in peer.received()]
        assert types.index(W.TYPE_LOGIN) < types.index(W.TYPE_BUDDIES)
        # a backend that did not ask gets no BUDDIES
        rig2 = Rig(tmp_path / "second")
        rig2.database.start()
        yield rig2.store.start()
        record = yield rig2.store.register_user("alice", "alice", "pw")
        yield rig2.store.upsert_buddy(record.id, BuddyRecord("bob", "Bob", ()))
        peer2 = rig2.connect_backend()
        yield rig2.open(peer2, connect=False)
        assert not rig2.frames(peer2, W.TYPE_BUDDIES)
        yield rig2.stop()
    finally:
        yield rig.stop()
