"""BackendPool rules with a task.Clock and in-memory backends (see test_pool_harness)."""

from __future__ import annotations

import os
import shlex

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import task

from tests.unit.test_pool_harness import PeerBackend, login, make_pool
from transport.backend import transport_pb2 as pb
from transport.backend.codec import encode
from transport.backend.link import COUNTERS
from transport.backend.pool import GONE, QUERY_REFUSAL, READY, SPAWNING

W = pb.WrapperMessage


def test_spawn_command_line_is_spectrum_compatible(tmp_path):
    pool, clock, spawned = make_pool(tmp_path, backend="/usr/bin/my-backend --flag 'a b'")
    assert len(spawned) == 1
    backend, argv = spawned[0]
    assert argv == ["/usr/bin/my-backend", "--flag", "a b", "--host", "127.0.0.1", "--port", "4242",
                    "--service.backend_id=1", "/etc/transport.ini"]
    assert backend.state == SPAWNING and pool.spawning is backend
    assert shlex.split(pool.config.get("service", "backend"))[0] == "/usr/bin/my-backend"


def test_first_pong_makes_ready_and_sends_waiting_logins(tmp_path):
    pool, clock, spawned = make_pool(tmp_path, start_backends=0)
    assert spawned == []
    pool.login("a", login("a"))
    assert len(spawned) == 1 and "a" in pool.waiting
    peer = PeerBackend(pool)
    assert peer.types() == [W.TYPE_PING]  # PING on connect
    peer.send(W.TYPE_BACKEND_CONFIG, pb.BackendConfig(config="[features]\nreceipts=1\n"))
    assert [p.type for p in peer.take()] == [W.TYPE_PING]  # no LOGIN before the first PONG
    peer.pong()
    frames = peer.take()
    assert [p.type for p in frames] == [W.TYPE_LOGIN] and frames[0].payload.user == "a"
    backend = spawned[0][0]
    assert backend.state == READY and backend.features.receipts and pool.users["a"] is backend
    assert pool.sink.global_packets[0].type == W.TYPE_BACKEND_CONFIG


def test_users_per_backend_with_one_spawn_in_flight(tmp_path):
    pool, clock, spawned = make_pool(tmp_path, users_per_backend=2, start_backends=0)
    for u in "abcde":
        pool.login(u, login(u))
    assert len(spawned) == 1  # one spawn in flight, whatever the queue
    peers = []
    for n in range(3):
        peer = PeerBackend(pool, 50000 + n)
        peer.pong()
        peers.append(peer)
        assert len(spawned) == min(n + 2, 3)
    assert [sorted(spawned[i][0].users) for i in range(3)] == [["a", "b"], ["c", "d"], ["e"]]
    assert pool.waiting == {}
    pool.login("f", login("f"))
    assert pool.users["f"] is spawned[2][0] and len(spawned) == 3  # room left on backend 3


def test_stats_match_the_spawned_process_by_pid(tmp_path):
    pool, clock, spawned = make_pool(tmp_path, start_backends=0)
    pool.login("a", login("a"))
    backend = spawned[0][0]

    class Proc:
        pid = 777
        ended = False

        def kill(self, sig):
            self.ended = True
    backend.process = Proc()
    intruder = PeerBackend(pool, 50001)
    intruder.pong(pid=999)  # connected, but not the process we spawned: a remote backend
    own = PeerBackend(pool, 50002)
    own.pong(pid=777)
    remote = intruder.link.backend
    assert remote.remote and remote.state == READY and remote is not backend
    assert own.link.backend is backend and backend.stats.res == 1000


def test_pong_without_stats_binds_to_the_spawn_in_flight_after_a_moment(tmp_path):
    pool, clock, spawned = make_pool(tmp_path)
    peer = PeerBackend(pool)
    peer.send(W.TYPE_PONG)
    assert peer.link.backend is None
    clock.advance(0.5)
    assert peer.link.backend is spawned[0][0] and spawned[0][0].state == READY


def test_ping_kill_rule(tmp_path):
    pool, clock, spawned = make_pool(tmp_path, ping_interval=20)
    peer = PeerBackend(pool)
    peer.pong()
    backend = spawned[0][0]
    pool.login("a", login("a"))
    peer.take()
    clock.advance(20)
    assert peer.types() == [W.TYPE_PING]
    clock.advance(10)
    peer.send(W.TYPE_STATS, pb.Stats(res=1, init_res=1, shared=1, id="1"))  # any frame is a sign of life
    clock.advance(10)
    assert backend.state == READY
    peer.take()
    clock.advance(20)  # the previous PING is unanswered when the next is due
    assert backend.state == GONE
    assert peer.transport.disconnecting
    assert pool.sink.lost == [(["a"], "backend-1 ping timeout")]
    assert [c.reason for c in pool.crashes] == ["ping timeout"]
    assert "a" not in pool.users


