"""The ``[monitoring]`` section (metrics endpoint, status page) and the check of ``[logging] levels``."""

from __future__ import annotations

from transport.config import Config, ConfigError, Key, Section, add_validator, declare
from transport.ops.levels import parse_levels
from transport.ops.spectrum2 import check_server_mode

declare(Section("monitoring", "The Prometheus metrics endpoint and the status page, both on the web port.", [
    Key("metrics", "bool", True, "Serve Prometheus metrics (text exposition) at /metrics."),
    Key("metrics_auth", "bool", False,
        "/metrics asks for [service] admin_token too (HTTP Basic password, or Authorization: Bearer)."),
    Key("status_page", "bool", True,
        "Serve the status page at /status (login: any user name, [service] admin_token as password)."),
    Key("sample_interval", "float", 10.0, "Seconds between the status page's samples.", minimum=1.0,
        maximum=600.0),
    Key("history", "float", 3600.0, "Seconds of samples the status page's charts show.", minimum=60.0,
        maximum=86400.0),
]))


def _check_levels(config: Config) -> None:
    try:
        parse_levels(config.get("logging", "levels"))
    except ValueError as e:
        raise ConfigError(f"[logging] levels: {e}", config.path, config.lines.get(("logging", "levels"))) from None


add_validator(_check_levels)
add_validator(check_server_mode)
