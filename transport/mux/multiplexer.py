"""Sans-I/O state machine of one multiplexed socket (one TLS connection, many channels).

:class:`Multiplexer` remembers which channel ids are in use, who asked for what,
and whether a beacon is outstanding. ``receive_data(bytes)`` returns events
(small frozen dataclasses); the methods that send return the bytes to write.
Answers the protocol makes on its own while receiving - a beacon answer, the
DECLINE of a request for a reserved or busy id, the EOF that acknowledges the
peer's EOF - are collected in :meth:`data_to_send`.

Channel life cycle (ids are shared by both sides of the connection):

* ``request_channel(name)`` allocates an id - the TLS client from 0x0001
  upward, the TLS server from 0x8000 upward, never 0 or 0xFFFF, skipping ids in
  use, the lowest free id first so that closed ids come back - and sends
  ``[name, id, REQUEST]``. :class:`ChannelAccepted` or :class:`ChannelDeclined`
  follows.
* an incoming REQUEST for a reserved or busy id is declined at once
  (:class:`ChannelRefused`); otherwise :class:`ChannelRequested` asks the
  application, which answers with :meth:`accept` (ACCEPT is sent first, then
  the channel is open on both sides) or :meth:`decline`.
* ``send_eof(id)`` closes our direction; the id stays in use until the peer's
  EOF comes back. An EOF from the peer closes the channel
  (:class:`ChannelClosed`); if we had not sent ours, it is sent in reply. Data
  the peer sent before its EOF is still delivered.
* data for an unknown channel is dropped and counted (:class:`UnknownChannelData`).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from enum import Enum
from typing import Any

from transport.mux import codec
from transport.mux.codec import (
    ACCEPT,
    CONTROL_CHANNEL,
    DECLINE,
    PROTOCOL_CHANNEL,
    REQUEST,
    MuxProtocolError,
)

MAX_CHANNELS = 0xFFFE  # every id but 0 and 0xFFFF
CLIENT_FIRST_ID = 0x0001
SERVER_FIRST_ID = 0x8000


class ChannelLimitReached(Exception):
    """All 65534 channel ids of a connection are in use."""


class State(Enum):
    REQUESTED_OUT = "requested"   # we asked, no answer yet
    REQUESTED_IN = "pending"      # the peer asked, the application has not answered
    OPEN = "open"
    CLOSING = "closing"           # we sent EOF, waiting for the peer's


_RECEIVING = (State.OPEN, State.CLOSING)


# --- events ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionReceived:
    version: int


@dataclass(frozen=True, slots=True)
class BeaconRequested:
    """The peer sent ``{"p": true}``; the answer is already in data_to_send()."""


@dataclass(frozen=True, slots=True)
class BeaconAnswered:
    """Our outstanding beacon was answered."""


@dataclass(frozen=True, slots=True)
class ChannelRequested:
    channel: int
    name: str


@dataclass(frozen=True, slots=True)
class ChannelRefused:
    """An incoming request declined by the protocol itself (reserved or busy id)."""

    channel: int
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class ChannelAccepted:
    channel: int
    name: str


@dataclass(frozen=True, slots=True)
class ChannelDeclined:
    channel: int
    name: str


@dataclass(frozen=True, slots=True)
class DataReceived:
    channel: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ChannelClosed:
    """The peer's EOF arrived; the channel is finished and its id free again."""

    channel: int


@dataclass(frozen=True, slots=True)
class UnknownChannelData:
    channel: int
    length: int


@dataclass(frozen=True, slots=True)
class UnexpectedAnswer:
    """An ACCEPT/DECLINE for a channel we did not ask for (ignored)."""

    channel: int
    name: str
    state: int


Event = (VersionReceived | BeaconRequested | BeaconAnswered | ChannelRequested | ChannelRefused
         | ChannelAccepted | ChannelDeclined | DataReceived | ChannelClosed | UnknownChannelData
         | UnexpectedAnswer)


@dataclass
class _Channel:
    name: str
    state: State


