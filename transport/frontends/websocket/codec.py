"""Frames of the OriginChats protocol: one JSON object per WebSocket text message.

Sans-I/O: :func:`decode` turns the text of one WebSocket message into a
:class:`Command` or raises :class:`ProtocolError` (which the server answers
with ``{"cmd": "error", "val": ..., "src": ...}``); :func:`encode` turns a
packet into the bytes of one text message. Nothing here knows about sockets.

Every input is bounded before it is parsed: the message size (the WebSocket
layer refuses larger messages), the JSON nesting depth (checked on the raw
text, so a deeply nested document is refused before ``json.loads`` recurses)
and, per command, the length of each string field (:func:`field`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

#: Longest command name accepted.
MAX_CMD_LENGTH = 64
#: Longest ``listener`` value echoed back.
MAX_LISTENER_LENGTH = 128


class ProtocolError(Exception):
    """A command the server refuses; answered with an error packet naming ``src``."""

    def __init__(self, message: str, src: str = "unknown") -> None:
        super().__init__(message)
        self.message = message
        self.src = src


@dataclass(frozen=True, slots=True)
class Command:
    """One decoded request: its name, its fields and the optional ``listener`` tag."""

    cmd: str
    fields: dict[str, Any]
    listener: str | None = None

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


def json_depth_exceeds(text: str, limit: int) -> bool:
    """Whether the JSON *text* nests arrays/objects deeper than *limit* (strings are skipped)."""
    depth = 0
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode(data: str | bytes, max_size: int = 64 * 1024, max_depth: int = 16) -> Command:
    """Parse one text message into a :class:`Command` (or raise :class:`ProtocolError`)."""
    if isinstance(data, bytes):
        if len(data) > max_size:
            raise ProtocolError("Message too large")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("Invalid UTF-8") from None
    else:
        text = data
    if len(text) > max_size:
        raise ProtocolError("Message too large")
    if json_depth_exceeds(text, max_depth):
        raise ProtocolError("JSON nested too deeply")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ProtocolError("Invalid JSON") from None
    if not isinstance(value, dict):
        raise ProtocolError("Expected a JSON object")
    cmd = value.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise ProtocolError("Missing or invalid cmd")
    if len(cmd) > MAX_CMD_LENGTH:
        raise ProtocolError("Unknown command")
    listener = value.get("listener")
    if listener is not None:
        if not isinstance(listener, str) or len(listener) > MAX_LISTENER_LENGTH:
            raise ProtocolError("Invalid listener", cmd)
    return Command(cmd, value, listener)


def encode(packet: dict[str, Any]) -> bytes:
    """The UTF-8 JSON text of *packet* (compact; non-ASCII kept as is)."""
    return json.dumps(packet, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


_MISSING = object()


def field(command: Command, name: str, kind: type | tuple[type, ...], *, required: bool = True,
          max_length: int | None = None, min_length: int = 0, default: Any = None, label: str | None = None) -> Any:
    """Field *name* of *command*, checked for type and length; ProtocolError naming the command otherwise.

    ``bool`` is not accepted where ``int`` is expected (JSON ``true`` is not a number).
    """
    value = command.fields.get(name, _MISSING)
    label = label or name.replace("_", " ").capitalize()
    if value is _MISSING or value is None:
        if required:
            raise ProtocolError(f"{label} is required", command.cmd)
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ProtocolError(f"{label} has the wrong type", command.cmd)
    if not isinstance(value, kinds):
        raise ProtocolError(f"{label} has the wrong type", command.cmd)
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(f"{label} has the wrong type", command.cmd)
    if isinstance(value, str):
        if max_length is not None and len(value) > max_length:
            raise ProtocolError(f"{label} is too long (at most {max_length} characters)", command.cmd)
        if len(value) < min_length:
            raise ProtocolError(f"{label} is required", command.cmd)
    return value
