"""The main instance's mux service: a TLS port for devices, remote backends carried over it.

``[mux] enabled = true`` runs a :class:`~transport.mux.manager.ConnectionManager`
with this instance's device identity (``[mux] identity_dir``, created on first
start; its device id is logged so backend hosts can pin it). It listens on
``[mux] listen`` and accepts devices listed in ``trusted_devices`` or vouched for
by ``account_ca``.

With ``remote_backends`` (the default), a channel named ``backend/<id>`` from
such a device is a backend link: it is handed to the backend pool's listener
factory (``buildProtocol`` + ``makeConnection(channel)``), so the pool pings it,
assigns users to it and, when the channel fails - the backend died, or the
whole TLS connection to its host was lost - treats it as a crashed backend
(there is just no local process to kill). Other channel names are declined.

The manager is published as ``context.registry["mux"]`` for other parts.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from transport.mux.channel import ChannelSocket
from transport.mux.identity import DeviceIdentity, load_ca_certificate
from transport.mux.manager import ConnectionManager

log = Logger()

BACKEND_PREFIX = "backend/"


class MuxService(service.Service):
    """Owns the connection manager and its listening port."""

    name = "mux"

    def __init__(self, manager: ConnectionManager, listen: str, registry: dict[str, Any],
                 remote_backends: bool) -> None:
        self.manager = manager
        self.listen = listen
        self.registry = registry
        self.remote_backends = remote_backends
        self.port: Any = None
        manager.on_channel_request(self._on_request)
        manager.on_channel_ready(self._on_ready)

    def _pool(self) -> Any:
        return self.registry.get("backend_pool")

    def _on_request(self, peer: str, name: str) -> bool:
        if not self.running:
            return False
        if name.startswith(BACKEND_PREFIX) and self.remote_backends:
            pool = self._pool()
            if pool is None or getattr(pool, "_stopping", False):
                log.warn("mux: {peer} offers {name!r} but there is no running backend pool", peer=peer, name=name)
                return False
            return True
        log.info("mux: declined channel {name!r} from {peer}", name=name, peer=peer)
        return False

    def _on_ready(self, channel: ChannelSocket) -> None:
        pool = self._pool()
        if pool is None or not channel.name.startswith(BACKEND_PREFIX):
            channel.loseConnection()
            return
        link = pool.factory.buildProtocol(channel.getPeer())
        link.remote = True  # not one of the pool's own spawns, whatever its STATS say
        log.info("mux: remote backend {name} from device {peer}", name=channel.name, peer=channel.peer_device)
        channel.attach(link)

    def startService(self) -> None:
        super().startService()
        log.info("mux: this device's id is {id}", id=self.manager.device_id)
        if self.listen:
            d = self.manager.listen(self.listen)

            def listening(port: Any) -> None:
                self.port = port
                log.info("mux: listening on {addr}", addr=port.getHost())

            d.addCallbacks(listening, lambda f: log.failure("mux: cannot listen on {ep}", f, ep=self.listen))

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        d: defer.Deferred[Any] = defer.maybeDeferred(self.port.stopListening) if self.port else defer.succeed(None)
        d.addCallback(lambda _: self.manager.close_all())
        return d.addCallback(lambda _: None)


def make_manager(config: Any, section: str, reactor: Any) -> ConnectionManager:
    """A ConnectionManager from ``[mux]``-style settings (*section* holds identity_dir and account_ca)."""
    values = config[section]
    identity = DeviceIdentity.load_or_create(config.resolve_path(values["identity_dir"], config.state_dir),
                                             name=f"transport {section}")
    ca = load_ca_certificate(config.resolve_path(values["account_ca"])) if values["account_ca"] else None
    trusted = config["mux"]["trusted_devices"] if section == "mux" else None
    return ConnectionManager(
        identity, reactor=reactor, account_ca=ca, trusted_devices=trusted or None,
        beacon_interval=config.get("mux", "beacon_interval"), beacon_timeout=config.get("mux", "beacon_timeout"),
        max_buffered=config.get("mux", "max_buffered"), handshake_timeout=config.get("mux", "handshake_timeout"),
    )


def make_service(context: Any) -> service.IService:
    """The mux part of the main instance (see the module docstring)."""
    config = context.config
    manager = make_manager(config, "mux", context.reactor)
    context.registry["mux"] = manager
    return MuxService(manager, config.get("mux", "listen"), context.registry, config.get("mux", "remote_backends"))
