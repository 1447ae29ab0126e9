"""``transport-chatd``: manage chatd/statusd (tokens, rooms, members, contacts) and act as a client.

Management commands work directly on the database named by the configuration
file (``-c transport.ini``) and may run while the service does (the service
notices within ``[chatd] refresh_interval``). Client commands connect to a
running server::

    transport-chatd -c transport.ini token 42                 # hex token for user 42
    transport-chatd -c transport.ini room create 7 --name ops --open
    transport-chatd -c transport.ini member add 7 42 43
    transport-chatd -c transport.ini contact add 42 43 --mutual
    transport-chatd -c transport.ini connect --user 42 --join 7
    transport-chatd -c transport.ini send --user 42 --chat 7 --type 1 hello
    transport-chatd -c transport.ini watch --user 43 --chat 7 --count 1
    transport-chatd -c transport.ini presence --user 42 --set 4 --watch

transportctl hooks these in with :func:`add_subcommands` and :func:`run`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from twisted.internet import defer, task

from transport import config as configuration
from transport.auth.tokens import issue_token
from transport.chatd import store

Command = Callable[[Any, argparse.Namespace], Coroutine[Any, Any, int]]


def _u64(text: str) -> int:
    value = int(text, 0)
    if not 0 < value < (1 << 64):
        raise argparse.ArgumentTypeError("ids are 1 .. 2**64-1")
    return value


def _load_config(args: argparse.Namespace) -> configuration.Config:
    return configuration.load(args.config)


def _secret(config: configuration.Config, service: str) -> bytes:
    from transport.chatd.service import token_secret
    return token_secret(config, service)


def default_address(config: configuration.Config, service: str) -> str:
    """A client endpoint for the service's TCP listener, from ``listen`` (or ``portfile`` when set)."""
    values = config[service]
    host, port = "127.0.0.1", 0
    fields = values["listen"].split(":")
    kind = fields[0] if fields else "tcp"
    for part in fields[1:]:
        if part.startswith("interface="):
            host = part.split("=", 1)[1] or host
        elif part.isdigit() and not port:
            port = int(part)
    if values["portfile"]:
        try:
            port = int(config.resolve_path(values["portfile"]).read_text().strip())
        except (OSError, ValueError):
            pass
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if not port:
        raise SystemExit(f"transport-chatd: cannot tell {service}'s port from the configuration; use --address")
    prefix = "tls" if kind in ("ssl", "tls") else "tcp"
    return f"{prefix}:host={host}:port={port}"


async def _with_database(reactor: Any, args: argparse.Namespace, fn: Callable[..., Any], *fn_args: Any) -> Any:
    from transport.storage.database import open_from_config
    config = _load_config(args)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    database = open_from_config(config, reactor)
    database.start()
    try:
        await database.migrate(store.MIGRATIONS)
        return await database.run_interaction(fn, *fn_args)
    finally:
        await database.close()


# management ------------------------------------------------------------------------------


async def cmd_token(reactor: Any, args: argparse.Namespace) -> int:
    config = _load_config(args)
    ttl = args.ttl if args.ttl is not None else config["chatd"]["token_ttl"]
    print(issue_token(_secret(config, args.service), args.userid, ttl=ttl).hex())
    return 0


async def cmd_room_create(reactor: Any, args: argparse.Namespace) -> int:
    created = await _with_database(reactor, args, store.create_room, args.chatid, args.name, args.open)
    print(f"room {args.chatid} {'created' if created else 'updated'}")
    return 0


async def cmd_room_delete(reactor: Any, args: argparse.Namespace) -> int:
    found = await _with_database(reactor, args, store.delete_room, args.chatid)
    print(f"room {args.chatid} {'deleted' if found else 'not found'}")
    return 0 if found else 1


async def cmd_room_list(reactor: Any, args: argparse.Namespace) -> int:
    rooms = await _with_database(reactor, args, store.list_rooms)
    for room in rooms:
        members = " ".join(str(m) for m in sorted(room.members))
        print(f"{room.chatid}\t{'open' if room.is_open else 'members-only'}\t{room.name}\t{members}")
    return 0


async def cmd_member_add(reactor: Any, args: argparse.Namespace) -> int:
    try:
        added = await _with_database(reactor, args, store.add_members, args.chatid, args.userids)
    except KeyError:
        print(f"transport-chatd: no room {args.chatid}", file=sys.stderr)
        return 1
    print(f"{added} member(s) added to room {args.chatid}")
    return 0


async def cmd_member_remove(reactor: Any, args: argparse.Namespace) -> int:
    removed = await _with_database(reactor, args, store.remove_members, args.chatid, args.userids)
    print(f"{removed} member(s) removed from room {args.chatid}")
    return 0


async def cmd_contact_add(reactor: Any, args: argparse.Namespace) -> int:
    added = await _with_database(reactor, args, store.add_contacts, args.userid, args.contacts, args.mutual)
    print(f"{added} contact(s) added")
    return 0


