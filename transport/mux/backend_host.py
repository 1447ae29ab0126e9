"""``transport-backend-host``: run backends on this machine for a main instance on another one.

The host keeps ``[backend_host] backends`` backend processes running. Each one
connects, as any Spectrum 2 backend does, to ``--host 127.0.0.1 --port P`` - a
loopback port of the host - and the host carries that connection as one
channel named ``backend/<name>-<n>`` of a single TLS connection to the main
instance's mux port (``[backend_host] main``, pinned to ``main_device``).
The main instance serves the channel as one more backend of its pool.

Relaying keeps flow control both ways: the local TCP transport and the channel
are registered as each other's producers, so a slow side pauses the other.

When the channel fails (the main instance declined it, or the TLS connection
was lost) the local connection is closed; the backend exits, as backends do
when their main instance goes away, and is started again after
``restart_delay`` (doubling while starts keep failing). The next backend's
channel dials the main instance again: reconnecting needs nothing more.

    transport-backend-host -c host.ini                 # run
    transport-backend-host cert ...                    # device certificates (see transport-mux cert --help)
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from twisted.application import service
from twisted.internet import defer, endpoints, error, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from transport import config as configuration
from transport.backend.process import BackendProcess
from transport.mux.channel import ChannelSocket
from transport.mux.manager import ConnectionManager
from transport.mux.service import BACKEND_PREFIX, make_manager

log = Logger()

MAX_RESTART_DELAY = 60.0
#: seconds backends get to exit after their links close (then SIGTERM, then SIGKILL)
SHUTDOWN_GRACE = 5.0
#: a backend that lived this long resets the restart back-off
STABLE_AFTER = 30.0


class _ChannelSide(protocol.Protocol):
    """The channel end of a relay: what the main instance sends goes to the local backend."""

    def __init__(self, relay: LocalBackendLink) -> None:
        self.relay = relay

    def dataReceived(self, data: bytes) -> None:
        if self.relay.transport is not None:
            self.relay.transport.write(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # type: ignore[assignment]
        self.relay.channel_lost(reason)


class LocalBackendLink(protocol.Protocol):
    """A local backend's connection to the host, relayed to a channel to the main instance."""

    def __init__(self, host: BackendHost, number: int) -> None:
        self.host = host
        self.number = number
        self.channel: ChannelSocket | None = None
        self.closed = False

    @property
    def channel_name(self) -> str:
        return f"{BACKEND_PREFIX}{self.host.name}-{self.number}"

    def connectionMade(self) -> None:
        self.host.links.add(self)
        # nothing is read from the backend until its channel is open: memory stays bounded
        self.transport.pauseProducing()  # type: ignore[union-attr]
        d = self.host.manager.connect_device(self.host.main_device, self.host.main, self.channel_name,
                                             hostname=self.host.main_hostname)
        d.addCallbacks(self._opened, self._failed)

    def _opened(self, channel: ChannelSocket) -> None:
        if self.closed:
            channel.loseConnection()
            return
        self.channel = channel
        channel.attach(_ChannelSide(self))
        assert self.transport is not None
        # each side paces the other
        channel.registerProducer(self.transport, True)  # type: ignore[arg-type]
        self.transport.registerProducer(channel, True)  # type: ignore[attr-defined]
        self.transport.resumeProducing()  # type: ignore[attr-defined]
        log.info("backend host: {name} carried over the mux connection to {main}", name=self.channel_name,
                 main=self.host.main_device[:16])

    def _failed(self, f: Failure) -> None:
        log.warn("backend host: cannot open {name}: {error}", name=self.channel_name, error=f.getErrorMessage())
        self._close_local()

    def dataReceived(self, data: bytes) -> None:
        if self.channel is not None:
            self.channel.write(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # type: ignore[assignment]
        self.closed = True
        self.host.links.discard(self)
        if self.channel is not None:
            self.channel.unregisterProducer()
            self.channel.loseConnection()

    def channel_lost(self, reason: Failure) -> None:
        """The channel ended: a clean EOF from the main instance, or the TLS connection's loss."""
        if not reason.check(error.ConnectionDone):
            log.warn("backend host: {name} lost: {error}", name=self.channel_name, error=reason.getErrorMessage())
        self._close_local()

    def _close_local(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.unregisterProducer()  # type: ignore[attr-defined]
            self.transport.loseConnection()


class _LocalFactory(protocol.ServerFactory):
    def __init__(self, host: BackendHost) -> None:
        self.host = host
        self.numbers = itertools.count(1)

    def buildProtocol(self, addr: Any) -> LocalBackendLink:
        return LocalBackendLink(self.host, next(self.numbers))


class BackendHost(service.Service):
    """Spawns the backends and relays their links (see the module docstring)."""

    name = "backend-host"

    def __init__(self, manager: ConnectionManager, *, main: str, main_device: str, command: str, count: int,
                 config_path: str, reactor: Any, main_hostname: str | None = None, name: str | None = None,
                 restart_delay: float = 1.0) -> None:
        self.manager = manager
        self.main = main
        self.main_device = main_device
        self.main_hostname = main_hostname or None
        self.command = command
        self.count = count
        self.config_path = config_path
        self.reactor = reactor
        self.name = name or socket.gethostname().split(".")[0] or "host"  # type: ignore[assignment]
        self.restart_delay = restart_delay
        self.links: set[LocalBackendLink] = set()
        self.processes: dict[int, BackendProcess] = {}
        self.port: Any = None
        self.local_port = 0
        self._delays: dict[int, float] = {}
        self._started_at: dict[int, float] = {}
        self._timers: dict[int, Any] = {}
        self._stopping = False
        self.ready: defer.Deferred[None] = defer.Deferred()

    def startService(self) -> None:
        super().startService()
        log.info("backend host: this device's id is {id}", id=self.manager.device_id)
        d = endpoints.serverFromString(self.reactor, "tcp:0:interface=127.0.0.1").listen(_LocalFactory(self))
        d.addCallbacks(self._listening, lambda f: log.failure("backend host: cannot listen on loopback", f))

    def _listening(self, port: Any) -> None:
        self.port = port
        self.local_port = port.getHost().port
        for slot in range(1, self.count + 1):
            self._spawn(slot)
        self.ready.callback(None)

    def _spawn(self, slot: int) -> None:
        self._timers.pop(slot, None)
        if self._stopping:
            return
        argv = shlex.split(self.command) + ["--host", "127.0.0.1", "--port", str(self.local_port),
                                            f"--service.backend_id={slot}", self.config_path]
        process = BackendProcess(slot, lambda p, status: self._ended(slot, status))
        self.processes[slot] = process
        self._started_at[slot] = self.reactor.seconds()
        try:
            process.spawn(self.reactor, argv)
        except Exception as e:
            log.error("backend host: cannot start {argv}: {e}", argv=argv, e=e)
            self._ended(slot, f"spawn failed: {e}")
            return
        log.info("backend host: backend {slot} started (pid {pid})", slot=slot, pid=process.pid)

    def _ended(self, slot: int, status: str) -> None:
        self.processes.pop(slot, None)
        if self._stopping:
            return
        lived = self.reactor.seconds() - self._started_at.get(slot, 0.0)
        delay = self.restart_delay if lived >= STABLE_AFTER else self._delays.get(slot, self.restart_delay)
        self._delays[slot] = min(max(delay * 2, 0.1), MAX_RESTART_DELAY)
        log.info("backend host: backend {slot} {status}; starting again in {d:.1f}s", slot=slot, status=status, d=delay)
        self._timers[slot] = self.reactor.callLater(delay, self._spawn, slot)

    def stopService(self) -> defer.Deferred[None]:
        """Close the backends' links (they exit by themselves), then SIGTERM, then SIGKILL the stragglers."""
        super().stopService()
        self._stopping = True
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        for link in list(self.links):
            link._close_local()
        d = defer.ensureDeferred(self._reap())
        d.addCallback(lambda _: self.manager.close_all())
        if self.port is not None:
            d.addCallback(lambda _: self.port.stopListening())
        return d.addCallback(lambda _: None)

    async def _reap(self) -> None:
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            alive = [p for p in self.processes.values() if not p.ended]
            if not alive:
                return
            if sig is not None:
                for p in alive:
                    p.kill(sig)
            await self._ended_or_timeout(alive, SHUTDOWN_GRACE)

    def _ended_or_timeout(self, processes: list[BackendProcess], timeout: float) -> defer.Deferred[None]:
        done: defer.Deferred[None] = defer.Deferred()

        def fire(_: object = None) -> None:
            if not done.called:
                done.callback(None)

        timer = self.reactor.callLater(timeout, fire)
        defer.DeferredList([p.when_ended() for p in processes]).addCallback(fire)
        done.addCallback(lambda _: timer.cancel() if timer.active() else None)
        return done


def make_host(config: configuration.Config, reactor: Any) -> BackendHost:
    """A :class:`BackendHost` from ``[backend_host]`` (and ``[mux]`` beacon settings)."""
    values = config["backend_host"]
    if not values["main"] or not values["main_device"]:
        raise configuration.ConfigError("[backend_host] main and main_device are required", config.path)
    manager = make_manager(config, "backend_host", reactor)
    if config.path:
        config_path = config.path
    else:
        config_path = str(config.state_dir / "backend-defaults.ini")
        config.state_dir.mkdir(parents=True, exist_ok=True)
        with open(config_path, "a"):
            pass
    return BackendHost(
        manager, main=values["main"], main_device=values["main_device"].replace(":", "").lower(),
        command=values["backend"], count=values["backends"], config_path=config_path, reactor=reactor,
        main_hostname=values["main_hostname"] or None, name=values["name"] or None,
        restart_delay=values["restart_delay"],
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Console script ``transport-backend-host``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "cert":
        from transport.mux.cli import main as cert_main
        sys.exit(cert_main(args))
    parser = argparse.ArgumentParser(prog="transport-backend-host", description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", help="configuration file ([backend_host], [mux])")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides")
    ns = parser.parse_args(args)
    try:
        config = configuration.load(ns.config, ns.overrides)
        from twisted.internet import reactor
        host = make_host(config, reactor)
    except (configuration.ConfigError, OSError, ValueError) as e:
        print(f"transport-backend-host: {e}", file=sys.stderr)
        sys.exit(2)
    from twisted.logger import globalLogBeginner, textFileLogObserver
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    host.startService()
    reactor.addSystemEventTrigger("before", "shutdown", host.stopService)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
