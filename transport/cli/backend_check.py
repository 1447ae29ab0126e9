"""``transport-backend-check``: the backend conformance kit.

It plays the main instance against any backend executable, written in any
language: it listens on a free loopback port, starts the command with the
standard arguments (``--host 127.0.0.1 --port P --service.backend_id=1
CONFIG``), walks it through the life of a backend and prints one line per
check::

    transport-backend-check -- transport-backend-echo
    transport-backend-check --legacy-name alice --password s3cret -- node backends/node-echo/index.js

Checks: the backend connects; PING is answered with PONG, then STATS; the
optional BACKEND_CONFIG is reported; LOGIN is answered with CONNECTED or
DISCONNECTED; a message round trip, a receipt and typing notifications (when the
backend echoes - otherwise "n/a" with the reason); LOGOUT; every frame parses;
EXIT makes the process go away within 5 seconds; and, with two more starts of the
backend (skipped with ``--quick``), it exits by itself when the connection closes
and when no PING comes for three ping intervals. Every check is bounded by a
timeout. The exit status is 0 when nothing failed, 1 otherwise, 2 for usage
errors.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from twisted.internet import defer, task

from transport.backend import transport_pb2 as pb
from transport.backend.codec import Packet
from transport.config import RawEntry, RawSection, parse_ini
from transport.sdk.config import BackendConfigFile
from transport.sdk.harness import ConnectionClosed, ExpectTimeout, MainSideHarness, ProcessGone
from transport.sdk.plugin import MISSED_PINGS_LIMIT

W = pb.WrapperMessage

PASS = "pass"
FAIL = "fail"
NA = "n/a"

#: The configuration written for the backend when ``--config`` is not given.
DEFAULT_CONFIG = """\
# written by transport-backend-check
[service]
jid = localhost
backend_host = 127.0.0.1
ping_interval = 20

