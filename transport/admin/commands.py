"""Spectrum 2's admin queries, answered from the gateway and the backend pool.

:class:`AdminCommands` knows nothing about sockets: :meth:`AdminCommands.run`
takes a command name and its arguments and fires with the text to show.
The names are Spectrum 2's (``spectrum2_manager ... status`` etc.), so operators'
scripts keep working; the answers follow Spectrum 2's wording where it has one.

Memory figures are KiB: the main instance's own (from ``/proc/self/statm``) plus
what each backend reported in its latest STATS.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer


class AdminError(Exception):
    """A command that cannot be run (unknown, bad arguments); ``str()`` is shown to the operator."""


#: command -> (usage, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "status": ("status", "whether the gateway runs, with each backend and its users"),
    "uptime": ("uptime", "seconds since the main instance started"),
    "online_users": ("online_users", "users logged in to the legacy network, one per line"),
    "online_users_count": ("online_users_count", "how many users are logged in"),
    "online_users_per_backend": ("online_users_per_backend", "each backend with its users"),
    "backends_count": ("backends_count", "backend processes running (ready or starting)"),
    "crashed_backends": ("crashed_backends", "backends that went away without being asked, with why"),
    "crashed_backends_count": ("crashed_backends_count", "how many backends crashed since start"),
    "res_memory": ("res_memory", "resident memory of the main instance and the backends (KiB)"),
    "shr_memory": ("shr_memory", "shared memory of the main instance and the backends (KiB)"),
    "used_memory": ("used_memory", "resident minus shared memory (KiB)"),
    "average_memory_per_user": ("average_memory_per_user", "backends' memory growth since start per user (KiB)"),
    "messages_from_frontend": ("messages_from_frontend", "messages users sent through the frontends"),
    "messages_to_frontend": ("messages_to_frontend", "messages delivered to the frontends"),
    "register": ("register USER LEGACY_NAME [PASSWORD [EXTRA]]", "register a user (public registration not needed)"),
    "unregister": ("unregister USER", "remove a user's registration"),
    "reload": ("reload", "read the configuration file again; apply what can change live, list what needs a restart"),
    "help": ("help", "this list"),
}


class AdminCommands:
    """The admin queries of one main instance."""

    def __init__(self, gateway: Any, pool: Any, started_at: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.gateway = gateway
        self.pool = pool
        self.clock = clock
        self.started_at = clock() if started_at is None else started_at
        #: the instance's ``context.registry`` (``reload`` finds the ops service there)
        self.registry: dict[str, Any] = {}

    def run(self, command: str, args: Sequence[str] = ()) -> defer.Deferred[str]:
        """Run *command*; fires with its output, or fails with :class:`AdminError`."""
        handler = getattr(self, "cmd_" + command, None) if command in COMMANDS else None
        if handler is None:
            return defer.fail(AdminError(f"unknown command {command!r}; try 'help'"))
        try:
            inspect.signature(handler).bind(*args)
        except TypeError:
            return defer.fail(AdminError(f"usage: {COMMANDS[command][0]}"))
        return defer.maybeDeferred(handler, *args)

    # -- figures

    def _backends(self) -> list[Any]:
        return sorted((b for b in self.pool.backends.values() if b.state in ("spawning", "ready")),
                      key=lambda b: b.id)

    def _memory(self) -> tuple[int, int, int]:
        """(resident, shared, growth since start) in KiB, main instance + backends."""
        res, shr = self.pool.main_memory_kib()
        growth = 0
        for b in self.pool.backends.values():
            if b.stats is not None:
                res += b.stats.res
                shr += b.stats.shared
                growth += max(0, b.stats.res - b.stats.init_res)
        return res, shr, growth

    # -- commands

    def cmd_status(self) -> str:
        backends = self._backends()
        online = self.gateway.online_users()
        lines = [f"Running ({len(online)} users connected using {len(backends)} backends)"]
        for b in backends:
            kind = "remote" if b.remote else f"pid {b.pid}"
            res = f", {b.stats.res} KiB" if b.stats is not None else ""
            lines.append(f"{b.name}: {b.state}, {kind}, {len(b.users)} users{res}")
        if self.pool.waiting:
            lines.append(f"{len(self.pool.waiting)} users waiting for a backend")
        return "\n".join(lines)

    def cmd_uptime(self) -> str:
        return str(int(self.clock() - self.started_at))

    def cmd_online_users(self) -> str:
        return "\n".join(self.gateway.online_users())

    def cmd_online_users_count(self) -> str:
        return str(len(self.gateway.online_users()))

    def cmd_online_users_per_backend(self) -> str:
        lines = []
        for b in self._backends():
            lines.append(f"{b.name} ({'remote' if b.remote else f'pid {b.pid}'}): {len(b.users)} users")
            lines.extend(f"   {u}" for u in sorted(b.users))
        return "\n".join(lines)

    def cmd_backends_count(self) -> str:
        return str(len(self._backends()))

    def cmd_crashed_backends(self) -> str:
        return "\n".join(
            f"{c.backend_id} pid {c.pid} at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(c.at))}: {c.reason}"
            f" ({c.users} users)" for c in self.pool.crashes)

    def cmd_crashed_backends_count(self) -> str:
        return str(self.pool.crashes_total)  # ``crashes`` keeps only the last 1000

    def cmd_res_memory(self) -> str:
        return str(self._memory()[0])

    def cmd_shr_memory(self) -> str:
        return str(self._memory()[1])

    def cmd_used_memory(self) -> str:
        res, shr, _ = self._memory()
        return str(res - shr)

    def cmd_average_memory_per_user(self) -> str:
        users = sum(len(b.users) for b in self.pool.backends.values())
        return str(self._memory()[2] // users if users else 0)

    def cmd_messages_from_frontend(self) -> str:
        return str(self.gateway.counters.messages_from_frontend)

    def cmd_messages_to_frontend(self) -> str:
        return str(self.gateway.counters.messages_to_frontend)

    def cmd_register(self, user: str, legacy_name: str, password: str = "", extra: str = "") -> defer.Deferred[str]:
        from transport.core.gateway import RegistrationRefused

        d = self.gateway.register(user, legacy_name, password, extra, admin=True)

        def refused(f: Any) -> None:
            f.trap(RegistrationRefused)
            raise AdminError(f"registration refused: {f.value}")

        return d.addCallbacks(lambda _: f"User {user} registered.", refused)

    def cmd_unregister(self, user: str) -> defer.Deferred[str]:
        d = self.gateway.unregister(user)
        return d.addCallback(lambda existed: f"User {user} unregistered." if existed
                             else f"User {user} is not registered.")

    def cmd_reload(self) -> str:
        ops = self.registry.get("ops")
        if ops is None:
            raise AdminError("reload is not available in this instance")
        result = ops.reload_config()
        if not result.ok:
            raise AdminError(result.summary())
        return str(result.summary())

    def cmd_help(self) -> str:
        width = max(len(u) for u, _ in COMMANDS.values())
        return "\n".join(f"{u.ljust(width)}  {h}" for u, h in COMMANDS.values())
