"""Configuration keys of the mux connection manager and the remote backend host (see transport.config).

``[mux]`` is read by the main instance (``twistd -n transport``); ``[backend_host]``
by ``transport-backend-host`` on the machines that run remote backends (it also
reads ``[mux]`` for the beacon settings).
"""

from transport.config import Config, ConfigError, Key, Section, add_validator, declare

SECTION = declare(Section("mux", "Multiplexed channels over TLS and remote backends.", [
    Key("enabled", "bool", False, "Run the mux connection manager in this process."),
    Key("listen", "str", "tcp:7451:interface=127.0.0.1",
        "Endpoint the mux TLS port listens on (remote backend hosts connect here); empty: no listening."),
    Key("identity_dir", "path", "mux",
        "Directory with this device's device.key and device.crt (relative to state_dir); created when missing."),
    Key("account_ca", "path", "",
        "PEM file (or CA directory) of the account CA; when set, peers' device certificates must chain to it."),
    Key("trusted_devices", "list", [],
        "Device ids (hex SHA-256 of the public key) allowed to connect; empty: any device the account CA vouches for."),
    Key("remote_backends", "bool", True,
        "Accept channels named backend/<id> from trusted devices and serve them as backends of the pool."),
    Key("beacon_interval", "float", 30.0,
        "Seconds without incoming data after which a beacon checks the connection; 0 disables idle beacons.",
        minimum=0.0),
    Key("beacon_timeout", "float", 3.0, "Seconds a beacon may go unanswered before the connection is closed.",
        minimum=0.01),
    Key("handshake_timeout", "float", 30.0, "Seconds a new connection gets to complete its TLS handshake.",
        minimum=0.1),
    Key("max_buffered", "size", 1024 * 1024,
        "Received bytes held for paused or not yet attached channels before the connection stops reading.",
        minimum=65536),
]))

BACKEND_HOST = declare(Section("backend_host", "transport-backend-host: runs backends for a remote main instance.", [
    Key("main", "str", "", "Endpoint of the main instance's mux port, e.g. tcp:main.example.org:7451 (required)."),
    Key("main_device", "str", "", "Device id of the main instance (pinned; see its [mux] identity) (required)."),
    Key("main_hostname", "str", "",
        "When set, the main instance's certificate must name this host (checked with service_identity; sent as SNI)."),
    Key("identity_dir", "path", "backend-host",
        "Directory with this host's device.key and device.crt (relative to state_dir); created when missing."),
    Key("account_ca", "path", "", "PEM file (or CA directory) of the account CA the main instance must chain to."),
    Key("backend", "str", "transport-backend-echo",
        "Backend command line; --host/--port/--service.backend_id and the config file are appended."),
    Key("backends", "int", 1, "Backend processes kept running on this host.", minimum=1, maximum=1000),
    Key("restart_delay", "float", 1.0,
        "Seconds before a backend that exited is started again; doubles per quick failure up to 60.", minimum=0.0),
    Key("name", "str", "", "Prefix of the channel names (backend/<name>-<n>); default: the host name."),
]))


def _check(config: Config) -> None:
    mux = config["mux"]
    if mux["enabled"] and mux["listen"] and not mux["account_ca"] and not mux["trusted_devices"]:
        raise ConfigError("[mux] listens but trusts nobody: set trusted_devices (device ids) or account_ca",
                          config.path, config.lines.get(("mux", "enabled")))
    for section, key in (("mux", "trusted_devices"), ("backend_host", "main_device")):
        values = config[section][key]
        for value in values if isinstance(values, list) else ([values] if values else []):
            cleaned = value.replace(":", "").strip().lower()
            if len(cleaned) != 64 or any(c not in "0123456789abcdef" for c in cleaned):
                raise ConfigError(f"[{section}] {key}: {value!r} is not a device id (64 hex digits)",
                                  config.path, config.lines.get((section, key)))


add_validator(_check)
