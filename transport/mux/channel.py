"""``ChannelSocket``: one channel of a multiplexed socket, as a Twisted transport.

Any ``Protocol`` runs over a channel: :meth:`ChannelSocket.attach` calls its
``makeConnection``; ``write``/``loseConnection``/``getPeer`` behave as on TCP.

Flow control, both ways, without extending the wire protocol:

* **writing** - a producer registered on a channel (``registerProducer``) is
  paused when the TLS connection's send buffer is full (the multiplexed socket
  is itself a streaming producer of the TLS transport) and resumed when it
  drains. A writer that honours pauses never buffers more than the TLS
  transport's buffer.
* **reading** - ``pauseProducing()`` on the channel (what a slow consumer does
  to its transport) stops deliveries; frames that keep arriving for it are kept
  and counted against the connection's receive budget (``max_buffered``). Past
  the budget the whole TLS connection stops reading, so TCP's window pushes
  back on the sending side, whose TLS buffer fills, which pauses its channel
  producers. Memory on both sides stays bounded; the price is that a reader
  who never resumes stalls the other channels of that connection (head-of-line
  blocking, as with any single-stream multiplexer without per-channel windows).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet import error
from twisted.internet.interfaces import IAddress, IConsumer, IProducer, IPushProducer, ITransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

if TYPE_CHECKING:
    from transport.mux.protocol import MultiplexedSocket

log = Logger()


@implementer(IAddress)
@dataclass(frozen=True)
class ChannelAddress:
    """The address of one end of a channel: the device, the channel id and name."""

    device_id: str | None
    channel: int
    name: str


@implementer(ITransport, IPushProducer, IConsumer)
class ChannelSocket:
    """One channel; created by the multiplexed socket, never by hand."""

    def __init__(self, sock: MultiplexedSocket, channel: int, name: str) -> None:
        self._sock = sock
        self.id = channel
        self.name = name
        self.created = time.time()
        self.bytes_in = 0
        self.bytes_out = 0
        self.protocol: Protocol | None = None
        self.connected = True
        self.disconnecting = False
        self._paused = False
        self._inbuf: deque[bytes] = deque()
        self._buffered = 0
        self._lost_reason: Failure | None = None   # set when closed before delivery finished
        self._eof_pending = False
        self._producer: Any = None
        self._streaming = True
        self._pull_call: Any = None
        self._writer_paused = False
        self._wrote_since_resume = False

    def __repr__(self) -> str:
        return f"<ChannelSocket {self.id} {self.name!r} peer={self.peer_device}>"

    @property
    def peer_device(self) -> str | None:
        return self._sock.peer_device

    @property
    def buffered(self) -> int:
        """Bytes received but not yet delivered (the reader is paused or not attached)."""
        return self._buffered

    # --- attaching a protocol -------------------------------------------

    def attach(self, protocol: Protocol) -> Protocol:
        """Run *protocol* over this channel (``makeConnection``), then deliver what has arrived."""
        if self.protocol is not None:
            raise RuntimeError(f"channel {self.id} already has a protocol")
        self.protocol = protocol
        protocol.makeConnection(self)
        self._deliver()
        return protocol

    # --- ITransport -----------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.connected or self.disconnecting or not data:
            return
        self.bytes_out += len(data)
        self._wrote_since_resume = True
        self._sock._send_data(self.id, data)

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """Send EOF; ``connectionLost`` (ConnectionDone) follows when the peer's EOF comes back."""
        if not self.connected or self.disconnecting:
            return
        self.disconnecting = True
        self._stop_pull()
        self._sock._send_eof(self.id)

    def abortConnection(self) -> None:
        """Send EOF and report the channel lost at once (ConnectionAborted)."""
        if not self.connected:
            return
        self.loseConnection()
        self._lost(Failure(error.ConnectionAborted()), immediately=True)

    def getPeer(self) -> ChannelAddress:
        return ChannelAddress(self._sock.peer_device, self.id, self.name)

    def getHost(self) -> ChannelAddress:
        return ChannelAddress(self._sock.local_device, self.id, self.name)

    # --- IPushProducer: the application pacing what it receives ----------

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._deliver()

    def stopProducing(self) -> None:
        self.loseConnection()

    # --- IConsumer: the application's producer pacing what it sends ------

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        if self._producer is not None:
            raise RuntimeError(f"channel {self.id} already has a producer")
        if not self.connected:
            producer.stopProducing()
            return
        self._producer = producer
        self._streaming = streaming
        self._writer_paused = False
        if self._sock.writing_paused:
            self._sock._writer_registered_while_paused(self)
        elif not streaming:
            self._schedule_pull()

    def unregisterProducer(self) -> None:
        self._producer = None
        self._writer_paused = False
        self._stop_pull()

    # --- called by the multiplexed socket --------------------------------

    def _pause_writer(self) -> bool:
        """Pause our producer (the connection's send buffer is full); whether there was one to pause."""
        if self._producer is None or self._writer_paused:
            return False
        self._writer_paused = True
        if self._streaming:
            self._producer.pauseProducing()
        return True

    def _resume_writer(self) -> bool:
        """Resume our producer; whether it was paused (and still exists)."""
        if not self._writer_paused:
            return False
        self._writer_paused = False
        self._wrote_since_resume = False
        if self._producer is None or not self.connected:
            return False
        if self._streaming:
            self._producer.resumeProducing()
        else:
            self._schedule_pull()
        return True

    def _schedule_pull(self) -> None:
        if self._pull_call is None and self._producer is not None and not self._streaming:
            self._pull_call = self._sock.clock.callLater(0, self._pull)

    def _pull(self) -> None:
        self._pull_call = None
        if self._producer is None or self._streaming or not self.connected:
            return
        if self._writer_paused:
            return  # _resume_writer schedules the next pull
        self._producer.resumeProducing()
        self._schedule_pull()

    def _stop_pull(self) -> None:
        if self._pull_call is not None and self._pull_call.active():
            self._pull_call.cancel()
        self._pull_call = None

    def _received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self.protocol is not None and not self._paused and not self._inbuf:
            self._hand(data)
            return
        self._inbuf.append(data)
        self._buffered += len(data)
        self._sock._buffered_changed(len(data))

    def _deliver(self) -> None:
        while self._inbuf and not self._paused and self.protocol is not None:
            data = self._inbuf.popleft()
            self._buffered -= len(data)
            self._sock._buffered_changed(-len(data))
            self._hand(data)
        if not self._inbuf and self._lost_reason is not None and self.protocol is not None:
            reason, self._lost_reason = self._lost_reason, None
            self._finish(reason)

    def _hand(self, data: bytes) -> None:
        # a protocol that raises loses its own channel, as a TCP protocol loses its
        # connection; the other channels of the connection do not notice
        try:
            self.protocol.dataReceived(data)  # type: ignore[union-attr]
        except Exception:
            log.failure("mux: the protocol of channel {id} ({name!r}) failed; closing the channel",
                        id=self.id, name=self.name)
            self.abortConnection()

    def _lost(self, reason: Failure, immediately: bool = False) -> None:
        """The channel is over: the peer's EOF (ConnectionDone) or the connection's loss (an error)."""
        if not self.connected:
            return
        self.connected = False
        self._stop_pull()
        if immediately or not reason.check(error.ConnectionDone):
            # an error: what was not delivered yet is dropped with the channel
            if self._buffered:
                self._sock._buffered_changed(-self._buffered)
            self._inbuf.clear()
            self._buffered = 0
        if self._inbuf or self.protocol is None:
            self._lost_reason = reason  # delivered after the buffered data / on attach
            return
        self._finish(reason)

    def _finish(self, reason: Failure) -> None:
        producer, self._producer = self._producer, None
        protocol = self.protocol
        for step in (getattr(producer, "stopProducing", None),
                     (lambda: protocol.connectionLost(reason)) if protocol is not None else None):
            if step is None:
                continue
            try:
                step()
            except Exception:
                log.failure("mux: closing channel {id} ({name!r}) failed", id=self.id, name=self.name)


def attach_factory(channel: ChannelSocket, factory: Factory) -> Any:
    """Build a protocol from *factory* for *channel* (``buildProtocol(peer address)``) and attach it.

    Returns the protocol, or None when the factory refused (the channel is then closed).
    """
    protocol: Any = factory.buildProtocol(channel.getPeer())
    if protocol is None:
        channel.loseConnection()
        return None
    return channel.attach(protocol)
