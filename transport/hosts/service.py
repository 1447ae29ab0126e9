"""The hosts part of the service tree: the network host and the user hosts of one process.

``[hosts] enabled = true`` runs this; ``[hosts] network_host = true`` adds the
directory, and every ``[host:NAME]`` section a user host::

    HostsService                     migrates the hosts tables, then starts:
     ├─ NetworkHostService           listens ([hosts] listen), sweeps expired entries
     └─ UserHostService (per NAME)   listens ([host:NAME] listen), announces at start,
                                     every announce_interval, and pushes admin decisions

Identities (key + self-signed certificate) are created on first start under
``<state_dir>/hosts/network/`` and ``<state_dir>/hosts/host/NAME/``.

A user host whose ``network_host`` is empty (or names the online id of the
network host in this process) announces straight into the local directory -
NoLimitConnect's "Path A" - without a connection; otherwise it connects to the
network host over TLS, sends HOST_INVITE_ANN_REQ, waits for the reply and
disconnects ("Path B").
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from transport.hosts.client import HostClient, new_session_id
from transport.hosts.directory import Directory
from transport.hosts.identity import Identity
from transport.hosts.network import NetworkHost
from transport.hosts.packets import Announce, ECommErr, HostedInfo, HostInviteAnnounceReply, OnlineId
from transport.hosts.protocol import PeerFactory, listen
from transport.hosts.settings import USER_HOST_PREFIX
from transport.hosts.store import MembershipStore
from transport.hosts.userhost import UserHost, UserHostSettings

log = Logger()


def identity_dir(state_dir: Path, host_name: str | None) -> Path:
    """Where an identity is kept: the network host's (``None``) or user host *host_name*'s."""
    base = state_dir / "hosts"
    return base / "network" if host_name is None else base / "host" / host_name


def _write_portfile(path: Path, port: IListeningPort) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{port.getHost().port}\n")  # type: ignore[attr-defined]
    os.replace(tmp, path)


def _fork(d: defer.Deferred[Any]) -> defer.Deferred[Any]:
    """A new Deferred with *d*'s result, leaving *d*'s result in place for others."""
    out: defer.Deferred[Any] = defer.Deferred()

    def copy(result: Any) -> Any:
        out.callback(result)
        return result

    d.addBoth(copy)
    return out


class NetworkHostService(service.Service):
    """The directory: listens for user hosts' announcements and clients' searches."""

    name = "network-host"

    def __init__(self, config: Any, reactor: Any) -> None:
        section = config["hosts"]
        self.reactor = reactor
        self.endpoint = section["listen"]
        self.portfile = config.resolve_path(section["portfile"]) if section["portfile"] else None
        self.sweep_interval = section["sweep_interval"]
        self.identity = Identity.load_or_create(identity_dir(config.state_dir, None), section["name"])
        self.directory = Directory(reactor.seconds, section["expiry"], section["page_size"], section["max_entries"])
        self.handler = NetworkHost(self.directory, self.identity.online_id)
        announce = Announce(src=self.identity.online_id, name=section["name"])
        self.factory = PeerFactory(self.handler, self.identity, announce, reactor=reactor,
                                   handshake_timeout=section["handshake_timeout"],
                                   max_connections=section["max_connections"])
        self.port: IListeningPort | None = None
        self.listening: defer.Deferred[IListeningPort] = defer.Deferred()
        self._sweeper: task.LoopingCall | None = None

    @property
    def online_id(self) -> OnlineId:
        return self.identity.online_id

    def startService(self) -> None:
        super().startService()
        d = listen(self.reactor, self.endpoint, self.factory)
        d.addCallbacks(self._listening, self._listen_failed)
        self._sweeper = task.LoopingCall(self._sweep)
        self._sweeper.clock = self.reactor
        self._sweeper.start(self.sweep_interval, now=False)

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        if self.portfile is not None:
            _write_portfile(self.portfile, port)
        log.info("hosts: network host {id} listening on {addr}", id=self.online_id, addr=port.getHost())
        self.listening.callback(port)

    def _listen_failed(self, failure: Any) -> None:
        log.failure("hosts: the network host cannot listen on {endpoint}", failure, endpoint=self.endpoint)
        self.listening.errback(failure)
        self.listening.addErrback(lambda _: None)

    def _sweep(self) -> None:
        dropped = self.directory.sweep()
        if dropped:
            log.info("hosts: {n} expired directory entries dropped", n=dropped)

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        return _stop_serving(self)


class UserHostService(service.Service):
    """One ``[host:NAME]`` user host."""

    def __init__(self, name: str, values: Any, config: Any, reactor: Any, store: MembershipStore,
                 migrated: defer.Deferred[Any], network: NetworkHostService | None) -> None:
        self.name = f"host:{name}"
        self.host_name = name
        self.values = values
        self.reactor = reactor
        self.store = store
        self._migrated = migrated
        self.local_network = network
        self.portfile = config.resolve_path(values["portfile"]) if values["portfile"] else None
        self.identity = Identity.load_or_create(identity_dir(config.state_dir, name), values["title"])
        settings = UserHostSettings.from_config(name, values, self.identity.online_id, values["url"])
        self.host = UserHost(settings, self.identity.online_id, store, self.now_ms)
        self.factory = PeerFactory(self.host, self.identity, self.host.announce_packet(), reactor=reactor,
                                   handshake_timeout=config["hosts"]["handshake_timeout"],
                                   max_connections=config["hosts"]["max_connections"])
        self.port: IListeningPort | None = None
        self.ready: defer.Deferred[None] = defer.Deferred()
        self.announcements = 0
        self.last_announce_error: str | None = None
        self._announcer: task.LoopingCall | None = None
        self._poller: task.LoopingCall | None = None
        self._retry: Any = None
        #: ptop://HOST:PORT of the listening port (the url when none is configured)
        self._listening_url = values["url"]

    def now_ms(self) -> int:
        return int(self.reactor.seconds() * 1000)

    @property
    def online_id(self) -> OnlineId:
        return self.identity.online_id

    def startService(self) -> None:
        super().startService()
        d = self._start()
        d.addErrback(self._start_failed)

    def _start_failed(self, failure: Any) -> None:
        log.failure("hosts: user host {name} failed to start", failure, name=self.host_name)
        if not self.ready.called:
            self.ready.errback(failure)
            self.ready.addErrback(lambda _: None)

    @defer.inlineCallbacks
    def _start(self) -> Generator[Any, Any, None]:
        port = yield listen(self.reactor, self.values["listen"], self.factory)
        self.port = port
        address = port.getHost()
        host = getattr(address, "host", "127.0.0.1")
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"  # IPv6: ptop://[::1]:PORT
        self._listening_url = f"ptop://{host}:{getattr(address, 'port', 0)}"
        url = self.values["url"] or self._listening_url
        settings = UserHostSettings.from_config(self.host_name, self.values, self.online_id, url)
        self.host.settings = settings
        self.factory.announce = self.host.announce_packet()
        if self.portfile is not None:
            _write_portfile(self.portfile, port)
        yield _fork(self._migrated)
        self.host.last_modified_ms = yield self.store.settings_modified(self.host_name, settings.digest(),
                                                                        self.now_ms())
        log.info("hosts: {type} host {name} ({id}) listening at {url}", type=self.values["type"],
                 name=self.host_name, id=self.online_id, url=url)
        if not self.running:
            return
        self._poller = task.LoopingCall(self._poll)
        self._poller.clock = self.reactor
        self._poller.start(self.values["pending_poll_interval"], now=False)
        if self.values["announce"]:
            self._announcer = task.LoopingCall(self.announce)
            self._announcer.clock = self.reactor
            self._announcer.start(self.values["announce_interval"], now=True)
        self.ready.callback(None)

    def _poll(self) -> defer.Deferred[None] | None:
        if not self.host.pending_count:
            return None
        d: defer.Deferred[None] = self.host.poll_pending()
        d.addErrback(lambda f: log.failure("hosts: {name}: checking pending joins", f, name=self.host_name))
        return d

    def _is_local_network(self) -> bool:
        if self.local_network is None:
            return False
        if not self.values["network_host"]:
            return True
        wanted = self.values["network_host_id"]
        return bool(wanted) and OnlineId.from_hex(wanted) == self.local_network.online_id

    def announce(self) -> defer.Deferred[bool]:
        """Announce to the network host now; True when it accepted. Never fails (errors are logged)."""
        d = self._announce()

        def done(err: int) -> bool:
            self.announcements += 1
            if err != ECommErr.NONE:
                self.last_announce_error = ECommErr(err).name
                log.warn("hosts: {name}: the network host refused the announcement: {err}", name=self.host_name,
                         err=self.last_announce_error)
                return False
            self.last_announce_error = None
            return True

        def failed(failure: Any) -> bool:
            self.announcements += 1
            self.last_announce_error = failure.getErrorMessage()
            retry = min(self.values["announce_retry"], self.values["announce_interval"])
            log.warn("hosts: {name}: announcing failed: {why}; retrying in {retry:g} s", name=self.host_name,
                     why=self.last_announce_error, retry=retry)
            if self.running and (self._retry is None or not self._retry.active()):
                self._retry = self.reactor.callLater(retry, self.announce)
            return False

        return d.addCallbacks(done, failed)

    @defer.inlineCallbacks
    def _announce(self) -> Generator[Any, Any, int]:
        s = self.host.settings
        if self._is_local_network():
            assert self.local_network is not None
            info = HostedInfo(self.online_id, self.host.last_modified_ms, s.url, s.title, s.description, s.thumb_id)
            return int(self.local_network.handler.announce_local(s.host_type, info))
        expected = OnlineId.from_hex(self.values["network_host_id"]) if self.values["network_host_id"] else None
        client = yield HostClient.connect(self.reactor, self.values["network_host"], self.identity, expected,
                                          name=s.display_name, motto=s.motto, url=s.url)
        try:
            req = self.host.invite_announcement(client.peer_id, new_session_id())
            reply: HostInviteAnnounceReply = yield client.request(req, HostInviteAnnounceReply)
        finally:
            client.close()
        return int(reply.comm_err)

    def reannounce_if_changed(self, values: Any) -> defer.Deferred[bool]:
        """Apply new section *values* (a settings change): re-announce when what is announced changed."""
        previous = self.host.settings.digest()
        url = values["url"] or self._listening_url
        self.values = values
        settings = UserHostSettings.from_config(self.host_name, values, self.online_id, url)
        self.host.settings = settings
        self.factory.announce = self.host.announce_packet()
        changed = settings.digest() != previous
        d = self.store.settings_modified(self.host_name, settings.digest(), self.now_ms())

        def stamped(modified_ms: int) -> defer.Deferred[bool]:
            self.host.last_modified_ms = modified_ms
            return self.announce() if changed else defer.succeed(False)

        return d.addCallback(stamped)

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        for loop in (self._announcer, self._poller):
            if loop is not None and loop.running:
                loop.stop()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        return _stop_serving(self)


def _stop_serving(svc: NetworkHostService | UserHostService) -> defer.Deferred[None] | None:
    """Drop *svc*'s connections and stop its listening port."""
    for conn in list(svc.factory.connections):
        conn.abort()
    if svc.port is not None:
        port, svc.port = svc.port, None
        return defer.maybeDeferred(port.stopListening)  # type: ignore[call-overload,no-any-return]
    return None