def test_start_timeout_hands_waiting_users_back(tmp_path):
    pool, clock, spawned = make_pool(tmp_path, start_backends=0, backend_start_timeout=30)
    pool.login("a", login("a"))
    clock.advance(29)
    assert spawned[0][0].state == SPAWNING
    clock.advance(1)
    assert spawned[0][0].state == GONE
    assert pool.sink.lost == [(["a"], "backend-1 start timeout")]
    assert pool.spawning is None and pool.waiting == {}


def test_crash_on_link_loss(tmp_path):
    pool, clock, spawned = make_pool(tmp_path)
    peer = PeerBackend(pool)
    peer.pong()
    pool.login("a", login("a"))
    pool.login("b", login("b"))
    peer.lose()
    assert pool.sink.lost[0][0] == ["a", "b"]
    assert pool.users == {} and pool.backends == {}
    # the re-login goes to a new backend
    pool.login("a", login("a"))
    assert len(spawned) == 2


def test_oversized_frame_closes_the_link(tmp_path):
    pool, clock, spawned = make_pool(tmp_path, max_frame_size=1024)
    peer = PeerBackend(pool)
    peer.pong()
    pool.login("a", login("a"))
    before = COUNTERS.oversized
    peer.link.dataReceived(b"\x00\x10\x00\x00" + b"x" * 10)
    assert peer.transport.disconnecting and peer.link.closed
    assert COUNTERS.oversized == before + 1
    peer.lose()
    assert pool.sink.lost[0][0] == ["a"] and "oversized frame" in pool.sink.lost[0][1]


def test_unparsable_frames_are_skipped_and_counted(tmp_path):
    pool, clock, spawned = make_pool(tmp_path)
    peer = PeerBackend(pool)
    peer.pong()
    pool.login("a", login("a"))
    before = COUNTERS.frames_skipped
    peer.link.dataReceived(b"\x00\x00\x00\x03\xff\xff\xff")
    peer.send(W.TYPE_CONNECTED, pb.Connected(user="a"))
    assert COUNTERS.frames_skipped == before + 1
    assert not peer.link.closed
    assert [(u, p.type) for u, p in pool.sink.packets] == [("a", W.TYPE_CONNECTED)]


def test_frames_about_users_of_other_backends_are_ignored(tmp_path):
    pool, clock, spawned = make_pool(tmp_path, users_per_backend=1)
    first = PeerBackend(pool, 50001)
    first.pong()
    pool.login("a", login("a"))
    pool.login("b", login("b"))
    second = PeerBackend(pool, 50002)
    second.pong()
    assert pool.users["b"] is second.link.backend
    second.send(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName="a", buddyName="x", message="spoof"))
    second.send(W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName="b", buddyName="x", message="fine"))
    assert [(u, p.payload.message) for u, p in pool.sink.packets] == [("b", "fine")]


def test_query_is_refused(tmp_path):
    pool, clock, spawned = make_pool(tmp_path)
    peer = PeerBackend(pool)
    peer.send(W.TYPE_QUERY, pb.BackendConfig(config="online_users"))
    peer.pong()
    peer.send(W.TYPE_QUERY, pb.BackendConfig(config="online_users"))
    answers = [p for p in peer.received() if p.type == W.TYPE_QUERY]
    assert [a.payload.config for a in answers] == [QUERY_REFUSAL, QUERY_REFUSAL]


def test_barrier_ping_confirms_without_receipts(tmp_path):
    pool, clock, spawned = make_pool(tmp_path)
    peer = PeerBackend(pool)
    peer.pong()
    pool.login("a", login("a"))
    peer.take()
    mark = pool.confirmation_mark("a")
    assert not pool.is_confirmed(mark)
    clock.advance(0.1)
    assert peer.types() == [W.TYPE_PING]  # the barrier
    peer.pong()
    assert pool.is_confirmed(mark) and pool.sink.confirmed == 1


def test_logout_frees_the_slot(tmp_path):
    pool, clock, spawned = make_pool(tmp_path, users_per_backend=1)
    peer = PeerBackend(pool)
    peer.pong()
    pool.login("a", login("a"))
    pool.logout("a", pb.Logout(user="a", legacyName="a"))
    assert peer.types()[-1] == W.TYPE_LOGOUT
    pool.login("b", login("b"))
    assert pool.users["b"] is peer.link.backend and len(spawned) == 1


