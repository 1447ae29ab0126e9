"""What an IRC login means: the server, the nick, TLS, and the backend's own settings.

A legacy name is ``nick``, ``nick@host``, ``nick@host:port`` or ``nick@host:+port``
(the ``+`` asks for TLS, as IRC clients write it). Without a host, the server
comes from ``[backend] irc_server``. The settings are read from the ``[backend]``
section of the configuration file the backend is started with.
"""

from __future__ import annotations

from dataclasses import dataclass

from transport.sdk import BackendConfigFile

#: Characters that start an IRC channel name (RFC 2811).
CHANNEL_PREFIXES = "#&+!"


class BadLegacyName(ValueError):
    """The legacy name does not name a nick (and a server)."""


@dataclass(frozen=True)
class ServerAddress:
    nick: str
    host: str
    port: int
    tls: bool


@dataclass(frozen=True)
class IRCSettings:
    """The ``[backend]`` keys of the IRC backend (all prefixed ``irc_``)."""

    server: str = ""
    port: int = 6667
    tls: bool = False
    tls_verify: bool = True
    password_mode: str = "server"  # or "nickserv"
    send_rate: float = 2.0
    send_burst: int = 5
    fallback_encoding: str = "latin-1"
    reconnect_initial_delay: float = 1.0
    reconnect_max_delay: float = 60.0
    who_interval: float = 60.0
    queue_limit: int = 100
    realname: str = "Transport IRC gateway user"
    connect_timeout: float = 30.0

    @classmethod
    def from_config(cls, config: BackendConfigFile) -> IRCSettings:
        section = config.backend
        default = cls()

        def number(key: str, value: float) -> float:
            text = section.get("irc_" + key)
            if text is None:
                return value
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"[backend] irc_{key}: expected a number, found {text!r}") from None

        mode = section.get("irc_password_mode", default.password_mode).strip()
        if mode not in ("server", "nickserv"):
            raise ValueError(f"[backend] irc_password_mode: expected server or nickserv, found {mode!r}")
        encoding = section.get("irc_fallback_encoding", default.fallback_encoding).strip()
        try:
            "".encode(encoding)
        except LookupError:
            raise ValueError(f"[backend] irc_fallback_encoding: unknown encoding {encoding!r}") from None
        return cls(
            server=section.get("irc_server", default.server).strip(),
            port=int(number("port", default.port)),
            tls=config.get_bool("backend", "irc_tls", default.tls),
            tls_verify=config.get_bool("backend", "irc_tls_verify", default.tls_verify),
            password_mode=mode,
            send_rate=number("send_rate", default.send_rate),
            send_burst=max(1, int(number("send_burst", default.send_burst))),
            fallback_encoding=encoding,
            reconnect_initial_delay=number("reconnect_initial_delay", default.reconnect_initial_delay),
            reconnect_max_delay=number("reconnect_max_delay", default.reconnect_max_delay),
            who_interval=number("who_interval", default.who_interval),
            queue_limit=int(number("queue_limit", default.queue_limit)),
            realname=section.get("irc_realname", default.realname),
            connect_timeout=number("connect_timeout", default.connect_timeout),
        )

    def address(self, legacy_name: str) -> ServerAddress:
        """Where *legacy_name* logs in."""
        nick, _, server = legacy_name.strip().partition("@")
        if not nick or any(c in nick for c in " ,*?!@") or nick[0] in CHANNEL_PREFIXES + "0123456789-":
            raise BadLegacyName(f"{legacy_name!r} does not start with a valid IRC nickname")
        tls = self.tls
        port = self.port
        host = self.server
        if server:
            host, sep, port_text = server.rpartition(":") if ":" in server else (server, "", "")
            if sep:
                if port_text.startswith("+"):
                    tls = True
                    port_text = port_text[1:]
                if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                    raise BadLegacyName(f"{legacy_name!r}: bad port {port_text!r}")
                port = int(port_text)
        if not host:
            raise BadLegacyName(f"{legacy_name!r} names no server and [backend] irc_server is not set")
        return ServerAddress(nick, host, port, tls)


def is_channel(name: str) -> bool:
    return bool(name) and name[0] in CHANNEL_PREFIXES


def irc_lower(name: str) -> str:
    """Case folding for nicks and channels (RFC 1459: {}|^ are the lower case of []\\~)."""
    return name.lower().translate(str.maketrans("[]\\~", "{}|^"))


def decode_line(raw: bytes, fallback: str) -> str:
    """UTF-8 if it is, else the configured legacy charset (never fails)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode(fallback, errors="replace")
