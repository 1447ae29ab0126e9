"""``transport-hosts``: search the directory, join and chat as a client; manage a host's members.

Client commands (connect over TLS with the identity in ``--identity``, created
on first use)::

    transport-hosts search group [--text T] [--id ONLINEID] [--network tcp:HOST:PORT --network-id ID]
    transport-hosts info HOST group
    transport-hosts join HOST group [--offer MESSAGE] [--wait SECONDS]
    transport-hosts leave HOST group
    transport-hosts unjoin HOST group
    transport-hosts users HOST group [--text T]
    transport-hosts chat HOST group [MESSAGE...]    (no message: interactive, stdin lines)

``HOST`` is a ``ptop://HOST:PORT`` url (as search prints), a client endpoint
string (``tcp:HOST:PORT``), or the NAME of a ``[host:NAME]`` section of the
configuration given with ``-c`` (its port file or listen port, and its online id).

Admin commands (on the host's database, from ``-c``; the running host pushes
the decision to a requester still connected)::

    transport-hosts -c transport.ini pending NAME
    transport-hosts -c transport.ini grant NAME ONLINEID
    transport-hosts -c transport.ini deny NAME ONLINEID
    transport-hosts -c transport.ini members NAME
    transport-hosts -c transport.ini friend NAME ONLINEID ignore|anonymous|guest|friend|admin
    transport-hosts -c transport.ini announce NAME      (announce a configured host now)
    transport-hosts -c transport.ini id                 (online ids of this client and the configured hosts)

The exit status is 0 on success, 1 when the host refused or nothing matched, 2
on a usage, configuration or connection problem. :func:`add_arguments` and
:func:`run` let ``transportctl hosts ...`` reuse this parser.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

from twisted.internet import defer, stdio, task
from twisted.protocols.basic import LineReceiver

from transport import config as configuration
from transport.hosts.client import HostClient
from transport.hosts.identity import CERT_FILE, Identity, online_id_of
from transport.hosts.packets import (
    ChatReply,
    ECommErr,
    EJoinState,
    EPluginAccess,
    HostUserListReply,
    OnlineId,
    Packet,
)
from transport.hosts.protocol import url_to_endpoint
from transport.hosts.service import identity_dir
from transport.hosts.settings import USER_HOST_PREFIX
from transport.hosts.store import MembershipStore
from transport.hosts.userhost import HOST_TYPES, PERMISSIONS

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


def default_identity_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "transport-hosts" / "identity"


def add_arguments(parser: argparse.ArgumentParser, config_option: bool = True) -> argparse.ArgumentParser:
    """Add the options and sub-commands of ``transport-hosts`` to *parser* (dispatch with :func:`run`).

    A parent parser that already has ``-c/--config`` (``transportctl``) passes
    ``config_option=False``: a sub-parser's default would otherwise overwrite the
    parent's parsed value.
    """
    if config_option:
        parser.add_argument("-c", "--config", help="configuration file (for host names and admin commands)")
    parser.add_argument("--identity", type=Path, help="client identity directory "
                        f"(default: {default_identity_dir()})")
    parser.add_argument("--name", default="", help="the name this client announces")
    parser.add_argument("--motto", default="", help="the motto this client announces")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a reply")
    sub = parser.add_subparsers(dest="hosts_command", required=True, metavar="COMMAND")
    types = sorted(HOST_TYPES)

    p = sub.add_parser("search", help="search the network host's directory")
    p.add_argument("type", choices=types)
    p.add_argument("--text", default="", help="match title or description (at least 3 characters)")
    p.add_argument("--id", dest="specific", help="only this host's entry (online id)")
    p.add_argument("--network", help="network host client endpoint (default: from -c)")
    p.add_argument("--network-id", help="expected online id of the network host (default: from -c)")

    for name, text in (("info", "show a user host's title, description and member count"),
                       ("leave", "end the session on a user host (membership kept)"),
                       ("unjoin", "remove the membership record from a user host")):
        p = sub.add_parser(name, help=text)
        _host_arguments(p, types)

    p = sub.add_parser("join", help="join a user host; prints the member list")
    _host_arguments(p, types)
    p.add_argument("--offer", help="send HOST_OFFER_REQ with this message instead of HOST_JOIN_REQ")
    p.add_argument("--wait", type=float, default=0.0,
                   help="when the join is pending, wait this many seconds for the admin's decision")

    p = sub.add_parser("users", help="list a user host's members (or search them by name)")
    _host_arguments(p, types)
    p.add_argument("--text", help="search members by name")

    p = sub.add_parser("chat", help="join and send MESSAGE, or chat interactively (stdin)")
    _host_arguments(p, types)
    p.add_argument("message", nargs="*")

    p = sub.add_parser("id", help="print the online ids of this client and of the configured hosts")

    p = sub.add_parser("announce", help="announce a configured user host to its network host now")
    p.add_argument("host", metavar="NAME")

    for name, text in (("pending", "list join requests waiting for the admin"),
                       ("members", "list a host's membership records")):
        p = sub.add_parser(name, help=text)
        p.add_argument("host", metavar="NAME")
    for name, text in (("grant", "grant a pending join request"), ("deny", "deny a pending join request")):
        p = sub.add_parser(name, help=text)
        p.add_argument("host", metavar="NAME")
        p.add_argument("online_id")
    p = sub.add_parser("friend", help="set a peer's friendship level on a host")
    p.add_argument("host", metavar="NAME")
    p.add_argument("online_id")
    p.add_argument("level", choices=list(PERMISSIONS))
    return parser


def _host_arguments(p: argparse.ArgumentParser, types: list[str]) -> None:
    p.add_argument("host", metavar="HOST", help="ptop://HOST:PORT, tcp:HOST:PORT or a [host:NAME] name")
    p.add_argument("type", choices=types)
    p.add_argument("--host-id", help="expected online id of the host")


# ---------------------------------------------------------------------------
# helpers


def _load_config(args: argparse.Namespace, required: bool = False) -> configuration.Config | None:
    if getattr(args, "config", None) is None:
        if required:
            raise UsageError("this command needs the configuration file (-c)")
        return None
    try:
        return configuration.load(args.config)
    except configuration.ConfigError as e:
        raise UsageError(f"configuration error: {e}") from None


def _client_identity(args: argparse.Namespace) -> Identity:
    return Identity.load_or_create(args.identity or default_identity_dir(), args.name or "transport-hosts client")


def _listen_to_connect(listen: str, portfile: Path | None) -> str:
    """A client endpoint reaching a server *listen* endpoint string of this machine."""
    parts = listen.split(":")
    kind = parts[0].lower()
    if kind == "unix":
        path = next((p.split("=", 1)[1] for p in parts[1:] if p.startswith("address=")), parts[1])
        return f"unix:path={path}"
    if kind not in ("tcp", "tcp6"):
        raise UsageError(f"cannot derive a client endpoint from {listen!r}")
    positional = [p for p in parts[1:] if "=" not in p]
    named = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    port = named.get("port") or (positional[0] if positional else "0")
    if portfile is not None and portfile.exists():
        port = portfile.read_text().strip()
    if port == "0":
        raise UsageError(f"{listen!r} listens on a random port and no port file is configured")
    host = named.get("interface", "127.0.0.1")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"tcp:{host}:{port}"


def _known_id(directory: Path) -> OnlineId | None:
    from cryptography import x509

    cert = directory / CERT_FILE
    if not cert.exists():
        return None
    return online_id_of(x509.load_pem_x509_certificate(cert.read_bytes()))


def _resolve_host(args: argparse.Namespace, config: configuration.Config | None) -> tuple[str, OnlineId | None]:
    target: str = args.host
    expected = OnlineId.from_hex(args.host_id) if getattr(args, "host_id", None) else None
    if target.startswith("ptop://"):
        return url_to_endpoint(target), expected
    if config is not None and target in config.instances(USER_HOST_PREFIX):
        values = config.instances(USER_HOST_PREFIX)[target]
        portfile = config.resolve_path(values["portfile"]) if values["portfile"] else None
        if values["url"]:
            endpoint = url_to_endpoint(values["url"])
        else:
            endpoint = _listen_to_connect(values["listen"], portfile)
        return endpoint, expected or _known_id(identity_dir(config.state_dir, target))
    if ":" in target:
        return target, expected
    raise UsageError(f"unknown host {target!r}: give ptop://HOST:PORT, an endpoint, or a [host:NAME] name with -c")


def _network(args: argparse.Namespace, config: configuration.Config | None) -> tuple[str, OnlineId | None]:
    expected = OnlineId.from_hex(args.network_id) if args.network_id else None
    if args.network:
        return args.network, expected
    if config is None:
        raise UsageError("give --network ENDPOINT or -c with the network host's configuration")
    section = config["hosts"]
    portfile = config.resolve_path(section["portfile"]) if section["portfile"] else None
    return (_listen_to_connect(section["listen"], portfile),
            expected or _known_id(identity_dir(config.state_dir, None)))


def _print_members(members: Sequence[Any], out: Any) -> None:
    for m in members:
        state = EJoinState(m.join_state).name if m.join_state in set(EJoinState) else str(m.join_state)
        online = "online" if m.online else "offline"
        print(f"{m.online_id.hex()}  {state:<16} {online:<7} {m.name}", file=out)


def _err_name(err: int) -> str:
    return ECommErr(err).name if err in set(ECommErr) else str(err)


# ---------------------------------------------------------------------------
# commands


@defer.inlineCallbacks
def _client_command(reactor: Any, args: argparse.Namespace, config: configuration.Config | None,
                    out: Any) -> Generator[Any, Any, int]:
    identity = _client_identity(args)
    command = args.hosts_command
    if command == "search":
        endpoint, expected = _network(args, config)
        client = yield HostClient.connect(reactor, endpoint, identity, expected, args.name, args.motto,
                                          timeout=args.timeout)
        try:
            specific = OnlineId.from_hex(args.specific) if args.specific else None
            hosts = yield client.search(HOST_TYPES[args.type], args.text, specific)
        finally:
            yield client.close()
        for h in hosts:
            print(f"{h.online_id.hex()}  {h.url:<28} {h.title}  -  {h.description}", file=out)
        print(f"{len(hosts)} {args.type} host(s)", file=out)
        return EXIT_OK if hosts else EXIT_REFUSED
    endpoint, expected = _resolve_host(args, config)
    host_type = HOST_TYPES[args.type]
    client = yield HostClient.connect(reactor, endpoint, identity, expected, args.name, args.motto,
                                      timeout=args.timeout)
    try:
        if command == "info":
            info = yield client.info(host_type)
            print(f"title: {info.title}\ndescription: {info.description}\nmembers: {info.member_count}\n"
                  f"online id: {client.peer_id.hex()}", file=out)
            return EXIT_OK
        if command == "leave":
            reply = yield client.leave(host_type)
            print(f"left ({EJoinState(reply.join_state).name})", file=out)
            return EXIT_OK
        if command == "unjoin":
            reply = yield client.unjoin(host_type)
            print("membership removed", file=out)
            return EXIT_OK
        result = yield client.join(host_type, args.offer if command == "join" else None)
        if result.reply.join_state == EJoinState.JOIN_REQUESTED and command == "join" and args.wait > 0:
            print("join requested; waiting for the admin", file=out)
            result = yield client.wait_join_decision(host_type, args.wait)
        access = EPluginAccess(result.reply.access).name if result.reply.access in set(EPluginAccess) else "?"
        state = EJoinState(result.reply.join_state).name if result.reply.join_state in set(EJoinState) else "?"
        if command == "join":
            print(f"access {access}, {state}", file=out)
            _print_members(result.members, out)
            return EXIT_OK if result.granted else EXIT_REFUSED
        if not result.granted:
            print(f"not joined: access {access}, {state}", file=out)
            return EXIT_REFUSED
        if command == "users":
            members = yield client.user_list(host_type, args.text)
            _print_members(members, out)
            return EXIT_OK
        # chat
        names = {m.online_id: m.name for m in result.members}
        if args.message:
            client.chat(" ".join(args.message), host_type)
            yield client.leave(host_type)
            return EXIT_OK
        return (yield _interactive_chat(reactor, client, host_type, names, out))
    finally:
        yield client.close()


def _interactive_chat(reactor: Any, client: HostClient, host_type: int, names: dict[OnlineId, str],
                      out: Any) -> defer.Deferred[int]:
    done: defer.Deferred[int] = defer.Deferred()

    class Input(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            text = line.decode("utf-8", "replace").rstrip("\r")
            if text:
                client.chat(text, host_type)

        def connectionLost(self, reason: Any = None) -> None:
            if not done.called:
                done.callback(EXIT_OK)

    def show(packet: Packet) -> bool:
        if isinstance(packet, ChatReply):
            print(f"<{names.get(packet.src, packet.src.hex()[:8])}> {packet.text}", file=out, flush=True)
        elif isinstance(packet, HostUserListReply):
            for m in packet.users:
                names[m.online_id] = m.name
                print(f"* {m.name or m.online_id.hex()[:8]} is {'here' if m.online else 'gone'}", file=out,
                      flush=True)
        return False

    def watch() -> None:
        for packet in list(client.received):
            show(packet)
        client.received.clear()
        client.wait_for(show, timeout=10 ** 9).addErrback(lambda _: None)

    watch()
    stdio.StandardIO(Input(), reactor=reactor)
    client.lost.addCallback(lambda _: done.callback(EXIT_OK) if not done.called else None)
    return done


@defer.inlineCallbacks
def _admin_command(reactor: Any, args: argparse.Namespace, config: configuration.Config,
                   out: Any) -> Generator[Any, Any, int]:
    from transport.storage.database import open_from_config

    host = args.host
    if host not in config.instances(USER_HOST_PREFIX):
        raise UsageError(f"no [{USER_HOST_PREFIX}:{host}] section in {config.path}")
    database = open_from_config(config, reactor)
    database.start()
    try:
        store = MembershipStore(database)
        yield store.migrate()
        now_ms = int(reactor.seconds() * 1000)
        command = args.hosts_command
        if command in ("pending", "members"):
            states = (EJoinState.JOIN_REQUESTED,) if command == "pending" else None
            members = yield store.members(host, states)
            for m in members:
                state = EJoinState(m.join_state).name if m.join_state in set(EJoinState) else str(m.join_state)
                note = f"  ({m.message})" if m.message else ""
                print(f"{m.online_id.hex()}  {state:<16} {m.name}{note}", file=out)
            return EXIT_OK
        try:
            peer = OnlineId.from_hex(args.online_id)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if command in ("grant", "deny"):
            found = yield store.decide(host, peer, command == "grant", now_ms)
            if not found:
                print(f"{peer.hex()} has no membership record on {host}", file=out)
                return EXIT_REFUSED
            print(f"{'granted' if command == 'grant' else 'denied'}: {peer.hex()} on {host}", file=out)
            return EXIT_OK
        # friend
        yield store.set_friend_state(host, peer, PERMISSIONS[args.level])
        print(f"{peer.hex()} is {args.level} on {host}", file=out)
        return EXIT_OK
    finally:
        yield database.close()


@defer.inlineCallbacks
def _announce_command(reactor: Any, args: argparse.Namespace, config: configuration.Config,
                      out: Any) -> Generator[Any, Any, int]:
    from transport.hosts.service import UserHostService
    from transport.storage.database import open_from_config

    name = args.host
    values = config.instances(USER_HOST_PREFIX).get(name)
    if values is None:
        raise UsageError(f"no [{USER_HOST_PREFIX}:{name}] section in {config.path}")
    if not values["network_host"]:
        # The network host runs in the configured process: reach it over TLS like a remote one.
        network_endpoint, network_id = _network(argparse.Namespace(network=None, network_id=None), config)
        values = dict(values, network_host=network_endpoint,
                      network_host_id=values["network_host_id"] or (network_id.hex() if network_id else ""))
    database = open_from_config(config, reactor)
    database.start()
    try:
        store = MembershipStore(database)
        yield store.migrate()
        host = UserHostService(name, values, config, reactor, store, defer.succeed(None), None)
        url = values["url"] or _listen_url(values, config)
        host.host.settings = type(host.host.settings).from_config(name, values, host.online_id, url)
        host.host.last_modified_ms = yield store.settings_modified(name, host.host.settings.digest(),
                                                                   int(reactor.seconds() * 1000))
        ok = yield host.announce()
        print(f"{name}: {'announced' if ok else 'refused: ' + str(host.last_announce_error)}", file=out)
        return EXIT_OK if ok else EXIT_REFUSED
    finally:
        yield database.close()


def _listen_url(values: Any, config: configuration.Config) -> str:
    portfile = config.resolve_path(values["portfile"]) if values["portfile"] else None
    endpoint = _listen_to_connect(values["listen"], portfile)
    _, host, port = endpoint.split(":")
    return f"ptop://{host}:{port}"


def _id_command(args: argparse.Namespace, config: configuration.Config | None, out: Any) -> int:
    print(f"client  {_client_identity(args).online_id.hex()}", file=out)
    if config is not None:
        network = _known_id(identity_dir(config.state_dir, None))
        if network is not None:
            print(f"network {network.hex()}", file=out)
        for name in sorted(config.instances(USER_HOST_PREFIX)):
            known = _known_id(identity_dir(config.state_dir, name))
            print(f"{USER_HOST_PREFIX}:{name}  {known.hex() if known else '(not created yet)'}", file=out)
    return EXIT_OK


def run(args: argparse.Namespace, reactor: Any = None, out: Any = None) -> int:
    """Run the parsed ``transport-hosts`` command; the exit status."""
    out = out or sys.stdout
    try:
        config = _load_config(args, required=args.hosts_command in
                              ("pending", "grant", "deny", "members", "friend", "announce"))
        if args.hosts_command == "id":
            return _id_command(args, config, out)
    except UsageError as e:
        print(f"transport-hosts: {e}", file=sys.stderr)
        return EXIT_USAGE
    result: list[int] = [EXIT_USAGE]

    def main(reactor: Any) -> defer.Deferred[None]:
        if args.hosts_command in ("pending", "grant", "deny", "members", "friend"):
            assert config is not None
            d = _admin_command(reactor, args, config, out)
        elif args.hosts_command == "announce":
            assert config is not None
            d = _announce_command(reactor, args, config, out)
        else:
            d = _client_command(reactor, args, config, out)

        def done(code: int) -> None:
            result[0] = code

        def failed(failure: Any) -> None:
            if failure.check(UsageError):
                print(f"transport-hosts: {failure.value}", file=sys.stderr)
            else:
                print(f"transport-hosts: {failure.getErrorMessage() or failure.type.__name__}", file=sys.stderr)
            result[0] = EXIT_USAGE

        return d.addCallbacks(done, failed)

    if reactor is None:
        try:
            task.react(main)
        except SystemExit:
            pass
    else:  # pragma: no cover - used when embedded in a running reactor
        main(reactor)
    return result[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="transport-hosts", description=__doc__.split("\n")[0]))
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