def test_max_backends_makes_users_wait_for_a_free_slot(tmp_path):
    pool, clock, spawned = make_pool(tmp_path, users_per_backend=1, max_backends=1)
    peer = PeerBackend(pool)
    peer.pong()
    pool.login("a", login("a"))
    pool.login("b", login("b"))
    assert len(spawned) == 1 and list(pool.waiting) == ["b"]
    pool.logout("a", pb.Logout(user="a", legacyName="a"))
    assert pool.users["b"] is peer.link.backend and pool.waiting == {}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.binary(max_size=300), max_size=12))
def test_arbitrary_bytes_never_break_the_pool(tmp_path, chunks):
    pool, clock, spawned = make_pool(tmp_path, max_frame_size=4096)
    good = PeerBackend(pool, 50001)
    good.pong()
    pool.login("a", login("a"))
    hostile = PeerBackend(pool, 50002)
    for chunk in chunks:
        hostile.link.dataReceived(chunk)
    if hostile.link.closed:
        hostile.lose()
    clock.advance(20)
    good.send(W.TYPE_PONG)
    # the good backend and its user are untouched, whatever the other link did
    assert good.link.backend.state == READY and pool.users["a"] is good.link.backend
    assert all(u != "a" for lost, _ in pool.sink.lost for u in lost)


def test_late_pong_to_the_second_unbound_ping_confirms_nothing_sent_after_it(tmp_path):
    """A backend PINGed twice before its first PONG answers both: the second PONG predates later frames."""
    pool, clock, spawned = make_pool(tmp_path, ping_interval=20)
    peer = PeerBackend(pool)
    clock.advance(20)  # the periodic PING reaches the link before its first PONG
    assert peer.types() == [W.TYPE_PING, W.TYPE_PING]
    peer.pong()  # answers the first PING: ready
    backend = spawned[0][0]
    assert backend.state == READY
    pool.login("a", login("a"))
    mark = pool.confirmation_mark("a")  # a message just written for "a"
    peer.send(W.TYPE_PONG)  # answers the second PING, sent before the message
    assert not pool.is_confirmed(mark)
    clock.advance(0.05)  # the barrier PING
    peer.send(W.TYPE_PONG)
    assert pool.is_confirmed(mark)


def test_unbound_link_keeps_a_bounded_number_of_early_frames(tmp_path):
    """A link that never PONGs lives two ping intervals: what it sends meanwhile is not all kept."""
    pool, clock, spawned = make_pool(tmp_path)
    peer = PeerBackend(pool)
    stats = pb.Stats(res=1, init_res=1, shared=1, id="4242")
    peer.link.dataReceived(b"".join(encode(W.TYPE_STATS, stats) for _ in range(1000)))
    assert peer.link.backend is None and len(peer.link.early) <= 16
    assert peer.link.stats_pid == 4242


def test_a_link_known_to_be_remote_is_never_taken_for_the_spawn_in_flight(tmp_path):
    """A mux-carried backend whose STATS names no pid must not be bound to the local spawn."""
    pool, clock, spawned = make_pool(tmp_path, start_backends=0)
    pool.login("a", login("a"))
    backend = spawned[0][0]
    carried = PeerBackend(pool, 50003)
    carried.link.remote = True
    carried.pong(pid=0)  # no pid in STATS: without the flag this would match the spawn in flight
    clock.advance(1)
    remote = carried.link.backend
    assert remote is not None and remote is not backend and remote.remote
    assert pool.spawning is backend  # the local spawn still waits for its own process


def test_command_line_overrides_reach_the_backends(tmp_path):
    """``twistd ... service.ping_interval=90``: the backends' file carries the override (last value wins)."""
    from transport import config as configuration
    from transport.backend.pool import BackendPool
    from transport.sdk import BackendConfigFile

    ini = tmp_path / "transport.ini"
    ini.write_text(f"[service]\nping_interval = 20\nstate_dir = {tmp_path / 'state'}\n[backend]\nx = 1\n")
    config = configuration.load(str(ini), ["service.ping_interval=90", "backend.x=2"])
    pool = BackendPool(config, reactor=None, clock=task.Clock(), spawn=lambda b, argv: None)
    path = pool._backend_config_path()
    assert path != str(ini)
    seen = BackendConfigFile.read(path)
    assert seen.ping_interval == 90.0 and seen.backend["x"] == "2"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    # without overrides the main instance's own file is passed as is
    plain = BackendPool(configuration.load(str(ini)), reactor=None, clock=task.Clock(), spawn=lambda b, argv: None)
    assert plain._backend_config_path() == str(ini.resolve())