class Multiplexer:
    """The channel bookkeeping of one connection; *is_client* is the TLS role."""

    def __init__(self, is_client: bool) -> None:
        self.is_client = is_client
        self._base = CLIENT_FIRST_ID if is_client else SERVER_FIRST_ID
        self._channels: dict[int, _Channel] = {}
        self._decoder = codec.StreamDecoder()
        self._control = codec.MessageStream()
        self._protocol = codec.MessageStream()
        self._outgoing: list[bytes] = []
        # id allocation: ids freed by us come back lowest first; "fresh" walks the
        # id space once from our base, wrapping, before the free heap is needed.
        self._free: list[int] = []
        self._fresh = 0  # how many ids of the 65534 were handed out fresh
        self.peer_version: int | None = None
        self.beacon_outstanding = False
        self.unknown_frames = 0
        self.unknown_bytes = 0

    # --- bookkeeping ------------------------------------------------------

    def state(self, channel: int) -> State | None:
        entry = self._channels.get(channel)
        return entry.state if entry else None

    def name(self, channel: int) -> str | None:
        entry = self._channels.get(channel)
        return entry.name if entry else None

    @property
    def channels_in_use(self) -> int:
        return len(self._channels)

    def _nth_id(self, n: int) -> int:
        # the n-th id from our base, in 1..0xFFFE, wrapping past 0xFFFE to 1
        return (self._base - 1 + n) % MAX_CHANNELS + 1

    def _allocate(self) -> int:
        if len(self._channels) >= MAX_CHANNELS:
            raise ChannelLimitReached("all 65534 channel ids are in use")
        while self._free:
            cid = heapq.heappop(self._free)
            if cid not in self._channels:
                return cid
        while self._fresh < MAX_CHANNELS:
            cid = self._nth_id(self._fresh)
            self._fresh += 1
            if cid not in self._channels:
                return cid
        # every id was handed out once and the heap is empty: ids freed by the
        # peer's channels are not in the heap, so scan from our base
        for n in range(MAX_CHANNELS):
            cid = self._nth_id(n)
            if cid not in self._channels:
                return cid
        raise ChannelLimitReached("all 65534 channel ids are in use")  # pragma: no cover

    def _release(self, channel: int) -> None:
        if self._channels.pop(channel, None) is not None:
            if self._is_ours(channel):
                heapq.heappush(self._free, channel)

    def _is_ours(self, channel: int) -> bool:
        # ids of our own range go back to the free heap; the peer's range is
        # reached again through "fresh" wrap-around or the final scan
        if self.is_client:
            return channel < SERVER_FIRST_ID
        return channel >= SERVER_FIRST_ID

    # --- sending ----------------------------------------------------------

    def initiate(self) -> bytes:
        """The first bytes of the connection: our protocol version."""
        return codec.encode_version()

    def request_channel(self, name: str) -> tuple[int, bytes]:
        """Allocate an id for a new channel called *name*; returns it and the REQUEST."""
        cid = self._allocate()
        self._channels[cid] = _Channel(name, State.REQUESTED_OUT)
        return cid, codec.encode_request(name, cid, REQUEST)

    def accept(self, channel: int) -> bytes:
        """Accept the peer's pending request: the channel is open from now on."""
        entry = self._channels.get(channel)
        if entry is None or entry.state is not State.REQUESTED_IN:
            raise ValueError(f"no pending request for channel {channel}")
        entry.state = State.OPEN
        return codec.encode_request(entry.name, channel, ACCEPT)

    def decline(self, channel: int) -> bytes:
        entry = self._channels.get(channel)
        if entry is None or entry.state is not State.REQUESTED_IN:
            raise ValueError(f"no pending request for channel {channel}")
        del self._channels[channel]
        return codec.encode_request(entry.name, channel, DECLINE)

    def send(self, channel: int, data: bytes | bytearray | memoryview) -> bytes:
        """*data* on an open channel (split into frames); b"" when the channel cannot send."""
        entry = self._channels.get(channel)
        if entry is None or entry.state is not State.OPEN:
            return b""
        return codec.encode_data(channel, data)

    def send_eof(self, channel: int) -> bytes:
        """Close our direction of *channel*; it is released when the peer's EOF comes back."""
        entry = self._channels.get(channel)
        if entry is None:
            return b""
        if entry.state is State.OPEN:
            entry.state = State.CLOSING
            return codec.encode_eof(channel)
        if entry.state is State.REQUESTED_IN:
            return self.decline(channel)
        # REQUESTED_OUT: the answer is still to come; forget nothing, the
        # caller treats the channel as failed when the answer arrives
        return b""

    def send_beacon(self) -> bytes:
        """A beacon request; the caller times the answer out (3 s by default)."""
        self.beacon_outstanding = True
        return codec.encode_beacon(True)

    def connection_lost(self) -> list[int]:
        """Forget every channel (the connection is gone); returns their ids."""
        ids = list(self._channels)
        self._channels.clear()
        self._free = []
        self._fresh = 0
        return ids

    def data_to_send(self) -> bytes:
        """Bytes the protocol produced by itself while receiving."""
        if not self._outgoing:
            return b""
        out = b"".join(self._outgoing)
        self._outgoing.clear()
        return out

    # --- receiving --------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Bytes from the peer; raises :class:`MuxProtocolError` on a broken control message."""
        events: list[Event] = []
        channels = self._channels
        for cid, piece, first in self._decoder.feed(data):
            if cid == CONTROL_CHANNEL:
                if piece:
                    for obj in self._control.feed(piece):
                        self._on_request(codec.parse_request(obj), events)
            elif cid == PROTOCOL_CHANNEL:
                if piece:
                    for obj in self._protocol.feed(piece):
                        self._on_protocol(obj, events)
            else:
                entry = channels.get(cid)
                if entry is None or entry.state not in _RECEIVING:
                    if first:
                        self.unknown_frames += 1
                    self.unknown_bytes += len(piece)
                    events.append(UnknownChannelData(cid, len(piece)))
                elif piece:
                    events.append(DataReceived(cid, piece))
                else:
                    if entry.state is State.OPEN:
                        self._outgoing.append(codec.encode_eof(cid))
                    self._release(cid)
                    events.append(ChannelClosed(cid))
        return events

    def _on_request(self, req: codec.ChannelRequest, events: list[Event]) -> None:
        cid = req.channel
        if req.state == REQUEST:
            if cid in (CONTROL_CHANNEL, PROTOCOL_CHANNEL):
                self._outgoing.append(codec.encode_request(req.name, cid, DECLINE))
                events.append(ChannelRefused(cid, req.name, "reserved id"))
            elif cid in self._channels:
                self._outgoing.append(codec.encode_request(req.name, cid, DECLINE))
                events.append(ChannelRefused(cid, req.name, "id in use"))
            else:
                self._channels[cid] = _Channel(req.name, State.REQUESTED_IN)
                events.append(ChannelRequested(cid, req.name))
            return
        entry = self._channels.get(cid)
        if entry is None or entry.state is not State.REQUESTED_OUT:
            events.append(UnexpectedAnswer(cid, req.name, req.state))
            return
        if req.state == ACCEPT:
            entry.state = State.OPEN
            events.append(ChannelAccepted(cid, entry.name))
        else:
            self._release(cid)
            events.append(ChannelDeclined(cid, entry.name))

    def _on_protocol(self, obj: Any, events: list[Event]) -> None:
        if not isinstance(obj, dict):
            raise MuxProtocolError(f"protocol message is not a map: {obj!r:.80}")
        if "v" in obj:
            version = obj["v"]
            if not isinstance(version, int):
                raise MuxProtocolError(f"bad version: {version!r:.40}")
            self.peer_version = version
            events.append(VersionReceived(version))
        if "p" in obj:
            if obj["p"]:
                self._outgoing.append(codec.encode_beacon(False))
                events.append(BeaconRequested())
            else:
                self.beacon_outstanding = False
                events.append(BeaconAnswered())


__all__ = [
    "ChannelAccepted", "ChannelClosed", "ChannelDeclined", "ChannelLimitReached", "ChannelRefused",
    "ChannelRequested", "DataReceived", "Event", "Multiplexer", "MuxProtocolError", "State", "UnknownChannelData",
    "UnexpectedAnswer", "VersionReceived", "BeaconRequested", "BeaconAnswered",
]
