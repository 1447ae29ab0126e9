"""Listens on the admin endpoint (default: ``admin.sock`` in ``state_dir``, mode 0600)."""

from __future__ import annotations

from typing import Any

from twisted.application import service, strports

from transport.admin.commands import AdminCommands
from transport.admin.protocol import AdminFactory


def admin_endpoint(config: Any) -> str:
    """The admin endpoint string: ``[service] admin_socket`` or the UNIX socket in ``state_dir``."""
    configured = config.get("service", "admin_socket")
    if configured:
        return str(configured)
    path = str(config.state_dir / "admin.sock").replace("\\", "\\\\").replace(":", "\\:")
    return f"unix:{path}:mode=600:lockfile=1"


class AdminService(service.MultiService):
    """The admin endpoint of one main instance."""

    name = "admin"

    def __init__(self, context: Any, gateway: Any, pool: Any) -> None:
        super().__init__()
        self.commands = AdminCommands(gateway, pool)
        self.commands.registry = context.registry  # for "reload" (transport.ops)
        self.endpoint = admin_endpoint(context.config)
        self.factory = AdminFactory(self.commands, context.config.get("service", "admin_token"))
        strports.service(self.endpoint, self.factory, reactor=context.reactor).setServiceParent(self)
