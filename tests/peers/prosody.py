"""A private Prosody (Debian package) for the XMPP tests.

Fixtures (registered through ``tests/peers/fixtures.py``):

``prosody_server`` (module scope)
    Starts ``prosody -F --config FILE`` with a generated configuration in a fresh
    temporary directory: one virtual host ``localhost`` with c2s on a free loopback port
    (plain text allowed, no TLS: the tests do not need certificates), one external
    component ``transport.localhost`` (XEP-0114) on another free port with a random
    secret, internal plain-text accounts pre-created in the data directory
    (``alice``, ``bob``, ``carol``, ``dave``, ``erin``, all with password ``secret``),
    ``run_as_root = true`` when the tests run as root, a pidfile and a log file in the
    temporary directory. Yields a :class:`ProsodyServer`; the server is stopped and the
    directory removed afterwards. ``restart()`` stops and starts it again on the same
    ports (the reconnect tests). A missing ``prosody`` program is a failure, never a skip.
"""

from __future__ import annotations

import copy
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["ClientLoop", "ProsodyServer", "XmppClient", "prosody_server", "xmpp_loop"]

PROSODY = os.environ.get("TRANSPORT_PROSODY", "/usr/bin/prosody")
DOMAIN = "localhost"
COMPONENT = "transport.localhost"
ACCOUNTS = ("alice", "bob", "carol", "dave", "erin")
PASSWORD = "secret"
START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ProsodyServer:
    """One private Prosody process (see the module docstring)."""

    def __init__(self, accounts: tuple[str, ...] = ACCOUNTS, component_secret: str | None = None,
                 component: str = COMPONENT) -> None:
        if not Path(PROSODY).exists():
            raise RuntimeError(f"Prosody is not installed: {PROSODY} is missing (apt-get install prosody)")
        self.directory = Path(tempfile.mkdtemp(prefix="transport-prosody-"))
        self.domain = DOMAIN
        self.component = component
        self.c2s_port = free_port()
        self.component_port = free_port()
        self.component_secret = component_secret or secrets.token_hex(12)
        self.accounts = accounts
        self.password = PASSWORD
        self.config_path = self.directory / "prosody.cfg.lua"
        self.log_path = self.directory / "prosody.log"
        self.pidfile = self.directory / "prosody.pid"
        self.process: subprocess.Popen[bytes] | None = None
        self._write_config()
        self._write_accounts()

    def jid(self, account: str) -> str:
        return f"{account}@{self.domain}"

    def _write_config(self) -> None:
        data = self.directory / "data"
        data.mkdir()
        lines = [
            f"pidfile = {_lua_string(str(self.pidfile))}",
            f"data_path = {_lua_string(str(data))}",
            f"log = {{ debug = {_lua_string(str(self.log_path))} }}",
            "daemonize = false",
            "run_as_root = true" if os.geteuid() == 0 else "",
            'modules_enabled = { "roster", "saslauth", "disco", "ping", "posix", "vcard_legacy", "private" }',
            'modules_disabled = { "s2s", "http", "tls", "carbons", "offline" }',
            'authentication = "internal_plain"',
            "c2s_require_encryption = false",
            "allow_unencrypted_plain_auth = true",
            f"c2s_ports = {{ {self.c2s_port} }}",
            'c2s_interfaces = { "127.0.0.1" }',
            "s2s_ports = { }",
            f"component_ports = {{ {self.component_port} }}",
            'component_interfaces = { "127.0.0.1" }',
            "http_ports = { }",
            "https_ports = { }",
            "c2s_direct_tls_ports = { }",
            "limits = { }",
            "",
            f"VirtualHost {_lua_string(self.domain)}",
            "",
            f"Component {_lua_string(self.component)}",
            f"    component_secret = {_lua_string(self.component_secret)}",
            "",
        ]
        self.config_path.write_text("\n".join(lines))

    def _write_accounts(self) -> None:
        # mod_auth_internal_plain reads DATA/<host>/accounts/<user>.dat (host with "." as "%2e").
        host_dir = self.directory / "data" / self.domain.replace(".", "%2e") / "accounts"
        host_dir.mkdir(parents=True)
        for account in self.accounts:
            (host_dir / f"{account}.dat").write_text(f"return {{\n\t[\"password\"] = {_lua_string(self.password)};\n}};\n")

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            [PROSODY, "-F", "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            cwd=self.directory, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prosody exited with {self.process.returncode}:\n{self.log_tail()}")
            if self._listening(self.c2s_port) and self._listening(self.component_port):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prosody did not listen within {START_TIMEOUT} s:\n{self.log_tail()}")

    @staticmethod
    def _listening(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)

    def restart(self) -> None:
        self.stop()
        # the old listening sockets are closed with the process; wait until the ports are free
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and (self._listening(self.c2s_port) or
                                               self._listening(self.component_port)):
            time.sleep(0.1)
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def prosody_server() -> Iterator[ProsodyServer]:
    server = ProsodyServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


# ---------------------------------------------------------------------------
# slixmpp test clients


