"""``transportctl``: run Spectrum 2's admin queries against a running main instance.

::

    transportctl [-c transport.ini] status
    transportctl -c /etc/transport/transport.ini register alice@example.org alice secret
    transportctl --socket unix:/run/transport/admin.sock online_users

The admin endpoint and token come from the configuration file (``[service]
admin_socket``, ``admin_token``, else ``admin.sock`` in ``state_dir``); without
``-c``, ``./transport.ini`` is used when it exists, else every default. The
command's output is printed; the exit status is 0 on success, 1 when the main
instance answered with an error, 2 when it could not be reached.

The side services' own tools are reachable through it too, with the same
``-c``: ``transportctl hosts ...`` (``transport-hosts``), ``transportctl chatd ...``
(``transport-chatd``: tokens, rooms, members, contacts, a client), and
``transportctl websocket token USER`` (``transport-websocket``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from transport import config as configuration
from transport.admin.commands import COMMANDS

EXIT_OK, EXIT_ERROR, EXIT_UNREACHABLE = 0, 1, 2

#: ``transportctl NAME ...`` runs that part's own command line (module with ``main(argv)``).
DELEGATES = {
    "hosts": "transport.hosts.cli",
    "chatd": "transport.chatd.cli",
    "statusd": "transport.chatd.cli",
    "websocket": "transport.frontends.websocket.tokens",
}


def _delegate(argv: Sequence[str]) -> int | None:
    """Run a side service's CLI when the command names one; None otherwise."""
    options: list[str] = []
    rest = list(argv)
    while rest and rest[0].startswith("-"):
        option = rest.pop(0)
        options.append(option)
        if option in ("-c", "--config", "--socket", "--token", "--timeout") and rest:
            options.append(rest.pop(0))
    if not rest or rest[0] not in DELEGATES:
        return None
    name = rest.pop(0)
    passed: list[str] = []
    for i, option in enumerate(options):
        if option in ("-c", "--config") and i + 1 < len(options):
            passed = ["-c", options[i + 1]]
        elif option.startswith("--config="):
            passed = ["-c", option.split("=", 1)[1]]
    if not passed and Path("transport.ini").exists():
        passed = ["-c", "transport.ini"]
    import importlib

    module = importlib.import_module(DELEGATES[name])
    return int(module.main(passed + rest) or 0)


def _split_endpoint(text: str) -> list[str]:
    """Split an endpoint string on unescaped colons, unescaping the parts."""
    parts = re.split(r"(?<!\\):", text)
    return [p.replace("\\:", ":").replace("\\\\", "\\") for p in parts]


def client_address(endpoint: str) -> tuple[int, object]:
    """``(family, address)`` to connect to, for a *server* endpoint string (unix: or tcp:)."""
    parts = _split_endpoint(endpoint)
    kind, rest = parts[0].lower(), parts[1:]
    positional = [p for p in rest if "=" not in p]
    named = dict(p.split("=", 1) for p in rest if "=" in p)
    if kind == "unix":
        path = named.get("address") or (positional[0] if positional else "")
        if not path:
            raise ValueError(f"no socket path in {endpoint!r}")
        return socket.AF_UNIX, path
    if kind in ("tcp", "tcp6"):
        port = named.get("port") or (positional[0] if positional else "")
        host = named.get("interface", "127.0.0.1")
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        if host == "::":
            host = "::1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return family, (host, int(port))
    raise ValueError(f"transportctl can reach unix: and tcp: admin endpoints, not {kind}:")


def query(endpoint: str, command: str, args: Sequence[str], token: str = "", timeout: float = 60.0) -> dict:
    """Send one request to the admin endpoint and return the decoded answer."""
    family, address = client_address(endpoint)
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)  # type: ignore[arg-type]
        request = {"command": command, "args": list(args)}
        if token:
            request["token"] = token
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data:
        raise ConnectionError("the main instance closed the connection without answering")
    answer = json.loads(data.decode("utf-8"))
    if not isinstance(answer, dict):
        raise ValueError("unexpected answer")
    return answer


def _admin_keys_only(path: str | None) -> configuration.Config | None:
    """For ``reload`` of a file that does not load: just the keys that locate the admin endpoint."""
    if path is None:
        return None
    keys = ("state_dir", "admin_socket", "admin_token")
    try:
        raw = configuration.parse_ini(Path(path).read_text(encoding="utf-8"), path).get("service")
        entries = raw.entries if raw is not None else {}
        overrides = [f"service.{k}={entries[k][-1].value}" for k in keys if k in entries]
        return configuration.load_text("", path, overrides)
    except (OSError, UnicodeDecodeError, configuration.ConfigError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    delegated = _delegate(sys.argv[1:] if argv is None else argv)
    if delegated is not None:
        return delegated
    commands = "\n".join(f"  {usage}" for usage, _ in COMMANDS.values())
    parser = argparse.ArgumentParser(
        prog="transportctl", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Query or control a running Transport main instance.",
        epilog=f"commands:\n{commands}\n\nside services (their own tools, same -c):\n"
               + "".join(f"  {name} ...\n" for name in DELEGATES))
    parser.add_argument("-c", "--config", help="configuration file (default: ./transport.ini if present)")
    parser.add_argument("--socket", help="admin endpoint (default: from the configuration)")
    parser.add_argument("--token", help="admin token (default: [service] admin_token)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the answer")
    parser.add_argument("command", help="one of the commands below")
    parser.add_argument("args", nargs="*", help="the command's arguments")
    ns = parser.parse_args(argv)

    path = ns.config
    if path is None and Path("transport.ini").exists():
        path = "transport.ini"
    try:
        config = configuration.load(path)
    except configuration.ConfigError as e:
        fallback = _admin_keys_only(path) if ns.command == "reload" else None
        if fallback is None:
            print(f"transportctl: configuration error: {e}", file=sys.stderr)
            return EXIT_UNREACHABLE
        config = fallback  # the running instance checks the file itself and reports the error
    from transport.admin.service import admin_endpoint

    endpoint = ns.socket or admin_endpoint(config)
    token = ns.token if ns.token is not None else os.environ.get("TRANSPORT_ADMIN_TOKEN") or \
        config.get("service", "admin_token")
    try:
        answer = query(endpoint, ns.command, ns.args, token, ns.timeout)
    except (OSError, ValueError, ConnectionError) as e:
        print(f"transportctl: cannot reach the main instance at {endpoint}: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if answer.get("ok"):
        output = str(answer.get("output", ""))
        if output:
            print(output)
        return EXIT_OK
    print(f"transportctl: {answer.get('error', 'error')}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