class HostsService(service.MultiService):
    """Migrates the hosts tables and runs the network host and user hosts of this process."""

    name = "hosts"

    def __init__(self, config: Any, reactor: Any, database: Any) -> None:
        super().__init__()
        self.store = MembershipStore(database)
        self.migrated: defer.Deferred[Any] = defer.Deferred()
        self.network: NetworkHostService | None = None
        self.user_hosts: dict[str, UserHostService] = {}
        if config["hosts"]["network_host"]:
            self.network = NetworkHostService(config, reactor)
            self.network.setServiceParent(self)
        for name, values in sorted(config.instances(USER_HOST_PREFIX).items()):
            host = UserHostService(name, values, config, reactor, self.store, self.migrated, self.network)
            host.setServiceParent(self)
            self.user_hosts[name] = host

    def counters(self) -> dict[str, float]:
        """Numbers for ``/metrics`` (``transport_part_value{part="hosts",name=...}``)."""
        out: dict[str, float] = {}
        if self.network is not None:
            out["directory_entries"] = len(self.network.directory)
            out["directory_announcements"] = self.network.handler.announcements
            out["directory_searches"] = self.network.handler.searches
            out["directory_connections"] = len(self.network.factory.connections)
        for name, host in self.user_hosts.items():
            out[f"{name}_clients"] = len(host.host.clients)
            out[f"{name}_members_in_session"] = len(host.host.members)
            out[f"{name}_pending_joins"] = host.host.pending_count
            out[f"{name}_relayed"] = host.host.relayed
            out[f"{name}_announcements"] = host.announcements
            out[f"{name}_announce_failing"] = 1 if host.last_announce_error else 0
        return out

    def reload(self, config: Any) -> defer.Deferred[list[bool]]:
        """Apply the reloadable keys (called by ``transport.ops`` on SIGHUP / ``transportctl reload``):
        the directory's expiry, page size and bound, and the user hosts' title, description, url,
        thumbnail, permission, name, motto, page size and pending bound; hosts whose announcement
        changed re-announce at once. Listen endpoints, new and removed sections need a restart.
        Fires with, per host, whether it re-announced."""
        if self.network is not None:
            section = config["hosts"]
            directory = self.network.directory
            directory.expiry, directory.page_size = section["expiry"], section["page_size"]
            directory.max_entries = section["max_entries"]
        results = []
        for name, values in sorted(config.instances(USER_HOST_PREFIX).items()):
            host = self.user_hosts.get(name)
            if host is not None:
                results.append(host.reannounce_if_changed(values))
        return defer.gatherResults(results, consumeErrors=True)

    def startService(self) -> None:
        d = self.store.migrate()

        def failed(failure: Any) -> Any:
            log.failure("hosts: migrating the hosts tables", failure)
            return failure

        d.addErrback(failed)
        d.chainDeferred(self.migrated)
        # Everyone waits on copies (_fork); this keeps the result from being reported as unhandled.
        self.migrated.addErrback(lambda _: None)
        super().startService()


def make_service(context: Any) -> service.IService:
    """The hosts part for ``transport.service`` (``[hosts] enabled``)."""
    hosts = HostsService(context.config, context.reactor, context.database)
    context.registry["hosts"] = hosts
    return hosts