class XmppClient:
    """A real XMPP client (slixmpp) logged in to a :class:`ProsodyServer`, recording every stanza it gets.

    Runs on an asyncio loop (see :class:`ClientLoop`). ``received`` holds every
    incoming stanza as an ElementTree element; ``await wait_for(pred)`` waits for
    the first stanza after position ``since`` (default: all) matching *pred*.
    Set ``reconnect = True`` to make it reconnect on its own after the server
    went away, as real clients do.
    """

    def __init__(self, server: ProsodyServer, account: str, resource: str = "test") -> None:
        import slixmpp

        self.server = server
        self.account = account
        self.jid = f"{server.jid(account)}/{resource}"
        self.bare = server.jid(account)
        self.xmpp = slixmpp.ClientXMPP(self.jid, server.password)
        for plugin in ("xep_0030", "xep_0045", "xep_0050", "xep_0054", "xep_0077", "xep_0085", "xep_0092",
                       "xep_0184", "xep_0199", "xep_0224"):
            self.xmpp.register_plugin(plugin)
        self.xmpp.plugin["xep_0184"].auto_ack = False
        self.xmpp.enable_plaintext = True
        self.xmpp.enable_starttls = False
        self.xmpp.enable_direct_tls = False
        self.xmpp.plugin["feature_mechanisms"].unencrypted_plain = True
        self.xmpp.plugin["feature_mechanisms"].unencrypted_scram = True
        self.xmpp.auto_authorize = True
        self.xmpp.auto_subscribe = True
        self.received: list[Any] = []
        self.reconnect = False
        self.sessions = 0
        self._changed: Any = None
        self._started: Any = None
        self._stopping = False
        self.xmpp.add_filter("in", self._record)
        self.xmpp.add_event_handler("session_start", self._session_start)
        self.xmpp.add_event_handler("disconnected", self._disconnected)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _record(self, stanza: Any) -> Any:
        self.received.append(copy.deepcopy(stanza.xml))
        self._notify()
        return stanza

    async def _session_start(self, event: Any) -> None:
        self.sessions += 1
        self.xmpp.send_presence()
        await self.xmpp.get_roster()
        if self._started is not None and not self._started.done():
            self._started.set_result(True)
        self._notify()

    def _disconnected(self, event: Any) -> None:
        self._notify()
        if self.reconnect and not self._stopping:
            import asyncio

            asyncio.get_event_loop().call_later(0.5, self._connect)

    def _connect(self) -> None:
        self.xmpp.connect("127.0.0.1", self.server.c2s_port)

    async def start(self, timeout: float = 30.0) -> XmppClient:
        import asyncio

        self._changed = asyncio.Event()
        self._started = asyncio.get_event_loop().create_future()
        self._connect()
        await asyncio.wait_for(self._started, timeout)
        return self

    async def wait_for(self, predicate: Any, timeout: float = 60.0, since: int = 0) -> Any:
        """The first recorded stanza from index *since* on for which ``predicate(element)`` is true."""
        import asyncio

        loop = asyncio.get_event_loop()
        deadline = loop.time() + timeout
        index = since
        while True:
            while index < len(self.received):
                element = self.received[index]
                index += 1
                if predicate(element):
                    return element
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self.jid}: no matching stanza within {timeout} s; last received:\n"
                                   + "\n".join(ET.tostring(e, encoding="unicode")[:400] for e in self.received[-8:]))
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def wait_session(self, count: int, timeout: float = 90.0) -> None:
        """Wait until the client has started *count* sessions (reconnections included)."""
        import asyncio

        loop = asyncio.get_event_loop()
        deadline = loop.time() + timeout
        while self.sessions < count:
            if loop.time() > deadline:
                raise TimeoutError(f"{self.jid}: {self.sessions} sessions, not {count}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), max(0.01, deadline - loop.time()))
            except TimeoutError:
                pass

    def send_raw(self, xml: str) -> None:
        self.xmpp.send_raw(xml)

    async def iq(self, xml: str, timeout: float = 60.0) -> Any:
        """Send an ``<iq/>`` given as text (without id) and wait for its answer (result or error)."""
        ident = self.xmpp.new_id()
        mark = len(self.received)
        self.send_raw(xml.replace("<iq ", f"<iq id='{ident}' ", 1))
        return await self.wait_for(lambda e: e.tag.endswith("}iq") and e.get("id") == ident, timeout, mark)

    async def stop(self) -> None:
        import asyncio

        self._stopping = True
        if self.xmpp.is_connected():
            self.xmpp.disconnect()
            try:
                await asyncio.wait_for(self.xmpp.disconnected, 10)
            except Exception:
                self.xmpp.abort()


class ClientLoop:
    """An asyncio loop in a thread for slixmpp clients, so that plain (sync) tests can drive them.

    ``loop.run(coro, timeout)`` runs a coroutine there and returns its result.
    """

    def __init__(self) -> None:
        import asyncio
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="slixmpp", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 180.0) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        # slixmpp streams keep tasks pending and cancel them when collected: finish every task while the
        # loop still runs, so that nothing calls into it once it is gone
        import asyncio
        import gc

        async def collect() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            gc.collect()

        try:
            self.run(collect(), 30)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        # the loop is not closed: slixmpp objects collected later still call into it


@pytest.fixture(scope="module")
def xmpp_loop() -> Iterator[ClientLoop]:
    loop = ClientLoop()
    try:
        yield loop
    finally:
        loop.close()
