"""Reloading the configuration file of a running main instance (SIGHUP, ``transportctl reload``).

The file is read again exactly as at start-up (same path, same command-line
overrides). A file that does not load is refused - the message has its
``file:line`` - and the running configuration stays as it was. Otherwise every
key whose value changed is either

* *applied*: keys declared ``reloadable=True`` get their new value in the
  running :class:`~transport.config.Config` in place. The parts read those
  values when they use them (the pool's ``users_per_backend`` at the next
  spawn decision, the gateway's ``[registration]`` policy at the next
  registration, ``max_frame_size`` for links made from then on), so nothing
  else needs to happen; listeners (the log levels) and parts published in
  ``context.registry`` with a ``reload(config)`` method are then told; or
* *needs a restart*: every other changed key keeps its running value and is
  listed, as are ``[section:NAME]`` sections that appeared or disappeared.

:func:`compare` is the pure part (two configs in, a :class:`ReloadPlan` out).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from transport import config as configuration

log = Logger()


@dataclass(frozen=True)
class Change:
    """One key whose value differs between the running and the new file."""

    section: str
    key: str
    old: Any
    new: Any
    secret: bool = False

    @property
    def name(self) -> str:
        return f"[{self.section}] {self.key}"

    def describe(self) -> str:
        if self.secret:
            return f"{self.name} (secret) changed"
        return f"{self.name}: {_show(self.old)} -> {_show(self.new)}"


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(empty)"
    if value == "" or value is None:
        return "(empty)"
    return str(value)


@dataclass
class ReloadPlan:
    """What a reload would do: keys to apply now, and what only a restart applies."""

    apply: list[Change] = field(default_factory=list)
    restart: list[Change] = field(default_factory=list)
    #: ``[section:NAME]`` sections added or removed (restart), and free sections changed (backends re-read them).
    notes: list[str] = field(default_factory=list)


@dataclass
class ReloadResult:
    """The outcome of one reload."""

    ok: bool
    error: str = ""
    applied: list[Change] = field(default_factory=list)
    restart: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Lines for the operator (transportctl, the log)."""
        if not self.ok:
            return f"reload refused, the running configuration stays: {self.error}"
        lines = []
        if self.applied:
            lines.append("applied: " + "; ".join(c.describe() for c in self.applied))
        if self.restart:
            lines.append("changed but need a restart: " + "; ".join(c.describe() for c in self.restart))
        lines += self.notes
        return "\n".join(lines) if lines else "reloaded: nothing changed"


def compare(running: configuration.Config, new: configuration.Config) -> ReloadPlan:
    """Compare two loaded configurations key by key (declared sections and ``[prefix:NAME]`` instances)."""
    plan = ReloadPlan()
    declared = configuration.sections()
    for name, section in declared.items():
        if section.repeatable:
            old_instances = running.instances(name)
            new_instances = new.instances(name)
            for inst in sorted(set(old_instances) | set(new_instances)):
                full = f"{name}:{inst}"
                if inst not in old_instances:
                    plan.notes.append(f"[{full}] is new: needs a restart")
                elif inst not in new_instances:
                    plan.notes.append(f"[{full}] was removed: needs a restart")
                else:
                    _compare_keys(plan, full, section, old_instances[inst], new_instances[inst])
            continue
        if name in running and name in new:
            _compare_keys(plan, name, section, running[name], new[name])
    for name in sorted(set(running.free) | set(new.free)):
        if running.free.get(name) != new.free.get(name):
            plan.notes.append(f"[{name}] changed: backends started from now on read the new values")
    return plan


def _compare_keys(plan: ReloadPlan, name: str, section: configuration.Section, old: Any, new: Any) -> None:
    for key in section.keys:
        a, b = old.get(key.name), new.get(key.name)
        if a == b:
            continue
        change = Change(name, key.name, a, b, key.secret)
        (plan.apply if key.reloadable else plan.restart).append(change)


class ConfigReloader:
    """Reloads *config* (the running one, shared by every part) from its file.

    *listeners* are called with the running config after changes were applied;
    *parts* (``name -> object``) are told with ``part.reload(config)`` when they
    have such a method.
    """

    def __init__(self, config: configuration.Config, overrides: Sequence[str] = (),
                 parts: dict[str, Any] | None = None) -> None:
        self.config = config
        self.overrides = list(overrides)
        self.parts = parts if parts is not None else {}
        self.listeners: list[Callable[[configuration.Config], None]] = []
        self.last: ReloadResult | None = None

    def add_listener(self, listener: Callable[[configuration.Config], None]) -> None:
        self.listeners.append(listener)

    def load_new(self) -> configuration.Config:
        """The file as it is now (raises :class:`~transport.config.ConfigError`)."""
        return configuration.load(self.config.path, self.overrides)

    def reload(self) -> ReloadResult:
        """Read the file again and apply what can change live."""
        try:
            new = self.load_new()
        except configuration.ConfigError as e:
            result = ReloadResult(False, error=str(e))
            log.error("{summary}", summary=result.summary())
            self.last = result
            return result
        plan = compare(self.config, new)
        for change in plan.apply:
            self.config.replace(change.section, change.key, change.new, new.lines.get((change.section, change.key)))
        result = ReloadResult(True, applied=plan.apply, restart=plan.restart, notes=plan.notes)
        # logged before the listeners run, so that a new, higher log level does not hide it
        for line in result.summary().splitlines():
            (log.warn if line.startswith("changed but") else log.info)("reload: {line}", line=line)
        self._tell(self.listeners, plan.apply)
        self.last = result
        return result

    def _tell(self, listeners: Iterable[Callable[[configuration.Config], None]], applied: list[Change]) -> None:
        for listener in list(listeners):
            try:
                listener(self.config)
            except Exception:
                log.failure("a reload listener failed")
        if not applied:
            return
        for name, part in list(self.parts.items()):
            method = getattr(part, "reload", None)
            if callable(method) and part is not self:
                try:
                    d = method(self.config)
                    if hasattr(d, "addErrback"):
                        d.addErrback(lambda f, n=name: log.failure("{part}: applying the reload failed", f, part=n))
                except Exception:
                    log.failure("{part}: applying the reload failed", part=name)
