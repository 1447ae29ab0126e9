"""Configuration keys of the hosts directory and user hosts (see transport.config).

``[hosts]`` switches the part on and describes the network host (the
directory); each ``[host:NAME]`` section is one user host (group, chat room or
random connect). The user-host sections are ``[host:NAME]`` rather than
``[hosts:NAME]`` because a repeatable section cannot share its prefix with the
plain ``[hosts]`` section in :mod:`transport.config`.
"""

from __future__ import annotations

from transport.config import Config, ConfigError, Key, Section, add_validator, declare

#: The prefix of the user-host sections: ``[host:NAME]``.
USER_HOST_PREFIX = "host"

HOST_TYPES = ("group", "chatroom", "randomconnect")
PERMISSIONS = ("ignore", "anonymous", "guest", "friend", "admin")

SECTION = declare(Section("hosts", "The network host directory and user hosts.", [
    Key("enabled", "bool", False, "Run the hosts directory and user hosts in this process."),
    Key("network_host", "bool", False,
        "Run the network host (the directory user hosts announce to and clients search) in this process."),
    Key("listen", "str", "tcp:4620:interface=127.0.0.1",
        "Network host: stream endpoint to listen on; TLS with this host's identity is layered on top."),
    Key("portfile", "path", "", "Network host: when set, the port it listens on is written to this file."),
    Key("name", "str", "Network host", "Network host: the name it gives in its ANNOUNCE."),
    Key("expiry", "float", 1800.0,
        "Seconds after which a directory entry that was not re-announced is forgotten.", minimum=0.001,
        reloadable=True),
    Key("sweep_interval", "float", 60.0, "Seconds between sweeps that drop expired directory entries.",
        minimum=0.001),
    Key("page_size", "int", 50, "Most directory entries in one search reply (fewer when the blob is full).",
        minimum=1, maximum=1000, reloadable=True),
    Key("max_entries", "int", 500000,
        "Most directory entries (about 800 bytes each); beyond it new hosts' announcements are refused "
        "(re-announcements still refresh).", minimum=1, reloadable=True),
    Key("max_connections", "int", 10000, "Connections the network host and each user host accept at once.",
        minimum=1),
    Key("handshake_timeout", "float", 30.0,
        "Seconds a peer has to complete the TLS handshake before it is disconnected.", minimum=0.01),
]))

USER_HOST_SECTION = declare(Section(USER_HOST_PREFIX, "One user host (group, chat room or random connect): "
                                    "announced to a network host, joined by clients.", [
    Key("type", "choice", "group", "Host type.", choices=HOST_TYPES),
    Key("title", "str", "", "Title shown in the directory (required).", reloadable=True),
    Key("description", "str", "", "Description shown in the directory (required).", reloadable=True),
    Key("url", "str", "",
        "Address announced to clients, ptop://HOST:PORT; default: ptop://127.0.0.1:<listening port>.",
        reloadable=True),
    Key("thumb_id", "str", "", "Thumbnail id (32 hex digits); default: derived from the host's online id.",
        reloadable=True),
    Key("permission", "choice", "anonymous",
        "Lowest friendship level that joins without the admin's grant; ignore disables the host.",
        choices=PERMISSIONS, reloadable=True),
    Key("name", "str", "", "The host's name in its ANNOUNCE and user info; default: the title.", reloadable=True),
    Key("motto", "str", "", "The host's motto in its ANNOUNCE.", reloadable=True),
    Key("listen", "str", "tcp:0:interface=127.0.0.1",
        "Stream endpoint clients connect to; TLS with this host's identity is layered on top."),
    Key("portfile", "path", "", "When set, the port this host listens on is written to this file."),
    Key("network_host", "str", "",
        "Client endpoint of the network host to announce to (tcp:HOST:PORT); empty: the one in this process."),
    Key("network_host_id", "str", "", "Expected online id of that network host (32 hex digits); empty: not pinned."),
    Key("announce", "bool", True, "Announce this host to the network host."),
    Key("announce_interval", "float", 900.0, "Seconds between re-announcements.", minimum=0.001),
    Key("announce_retry", "float", 60.0,
        "Seconds before another try when the network host could not be reached (at most announce_interval).",
        minimum=0.001),
    Key("page_size", "int", 50, "Most member records in one user-list reply.", minimum=1, maximum=1000,
        reloadable=True),
    Key("max_pending", "int", 1000,
        "Join requests that may wait for the admin; beyond it new requesters are answered Busy.", minimum=0,
        reloadable=True),
    Key("pending_poll_interval", "float", 5.0,
        "Seconds between checks for join requests the admin granted or denied (pushed to waiting clients).",
        minimum=0.001),
], repeatable=True))


def _check(config: Config) -> None:
    from transport.hosts.packets import OnlineId

    for name, values in config.instances(USER_HOST_PREFIX).items():
        section = f"{USER_HOST_PREFIX}:{name}"
        for key in ("title", "description"):
            if not values[key]:
                raise ConfigError(f"[{section}] {key}: expected a non-empty value (it is announced)",
                                  config.path, config.lines.get((section, key)))
        for key in ("thumb_id", "network_host_id"):
            if values[key]:
                try:
                    OnlineId.from_hex(values[key])
                except ValueError:
                    raise ConfigError(f"[{section}] {key}: expected 32 hex digits",
                                      config.path, config.lines.get((section, key))) from None
        url = values["url"]
        if url and not url.startswith("ptop://"):
            raise ConfigError(f"[{section}] url: expected ptop://HOST:PORT",
                              config.path, config.lines.get((section, "url")))
        if (config["hosts"]["enabled"] and values["announce"] and not values["network_host"]
                and not config["hosts"]["network_host"]):
            raise ConfigError(f"[{section}] network_host: expected an endpoint, since this process does not "
                              "run the network host ([hosts] network_host = false)",
                              config.path, config.lines.get((section, "network_host")))


add_validator(_check)
