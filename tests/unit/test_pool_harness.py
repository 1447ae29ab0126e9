"""In-memory backends for the pool's unit tests: a BackendLink over a StringTransport, driven by hand.

The pool is real; what stands in for a backend process is a protocol peer that
speaks the real codec and whose every frame the test chooses. Time is a
``task.Clock``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from tests.peers.backends import make_config
from transport.backend import transport_pb2 as pb
from transport.backend.codec import FrameDecoder, Packet, encode
from transport.backend.pool import BackendPool

W = pb.WrapperMessage


class PeerBackend:
    """The far end of one link: send frames with :meth:`send`, read what the pool wrote with :meth:`received`."""

    def __init__(self, pool: BackendPool, port: int = 50000) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        self.link = pool.factory.buildProtocol(self.transport.getPeer())
        self.link.makeConnection(self.transport)
        self.decoder = FrameDecoder()
        self.got: list[Packet] = []

    def send(self, type_: int, payload: Any = None) -> None:
        self.link.dataReceived(encode(type_, payload))

    def received(self) -> list[Packet]:
        """Every frame the pool wrote so far (accumulated)."""
        self.got += self.decoder.feed(self.transport.value())
        self.transport.clear()
        return self.got

    def types(self) -> list[int]:
        return [p.type for p in self.received()]

    def take(self) -> list[Packet]:
        out = list(self.received())
        self.got.clear()
        return out

    def pong(self, pid: int = 0) -> None:
        """PONG and STATS in one read, as backends send them."""
        self.link.dataReceived(encode(W.TYPE_PONG) + encode(
            W.TYPE_STATS, pb.Stats(res=1000, init_res=900, shared=100, id=str(pid) if pid else "")))

    def lose(self, reason: str = "closed") -> None:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure
        self.link.connectionLost(Failure(ConnectionDone(reason)))


class RecordingSink:
    """Stands where the Gateway is: records what the pool hands over."""

    def __init__(self) -> None:
        self.packets: list[tuple[str, Packet]] = []
        self.global_packets: list[Packet] = []
        self.lost: list[tuple[list[str], str]] = []
        self.confirmed = 0

    def backend_packet(self, user: str, packet: Packet) -> None:
        self.packets.append((user, packet))

    def backend_global_packet(self, packet: Packet) -> None:
        self.global_packets.append(packet)

    def users_lost(self, users: list[str], reason: str) -> None:
        self.lost.append((list(users), reason))

    def backend_confirmed(self, users: Any) -> None:
        self.confirmed += 1


def make_pool(tmp_path: Any, sink: Any = None, **service: Any) -> tuple[BackendPool, task.Clock, list]:
    """A pool with a Clock and a spawn function that only records command lines."""
    clock = task.Clock()
    spawned: list[tuple[Any, list[str]]] = []
    config = make_config(tmp_path, **service)
    pool = BackendPool(config, reactor=None, clock=clock, spawn=lambda b, argv: spawned.append((b, argv)))
    pool.start_routing(sink if sink is not None else RecordingSink())
    pool.port_number = 4242
    pool.config_path = "/etc/transport.ini"
    pool.supervise()
    return pool, clock, spawned


def login(user: str) -> pb.Login:
    return pb.Login(user=user, legacyName=user, password="")
