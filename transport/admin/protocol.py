"""The admin endpoint's wire protocol: one JSON object per line, each way.

Request (client → main instance)::

    {"command": "status", "args": [], "token": "..."}\\n

Answer::

    {"ok": true, "output": "Running (3 users connected using 1 backends)\\n..."}\\n
    {"ok": false, "error": "unknown command 'x'; try 'help'"}\\n

``token`` is needed only when ``[service] admin_token`` is set; a wrong token is
answered with an error and the connection closed. For people at a terminal, a
line that is not JSON is read as ``command arg arg...`` (only when no token is
configured). Lines are limited to 64 KiB; a longer one closes the connection.
The protocol core (:class:`AdminConnection`) is sans-I/O; :class:`AdminProtocol`
is its Twisted adapter.
"""

from __future__ import annotations

import hmac
import json
import shlex
from dataclasses import dataclass
from typing import Any

from twisted.internet import protocol
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from transport.admin.commands import AdminCommands, AdminError

log = Logger()

MAX_LINE = 64 * 1024


@dataclass(frozen=True)
class Request:
    """A parsed request line."""

    command: str
    args: tuple[str, ...]
    token: str


class BadRequest(Exception):
    """A request line that cannot be understood."""


def parse_request(line: bytes, plain_allowed: bool = True) -> Request:
    """Parse one request line (JSON, or ``command args...`` when *plain_allowed*)."""
    text = line.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise BadRequest(f"invalid JSON: {e}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("command"), str):
            raise BadRequest("expected an object with a string 'command'")
        args = obj.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise BadRequest("'args' must be a list of strings")
        token = obj.get("token", "")
        if not isinstance(token, str):
            raise BadRequest("'token' must be a string")
        return Request(obj["command"], tuple(args), token)
    if not plain_allowed:
        raise BadRequest("expected a JSON request")
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise BadRequest(str(e)) from None
    if not words:
        raise BadRequest("empty request")
    return Request(words[0], tuple(words[1:]), "")


def encode_answer(ok: bool, text: str) -> bytes:
    """One answer line."""
    return json.dumps({"ok": True, "output": text} if ok else {"ok": False, "error": text}).encode() + b"\n"


class AdminProtocol(LineOnlyReceiver):
    """One admin client connection."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE

    def __init__(self, commands: AdminCommands, token: str) -> None:
        self.commands = commands
        self.token = token

    def lineReceived(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            request = parse_request(line.rstrip(b"\r"), plain_allowed=not self.token)
        except BadRequest as e:
            self._answer(False, f"bad request: {e}")
            return
        if self.token and not hmac.compare_digest(request.token.encode(), self.token.encode()):
            log.warn("admin endpoint: a request with a wrong token; connection closed")
            self._answer(False, "unauthorized")
            if self.transport is not None:
                self.transport.loseConnection()
            return
        d = self.commands.run(request.command, request.args)
        d.addCallbacks(lambda out: self._answer(True, out), self._failed, errbackArgs=(request.command,))

    def _failed(self, failure: Any, command: str) -> None:
        if failure.check(AdminError):
            self._answer(False, str(failure.value))
        else:
            log.failure("admin command {command} failed", failure, command=command)
            self._answer(False, f"internal error: {failure.getErrorMessage()}")

    def _answer(self, ok: bool, text: str) -> None:
        if self.transport is not None:
            self.transport.write(encode_answer(ok, text))

    def lineLengthExceeded(self, line: bytes) -> None:
        self._answer(False, f"request longer than {MAX_LINE} bytes")
        if self.transport is not None:
            self.transport.loseConnection()


class AdminFactory(protocol.ServerFactory):
    """Builds :class:`AdminProtocol` connections sharing one :class:`AdminCommands`."""

    def __init__(self, commands: AdminCommands, token: str = "") -> None:
        self.commands = commands
        self.token = token

    def buildProtocol(self, addr: Any) -> AdminProtocol:
        p = AdminProtocol(self.commands, self.token)
        p.factory = self
        return p

