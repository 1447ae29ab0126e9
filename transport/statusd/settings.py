"""Configuration keys of the statusd service (see transport.config)."""

from transport.config import Key, Section, declare

SECTION = declare(Section("statusd", "statusd: presence (docs/chatd-statusd.md).", [
    Key("enabled", "bool", False, "Run the statusd service in this process."),
    Key("listen", "str", "tcp:7081:interface=127.0.0.1",
        "Endpoint string of the TCP listener (`ssl:...` for TLS, port 0 for any free port); empty: WebSocket only."),
    Key("websocket", "bool", True, "Also serve statusd as binary WebSocket messages at `/statusd` on [service] "
        "web_port."),
    Key("portfile", "path", "", "When set, the TCP listener's port is written to this file once listening."),
    Key("token_secret", "str", "", "HMAC secret for AUTH tokens; empty: read `token_secret_file`.", secret=True),
    Key("token_secret_file", "path", "tokens.key",
        "File holding the token secret (relative to state_dir); created when missing. Same default as chatd's."),
    Key("keepalive_interval", "float", 30.0, "Seconds between the server's KEEPALIVEs.", minimum=0.01),
    Key("idle_timeout", "float", 90.0, "A client that sent nothing for this many seconds is disconnected.",
        minimum=0.01),
    Key("max_message_size", "size", 64 * 1024, "Largest AUTH token accepted; a longer one is answered with ERROR "
        "and skipped.", minimum=64, maximum=65535),
    Key("max_send_buffer", "size", 4 * 1024 * 1024,
        "Bytes queued for a client that does not read (TCP or WebSocket) before it is disconnected.", minimum=1024),
    Key("rate_limit", "float", 0.0,
        "Commands per second one client may send (sustained); above it the server stops reading from that "
        "client for a while (backpressure). 0 = no limit.", minimum=0),
    Key("rate_burst", "int", 100, "Commands a client may send at once before rate_limit applies.", minimum=1),
    Key("refresh_interval", "float", 5.0,
        "Seconds between checks for contact and room changes made outside this process; 0 = never. "
        "When chatd runs too, the directory they share uses chatd's value.", minimum=0),
]))
