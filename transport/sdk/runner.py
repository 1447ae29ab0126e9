"""Starting a backend the way the main instance (or Spectrum 2) launches it.

The main instance runs the configured backend command with, appended::

    --host H --port P --service.backend_id=N CONFIG

(:func:`parse_arguments` also tolerates the other options Spectrum 2 passes, such
as ``-j JID``). :func:`run` reads CONFIG, logs to stderr (the main instance
copies a backend's stderr into its log, tagged with the backend id), connects to
``H:P`` and runs the plugin until it stops; the process exit code says why.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IReactorCore
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python.failure import Failure

from transport.config import ConfigError
from transport.sdk.config import BackendConfigFile
from transport.sdk.context import BackendArguments, BackendContext
from transport.sdk.memory import memory_usage
from transport.sdk.plugin import NetworkPlugin, Shutdown

log = Logger(namespace="transport.sdk")

#: Exit codes of a backend process started by :func:`run`.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def parse_arguments(argv: Sequence[str] | None = None, prog: str | None = None) -> BackendArguments:
    """Parse ``--host H --port P --service.backend_id=N [options] [CONFIG]``.

    Unknown options are kept in ``extra`` rather than refused, so a backend
    started by Spectrum 2 (which passes a few more) still starts. CONFIG is the
    last positional argument.
    """
    parser = argparse.ArgumentParser(prog=prog, description="A Transport / Spectrum 2 backend.", allow_abbrev=False)
    parser.add_argument("--host", default="127.0.0.1", help="main instance address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="main instance backend port")
    parser.add_argument("--service.backend_id", dest="backend_id", default="", help="this backend's id")
    parser.add_argument("-j", "--jid", default=None, help="the transport's JID (Spectrum 2 passes it; unused)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("config", nargs="*", help="the configuration file")
    namespace, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    positional = namespace.config
    return BackendArguments(
        host=namespace.host,
        port=namespace.port,
        backend_id=str(namespace.backend_id),
        config_path=positional[-1] if positional else None,
        jid=namespace.jid,
        verbose=namespace.verbose,
        extra=tuple(positional[:-1]) + tuple(extra),
    )


def start_logging(verbose: bool = False) -> None:
    """Log to stderr (info, or debug when *verbose*)."""
    level = LogLevel.debug if verbose else LogLevel.info
    predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    if not verbose:
        # connectProtocol's factory and the reactor announce themselves at info level: noise here.
        predicate.setLogLevelForNamespace("twisted.internet.endpoints", LogLevel.warn)
        predicate.setLogLevelForNamespace("twisted.internet.base", LogLevel.warn)
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def load_context(arguments: BackendArguments) -> BackendContext:
    """Read the configuration file named on the command line (none: defaults)."""
    initial = memory_usage()
    config = BackendConfigFile.read(arguments.config_path) if arguments.config_path else BackendConfigFile()
    return BackendContext(arguments, config, initial)


def run(
    plugin_factory: type[NetworkPlugin] | Callable[[BackendContext], NetworkPlugin],
    argv: Sequence[str] | None = None,
    *,
    prog: str | None = None,
) -> NoReturn:
    """Run a backend process: parse arguments, connect, serve until stopped, exit.

    *plugin_factory* is a ``NetworkPlugin`` subclass (built with
    :meth:`NetworkPlugin.from_context`) or a function taking the
    :class:`BackendContext` and returning a plugin.
    Exit codes: 0 after EXIT or when the main instance closed the connection,
    1 after a ping timeout, a protocol error or a failed connection, 2 for a bad
    command line or configuration file.
    """
    from twisted.internet import reactor

    arguments = parse_arguments(argv, prog)
    start_logging(arguments.verbose)
    plugin: NetworkPlugin
    try:
        context = load_context(arguments)
        if isinstance(plugin_factory, type) and issubclass(plugin_factory, NetworkPlugin):
            plugin = plugin_factory.from_context(context)
        else:
            plugin = plugin_factory(context)  # type: ignore[call-arg,assignment]
    except (OSError, ConfigError) as e:
        log.critical("cannot use the configuration file: {error}", error=str(e))
        sys.exit(EXIT_USAGE)
    outcome: list[int] = []

    def finish(code: int) -> None:
        if outcome:
            return
        outcome.append(code)
        try:
            reactor.stop()  # type: ignore[attr-defined]
        except ReactorNotRunning:
            pass  # already stopping (SIGTERM)

    def stopped(shutdown: Shutdown) -> None:
        finish(shutdown.exit_code)

    def failed(failure: Failure) -> None:
        log.critical(
            "cannot connect to the main instance at {host}:{port}: {error}",
            host=arguments.host,
            port=arguments.port,
            error=failure.getErrorMessage(),
        )
        finish(EXIT_FAILURE)

    plugin.stopped.addCallback(stopped)
    endpoint = HostnameEndpoint(reactor, arguments.host, arguments.port, timeout=30)
    log.info(
        "backend {id} starting (pid {pid}), connecting to {host}:{port}",
        id=arguments.backend_id or "-",
        pid=os.getpid(),
        host=arguments.host,
        port=arguments.port,
    )
    connectProtocol(endpoint, plugin).addErrback(failed)
    core: IReactorCore = reactor  # type: ignore[assignment]
    if not outcome:
        core.run()
    code = outcome[0] if outcome else EXIT_FAILURE
    sys.exit(code)
