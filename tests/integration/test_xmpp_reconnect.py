"""The component link drops while Prosody and the clients stay: the gateway reconnects and nobody notices.

A small TCP proxy sits between ``twistd -n transport`` and Prosody's component
port; cutting its connections breaks only the XEP-0114 link. After the
reconnection the gateway probes its users: Prosody answers with the presence of
each online client, the legacy session (which never ended) carries on, and the
clients are shown the transport, their buddies and their rooms again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.peers.backends import MainInstance
from tests.peers.prosody import ClientLoop, ProsodyServer, XmppClient, xmpp_loop  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

C = "{jabber:client}"
MUC_USER = "{http://jabber.org/protocol/muc#user}"


class Proxy:
    """A TCP relay on the clients' loop; :meth:`cut` aborts every relayed connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.accepted = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.pairs.append((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        pairs, self.pairs = self.pairs, []
        for a, b in pairs:
            a.transport.abort()
            b.transport.abort()

    async def close(self) -> None:
        await self.cut()
        self.server.close()


@pytest.fixture(scope="module")
def stack(xmpp_loop: ClientLoop,  # noqa: F811
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProsodyServer, Proxy, MainInstance]]:
    prosody = ProsodyServer()
    prosody.start()
    proxy = Proxy(prosody.component_port)
    port = xmpp_loop.run(proxy.start())
    gateway = MainInstance(tmp_path_factory.mktemp("gateway"),
                           "[xmpp]\nenabled = true\nreconnect_initial_delay = 0.3\nreconnect_max_delay = 1\n"
                           "[websocket]\nenabled = false\n",
                           jid=prosody.component, server="127.0.0.1", port=port, password=prosody.component_secret)
    try:
        gateway.start()
        yield prosody, proxy, gateway
    finally:
        gateway.cleanup()
        xmpp_loop.run(proxy.close())
        prosody.cleanup()


def test_component_reconnect_keeps_the_legacy_session_and_shows_rooms_again(
        xmpp_loop: ClientLoop, stack: tuple[ProsodyServer, Proxy, MainInstance]) -> None:  # noqa: F811
    server, proxy, gateway = stack
    echo = f"echo@{server.component}"

    async def scenario() -> None:
        alice = await XmppClient(server, "alice").start()
        mark = len(alice.received)
        answer = await alice.iq(f"<iq type='set' to='{server.component}'><query xmlns='jabber:iq:register'>"
                                "<username>alice</username><password>pw</password></query></iq>")
        assert answer.get("type") == "result"
        await alice.wait_for(lambda e: e.get("from") == echo and e.tag == C + "presence" and e.get("type") is None,
                             60, mark)
        alice.send_raw(f"<presence to='{echo}/al'><x xmlns='http://jabber.org/protocol/muc'/></presence>")

        def self_presence(e: Any) -> bool:
            return (e.get("from") == f"{echo}/al" and e.get("type") is None
                    and any(s.get("code") == "110" for s in e.iter(MUC_USER + "status")))

        await alice.wait_for(self_presence, 60, mark)
        connections = proxy.accepted
        # a message on its way when the link breaks is not lost either
        mark = len(alice.received)
        alice.send_raw(f"<message to='{echo}' type='chat'><body>before the cut</body></message>")
        await alice.wait_for(lambda e: e.findtext(C + "body") == "before the cut", 60, mark)
        await proxy.cut()
        # the gateway reconnects and probes; alice's client answers through its server
        await alice.wait_for(self_presence, 60, mark + 1)
        await alice.wait_for(lambda e: e.get("from") == server.component and e.tag == C + "presence"
                             and e.get("type") is None, 60, mark + 1)
        assert proxy.accepted > connections
        after = len(alice.received)
        alice.send_raw(f"<message to='{echo}' type='chat'><body>after the cut</body></message>")
        await alice.wait_for(lambda e: e.findtext(C + "body") == "after the cut", 60, after)
        alice.send_raw(f"<message to='{echo}' type='groupchat'><body>room after the cut</body></message>")
        await alice.wait_for(lambda e: e.get("from") == f"{echo}/echo"
                             and e.findtext(C + "body") == "room after the cut", 60, after)
        await alice.stop()

    try:
        xmpp_loop.run(scenario(), 240)
    except BaseException:
        print(gateway.log()[-5000:])
        raise
    log = gateway.log()
    assert log.count("alice@localhost logged in") == 1  # the legacy session never ended
    assert log.count("XMPP component transport.localhost connected") == 2
