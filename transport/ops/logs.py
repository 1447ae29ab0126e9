"""Log output: levels per subsystem, text or JSON lines, stdout or a rotated file.

twistd picks its log observer when it starts the application: the one set as
the application's ``ILogObserver`` component, else one it makes from ``-l`` /
``--syslog`` / ``-n``. :class:`TwistdRoot` (what ``twistd transport`` returns)
sets that component to a :class:`TransportLogObserver` built from ``[logging]``,
so ``twistd`` keeps its command-line meaning while the configuration decides
levels, format and rotation:

* ``[logging] file`` set: that file, rotated at ``max_size`` keeping ``keep`` files;
* else twistd's choice: ``-l FILE`` (rotated the same way), ``-l -`` or ``-n``
  without ``-l``: stdout; daemon mode without ``-l``: ``twistd.log``;
* ``--syslog`` or ``--logger``: twistd's own observer (levels are not applied).

A namespace's level comes from the longest matching ``[logging] levels``
entry (``transport.backend`` matches ``transport.backend.pool``; ``backend``
matches the backends' output namespaces ``backend-N``), else ``[logging]
level``. Levels change on reload (:meth:`LevelPolicy.update`).

Text lines: ``2026-01-02T03:04:05.678Z info transport.backend.pool: message``;
under systemd (``JOURNAL_STREAM`` names stdout) the timestamp is left to the
journal and the line starts with the syslog priority (``<6>``) so that
``journalctl -p`` works. JSON lines: one object per line with ``time``
(ISO 8601, UTC), ``level``, ``namespace``, ``message``, ``failure`` (the
traceback, when there is one) and ``fields`` (the event's own scalar fields).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from twisted.application import service
from twisted.logger import ILogObserver, formatEvent
from twisted.python.components import Componentized
from twisted.python.logfile import LogFile
from zope.interface import implementer

from transport.ops.levels import LEVEL_NAMES, parse_levels

_ORDER = {name: i for i, name in enumerate(LEVEL_NAMES)}
_SYSLOG_PRIORITY = {"debug": 7, "info": 6, "warn": 4, "error": 3, "critical": 2}


def level_name(event: Mapping[str, Any]) -> str:
    name = str(getattr(event.get("log_level"), "name", "info"))
    return name if name in _ORDER else "info"


class LevelPolicy:
    """Which events pass: a default level and per-namespace levels (changeable at run time)."""

    def __init__(self, level: str = "info", levels: Mapping[str, str] | None = None) -> None:
        self.level = level
        self.levels: dict[str, str] = dict(levels or {})
        self._cache: dict[str, int] = {}

    @classmethod
    def from_config(cls, config: Any) -> LevelPolicy:
        return cls(config.get("logging", "level"), parse_levels(config.get("logging", "levels")))

    def update(self, level: str, levels: Mapping[str, str]) -> None:
        self.level = level
        self.levels = dict(levels)
        self._cache = {}

    def threshold(self, namespace: str) -> str:
        """The level that applies to *namespace*."""
        best, best_len = self.level, -1
        for name, level in self.levels.items():
            if len(name) > best_len and (namespace == name or namespace.startswith((name + ".", name + "-"))):
                best, best_len = level, len(name)
        return best

    def allows(self, event: Mapping[str, Any]) -> bool:
        namespace = str(event.get("log_namespace") or "")
        limit = self._cache.get(namespace)
        if limit is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            limit = self._cache[namespace] = _ORDER[self.threshold(namespace)]
        return _ORDER[level_name(event)] >= limit


def _message(event: Mapping[str, Any]) -> str:
    text = formatEvent(dict(event))
    if not text and "log_io" in event:
        text = str(event["log_io"])
    return text


def _failure_text(event: Mapping[str, Any]) -> str:
    failure = event.get("log_failure")
    if failure is None:
        return ""
    try:
        return str(failure.getTraceback())
    except Exception:  # a broken failure must not break logging
        return repr(failure)


def _when(event: Mapping[str, Any]) -> str:
    t = event.get("log_time")
    moment = datetime.fromtimestamp(float(t) if isinstance(t, int | float) else 0.0, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def format_text(event: Mapping[str, Any], timestamps: bool = True, priority_prefix: bool = False) -> str:
    """One event as text (a line, plus the traceback's lines when there is one)."""
    level = level_name(event)
    namespace = event.get("log_namespace") or "-"
    head = f"<{_SYSLOG_PRIORITY[level]}>" if priority_prefix else ""
    if timestamps:
        head += _when(event) + " "
    text = f"{head}{level} {namespace}: {_message(event)}"
    failure = _failure_text(event)
    if failure:
        text += "\n" + failure.rstrip("\n")
    return text + "\n"


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def format_json(event: Mapping[str, Any]) -> str:
    """One event as one line of JSON."""
    out: dict[str, Any] = {
        "time": _when(event),
        "level": level_name(event),
        "namespace": event.get("log_namespace") or "",
        "message": _message(event),
    }
    failure = _failure_text(event)
    if failure:
        out["failure"] = failure
    fields = {k: v for k, v in event.items() if not k.startswith("log_") and k != "format" and _scalar(v)}
    if fields:
        out["fields"] = fields
    return json.dumps(out, ensure_ascii=False, default=str) + "\n"


@implementer(ILogObserver)
class TransportLogObserver:
    """Filters events by :class:`LevelPolicy` and writes them, formatted, to *output*.

    *output* is a text stream (stdout) or a :class:`twisted.python.logfile.LogFile`
    (bytes are written to it, so its size accounting - and rotation - is exact).
    """

    def __init__(self, output: IO[str] | LogFile, policy: LevelPolicy, fmt: str = "text",
                 timestamps: bool = True, priority_prefix: bool = False) -> None:
        self.output = output
        self.policy = policy
        self.format = fmt
        self.timestamps = timestamps
        self.priority_prefix = priority_prefix

    def __call__(self, event: dict[str, Any]) -> None:
        if not self.policy.allows(event):
            return
        if self.format == "json":
            line = format_json(event)
        else:
            line = format_text(event, self.timestamps, self.priority_prefix)
        try:
            if isinstance(self.output, LogFile):
                self.output.write(line.encode("utf-8", "replace"))
            else:
                self.output.write(line)
            self.output.flush()
        except (OSError, ValueError):
            pass  # stdout gone or closed: nothing sensible to do from inside the logger

    @property
    def log_file(self) -> LogFile | None:
        return self.output if isinstance(self.output, LogFile) else None

    def close(self) -> None:
        if isinstance(self.output, LogFile):
            self.output.close()


def open_log_file(path: Path, max_size: int, keep: int) -> LogFile:
    """A :class:`LogFile` rotating at *max_size* bytes (0: never), keeping *keep* old files (0: all)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return LogFile(path.name, str(path.parent), rotateLength=max_size or None, defaultMode=0o640,
                   maxRotatedFiles=keep or None)


def under_journal(environ: Mapping[str, str] | None = None, stream: Any = None) -> bool:
    """Whether *stream* (stdout) is the journal's stream (``JOURNAL_STREAM`` = ``device:inode``)."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    if ":" not in value:
        return False
    try:
        fd = (stream or sys.stdout).fileno()
        st = os.fstat(fd)
    except (OSError, ValueError, AttributeError):
        return False
    dev, _, ino = value.partition(":")
    return f"{st.st_dev}:{st.st_ino}" == f"{dev}:{ino}"


def make_observer(config: Any, twistd_options: Mapping[str, Any] | None = None,
                  stdout: IO[str] | None = None, environ: Mapping[str, str] | None = None
                  ) -> TransportLogObserver | None:
    """The observer for *config* and twistd's options (see the module docstring); None: leave it to twistd."""
    opts = twistd_options or {}
    if opts.get("syslog") or opts.get("logger"):
        if not config.is_set("logging", "file"):
            return None
    policy = LevelPolicy.from_config(config)
    section = config["logging"]
    fmt = section["format"]
    stamps = section["timestamps"]
    max_size, keep = section["max_size"], section["keep"]
    if section["file"]:
        return TransportLogObserver(open_log_file(config.resolve_path(section["file"]), max_size, keep), policy,
                                    fmt, timestamps=stamps != "no")
    logfile = opts.get("logfile") or ""
    nodaemon = bool(opts.get("nodaemon")) if twistd_options is not None else True
    if logfile == "-" or (nodaemon and not logfile):
        if not nodaemon:
            raise SystemExit("Daemons cannot log to stdout, exiting!")
        out = stdout if stdout is not None else sys.stdout
        journal = under_journal(environ, out)
        timestamps = stamps == "yes" or (stamps == "auto" and not journal)
        return TransportLogObserver(out, policy, fmt, timestamps=timestamps, priority_prefix=journal and fmt == "text")
    path = Path(logfile or "twistd.log")
    return TransportLogObserver(open_log_file(path.absolute(), max_size, keep), policy, fmt,
                                timestamps=stamps != "no")


class TwistdRoot(service.MultiService):
    """The service ``twistd transport`` runs: sets the log observer on the application it is added to."""

    def __init__(self, observer: TransportLogObserver | None) -> None:
        super().__init__()
        self.observer = observer

    def setServiceParent(self, parent: Any) -> None:
        if self.observer is not None and isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self.observer)
        super().setServiceParent(parent)
