"""Python client API for statusd (Twisted).

Example (inside a running reactor)::

    client = await StatusdClient.connect(reactor, "tcp:host=127.0.0.1:port=7081", userid, token, ONLINE)
    client.dump        # the PRES entries received at login, the last one (userid 0) being our own
    client.presence    # userid -> presence, kept up to date; client.own is our effective presence
    client.set_presence(AWAY, automatic=True)
    change = await client.next(Pres)
"""

from __future__ import annotations

from typing import Any

from transport.chatd.client import DEFAULT_TIMEOUT, AuthenticationFailed, CommandClient, ConnectionClosed, open_link
from transport.chatd.wire import Auth, Command
from transport.statusd.codec import AUTOMATIC, Hello, Pres, SetPres, client_connection


class StatusdClient(CommandClient):
    """A statusd client. :attr:`presence` maps user ids to their last announced presence (0 = offline)."""

    def __init__(self, reactor: Any, answer_keepalive: bool = True) -> None:
        super().__init__(reactor, client_connection(), answer_keepalive)
        self.userid = 0
        self.dump: list[Pres] = []
        self.presence: dict[int, int] = {}
        self.own = 0

    @classmethod
    async def connect(cls, reactor: Any, address: str, userid: int, token: bytes, presence: int,
                      automatic: bool = False, version: int = 1,
                      timeout: float | None = DEFAULT_TIMEOUT) -> StatusdClient:
        """Connect, AUTH, HELLO with *presence*; returns once the dump (ending with ``PRES 0``) arrived."""
        client = cls(reactor)
        await open_link(reactor, address, client, timeout)
        byte = (presence & ~AUTOMATIC) | (AUTOMATIC if automatic else 0)
        await client._login(Auth(userid, token), Hello(version, byte), timeout)
        client.userid = userid
        while True:
            entry = await client.next(Pres, timeout)
            client.dump.append(entry)
            if entry.userid == 0:
                break
        return client

    def dispatch(self, command: Command) -> None:
        if isinstance(command, Pres):
            if command.userid == 0:
                self.own = command.presence
            elif command.presence:
                self.presence[command.userid] = command.presence
            else:
                self.presence.pop(command.userid, None)
        super().dispatch(command)

    def set_presence(self, value: int, automatic: bool = False) -> None:
        """SETPRES; the effective presence comes back as ``PRES 0`` (see :attr:`own`)."""
        self.send(SetPres.of(value, automatic))


__all__ = ["AuthenticationFailed", "ConnectionClosed", "Pres", "StatusdClient"]