[backend]
"""


#: The ping interval written into the configuration for the ping-timeout check.
QUIET_PING_INTERVAL = 0.5


def config_with_ping_interval(path: str, interval: float) -> str:
    """The configuration file at *path* rewritten with ``[service] ping_interval = interval``."""
    sections = parse_ini(Path(path).read_text(encoding="utf-8"), path)
    if "service" not in sections:
        sections["service"] = RawSection("service", 0)
    sections["service"].entries["ping_interval"] = [RawEntry(f"{interval:g}", 0)]
    lines = ["# written by transport-backend-check for the ping-timeout check"]
    for name, section in sections.items():
        lines.append(f"[{name}]")
        for key, entries in section.entries.items():
            lines.extend(f"{key} = {entry.value}" for entry in entries)
        lines.append("")
    return "\n".join(lines)


@dataclass
class CheckResult:
    name: str
    outcome: str
    detail: str = ""


@dataclass
class Options:
    command: list[str]
    config: str | None = None
    user: str = "tester@localhost"
    legacy_name: str = "tester"
    password: str = "secret"
    buddy: str = "echo"
    room: str = "echo"
    timeout: float = 10.0
    exit_timeout: float = 5.0
    verbose: bool = False
    quick: bool = False


def parse_options(argv: Sequence[str]) -> Options:
    """``[options] -- COMMAND [ARGS...]``; the ``--`` may be left out when COMMAND starts with no dash."""
    parser = argparse.ArgumentParser(
        prog="transport-backend-check",
        description="Check that a backend speaks the Transport / Spectrum 2 backend protocol.",
        usage="%(prog)s [options] -- COMMAND [ARGS...]",
    )
    parser.add_argument("--config", help="configuration file passed to the backend (default: a minimal one)")
    parser.add_argument("--user", default="tester@localhost", help="the user's JID in LOGIN")
    parser.add_argument("--legacy-name", default="tester", help="legacy network name in LOGIN")
    parser.add_argument("--password", default="secret", help="legacy network password in LOGIN")
    parser.add_argument("--buddy", default="echo", help="buddy the test message is sent to (default: echo)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds each check may wait (default 10)")
    parser.add_argument(
        "--exit-timeout", type=float, default=5.0, help="seconds the process has to exit after EXIT (default 5)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="skip the EOF and ping-timeout checks (they start the backend twice more)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show the backend's output as it comes")
    argv = list(argv)
    if "--" in argv:
        split = argv.index("--")
        own, command = argv[:split], argv[split + 1 :]
    else:
        own, command = argv, []
    namespace, rest = parser.parse_known_args(own)
    if not command:
        command = [a for a in rest]
        rest = []
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if not command:
        parser.error("the backend command is missing (after --)")
    if namespace.timeout <= 0 or namespace.exit_timeout <= 0:
        parser.error("timeouts must be positive")
    return Options(
        command=command,
        config=namespace.config,
        user=namespace.user,
        legacy_name=namespace.legacy_name,
        password=namespace.password,
        buddy=namespace.buddy,
        timeout=namespace.timeout,
        exit_timeout=namespace.exit_timeout,
        verbose=namespace.verbose,
        quick=namespace.quick,
    )


def _describe(error: BaseException) -> str:
    if isinstance(error, ExpectTimeout | ConnectionClosed | ProcessGone):
        return str(error)
    return f"{type(error).__name__}: {error}"


class Checker:
    """Runs the checks in order against one backend process."""

    def __init__(self, reactor: Any, options: Options, out: TextIO) -> None:
        self.reactor = reactor
        self.options = options
        self.out = out
        self.results: list[CheckResult] = []
        self.features = BackendConfigFile()
        self.harness: MainSideHarness | None = None

    def record(self, name: str, outcome: str, detail: str = "") -> None:
        self.results.append(CheckResult(name, outcome, detail))

    def skip_rest(self, names: Sequence[str], why: str) -> None:
        done = {r.name for r in self.results}
        for name in names:
            if name not in done:
                self.record(name, NA, f"not run: {why}")

    async def run(self, config_path: str) -> list[CheckResult]:
        o = self.options

        def show(line: str) -> None:
            self.out.write(f"  backend| {line}\n")

        harness = MainSideHarness(self.reactor, o.command, config_path, output=show if o.verbose else None)
        self.harness = harness
        try:
            await self._run(harness)
        finally:
            await harness.stop()
        started = any(r.name == "connect" and r.outcome == PASS for r in self.results)
        if o.quick:
            self.record("eof", NA, "skipped (--quick)")
            self.record("ping timeout", NA, "skipped (--quick)")
        elif not started:
            self.skip_rest(["eof", "ping timeout"], "the backend did not connect")
        else:
            await self._lifecycle(config_path, show if o.verbose else None)
        return self.results

    async def _lifecycle(self, config_path: str, show: Any) -> None:
        """A backend must not outlive the main instance: EOF and silence both make it exit."""
        o = self.options
        harness = MainSideHarness(self.reactor, o.command, config_path, output=show)
        try:
            peer = await harness.start(max(o.timeout, 30.0))
            peer.close()
            started = time.monotonic()
            code = await harness.wait_exit(o.exit_timeout)
            self.record(
                "eof", PASS, f"exited {time.monotonic() - started:.2f} s after the connection closed (code {code})"
            )
        except ExpectTimeout:
            self.record("eof", FAIL, f"still running {o.exit_timeout:g} s after the connection closed (killed)")
        except Exception as e:
            self.record("eof", FAIL, _describe(e))
        finally:
            await harness.stop()

        fd, quiet_config = tempfile.mkstemp(prefix="backend-check-quiet-", suffix=".ini")
        with os.fdopen(fd, "w") as f:
            f.write(config_with_ping_interval(config_path, QUIET_PING_INTERVAL))
        harness = MainSideHarness(self.reactor, o.command, quiet_config, output=show)
        try:
            await harness.start(max(o.timeout, 30.0))
            started = time.monotonic()
            limit = MISSED_PINGS_LIMIT * QUIET_PING_INTERVAL + o.exit_timeout
            code = await harness.wait_exit(limit)
            self.record(
                "ping timeout",
                PASS,
                f"with ping_interval = {QUIET_PING_INTERVAL:g} and no PING, exited after "
                f"{time.monotonic() - started:.2f} s (code {code})",
            )
        except ExpectTimeout:
            self.record(
                "ping timeout",
                FAIL,
                f"still running {limit:g} s without a PING (ping_interval = {QUIET_PING_INTERVAL:g}; killed)",
            )
        except Exception as e:
            self.record("ping timeout", FAIL, _describe(e))
        finally:
            await harness.stop()
            os.unlink(quiet_config)

    async def _ping(self, peer: Any) -> Packet:
        peer.send(W.TYPE_PING)
        return await peer.expect(W.TYPE_PONG, self.options.timeout)  # type: ignore[no-any-return]

    async def _run(self, harness: MainSideHarness) -> None:
        o = self.options
        names = [
            "connect",
            "ping",
            "stats",
            "backend config",
            "login",
            "message round trip",
            "receipt",
            "typing",
            "logout",
            "frames",
            "exit",
        ]
        # connect
        started = time.monotonic()
        try:
            await harness.listen()
            harness.spawn()
            peer = await harness.next_connection(max(o.timeout, 30.0))
        except (FileNotFoundError, PermissionError) as e:
            self.record("connect", FAIL, str(e))
            self.skip_rest(names, "the command did not start")
            return
        except Exception as e:
            self.record("connect", FAIL, _describe(e))
            self.skip_rest(names, "no connection")
            return
        self.record("connect", PASS, f"connected {time.monotonic() - started:.2f} s after spawning")

        # ping / pong
        try:
            await self._ping(peer)
        except Exception as e:
            self.record("ping", FAIL, f"PING not answered with PONG: {_describe(e)}")
            self.skip_rest(names[:-2], "no PONG")
            await self._frames(peer)
            await self._exit(harness, peer)
            return
        self.record("ping", PASS, "PONG received")

        # stats after pong
        try:
            stats = await peer.expect(W.TYPE_STATS, o.timeout)
            payload: Any = stats.payload
            problems = []
            if payload.res <= 0:
                problems.append(f"res={payload.res}")
            if not payload.id:
                problems.append("empty id")
            order = [p.type for p in peer.history]
            if W.TYPE_PONG in order and order.index(W.TYPE_STATS) < order.index(W.TYPE_PONG):
                problems.append("STATS came before PONG")
            detail = (
                f"res {payload.res} KiB, init_res {payload.init_res} KiB, shared {payload.shared} KiB, id {payload.id}"
            )
            if harness.process is not None and payload.id != str(harness.process.pid):
                detail += f" (the process pid is {harness.process.pid})"
            self.record(
                "stats", FAIL if problems else PASS, detail + ("; bad: " + ", ".join(problems) if problems else "")
            )
        except Exception as e:
            self.record("stats", FAIL, f"no STATS after PONG: {_describe(e)}")

        # backend config (optional): normally sent right after connecting
        config = peer.take(W.TYPE_BACKEND_CONFIG)
        if config is None:
            self.record("backend config", NA, "not sent (optional)")
        else:
            try:
                text: Any = config.payload
                self.features = BackendConfigFile.from_text(text.config)
                announced = [f"{k}={v}" for k, v in self.features.section("features").items()]
                self.record("backend config", PASS, "features: " + (", ".join(announced) or "none"))
            except Exception as e:
                self.record("backend config", FAIL, f"not INI: {_describe(e)}")

        # login
        peer.send(W.TYPE_LOGIN, pb.Login(user=o.user, legacyName=o.legacy_name, password=o.password))

        def for_user(packet: Packet) -> bool:
            return packet.type in (W.TYPE_CONNECTED, W.TYPE_DISCONNECTED) and packet.payload.user == o.user  # type: ignore[union-attr]

        logged_in = False
        try:
            answer = await peer.expect(for_user, o.timeout)
            if answer.type == W.TYPE_CONNECTED:
                logged_in = True
                self.record("login", PASS, "CONNECTED")
            else:
                error = answer.payload.error  # type: ignore[union-attr]
                try:
                    error_name = pb.ConnectionError.Name(error)
                except ValueError:
                    error_name = str(error)
                self.record("login", PASS, f"DISCONNECTED ({error_name}: {answer.payload.message!r})")  # type: ignore[union-attr]
        except Exception as e:
            self.record("login", FAIL, f"no CONNECTED or DISCONNECTED: {_describe(e)}")

        if logged_in:
            await self._conversation(peer)
        else:
            for name in ("message round trip", "receipt", "typing"):
                self.record(name, NA, "not logged in")

        # logout, then the backend must still be alive
        peer.send(W.TYPE_LOGOUT, pb.Logout(user=o.user, legacyName=o.legacy_name))
        try:
            await self._ping(peer)
            self.record("logout", PASS, "LOGOUT accepted, still answering PING")
        except Exception as e:
            self.record("logout", FAIL, f"after LOGOUT: {_describe(e)}")
        await self._frames(peer)
        await self._exit(harness, peer)

    async def _conversation(self, peer: Any) -> None:
        o = self.options
        # Does the backend echo? The convention: it puts the buddy in the roster.
        await self._settle(peer)
        echoes = any(
            p.type == W.TYPE_BUDDY_CHANGED and p.payload.buddyName == o.buddy  # type: ignore[union-attr]
            for p in peer.history
        )
        text = f"transport-backend-check {uuid.uuid4().hex[:12]}"
        message_id = uuid.uuid4().hex[:8]
        peer.send(
            W.TYPE_CONV_MESSAGE, pb.ConversationMessage(userName=o.user, buddyName=o.buddy, message=text, id=message_id)
        )

        def reply(packet: Packet) -> bool:
            answer: Any = packet.payload
            return (
                packet.type == W.TYPE_CONV_MESSAGE
                and answer.userName == o.user
                and (answer.message == text or answer.buddyName == o.buddy)
            )

        wait = o.timeout if echoes else min(o.timeout, 3.0)
        try:
            answer: Any = (await peer.expect(reply, wait)).payload
            how = "echoed back" if answer.message == text else "answered"
            self.record("message round trip", PASS, f"{how} by {answer.buddyName!r}")
        except ExpectTimeout:
            if echoes:
                self.record(
                    "message round trip", FAIL, f"buddy {o.buddy!r} is in the roster but did not echo in {wait:g} s"
                )
            else:
                self.record("message round trip", NA, f"the backend does not echo (no buddy {o.buddy!r} in the roster)")
        except Exception as e:
            self.record("message round trip", FAIL, _describe(e))

        def ack(packet: Packet) -> bool:
            return packet.type == W.TYPE_CONV_MESSAGE_ACK and packet.payload.id == message_id  # type: ignore[union-attr]

        receipts = self.features.get_bool("features", "receipts")
        try:
            await peer.expect(ack, o.timeout if receipts else 1.0)
            self.record("receipt", PASS, "CONV_MESSAGE_ACK with the message id")
        except ExpectTimeout:
            if receipts:
                self.record("receipt", FAIL, "features.receipts announced but no CONV_MESSAGE_ACK for the message id")
            else:
                self.record("receipt", NA, "features.receipts not announced")
        except Exception as e:
            self.record("receipt", FAIL, _describe(e))

        peer.send(W.TYPE_BUDDY_TYPING, pb.Buddy(userName=o.user, buddyName=o.buddy))
        peer.send(W.TYPE_BUDDY_TYPED, pb.Buddy(userName=o.user, buddyName=o.buddy))
        peer.send(W.TYPE_BUDDY_STOPPED_TYPING, pb.Buddy(userName=o.user, buddyName=o.buddy))
        # A PING round trip after them: the backend is alive, and whatever it echoed came first.
        try:
            await self._ping(peer)
        except Exception as e:
            self.record("typing", FAIL, f"after typing notifications: {_describe(e)}")
            return
        kinds = {W.TYPE_BUDDY_TYPING: "typing", W.TYPE_BUDDY_TYPED: "paused", W.TYPE_BUDDY_STOPPED_TYPING: "stopped"}
        came_back = [
            name
            for kind, name in kinds.items()
            if peer.take(lambda p, k=kind: p.type == k and p.payload.buddyName == o.buddy) is not None
        ]
        if came_back:
            self.record("typing", PASS, f"accepted; echoed: {', '.join(came_back)}")
        else:
            self.record("typing", PASS, "accepted (still answering PING; not echoed)")

    async def _settle(self, peer: Any) -> None:
        """Give the roster a moment to arrive after CONNECTED: a PING round trip orders it."""
        try:
            await self._ping(peer)
        except Exception:
            pass

    async def _frames(self, peer: Any) -> None:
        if peer.protocol_error:
            self.record("frames", FAIL, peer.protocol_error)
        elif peer.skipped:
            self.record("frames", FAIL, f"{peer.skipped} unparsable frame(s); last: {peer.decoder.last_error}")
        else:
            self.record("frames", PASS, f"{len(peer.history)} frames, all well-formed")

    async def _exit(self, harness: MainSideHarness, peer: Any) -> None:
        if not harness.running:
            self.record("exit", FAIL, f"the process had already exited (code {harness.exit_code})")
            return
        peer.send(W.TYPE_EXIT)
        started = time.monotonic()
        try:
            code = await harness.wait_exit(self.options.exit_timeout)
            self.record("exit", PASS, f"exited {time.monotonic() - started:.2f} s after EXIT (code {code})")
        except ExpectTimeout:
            self.record("exit", FAIL, f"still running {self.options.exit_timeout:g} s after EXIT (killed)")


def render(results: Sequence[CheckResult], command: Sequence[str]) -> str:
    width = max(len(r.name) for r in results) if results else 5
    lines = [f"transport-backend-check: {' '.join(command)}", ""]
    lines.append(f"  {'check':<{width}}  result  detail")
    lines.append(f"  {'-' * width}  ------  {'-' * 40}")
    for r in results:
        lines.append(f"  {r.name:<{width}}  {r.outcome:<6}  {r.detail}")
    counts = {k: sum(1 for r in results if r.outcome == k) for k in (PASS, FAIL, NA)}
    lines.append("")
    verdict = "FAILED" if counts[FAIL] else "OK"
    lines.append(f"{verdict}: {counts[PASS]} passed, {counts[FAIL]} failed, {counts[NA]} n/a")
    return "\n".join(lines) + "\n"


async def check(reactor: Any, options: Options, out: TextIO = sys.stdout) -> int:
    """Run every check, print the table; the exit status."""
    temporary: str | None = None
    config_path = options.config
    if config_path is None:
        fd, temporary = tempfile.mkstemp(prefix="backend-check-", suffix=".ini")
        with os.fdopen(fd, "w") as f:
            f.write(DEFAULT_CONFIG)
        config_path = temporary
    checker = Checker(reactor, options, out)
    try:
        results = await checker.run(config_path)
    finally:
        if temporary is not None:
            os.unlink(temporary)
    out.write(render(results, options.command))
    failed = any(r.outcome == FAIL for r in results)
    if failed and not options.verbose and checker.harness is not None and checker.harness.output_lines:
        out.write("\nlast lines of the backend's output:\n")
        for line in checker.harness.output_lines[-20:]:
            out.write(f"  | {line}\n")
    out.flush()
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> None:
    """Console script ``transport-backend-check``."""
    options = parse_options(sys.argv[1:] if argv is None else argv)

    async def _main(reactor: Any) -> None:
        code = await check(reactor, options)
        if code:
            raise SystemExit(code)

    task.react(lambda reactor: defer.ensureDeferred(_main(reactor)))


if __name__ == "__main__":
    main()
