"""The operations service: readiness, reload, the status sampler, ``/metrics`` and ``/status``.

Added to every main instance by :func:`transport.service.make_service` (after
the other parts, so that it starts last and stops first):

* **readiness** - once the reactor runs and the backend pool listens,
  ``READY=1`` (with a ``STATUS=`` line) goes to systemd when ``NOTIFY_SOCKET``
  is set; ``STATUS`` follows the number of users and backends; ``STOPPING=1``
  when the instance stops; ``WATCHDOG=1`` when systemd's watchdog is on;
* **reload** - SIGHUP (handled on the reactor thread: the signal handler only
  does ``reactor.callFromThread``) and ``transportctl reload`` run
  :meth:`OpsService.reload_config`: ``RELOADING=1``, the file read again and
  applied (:mod:`transport.ops.reload`), the log levels updated, ``READY=1``;
  SIGUSR1 rotates the log file at once when there is one (as twistd does);
* the web resources ``/metrics`` (:mod:`transport.web.metrics`) and ``/status``
  (:mod:`transport.web.status`) on the web port, as ``[monitoring]`` says.

It is published as ``context.registry["ops"]``.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from transport.ops.levels import parse_levels
from transport.ops.logs import LevelPolicy, TwistdRoot, make_observer
from transport.ops.notify import Notifier
from transport.ops.reload import ConfigReloader, ReloadResult
from transport.ops.spectrum2 import ignored_keys
from transport.web.metrics import MetricsResource, make_registry
from transport.web.status import StatusResource, StatusSampler

log = Logger()


class OpsService(service.Service):
    """See the module docstring."""

    name = "ops"

    def __init__(self, context: Any, notifier: Notifier | None = None, install_signals: bool = True) -> None:
        self.context = context
        self.reactor = context.reactor
        self.notifier = notifier if notifier is not None else Notifier(unset_environment=True)
        self.install_signals = install_signals
        self.reloader = ConfigReloader(context.config, parts=context.registry)
        self.reloader.add_listener(self._apply_levels)
        #: the log observer's level policy (set by :func:`twistd_root` when twistd runs us)
        self.policy: LevelPolicy | None = None
        #: the log file twistd writes through our observer, if any (SIGUSR1 rotates it)
        self.log_file: Any = None
        monitoring = context.config["monitoring"]
        self.sampler = StatusSampler(context, monitoring["sample_interval"], monitoring["history"])
        self.ready = False
        self._previous_hup: Any = None
        self._previous_usr1: Any = None
        self._watchdog: task.LoopingCall | None = None
        self._status_loop: task.LoopingCall | None = None
        self._last_status = ""

    # -- life cycle

    def startService(self) -> None:
        super().startService()
        for line in ignored_keys(self.context.config):
            log.warn("{line}", line=line)
        if self.install_signals:
            try:
                self._previous_hup = signal.signal(signal.SIGHUP, self._sighup)
                if self.log_file is not None:
                    self._previous_usr1 = signal.signal(signal.SIGUSR1, self._sigusr1)
            except ValueError:  # not the main thread (embedded use)
                self._previous_hup = None
        self.sampler.start()
        if self.notifier.enabled:
            self._status_loop = task.LoopingCall(self._update_status)
            self._status_loop.clock = self.reactor
            self._status_loop.start(self.sampler.interval, now=False)
        if self.notifier.watchdog_interval:
            self._watchdog = task.LoopingCall(self.notifier.watchdog)
            self._watchdog.clock = self.reactor
            self._watchdog.start(self.notifier.watchdog_interval / 2, now=True)
        self.reactor.callWhenRunning(self._when_running)

    def _when_running(self) -> None:
        pool = self.context.registry.get("backend_pool")
        started = getattr(pool, "_started", None)
        if isinstance(started, defer.Deferred) and not started.called:
            started.addBoth(self._pool_started, pool)
        else:
            self._pool_started(None, pool)

    def _pool_started(self, result: Any, pool: Any) -> Any:
        if pool is not None and getattr(pool, "port", None) is None:
            log.critical("the backend pool did not start; not telling systemd this instance is ready")
            self.notifier.status("the backend pool failed to start")
            return result
        if self.running:
            self.ready = True
            self._last_status = self.status_line()
            self.notifier.ready(self._last_status)
            log.info("ready: {status}", status=self._last_status)
        return result

    def stopService(self) -> Any:
        self.notifier.stopping()
        self.ready = False
        for loop in (self._watchdog, self._status_loop):
            if loop is not None and loop.running:
                loop.stop()
        self.sampler.stop()
        for signum, previous in ((signal.SIGHUP, self._previous_hup), (signal.SIGUSR1, self._previous_usr1)):
            if self.install_signals and previous is not None:
                try:
                    signal.signal(signum, previous)
                except ValueError:
                    pass
        self._previous_hup = self._previous_usr1 = None
        return super().stopService()

    # -- status

    def status_line(self) -> str:
        s = self.sampler.current()
        return f"{s.users_online} users online, {s.backends} backends"

    def _update_status(self) -> None:
        line = self.status_line()
        if line != self._last_status and self.ready:
            self._last_status = line
            self.notifier.status(line)

    # -- reload

    def _sighup(self, signum: int, frame: Any) -> None:
        # A signal handler runs between bytecodes of whatever the reactor was doing: hand over.
        self.reactor.callFromThread(self._reload_from_signal)

    def _sigusr1(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self._rotate_log)

    def _rotate_log(self) -> None:
        if self.log_file is not None:
            self.log_file.rotate()
            log.info("SIGUSR1: log file rotated")

    def _reload_from_signal(self) -> None:
        log.info("SIGHUP: reloading {path}", path=self.context.config.path or "(no configuration file)")
        self.reload_config()

    def reload_config(self) -> ReloadResult:
        """Read the configuration file again and apply what can change live (SIGHUP, transportctl)."""
        self.notifier.reloading()
        if self.context.config.path is None:
            result = ReloadResult(False, error="the instance was started without a configuration file (-c)")
            log.error("{summary}", summary=result.summary())
        else:
            result = self.reloader.reload()
        line = self.status_line() if result.ok else "reload refused: " + result.error
        self.notifier.ready(line[:200])
        return result

    def _apply_levels(self, config: Any) -> None:
        if self.policy is not None:
            self.policy.update(config.get("logging", "level"), parse_levels(config.get("logging", "levels")))


def make_service(context: Any) -> service.IService:
    """The operations service for *context*; attaches ``/metrics`` and ``/status`` to the web root."""
    ops = OpsService(context)
    config = context.config
    if config.get("service", "web_port"):
        if config.get("monitoring", "metrics"):
            context.web_root.put_child("metrics", MetricsResource(make_registry(context), config))
        if config.get("monitoring", "status_page"):
            context.web_root.put_child("status", StatusResource(context, ops.sampler))
    context.registry["ops"] = ops
    return ops


def twistd_root(top: service.MultiService, config: Any, options: Mapping[str, Any] | None) -> TwistdRoot:
    """What ``twistd transport`` runs: *top* under a root that sets the log observer from ``[logging]``.

    *options* are the plugin's options (their ``parent`` is twistd's own: ``-l``, ``-n``, ``--syslog``);
    their command-line overrides are kept so that a reload reads the file the same way.
    """
    parent = getattr(options, "parent", None)
    observer = make_observer(config, parent)
    root = TwistdRoot(observer)
    top.setServiceParent(root)
    try:
        ops = top.getServiceNamed("ops")
    except KeyError:
        return root
    if isinstance(ops, OpsService):
        if observer is not None:
            ops.policy = observer.policy
            ops.log_file = observer.log_file
        if options is not None:
            ops.reloader.overrides = list(options.get("overrides", ()))
    return root
