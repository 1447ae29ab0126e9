"""The Python SDK for writing backends.

Subclass :class:`NetworkPlugin`, override the ``handle_*`` methods for what the
main instance asks (login, messages, rooms...), call the ``send_*`` methods for
what the legacy network reports, and start the process with :func:`run`::

    from transport.sdk import NetworkPlugin, run

    class MyBackend(NetworkPlugin):
        def handle_login(self, login):
            self.send_connected(login.user)

    if __name__ == "__main__":
        run(MyBackend)

See ``docs/sdk.md``.
"""

from transport.backend import transport_pb2 as pb
from transport.sdk.config import BackendConfigFile
from transport.sdk.context import BackendArguments, BackendContext
from transport.sdk.memory import MemoryUsage, memory_usage
from transport.sdk.plugin import MISSED_PINGS_LIMIT, NetworkPlugin, Shutdown
from transport.sdk.runner import load_context, parse_arguments, run, start_logging

__all__ = [
    "MISSED_PINGS_LIMIT",
    "BackendArguments",
    "BackendConfigFile",
    "BackendContext",
    "MemoryUsage",
    "NetworkPlugin",
    "Shutdown",
    "load_context",
    "memory_usage",
    "parse_arguments",
    "pb",
    "run",
    "start_logging",
]
