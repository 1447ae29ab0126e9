"""Playing the main instance against a real backend process, for tests and the conformance kit.

:class:`MainSideHarness` listens on a free loopback port, spawns a backend
command with the standard arguments (``--host 127.0.0.1 --port P
--service.backend_id=N CONFIG``) and hands over the connection as a
:class:`BackendPeer`, which sends frames and waits (with a timeout) for the
frames the backend sends back. ``transport-backend-check`` is built on it, and a
backend author can use it in their own tests::

    harness = MainSideHarness(reactor, ["python", "-m", "my_backend"], config_path)
    peer = await harness.start()
    peer.send(W.TYPE_PING)
    await peer.expect(W.TYPE_PONG)
    await harness.stop()
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from transport.backend.codec import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, FrameTooLarge, Packet, Payload, encode

Match = Callable[[Packet], bool]


class BackendPeer(Protocol):
    """The main instance's side of one backend connection.

    Received packets wait in :attr:`inbox` until a call to :meth:`expect` takes
    them; :attr:`history` keeps every packet received, in order.
    """

    def __init__(
        self,
        clock: Any,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        on_connected: Callable[[BackendPeer], None] | None = None,
    ) -> None:
        self.clock = clock
        self.on_connected = on_connected
        self.decoder = FrameDecoder(max_frame_size)
        self.inbox: list[Packet] = []
        self.history: list[Packet] = []
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.protocol_error: str | None = None
        self._waiters: list[tuple[Match, defer.Deferred[Packet]]] = []

    def connectionMade(self) -> None:
        if self.on_connected is not None:
            self.on_connected(self)

    @property
    def skipped(self) -> int:
        """Frames the backend sent that did not parse."""
        return self.decoder.skipped

    def dataReceived(self, data: bytes) -> None:
        try:
            packets = self.decoder.feed(data)
        except FrameTooLarge as e:
            self.protocol_error = str(e)
            if self.transport is not None:
                self.transport.abortConnection()  # type: ignore[attr-defined]
            return
        for packet in packets:
            self.history.append(packet)
            for index, (match, waiter) in enumerate(self._waiters):
                if match(packet):
                    del self._waiters[index]
                    waiter.callback(packet)
                    break
            else:
                self.inbox.append(packet)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        waiters, self._waiters = self._waiters, []
        for _match, waiter in waiters:
            waiter.errback(ConnectionClosed("the backend closed the connection"))
        if not self.closed.called:
            self.closed.callback(None)

    @property
    def connected_now(self) -> bool:
        return not self.closed.called

    def send(self, type_: int, payload: Payload | bytes = None) -> None:
        if self.transport is not None and not self.closed.called:
            self.transport.write(encode(type_, payload))

    def send_raw(self, data: bytes) -> None:
        if self.transport is not None and not self.closed.called:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def take(self, match: Match | int) -> Packet | None:
        """Remove and return the first waiting packet that matches, if any."""
        predicate = _predicate(match)
        for index, packet in enumerate(self.inbox):
            if predicate(packet):
                del self.inbox[index]
                return packet
        return None

    def expect(self, match: Match | int, timeout: float = 10.0) -> defer.Deferred[Packet]:
        """The first packet matching *match* (a type or a predicate), waiting up to *timeout* s.

        Fails with :class:`ExpectTimeout` after *timeout* and with
        :class:`ConnectionClosed` if the backend disconnects first.
        """
        predicate = _predicate(match)
        found = self.take(predicate)
        if found is not None:
            return defer.succeed(found)
        if self.closed.called:
            return defer.fail(ConnectionClosed("the backend closed the connection"))

        def cancel(d: defer.Deferred[Packet]) -> None:
            self._waiters[:] = [(m, w) for (m, w) in self._waiters if w is not d]

        waiter: defer.Deferred[Packet] = defer.Deferred(cancel)
        self._waiters.append((predicate, waiter))

        def timed_out(failure: Failure) -> Failure:
            if failure.check(defer.TimeoutError, defer.CancelledError):
                raise ExpectTimeout(f"nothing matching within {timeout:g} s")
            return failure

        waiter.addTimeout(timeout, self.clock)
        waiter.addErrback(timed_out)
        return waiter


class ExpectTimeout(Exception):
    """The awaited packet did not come in time."""


class ConnectionClosed(Exception):
    """The backend closed its connection while a packet was awaited."""


def _predicate(match: Match | int) -> Match:
    if isinstance(match, int):
        wanted = match
        return lambda packet: packet.type == wanted
    return match


class _BackendOutput(ProcessProtocol):
    def __init__(self, harness: MainSideHarness) -> None:
        self.harness = harness
        self._partial = {1: b"", 2: b""}

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        buf = self._partial.get(childFD, b"") + data
        *lines, rest = buf.split(b"\n")
        self._partial[childFD] = rest[-65536:]
        for line in lines:
            self.harness._output_line(line.decode("utf-8", "replace").rstrip("\r"))

    def processEnded(self, reason: Failure) -> None:
        for fd in (1, 2):
            if self._partial[fd]:
                self.harness._output_line(self._partial[fd].decode("utf-8", "replace"))
                self._partial[fd] = b""
        code: int | None
        if reason.check(ProcessDone):
            code = 0
        else:
            value: Any = reason.value
            code = getattr(value, "exitCode", None)
            if code is None and getattr(value, "signal", None) is not None:
                code = -int(value.signal)
        self.harness.exit_code = code
        self.harness.exited.callback(code)


class MainSideHarness:
    """Listen on a free loopback port and spawn one backend process that connects to it."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        command: Sequence[str],
        config_path: str | None = None,
        *,
        backend_id: str = "1",
        env: dict[str, str] | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        output: Callable[[str], None] | None = None,
        max_output_lines: int = 2000,
    ) -> None:
        self.reactor = reactor
        self.command = list(command)
        self.config_path = config_path
        self.backend_id = backend_id
        self.env = dict(os.environ if env is None else env)
        self.max_frame_size = max_frame_size
        self.output = output
        self.max_output_lines = max_output_lines
        #: The backend's stdout/stderr lines (the last *max_output_lines*).
        self.output_lines: list[str] = []
        self.port: IListeningPort | None = None
        self.process: Any = None
        self.exit_code: int | None = None
        #: Fires with the exit code (negative: killed by that signal) when the process ends.
        self.exited: defer.Deferred[int | None] = defer.Deferred()
        self._connections: defer.DeferredQueue[BackendPeer] = defer.DeferredQueue()

    @property
    def listening_port(self) -> int:
        assert self.port is not None, "listen() first"
        address: Any = self.port.getHost()
        return int(address.port)

    def arguments(self, port: int | None = None) -> list[str]:
        """The standard arguments appended to the command (to the listening port by default)."""
        args = [
            "--host",
            "127.0.0.1",
            "--port",
            str(self.listening_port if port is None else port),
            f"--service.backend_id={self.backend_id}",
        ]
        if self.config_path is not None:
            args.append(self.config_path)
        return args

    def _output_line(self, line: str) -> None:
        self.output_lines.append(line)
        if len(self.output_lines) > self.max_output_lines:
            del self.output_lines[: -self.max_output_lines]
        if self.output is not None:
            self.output(line)

    async def listen(self) -> int:
        """Listen on a free loopback port; returns it."""
        harness = self

        class _Factory(Factory):
            def buildProtocol(self, addr: Any) -> BackendPeer:
                return BackendPeer(harness.reactor, harness.max_frame_size, harness._connections.put)

        self.port = await serverFromString(self.reactor, "tcp:0:interface=127.0.0.1").listen(_Factory())
        return self.listening_port

    def spawn(self, port: int | None = None) -> None:
        """Start the backend command with the standard arguments (pointing at *port* when given)."""
        executable = self.command[0]
        if os.sep not in executable:
            found = shutil.which(executable, path=self.env.get("PATH"))
            if found is None:
                raise FileNotFoundError(f"command not found: {executable}")
            executable = found
        elif not os.access(executable, os.X_OK):
            raise FileNotFoundError(f"not an executable file: {executable}")
        argv = [self.command[0], *self.command[1:], *self.arguments(port)]
        self.process = self.reactor.spawnProcess(_BackendOutput(self), executable, argv, env=self.env)

    async def start(self, timeout: float = 30.0) -> BackendPeer:
        """Listen, spawn, and wait for the backend to connect."""
        if self.port is None:
            await self.listen()
        self.spawn()
        return await self.next_connection(timeout)

    def next_connection(self, timeout: float = 30.0) -> defer.Deferred[BackendPeer]:
        """The next connection the backend makes; fails if the process exits first or after *timeout*."""
        result: defer.Deferred[BackendPeer] = defer.Deferred()
        connection = self._connections.get()

        def connected(peer: BackendPeer) -> None:
            if not result.called:
                result.callback(peer)

        connection.addCallbacks(connected, lambda _f: None)

        def on_exit(code: int | None) -> int | None:
            if not result.called:
                result.errback(ProcessGone(f"the backend exited with code {code} before connecting"))
            return code

        self.exited.addCallback(on_exit)

        def timed_out() -> None:
            if not result.called:
                result.errback(ExpectTimeout(f"the backend did not connect within {timeout:g} s"))

        call = self.reactor.callLater(timeout, timed_out)

        def cleanup(value: Any) -> Any:
            if call.active():
                call.cancel()
            if not connection.called:
                connection.cancel()
            return value

        result.addBoth(cleanup)
        return result

    @property
    def running(self) -> bool:
        return self.process is not None and not self.exited.called

    def signal(self, name: str) -> None:
        if self.running:
            try:
                self.process.signalProcess(name)
            except (ProcessExitedAlready, OSError):
                pass

    def wait_exit(self, timeout: float) -> defer.Deferred[int | None]:
        """The exit code, once the process is gone; fails with :class:`ExpectTimeout` after *timeout*."""
        waiter: defer.Deferred[int | None] = defer.Deferred()

        def done(code: int | None) -> int | None:
            if not waiter.called:
                waiter.callback(code)
            return code

        self.exited.addCallback(done)

        def timed_out() -> None:
            if not waiter.called:
                waiter.errback(ExpectTimeout(f"the process did not exit within {timeout:g} s"))

        call = self.reactor.callLater(timeout, timed_out)
        waiter.addBoth(lambda r: (call.cancel() if call.active() else None, r)[1])
        return waiter

    async def stop(self, grace: float = 5.0) -> int | None:
        """Stop listening; terminate the process if it still runs (SIGTERM, then SIGKILL)."""
        if self.port is not None:
            stopping = self.port.stopListening()
            self.port = None
            if stopping is not None:
                await stopping
        if self.running:
            self.signal("TERM")
            try:
                await self.wait_exit(grace)
            except ExpectTimeout:
                self.signal("KILL")
                await self.wait_exit(grace * 2)
        return self.exit_code


class ProcessGone(Exception):
    """The backend process exited while something was awaited from it."""


__all__ = [
    "BackendPeer",
    "ConnectionClosed",
    "ExpectTimeout",
    "MainSideHarness",
    "ProcessGone",
]
