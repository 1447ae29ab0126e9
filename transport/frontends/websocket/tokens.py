"""HMAC tokens for ``validator`` auth mode, and the ``transport-websocket`` console script.

A token is ``<username>,<expiry>,<signature>``: *expiry* is a Unix time in
seconds (0 = never), *signature* the URL-safe base64 (unpadded) HMAC-SHA256 of
``"<username>,<expiry>"`` under the server's secret. The username comes first,
as in OriginChats' validators, so clients can show who they are.

>>> token = issue_token(b"secret", "alice", expires=0)
>>> verify_token(b"secret", token, now=1e9)
'alice'
>>> verify_token(b"other", token, now=1e9) is None
True

Issue one from the command line (the secret is read the way the server reads it)::

    transport-websocket -c transport.ini token alice --ttl 86400
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any

USERNAME_RE = re.compile(r"^[a-z0-9_-]{2,32}$")
MAX_TOKEN_LENGTH = 512
SECRET_FILE = "websocket.secret"


def _sign(secret: bytes, payload: str) -> str:
    digest = hmac.new(secret, payload.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def issue_token(secret: bytes, username: str, expires: float = 0, ttl: float | None = None,
                now: float | None = None) -> str:
    """A token for *username*, valid until *expires* (Unix seconds; 0 = forever) or for *ttl* seconds."""
    username = username.lower()
    if not USERNAME_RE.match(username):
        raise ValueError("usernames are 2-32 characters of a-z, 0-9, _ and -")
    if ttl is not None:
        expires = (time.time() if now is None else now) + ttl
    payload = f"{username},{int(expires)}"
    return f"{payload},{_sign(secret, payload)}"


def verify_token(secret: bytes, token: str, now: float | None = None) -> str | None:
    """The username of a valid, unexpired *token*; ``None`` otherwise."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        return None
    parts = token.split(",")
    if len(parts) != 3:
        return None
    username, expiry, signature = parts
    if not USERNAME_RE.match(username) or not expiry.isdigit():
        return None
    if not hmac.compare_digest(_sign(secret, f"{username},{expiry}"), signature):
        return None
    expires = int(expiry)
    if expires and expires < (time.time() if now is None else now):
        return None
    return username


def load_secret(config: Any, create: bool = True) -> bytes:
    """The HMAC secret: ``[websocket] validator_secret``, else the file ``state_dir/websocket.secret``
    (created with 32 random bytes, mode 0600, when *create*)."""
    configured = config["websocket"]["validator_secret"]
    if configured:
        return str(configured).encode("utf-8")
    path = Path(config.state_dir) / SECRET_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        if not create:
            raise
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32).encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # created meanwhile by another process (the server, or the CLI)
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(value + b"\n")
    return value


def main(argv: list[str] | None = None) -> int:
    """``transport-websocket [-c FILE] token USERNAME [--ttl SECONDS]``: print a validator token."""
    from transport import config as configuration

    parser = argparse.ArgumentParser(prog="transport-websocket", description="WebSocket frontend tools")
    parser.add_argument("-c", "--config", help="configuration file (default: every default)")
    sub = parser.add_subparsers(dest="command", required=True)
    tok = sub.add_parser("token", help="issue an HMAC token for validator auth mode")
    tok.add_argument("username")
    tok.add_argument("--ttl", type=float, default=0, help="seconds the token is valid (default: forever)")
    args = parser.parse_args(argv)
    try:
        config = configuration.load(args.config)
    except configuration.ConfigError as e:
        print(f"transport-websocket: configuration error: {e}", file=sys.stderr)
        return 2
    try:
        token = issue_token(load_secret(config), args.username, ttl=args.ttl if args.ttl else None)
    except ValueError as e:
        print(f"transport-websocket: {e}", file=sys.stderr)
        return 2
    print(token)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
