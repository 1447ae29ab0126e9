"""Spawning and supervising one backend process.

A backend is started through a tiny guard (``python -I -S -c GUARD``) which,
before ``exec``-ing the real command line (so the backend keeps the guard's pid):

* moves itself into its **own process group** - a terminal's Ctrl-C reaches the
  main instance only, which then shuts backends down in order, and the pool can
  signal the backend together with whatever it spawned (``killpg``);
* asks Linux to SIGKILL it when the main instance dies (``PR_SET_PDEATHSIG``,
  which survives ``exec``), and exits at once if the main instance is already
  gone - so **no backend outlives a main instance killed with SIGKILL**.

Backends also exit by themselves when their socket to the main instance closes
(the SDK does), which covers platforms without ``prctl``.

The backend's stdout and stderr go to the main instance's log, one line per
event in the namespace ``backend-N`` (or, with ``[service] backend_log_dir``, to
``backend-N.log`` there).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet import protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

GUARD = (
    "import os,sys,signal\n"
    "ppid=int(sys.argv[1])\n"
    "try:\n"
    "    os.setpgid(0,0)\n"
    "except OSError:\n"
    "    pass\n"
    "try:\n"
    "    import ctypes\n"
    "    ctypes.CDLL(None,use_errno=True).prctl(1,signal.SIGKILL,0,0,0)\n"  # PR_SET_PDEATHSIG
    "except Exception:\n"
    "    pass\n"
    "if os.getppid()!=ppid:\n"
    "    os._exit(1)\n"
    "try:\n"
    "    os.execvp(sys.argv[2],sys.argv[2:])\n"
    "except OSError as e:\n"
    "    sys.stderr.write('cannot start %s: %s\\n'%(sys.argv[2],e.strerror))\n"
    "    os._exit(127)\n"
)

#: Longest line of backend output kept (longer lines are cut).
MAX_LINE = 8192


def guarded_argv(argv: Sequence[str]) -> list[str]:
    """The command line that runs *argv* under the guard described above."""
    return [sys.executable, "-I", "-S", "-c", GUARD, str(os.getpid()), *argv]


class BackendProcess(protocol.ProcessProtocol):
    """One spawned backend: its output to the log, its exit reported to *on_exit*."""

    def __init__(self, backend_id: int, on_exit: Callable[[BackendProcess, str], None],
                 log_file: Path | None = None, log_output: bool = True) -> None:
        self.backend_id = backend_id
        self.on_exit = on_exit
        self.log = Logger(namespace=f"backend-{backend_id}")
        self.log_file = log_file
        self.log_output = log_output
        self.pid: int | None = None
        self.ended = False
        self.exit_status: str = ""
        self._partial: dict[int, bytes] = {}
        self._ended_waiters: list[Any] = []

    def spawn(self, reactor: Any, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        """Start *argv* (under the guard)."""
        child_fds: dict[int, Any] = {0: "w", 1: "r", 2: "r"}
        fd = None
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            child_fds = {0: "w", 1: fd, 2: fd}
        elif not self.log_output:
            fd = os.open(os.devnull, os.O_WRONLY)
            child_fds = {0: "w", 1: fd, 2: fd}
        try:
            transport = reactor.spawnProcess(self, sys.executable, guarded_argv(argv),
                                             env=env if env is not None else os.environ, childFDs=child_fds)
        finally:
            if fd is not None:
                os.close(fd)
        self.pid = transport.pid

    def connectionMade(self) -> None:
        if self.transport is not None:
            self.transport.closeStdin()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        buf = self._partial.get(childFD, b"") + data
        lines = buf.split(b"\n")
        rest = lines.pop()
        if len(rest) > MAX_LINE:
            lines.append(rest)
            rest = b""
        self._partial[childFD] = rest
        for line in lines:
            self._emit(childFD, line)

    def _emit(self, fd: int, line: bytes) -> None:
        text = line[:MAX_LINE].decode("utf-8", "replace").rstrip("\r")
        if text:
            self.log.info("{stream}: {line}", stream="stderr" if fd == 2 else "stdout", line=text)

    def processEnded(self, reason: Failure) -> None:
        for fd, rest in self._partial.items():
            if rest:
                self._emit(fd, rest)
        self._partial.clear()
        self.ended = True
        value = reason.value
        code = getattr(value, "exitCode", None)
        sig = getattr(value, "signal", None)
        if sig:
            self.exit_status = f"killed by signal {sig}"
        else:
            self.exit_status = f"exited with status {code}"
        waiters, self._ended_waiters = self._ended_waiters, []
        for d in waiters:
            d.callback(None)
        self.on_exit(self, self.exit_status)

    def when_ended(self) -> Any:
        """A Deferred that fires when the process has ended."""
        from twisted.internet import defer

        if self.ended:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._ended_waiters.append(d)
        return d

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the backend's process group (falling back to the process alone)."""
        if self.ended or self.pid is None:
            return
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
