"""systemd's readiness protocol (``sd_notify``), without libsystemd.

With ``Type=notify`` systemd passes ``NOTIFY_SOCKET``: the path of an AF_UNIX
datagram socket (a leading ``@`` means an abstract socket, whose name starts
with a NUL byte). A service sends newline-separated ``KEY=VALUE`` assignments
in one datagram: ``READY=1`` once it serves, ``RELOADING=1`` (with
``MONOTONIC_USEC``) when a reload starts and ``READY=1`` when it is done,
``STOPPING=1`` when it shuts down, ``STATUS=...`` a line for ``systemctl
status``, ``WATCHDOG=1`` as a keep-alive when ``WATCHDOG_USEC`` is set.

Without ``NOTIFY_SOCKET`` every call is a no-op, so the same code runs under
twistd in a terminal, in daemon mode, and under systemd. Sending never blocks
(the socket is non-blocking) and never raises: readiness is best effort, and a
failure is logged once.

>>> Notifier(environ={}).notify(READY=1)
False
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from twisted.logger import Logger

log = Logger()

#: Messages kept in :attr:`Notifier.sent` (the watchdog and STATUS lines go on for the life of the process).
MAX_SENT = 100


def socket_address(value: str) -> str | bytes | None:
    """The address to send to for a ``NOTIFY_SOCKET`` value (``None``: not usable)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock:… and other forms are not supported


def format_message(fields: Mapping[str, Any]) -> bytes:
    """``KEY=VALUE`` lines; a newline inside a value (STATUS) is replaced by a space."""
    lines = []
    for key, value in fields.items():
        text = str(value).replace("\n", " ")
        lines.append(f"{key}={text}")
    return ("\n".join(lines) + "\n").encode("utf-8", "replace")


class Notifier:
    """Sends notifications to the service manager named by ``NOTIFY_SOCKET``."""

    def __init__(self, environ: Mapping[str, str] | None = None, unset_environment: bool = False) -> None:
        env = os.environ if environ is None else environ
        self.address = socket_address(env.get("NOTIFY_SOCKET", ""))
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        #: Seconds between keep-alives systemd expects, when its watchdog is on for this process.
        self.watchdog_interval: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1e6
        if unset_environment and environ is None:
            # like sd_notify(unset_environment=1): the backends we spawn must not talk to systemd as us
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(name, None)
        self._sock: socket.socket | None = None
        self._failed = False
        #: The last MAX_SENT messages sent (for tests and the status page): list of dicts.
        self.sent: list[dict[str, str]] = []

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: Any) -> bool:
        """Send one datagram (``notify(READY=1, STATUS="serving")``); whether it went out."""
        if self.address is None:
            return False
        data = format_message(fields)
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(data, self.address)
        except OSError as e:
            if not self._failed:
                self._failed = True
                log.warn("cannot notify the service manager at {address!r}: {error}", address=self.address,
                         error=e)
            return False
        self.sent.append({k: str(v) for k, v in fields.items()})
        if len(self.sent) > MAX_SENT:
            del self.sent[:-MAX_SENT]
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify(READY=1, **({"STATUS": status} if status else {}))

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd (Type=notify-reload) tell this reload from an earlier one.
        return self.notify(RELOADING=1, MONOTONIC_USEC=int(time.monotonic() * 1e6))

    def stopping(self) -> bool:
        return self.notify(STOPPING=1)

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