async def cmd_contact_remove(reactor: Any, args: argparse.Namespace) -> int:
    removed = await _with_database(reactor, args, store.remove_contacts, args.userid, args.contacts, args.mutual)
    print(f"{removed} contact(s) removed")
    return 0


async def cmd_contact_list(reactor: Any, args: argparse.Namespace) -> int:
    for contact in await _with_database(reactor, args, store.list_contacts, args.userid):
        print(contact)
    return 0


# client --------------------------------------------------------------------------------------


def _client_token(args: argparse.Namespace, service: str) -> bytes:
    if args.token:
        return bytes.fromhex(args.token)
    return issue_token(_secret(_load_config(args), service), args.user, ttl=3600)


def _address(args: argparse.Namespace, service: str) -> str:
    return args.address or default_address(_load_config(args), service)


async def _chatd_login(reactor: Any, args: argparse.Namespace) -> Any:
    from transport.chatd.client import ChatdClient
    client = await ChatdClient.connect(reactor, _address(args, "chatd"), args.user, _client_token(args, "chatd"),
                                       timeout=args.timeout)
    print(f"connected: user {args.user} client {client.client_id}", flush=True)
    return client


async def _join_all(client: Any, chats: Sequence[int], timeout: float) -> bool:
    from transport.chatd.codec import JOIN_OK, InCallFlag
    ok = True
    for chatid in chats:
        result = await client.join(chatid, timeout)
        if result != JOIN_OK:
            print(f"join {chatid}: refused (result {result})", flush=True)
            ok = False
            continue
        flag = await client.next(InCallFlag, timeout)
        print(f"joined {flag.chatid}: in-call {flag.status}", flush=True)
    return ok


async def cmd_connect(reactor: Any, args: argparse.Namespace) -> int:
    client = await _chatd_login(reactor, args)
    ok = await _join_all(client, args.join, args.timeout)
    await client.close()
    return 0 if ok else 1


async def cmd_send(reactor: Any, args: argparse.Namespace) -> int:
    from transport.chatd.codec import Error
    client = await _chatd_login(reactor, args)
    if not await _join_all(client, [args.chat], args.timeout):
        await client.close()
        return 1
    data = bytes.fromhex(args.message) if args.hex else args.message.encode("utf-8")
    client.send_rtmsg(args.chat, args.to_user, args.to_client, args.type, data)
    # LEAVE's answer comes after any ERROR for the RTMSG: the server handles commands in order.
    await client.leave(args.chat, args.timeout)
    errors = client.drain(Error)
    for error in errors:
        print(f"error {error.code}: {error.text}", flush=True)
    await client.close()
    return 1 if errors else 0


async def cmd_watch(reactor: Any, args: argparse.Namespace) -> int:
    from transport.chatd.codec import InCallFlag, RtMsgDelivery
    client = await _chatd_login(reactor, args)
    await _join_all(client, args.chat, args.timeout)
    seen = 0
    done: defer.Deferred[None] = defer.Deferred()

    def show(command: Any) -> None:
        nonlocal seen
        if isinstance(command, RtMsgDelivery):
            text = command.data.decode("utf-8", "replace") if not args.hex else command.data.hex()
            print(f"rtmsg chat {command.chatid} from {command.sender_userid}/{command.sender_clientid} "
                  f"type {command.msgtype}: {text}", flush=True)
            seen += 1
            if args.count and seen >= args.count and not done.called:
                done.callback(None)
        elif isinstance(command, InCallFlag):
            print(f"in-call chat {command.chatid}: {command.status}", flush=True)

    original = client.dispatch

    def dispatch(command: Any) -> None:
        original(command)
        show(command)

    client.dispatch = dispatch
    client.closed.addBoth(lambda _: None if done.called else done.callback(None))
    await done
    await client.close()
    return 0


async def cmd_presence(reactor: Any, args: argparse.Namespace) -> int:
    from transport.statusd.client import StatusdClient
    from transport.statusd.codec import Pres
    client = await StatusdClient.connect(reactor, _address(args, "statusd"), args.user, _client_token(args, "statusd"),
                                         args.set, automatic=args.automatic, timeout=args.timeout)
    for entry in client.dump:
        print(f"pres {entry.userid or 'self'} {entry.presence}", flush=True)
    if args.watch:
        seen = 0
        while not args.count or seen < args.count:
            try:
                entry = await client.next(Pres, None)
            except Exception:
                break
            print(f"pres {entry.userid or 'self'} {entry.presence}", flush=True)
            seen += 1
    await client.close()
    return 0


# parser ------------------------------------------------------------------------------------------


