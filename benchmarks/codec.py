"""Backend protocol codec: frames decoded and dispatched per second, on one core.

Feeds a buffer of small frames (a realistic mix: messages, typing, PING, buddy
changes) to :class:`transport.backend.codec.FrameDecoder` in socket-sized chunks
and dispatches every packet to a :class:`transport.sdk.NetworkPlugin` whose
handlers do nothing, which is the work a backend does per frame before its
own logic. Encoding is measured too. Prints a table.

    python benchmarks/codec.py [--frames N] [--chunk BYTES] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twisted.internet.task import Clock

from transport.backend import transport_pb2 as pb
from transport.backend.codec import FrameDecoder, encode
from transport.sdk import NetworkPlugin

W = pb.WrapperMessage


def sample_frames() -> list[tuple[int, object]]:
    """The mix: one of each, all small (under 100 bytes each).

    PING is left out: the main instance sends one per ping interval (20 s), and
    answering it reads /proc for STATS, which would dominate a per-frame figure.
    """
    return [
        (
            W.TYPE_CONV_MESSAGE,
            pb.ConversationMessage(userName="alice@example.org", buddyName="echo", message="hello there", id="42"),
        ),
        (W.TYPE_BUDDY_TYPING, pb.Buddy(userName="alice@example.org", buddyName="echo")),
        (W.TYPE_BUDDY_STOPPED_TYPING, pb.Buddy(userName="alice@example.org", buddyName="echo")),
        (
            W.TYPE_BUDDY_CHANGED,
            pb.Buddy(
                userName="alice@example.org", buddyName="bob", alias="Bob", group=["Friends"], status=pb.STATUS_AWAY
            ),
        ),
        (W.TYPE_STATUS_CHANGED, pb.Status(userName="alice@example.org", status=pb.STATUS_ONLINE, statusMessage="here")),
    ]


class _Sink:
    def write(self, data: bytes) -> None:
        pass

    def loseConnection(self) -> None:
        pass


class QuietPlugin(NetworkPlugin):
    """The default handlers (which do nothing) and one override."""

    def handle_message(self, message: pb.ConversationMessage) -> None:
        pass


def _time(fn: Callable[[], int], repeat: int) -> tuple[float, float, int]:
    """Best wall time and best CPU time (this process only) over *repeat* runs, and the count."""
    best_wall = best_cpu = float("inf")
    count = 0
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        count = fn()
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_wall, best_cpu, count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=65536, help="bytes per feed() call (a socket read)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]

    mix = sample_frames()
    encoded = [encode(t, p) for t, p in mix]  # type: ignore[arg-type]
    stream = b"".join(encoded[i % len(encoded)] for i in range(args.frames))
    chunks = [stream[i : i + args.chunk] for i in range(0, len(stream), args.chunk)]
    avg_size = len(stream) / args.frames

    def decode_only() -> int:
        decoder = FrameDecoder()
        n = 0
        for chunk in chunks:
            n += len(decoder.feed(chunk))
        return n

    def decode_dispatch() -> int:
        plugin = QuietPlugin(clock=Clock())
        plugin.makeConnection(_Sink())  # type: ignore[arg-type]
        n = 0
        decoder = plugin.decoder
        dispatch = plugin.dispatch
        for chunk in chunks:
            for packet in decoder.feed(chunk):
                dispatch(packet)
                n += 1
        return n

    def through_protocol() -> int:
        plugin = QuietPlugin(clock=Clock())
        plugin.makeConnection(_Sink())  # type: ignore[arg-type]
        for chunk in chunks:
            plugin.dataReceived(chunk)
        return args.frames

    pings = encode(W.TYPE_PING) * 10_000

    def ping_answers() -> int:
        plugin = QuietPlugin(clock=Clock())
        plugin.makeConnection(_Sink())  # type: ignore[arg-type]
        plugin.dataReceived(pings)
        assert plugin.pings_received == 10_000
        return 10_000

    def encode_only() -> int:
        n = 0
        for _ in range(args.frames // len(mix)):
            for t, p in mix:
                encode(t, p)  # type: ignore[arg-type]
                n += 1
        return n

    rows = []
    for name, fn in (
        ("decode", decode_only),
        ("decode + dispatch", decode_dispatch),
        ("dataReceived (all)", through_protocol),
        ("encode", encode_only),
        ("PING -> PONG + STATS", ping_answers),
    ):
        wall, cpu, count = _time(fn, args.repeat)
        rows.append((name, count, wall, count / wall, count / cpu))

    print(f"codec benchmark: {args.frames} frames, average {avg_size:.1f} bytes, {args.chunk}-byte reads")
    print(
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, protobuf "
        f"{__import__('google.protobuf').protobuf.__version__}"
    )
    print()
    print(f"load average before: {load:.2f}  (frames per CPU-second is the one-core figure on a busy machine)")
    print()
    print(f"| {'operation':<20} | {'frames':>9} | {'wall s':>7} | {'frames/s':>10} | {'frames/CPU-s':>12} |")
    print(f"|{'-' * 22}|{'-' * 11}|{'-' * 9}|{'-' * 12}|{'-' * 14}|")
    for name, count, wall, rate, cpu_rate in rows:
        print(f"| {name:<20} | {count:>9} | {wall:>7.3f} | {rate:>10,.0f} | {cpu_rate:>12,.0f} |")


if __name__ == "__main__":
    main()
