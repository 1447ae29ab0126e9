"""Who a WebSocket client is: validators (``validator`` mode) and password hashes (``cracked`` mode).

``validator`` mode: the client sends ``{"cmd": "auth", "validator": TOKEN}``
and an :class:`IValidator` decides. Two ship:

* :class:`HmacValidator` - tokens issued by ``transport-websocket token``
  (see :mod:`.tokens`);
* :class:`HttpValidator` - OriginChats' scheme: ``GET URL?key=<validator_key>&v=<token>``
  must answer 200 with ``{"valid": true, "username": ...}`` (when the answer has no
  username, the token's part before the first comma is used, as OriginChats does).

``cracked`` mode stores scrypt hashes (a memory-hard KDF, 16 MiB per hash),
computed in a thread so the reactor never waits for them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

from twisted.internet import defer, threads
from twisted.logger import Logger
from zope.interface import Interface, implementer

from .tokens import USERNAME_RE, verify_token

log = Logger()

#: scrypt parameters: N=2^14, r=8 -> 16 MiB and ~50 ms per hash.
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2**14, 8, 1, 32
MAX_VALIDATOR_ANSWER = 64 * 1024


class IValidator(Interface):
    """Checks the token of an ``auth`` command."""

    def validate(token: str, validator_key: str) -> defer.Deferred[str | None]:
        """Fire with the username the token proves, or ``None`` when it proves nothing.

        *validator_key* is the ``originChats-...`` key sent in this connection's handshake.
        """


@implementer(IValidator)
class HmacValidator:
    """Tokens signed with the server's secret (see :func:`.tokens.issue_token`)."""

    def __init__(self, secret: bytes, clock: Any = None) -> None:
        self.secret = secret
        self.clock = clock

    def validate(self, token: str, validator_key: str) -> defer.Deferred[str | None]:
        now = self.clock.seconds() if self.clock is not None else None
        return defer.succeed(verify_token(self.secret, token, now=now))


@implementer(IValidator)
class HttpValidator:
    """Asks an HTTP identity service, as OriginChats asks Rotur."""

    def __init__(self, url: str, timeout: float = 5.0, reactor: Any = None) -> None:
        self.url = url
        self.timeout = timeout
        self.reactor = reactor

    @defer.inlineCallbacks
    def validate(self, token: str, validator_key: str) -> Any:
        import treq

        kwargs: dict[str, Any] = {"params": {"key": validator_key, "v": token}, "timeout": self.timeout}
        if self.reactor is not None:
            from treq.client import HTTPClient
            from twisted.web.client import Agent
            client: Any = HTTPClient(Agent(self.reactor))
        else:
            client = treq
        try:
            response = yield client.get(self.url, **kwargs)
            if response.code != 200:
                yield response.content()
                return None
            length = response.length if isinstance(response.length, int) else 0
            if length > MAX_VALIDATOR_ANSWER:
                return None
            body = yield response.content()
            if len(body) > MAX_VALIDATOR_ANSWER:
                return None
            answer = json.loads(body)
        except Exception as e:  # network error, timeout, bad JSON: the token proves nothing
            log.warn("HTTP validator {url} failed: {error}", url=self.url, error=e)
            return None
        if not isinstance(answer, dict) or answer.get("valid") is not True:
            return None
        username = answer.get("username") or token.split(",", 1)[0]
        if not isinstance(username, str):
            return None
        username = username.lower()
        return username if USERNAME_RE.match(username) else None


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                          maxmem=64 * 1024 * 1024, dklen=SCRYPT_LEN)


def hash_password_sync(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (hex) for *password*; blocking: call it through :func:`hash_password`."""
    salt = os.urandom(16)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${_hash(password, salt).hex()}"


def check_password_sync(password: str, stored: str) -> bool:
    """Whether *password* matches the *stored* hash (constant-time comparison); blocking."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                                  maxmem=64 * 1024 * 1024, dklen=len(digest) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed.hex(), digest)


def hash_password(password: str) -> defer.Deferred[str]:
    """:func:`hash_password_sync` in a thread."""
    return threads.deferToThread(hash_password_sync, password)


def check_password(password: str, stored: str) -> defer.Deferred[bool]:
    """:func:`check_password_sync` in a thread."""
    return threads.deferToThread(check_password_sync, password, stored)
