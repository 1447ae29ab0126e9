"""``MultiplexedSocket``: the Twisted protocol that runs the multiplexer over one TLS connection.

It sits inside Twisted's ``TLSMemoryBIOProtocol`` (so it sees clear text), feeds
the sans-I/O :class:`~transport.mux.multiplexer.Multiplexer`, and turns its
events into :class:`~transport.mux.channel.ChannelSocket` life cycles:

* ``open_channel(name)`` sends a REQUEST and returns a Deferred that fires with
  the channel on ACCEPT, or fails with :class:`ChannelDeclinedError`;
* an incoming REQUEST asks ``decide(socket, name)`` (bool or Deferred[bool]);
  accepted channels go to ``ready(channel)``;
* the peer's EOF ends a channel with ``ConnectionDone``; losing the connection
  ends every channel with ``ConnectionLost`` - never a clean EOF;
* beacons: ``send_beacon()`` sends ``{"p": true}``; without an answer within
  ``beacon_timeout`` seconds the connection is aborted. One is also sent after
  ``beacon_interval`` seconds without any incoming data.
* a control message that does not parse aborts the connection (the peer is
  broken or hostile); other connections do not notice.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, error
from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from transport.mux import multiplexer as m
from transport.mux.channel import ChannelSocket
from transport.mux.codec import MuxProtocolError
from transport.mux.identity import PeerRefused, verify_result

DEFAULT_BEACON_TIMEOUT = 3.0
DEFAULT_BEACON_INTERVAL = 30.0
DEFAULT_MAX_BUFFERED = 1024 * 1024
DEFAULT_HANDSHAKE_TIMEOUT = 30.0
#: the TCP transport's write buffer size before it pauses the channels' writers
SEND_BUFFER = 512 * 1024
#: disable Nagle's algorithm: frames are gathered here already, and a small control
#: message (a channel request, a beacon) must not wait for the peer's delayed ACK
NO_DELAY = True
#: channel producers resumed per reactor turn when the send buffer drained (1 is fair and fastest:
#: with more, the writers' own scheduling order decides who writes, and some may starve)
RESUME_BATCH = 1
#: gathered output handed to TLS at once (a multiple of TLS's 16 KiB records)
FLUSH_SIZE = 256 * 1024


class ChannelDeclinedError(Exception):
    """The peer declined the channel request (or the connection was closed before an answer)."""


class BeaconTimeout(error.ConnectionLost):
    """A beacon went unanswered: the connection is considered dead."""


Decide = Callable[["MultiplexedSocket", str], "bool | defer.Deferred[bool]"]
Ready = Callable[[ChannelSocket], None]


@implementer(IHandshakeListener, IPushProducer)
class MultiplexedSocket(Protocol):
    """One TLS connection carrying channels. *is_client* is the TLS role (it decides the id range)."""

    log = Logger()

    def __init__(self, is_client: bool, clock: Any, *, reactor: Any = None, decide: Decide | None = None,
                 ready: Ready | None = None,
                 local_device: str | None = None, beacon_interval: float = DEFAULT_BEACON_INTERVAL,
                 beacon_timeout: float = DEFAULT_BEACON_TIMEOUT, max_buffered: int = DEFAULT_MAX_BUFFERED,
                 handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT) -> None:
        self.mux = m.Multiplexer(is_client)
        self.clock = clock
        #: schedules output flushes; the real reactor even when tests inject a Clock for beacons
        self.reactor = reactor if reactor is not None else clock
        self._out: list[bytes] = []
        self._out_size = 0
        self._flush_call: Any = None
        self.decide = decide
        self.ready_callback = ready
        self.local_device = local_device
        self.peer_device: str | None = None
        self.beacon_interval = beacon_interval
        self.beacon_timeout = beacon_timeout
        self.max_buffered = max_buffered
        self.channels: dict[int, ChannelSocket] = {}
        self.channels_opened = 0
        #: channels whose producers this connection paused, oldest first
        self._paused_writers: deque[ChannelSocket] = deque()
        self._resume_call: Any = None
        self.created = time.time()
        self.bytes_in = 0
        self.bytes_out = 0
        self.writing_paused = False
        self.reading_paused = False
        self.buffered_in = 0
        self.peer_address: Any = None
        self._pending: dict[int, defer.Deferred[ChannelSocket]] = {}
        self._cancelled: set[int] = set()
        self._beacon_call: Any = None
        self._beacon_waiters: list[defer.Deferred[bool]] = []
        self._idle_call: Any = None
        self.handshake_timeout = handshake_timeout
        self._handshake_call: Any = None
        self._last_received = clock.seconds()
        self._close_reason: Exception | None = None
        self.is_connected = False
        self.lost_cleanly = False
        #: fires with this socket once the TLS handshake verified the peer
        self.handshake_done: defer.Deferred[MultiplexedSocket] = defer.Deferred()
        #: fires with the cause (an exception, not a failure) when the connection is gone
        self.closed: defer.Deferred[Exception] = defer.Deferred()

    def __repr__(self) -> str:
        return f"<MultiplexedSocket peer={self.peer_device} channels={len(self.channels)}>"

    # --- connection life cycle --------------------------------------------

    def connectionMade(self) -> None:
        self.is_connected = True
        self.peer_address = self.transport.getPeer()  # type: ignore[union-attr]
        # a larger send buffer under TLS: the TCP transport pauses its producer
        # (all channels' writers) each time it fills, so a bigger one means far
        # fewer pause/resume rounds over every channel; memory stays bounded by it
        tcp = getattr(self.transport, "transport", None)
        if tcp is not None and getattr(tcp, "bufferSize", SEND_BUFFER) < SEND_BUFFER:
            tcp.bufferSize = SEND_BUFFER
        if NO_DELAY and tcp is not None and hasattr(tcp, "setTcpNoDelay"):
            try:
                tcp.setTcpNoDelay(True)
            except OSError:  # not a TCP socket (e.g. a UNIX endpoint)
                pass
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self._write(self.mux.initiate())
        self._schedule_idle_check()
        # a peer that connects and never completes the handshake must not hold the socket forever
        self._handshake_call = self.clock.callLater(self.handshake_timeout, self._handshake_expired)

    def _handshake_expired(self) -> None:
        self._handshake_call = None
        self.log.info("mux: TLS handshake with {addr} not done after {t}s; closing", addr=self.peer_address,
                      t=self.handshake_timeout)
        self._abort(error.TimeoutError(f"TLS handshake not done within {self.handshake_timeout}s"))

    def handshakeCompleted(self) -> None:
        if self._handshake_call is not None and self._handshake_call.active():
            self._handshake_call.cancel()
        self._handshake_call = None
        result = verify_result(self.transport.getHandle())  # type: ignore[union-attr]
        self.peer_device = result.device_id
        if self.peer_device is None:  # cannot happen with our creators; refuse rather than guess
            self._abort(PeerRefused("peer presented no verified certificate"))
            return
        self.handshake_done.callback(self)

    def connectionLost(self, reason: Failure = error.ConnectionDone) -> None:  # type: ignore[assignment]
        self.is_connected = False
        #: the TLS connection itself ended cleanly (close_notify / FIN), whatever the channels were told
        self.lost_cleanly = self._close_reason is None and isinstance(reason, Failure) \
            and reason.check(error.ConnectionDone) is not None
        self._out.clear()
        self._paused_writers.clear()
        for call in (self._beacon_call, self._idle_call, self._flush_call, self._handshake_call, self._resume_call):
            if call is not None and call.active():
                call.cancel()
        self._beacon_call = None
        self._beacon_settled(False)
        cause: Exception
        if self._close_reason is not None:
            cause = self._close_reason
        else:
            refused = None
            try:
                refused = verify_result(self.transport.getHandle()).error  # type: ignore[union-attr]
            except Exception:
                pass
            if refused and self.peer_device is None:
                cause = PeerRefused(refused)
            else:
                what = reason.getErrorMessage() if isinstance(reason, Failure) else str(reason)
                cause = error.ConnectionLost(f"mux connection to {self.peer_device} lost: {what}")
        if not self.handshake_done.called:
            self.handshake_done.errback(Failure(cause))
        self.mux.connection_lost()
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(Failure(cause))
        channels, self.channels = self.channels, {}
        for channel in channels.values():
            channel._lost(Failure(cause if isinstance(cause, error.ConnectionLost)
                                  else error.ConnectionLost(str(cause))))
        self.closed.callback(cause)

    def close(self) -> None:
        """Close the TLS connection (channels end with ConnectionLost)."""
        if self.transport is not None and self.is_connected:
            self.flush()
            # the TLS transport waits for its producer to go before closing
            self.transport.unregisterProducer()  # type: ignore[attr-defined]
            self.transport.loseConnection()

    def _abort(self, reason: Exception) -> None:
        self._close_reason = reason
        if self.transport is not None and self.is_connected:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # --- beacons ----------------------------------------------------------

    def send_beacon(self) -> defer.Deferred[bool]:
        """Ask the peer to prove it is alive (e.g. after a connectivity change).

        Fires True when the answer arrives, False when the beacon timed out (the
        connection is then aborted and every channel fails with BeaconTimeout).
        """
        d: defer.Deferred[bool] = defer.Deferred()
        if not self.is_connected:
            d.callback(False)
            return d
        self._beacon_waiters.append(d)
        if self._beacon_call is None:
            self._write(self.mux.send_beacon())
            self._beacon_call = self.clock.callLater(self.beacon_timeout, self._beacon_expired)
        return d

    def _beacon_settled(self, answered: bool) -> None:
        waiters, self._beacon_waiters = self._beacon_waiters, []
        for d in waiters:
            d.callback(answered)

    def _beacon_expired(self) -> None:
        self._beacon_call = None
        self.log.warn("mux: beacon to {peer} unanswered after {t}s; closing", peer=self.peer_device,
                      t=self.beacon_timeout)
        self._abort(BeaconTimeout(f"beacon unanswered within {self.beacon_timeout}s"))
        self._beacon_settled(False)

    def _schedule_idle_check(self) -> None:
        if self.beacon_interval > 0:
            self._idle_call = self.clock.callLater(self.beacon_interval, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_call = None
        if not self.is_connected:
            return
        idle = self.clock.seconds() - self._last_received
        if idle >= self.beacon_interval:
            self.send_beacon()
            delay = self.beacon_interval
        else:
            delay = self.beacon_interval - idle
        self._idle_call = self.clock.callLater(delay, self._idle_check)

    # --- channels -----------------------------------------------------------

    def open_channel(self, name: str) -> defer.Deferred[ChannelSocket]:
        """Ask the peer for a channel called *name*."""
        if not self.is_connected:
            return defer.fail(error.ConnectionLost("mux connection is closed"))
        try:
            cid, data = self.mux.request_channel(name)
        except m.ChannelLimitReached as e:
            return defer.fail(e)

        def cancel(d: defer.Deferred[ChannelSocket]) -> None:
            self._pending.pop(cid, None)
            self._cancelled.add(cid)

        d: defer.Deferred[ChannelSocket] = defer.Deferred(cancel)
        self._pending[cid] = d
        self._write(data)
        return d

    def _send_data(self, cid: int, data: bytes) -> None:
        out = self.mux.send(cid, data)
        if out:
            self._write(out)

    def _send_eof(self, cid: int) -> None:
        out = self.mux.send_eof(cid)
        if out:
            self._write(out)

    def _write(self, data: bytes) -> None:
        # Frames are gathered and written together (at FLUSH_SIZE, or at the end of
        # this reactor iteration): a 64 KiB channel write is 65544 bytes of frames,
        # and written alone it would cost TLS a fifth, 8-byte record.
        if not self.is_connected or not data:
            return
        self.bytes_out += len(data)
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= FLUSH_SIZE:
            self.flush()
        elif self._flush_call is None:
            self._flush_call = self.reactor.callLater(0, self.flush)

    def flush(self) -> None:
        """Hand the gathered frames to TLS now."""
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        if not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        if self.is_connected:
            self.transport.write(data)  # type: ignore[union-attr]

    # --- receiving ---------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self._last_received = self.clock.seconds()
        self.bytes_in += len(data)
        try:
            events = self.mux.receive_data(data)
        except MuxProtocolError as e:
            self.log.warn("mux: protocol error from {peer}: {e}; closing", peer=self.peer_device, e=e)
            self._abort(error.ConnectionLost(f"protocol error: {e}"))
            return
        out = self.mux.data_to_send()
        if out:
            self._write(out)
        for ev in events:
            if not self.is_connected:
                return
            if isinstance(ev, m.DataReceived):
                ch = self.channels.get(ev.channel)
                if ch is not None:
                    ch._received(ev.data)
            elif isinstance(ev, m.ChannelClosed):
                ch = self.channels.pop(ev.channel, None)
                if ch is not None:
                    ch._lost(Failure(error.ConnectionDone()))
            elif isinstance(ev, m.ChannelAccepted):
                self._accepted(ev)
            elif isinstance(ev, m.ChannelDeclined):
                d = self._pending.pop(ev.channel, None)
                self._cancelled.discard(ev.channel)
                if d is not None:
                    d.errback(ChannelDeclinedError(f"channel {ev.name!r} declined by {self.peer_device}"))
            elif isinstance(ev, m.ChannelRequested):
                self._requested(ev)
            elif isinstance(ev, m.BeaconAnswered):
                if self._beacon_call is not None and self._beacon_call.active():
                    self._beacon_call.cancel()
                self._beacon_call = None
                self._beacon_settled(True)
            elif isinstance(ev, m.ChannelRefused):
                self.log.info("mux: refused request {name!r} from {peer}: {reason}", name=ev.name,
                              peer=self.peer_device, reason=ev.reason)
            elif isinstance(ev, m.UnknownChannelData):
                self.log.debug("mux: {n} bytes for unknown channel {c} dropped", n=ev.length, c=ev.channel)

    def _accepted(self, ev: m.ChannelAccepted) -> None:
        self.channels_opened += 1
        channel = ChannelSocket(self, ev.channel, ev.name)
        self.channels[ev.channel] = channel
        d = self._pending.pop(ev.channel, None)
        if d is None:  # the requester gave up meanwhile
            self._cancelled.discard(ev.channel)
            channel.loseConnection()
            return
        d.callback(channel)

    def _requested(self, ev: m.ChannelRequested) -> None:
        cid, name = ev.channel, ev.name
        if self.decide is None or self.peer_device is None:
            self._write(self.mux.decline(cid))
            return
        try:
            verdict = defer.maybeDeferred(self.decide, self, name)
        except Exception:  # pragma: no cover - maybeDeferred catches
            verdict = defer.succeed(False)

        def answer(ok: Any) -> None:
            if not self.is_connected or self.mux.state(cid) is not m.State.REQUESTED_IN:
                return
            if ok is not True:
                self._write(self.mux.decline(cid))
                return
            self._write(self.mux.accept(cid))
            self.channels_opened += 1
            channel = ChannelSocket(self, cid, name)
            self.channels[cid] = channel
            if self.ready_callback is not None:
                try:
                    self.ready_callback(channel)
                except Exception:
                    self.log.failure("mux: channel-ready callback failed for {name!r}", name=name)
                    channel.abortConnection()

        def failed(f: Failure) -> None:
            self.log.failure("mux: channel-request callback failed for {name!r}", f, name=name)
            answer(False)

        verdict.addCallbacks(answer, failed)

    # --- flow control --------------------------------------------------------

    def pauseProducing(self) -> None:
        """The TLS send buffer is full: pause every channel's producer.

        Producers that were resumed but wrote nothing before the buffer filled
        again keep their place at the head of the queue; those that wrote go to
        its end - so the turns go round even when every producer writes a whole
        buffer's worth at once.
        """
        self.writing_paused = True
        waited: list[ChannelSocket] = []
        for channel in list(self.channels.values()):
            if channel._pause_writer():
                if channel._wrote_since_resume:
                    self._paused_writers.append(channel)
                else:
                    waited.append(channel)
        self._paused_writers.extendleft(reversed(waited))

    def resumeProducing(self) -> None:
        """The send buffer drained: resume the paused producers, RESUME_BATCH per reactor turn.

        Producers are resumed from the head of the queue; the next one follows on
        the next reactor turn unless the buffer filled again. With many busy
        channels only the few needed are woken per cycle (instead of all of them
        every time 512 KiB drained), and because a producer that did not get to
        write keeps its place (see :meth:`pauseProducing`) the turns are fair
        whatever order the producers' own writes are scheduled in.
        """
        self.writing_paused = False
        self._resume_batch()

    def _writer_registered_while_paused(self, channel: ChannelSocket) -> None:
        if channel._pause_writer():
            self._paused_writers.append(channel)

    def _resume_batch(self) -> None:
        self._resume_call = None
        queue = self._paused_writers
        n = 0
        while queue and not self.writing_paused and n < RESUME_BATCH:
            channel = queue.popleft()
            if channel._resume_writer():
                n += 1
        if queue and not self.writing_paused and self.is_connected:
            self._resume_call = self.reactor.callLater(0, self._resume_batch)

    def stopProducing(self) -> None:
        pass  # connectionLost follows and ends every channel

    def _buffered_changed(self, delta: int) -> None:
        self.buffered_in += delta
        if self.transport is None or not self.is_connected:
            return
        if not self.reading_paused and self.buffered_in > self.max_buffered:
            self.reading_paused = True
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        elif self.reading_paused and self.buffered_in <= self.max_buffered // 2:
            self.reading_paused = False
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    # --- listing -------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """This connection and its channels, for listings and the status page."""
        return {
            "device_id": self.peer_device,
            "address": str(self.peer_address) if self.peer_address is not None else None,
            "tls_role": "client" if self.mux.is_client else "server",
            "created": self.created,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "channels": [
                {"id": c.id, "name": c.name, "bytes_in": c.bytes_in, "bytes_out": c.bytes_out, "created": c.created}
                for c in sorted(self.channels.values(), key=lambda c: c.id)
            ],
        }
