"""Loading a Spectrum 2 configuration file: which of its keys are accepted but have no effect here.

Transport uses Spectrum 2's key names, so most of a Spectrum 2 file carries over
(``docs/operations.md`` has the table). The keys below are declared so that such
a file loads; each one that is set is reported once at start-up, with what to
do instead. ``[service] server_mode = true`` stops start-up: only component
mode exists.
"""

from __future__ import annotations

from typing import Any

from transport.config import Config, ConfigError

#: (section, key) -> what to use instead
IGNORED: dict[tuple[str, str], str] = {
    ("service", "user"): "run the service as that user (systemd User=, twistd --uid)",
    ("service", "group"): "run the service as that group (systemd Group=, twistd --gid)",
    ("service", "pidfile"): "twistd --pidfile writes the pid file (not needed under systemd)",
    ("service", "cert"): "server mode does not exist; the XMPP server does TLS",
    ("service", "cert_password"): "server mode does not exist; the XMPP server does TLS",
    ("service", "admin_password"): "use [service] admin_jid (ad-hoc commands) or transportctl",
    ("service", "web_directory"): "legacy file transfers are not supported",
    ("service", "web_url"): "legacy file transfers are not supported",
    ("logging", "config"): "log4cxx files are not read; use [logging] level, levels, file, format",
    ("logging", "backend_config"): "backend output is logged as backend-N; use [logging] levels or backend_log_dir",
}


def ignored_keys(config: Any) -> list[str]:
    """One line per Spectrum 2 key set in *config* that has no effect."""
    return [f"{config.where(section, key)}: [{section}] {key} is a Spectrum 2 key without effect here: {instead}"
            for (section, key), instead in IGNORED.items() if config.is_set(section, key)]


def check_server_mode(config: Config) -> None:
    if config.get("service", "server_mode"):
        raise ConfigError("[service] server_mode = true: Transport runs as an XMPP component only; set it to 0 and "
                          "connect to an XMPP server (server, port, password)", config.path,
                          config.lines.get(("service", "server_mode")))
