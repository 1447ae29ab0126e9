"""HMAC-SHA256 bearer tokens bound to a user id, and the validator plug point.

A token is ``expiry(8) || mac(32)``: ``expiry`` is a Unix time in seconds
(unsigned, little-endian, as every integer on chatd/statusd wires), ``mac`` is
HMAC-SHA256 with the server secret over ``userid(8) || expiry(8)`` (both
little-endian). The token therefore names no user: it is only valid together
with the user id it was issued for, which the client sends next to it (AUTH).
Tokens are issued offline by the admin CLI (``transport-chatd token``) from the
same secret the server reads, so no database lookup is needed to check one.

>>> secret = b"k" * 32
>>> token = issue_token(secret, 42, expiry=2_000_000_000)
>>> len(token)
40
>>> check_token(secret, 42, token, now=1_900_000_000)
True
>>> check_token(secret, 43, token, now=1_900_000_000)
False
>>> check_token(secret, 42, token, now=2_000_000_000)
False

Other schemes plug in by providing :class:`ITokenValidator`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer
from zope.interface import Interface, implementer

TOKEN_SIZE = 40
_U64 = (1 << 64) - 1


class ITokenValidator(Interface):
    """Decides whether a client that says it is *userid* may connect."""

    def validate(userid: int, token: bytes) -> Any:  # type: ignore[misc]
        """True when *token* proves *userid*; a bool or a Deferred firing with one."""


def _mac(secret: bytes, userid: int, expiry: int) -> bytes:
    message = userid.to_bytes(8, "little") + expiry.to_bytes(8, "little")
    return hmac.new(secret, message, hashlib.sha256).digest()


def issue_token(secret: bytes, userid: int, expiry: int | None = None, ttl: float = 30 * 86400,
                now: float | None = None) -> bytes:
    """A token for *userid* valid until *expiry* (Unix seconds), by default *ttl* seconds from now."""
    if not secret:
        raise ValueError("the token secret is empty")
    if not 0 < userid <= _U64:
        raise ValueError("user ids are 1 .. 2**64-1")
    if expiry is None:
        expiry = int((time.time() if now is None else now) + ttl)
    if not 0 <= expiry <= _U64:
        raise ValueError("expiry out of range")
    return expiry.to_bytes(8, "little") + _mac(secret, userid, expiry)


def token_expiry(token: bytes) -> int:
    """The expiry time written in *token* (not checked)."""
    if len(token) != TOKEN_SIZE:
        raise ValueError(f"a token is {TOKEN_SIZE} bytes")
    return int.from_bytes(token[:8], "little")


def check_token(secret: bytes, userid: int, token: bytes, now: float) -> bool:
    """Whether *token* was issued with *secret* for *userid* and has not expired at *now*."""
    if len(token) != TOKEN_SIZE or not secret or not 0 < userid <= _U64:
        return False
    expiry = int.from_bytes(token[:8], "little")
    if expiry <= now:
        return False
    return hmac.compare_digest(token[8:], _mac(secret, userid, expiry))


@implementer(ITokenValidator)
class HMACTokenValidator:
    """Checks :func:`issue_token` tokens against one secret; *clock* gives the time (``seconds()``)."""

    def __init__(self, secret: bytes, clock: Any = None) -> None:
        if not secret:
            raise ValueError("the token secret is empty")
        if clock is None:
            from twisted.internet import reactor as clock
        self._secret = secret
        self._clock = clock

    def validate(self, userid: int, token: bytes) -> bool:
        return check_token(self._secret, userid, token, self._clock.seconds())


def validate(validator: Any, userid: int, token: bytes) -> defer.Deferred[bool]:
    """Run any :class:`ITokenValidator`, always as a Deferred (a raising validator counts as "no")."""
    d = defer.maybeDeferred(validator.validate, userid, token)
    d.addCallback(bool)
    d.addErrback(lambda _failure: False)
    return d


def load_secret(value: str, path: Path | None, create: bool = True) -> bytes:
    """The secret: *value* when set (UTF-8), else the contents of *path*.

    A missing file is created with 32 random bytes, mode 0600, when *create* is
    true, so a fresh installation works and the admin CLI finds the same secret.
    """
    if value:
        return value.encode("utf-8")
    if path is None:
        raise ValueError("no token secret and no secret file configured")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise
        path.parent.mkdir(parents=True, exist_ok=True)
        data = secrets.token_bytes(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # created meanwhile (chatd and statusd share the file)
            return load_secret(value, path, create=False)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return data
    if not data:
        raise ValueError(f"{path}: the token secret file is empty")
    return data