def add_subcommands(subparsers: Any) -> None:
    """Add chatd/statusd's commands to an ``argparse`` subparsers object (transportctl's or our own).

    Each leaf sets ``chatd_command``; run the parsed namespace with :func:`run`.
    The namespace must carry ``config`` (the configuration file, or None).
    """
    def leaf(parent: Any, name: str, fn: Command, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help)
        p.set_defaults(chatd_command=fn)
        return p

    p = leaf(subparsers, "token", cmd_token, "issue an AUTH token for a user (hex)")
    p.add_argument("userid", type=_u64)
    p.add_argument("--ttl", type=float, default=None, help="lifetime in seconds (default [chatd] token_ttl)")
    p.add_argument("--service", choices=("chatd", "statusd"), default="chatd",
                   help="whose secret to use (the same file by default)")

    room = subparsers.add_parser("room", help="chatd rooms").add_subparsers(dest="room_command", required=True)
    p = leaf(room, "create", cmd_room_create, "create (or update) a room")
    p.add_argument("chatid", type=_u64)
    p.add_argument("--name", default="")
    p.add_argument("--open", action="store_true", help="any authenticated user may JOIN (default: members only)")
    p = leaf(room, "delete", cmd_room_delete, "delete a room and its membership")
    p.add_argument("chatid", type=_u64)
    leaf(room, "list", cmd_room_list, "list rooms: chatid, access, name, members")

    member = subparsers.add_parser("member", help="room membership").add_subparsers(dest="member_command",
                                                                                    required=True)
    for name, fn in (("add", cmd_member_add), ("remove", cmd_member_remove)):
        p = leaf(member, name, fn, f"{name} room members")
        p.add_argument("chatid", type=_u64)
        p.add_argument("userids", type=_u64, nargs="+")

    contact = subparsers.add_parser("contact", help="contact lists (statusd)").add_subparsers(
        dest="contact_command", required=True)
    for name, fn in (("add", cmd_contact_add), ("remove", cmd_contact_remove)):
        p = leaf(contact, name, fn, f"{name} contacts: USERID sees each CONTACT's presence")
        p.add_argument("userid", type=_u64)
        p.add_argument("contacts", type=_u64, nargs="+")
        p.add_argument("--mutual", action="store_true", help="also the other way round")
    p = leaf(contact, "list", cmd_contact_list, "a user's contact list")
    p.add_argument("userid", type=_u64)

    def client_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--user", type=_u64, required=True, help="user id to log in as")
        p.add_argument("--token", help="hex token (default: issued from the configured secret)")
        p.add_argument("--address", help="endpoint string or ws:// URL (default: from the configuration)")
        p.add_argument("--timeout", type=float, default=30.0)

    p = leaf(subparsers, "connect", cmd_connect, "log in to chatd, print the client id, join rooms, exit")
    client_options(p)
    p.add_argument("--join", type=_u64, action="append", default=[])
    p = leaf(subparsers, "send", cmd_send, "log in, join a room, send one RTMSG, exit")
    client_options(p)
    p.add_argument("--chat", type=_u64, required=True)
    p.add_argument("--to-user", type=int, default=0, help="receiver user (0 = everyone in the room)")
    p.add_argument("--to-client", type=int, default=0, help="receiver client (0 = every client of the user)")
    p.add_argument("--type", type=int, default=0, help="msgtype (0-255, opaque)")
    p.add_argument("--hex", action="store_true", help="MESSAGE is hex")
    p.add_argument("message")
    p = leaf(subparsers, "watch", cmd_watch, "log in, join rooms, print RTMSGs and in-call flags")
    client_options(p)
    p.add_argument("--chat", type=_u64, action="append", default=[])
    p.add_argument("--count", type=int, default=0, help="exit after this many RTMSGs (0 = never)")
    p.add_argument("--hex", action="store_true", help="print payloads as hex")
    p = leaf(subparsers, "presence", cmd_presence, "log in to statusd, print the presence dump (and changes)")
    client_options(p)
    p.add_argument("--set", type=int, default=4, help="this client's presence (1 dnd .. 5 chat; default 4)")
    p.add_argument("--automatic", action="store_true", help="as if set by an idle timer (MSB)")
    p.add_argument("--watch", action="store_true", help="keep printing changes")
    p.add_argument("--count", type=int, default=0, help="with --watch: exit after this many changes")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transport-chatd", description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", help="configuration file (default: every default)")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    return parser


def run(args: argparse.Namespace) -> int:
    """Run a namespace parsed with :func:`add_subcommands` (starts and stops the reactor)."""
    code = 0

    async def main(reactor: Any) -> None:
        nonlocal code
        try:
            code = await args.chatd_command(reactor, args)
        except configuration.ConfigError as e:
            print(f"transport-chatd: {e}", file=sys.stderr)
            code = 2
        except Exception as e:  # reported, not a traceback: these are operator errors (refused, unreachable...)
            print(f"transport-chatd: {type(e).__name__}: {e}", file=sys.stderr)
            code = 1

    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code) if isinstance(e.code, int) else 1
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
