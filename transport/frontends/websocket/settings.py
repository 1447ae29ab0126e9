"""Configuration keys of the WebSocket frontend (see transport.config).

``[websocket]`` holds the server's identity, auth mode, limits, the local
channels and the rate limiter. Each local channel may get its own
``[websocket-channel:NAME]`` section for its display name and permissions.
"""

from transport.config import Config, ConfigError, Key, Section, add_validator, declare

SECTION = declare(Section("websocket", "The OriginChats-compatible WebSocket frontend and web client on [service] web_port.", [
    Key("enabled", "bool", True, "Run the WebSocket frontend in this process."),
    Key("path", "str", "ws", "URL path of the WebSocket endpoint on the web port (ws://HOST:PORT/ws)."),
    Key("web_client", "bool", True, "Serve the bundled web client at / of the web port."),
    Key("auth_mode", "choice", "cracked",
        "cracked: local accounts (login/register with a password); validator: tokens checked by a validator.",
        choices=("cracked", "validator")),
    Key("allow_registration", "bool", True, "cracked mode: anyone may create an account with the register command."),
    Key("validator_url", "str", "",
        "validator mode: HTTP validator URL (GET URL?key=<validator_key>&v=<token>, answer {\"valid\": true, "
        "\"username\": ...}); empty: HMAC tokens issued with transport-websocket token."),
    Key("validator_secret", "str", "",
        "validator mode: secret of the HMAC tokens (empty: a secret generated once in state_dir/websocket.secret).",
        secret=True),
    Key("validator_timeout", "float", 5.0, "Seconds the HTTP validator has to answer.", minimum=0.1),
    Key("server_name", "str", "", "Server name in the handshake (default: [identity] name)."),
    Key("server_icon", "str", "", "URL of the server's icon in the handshake."),
    Key("owner", "list", [], "Usernames given the owner role (bypasses every channel permission)."),
    Key("admins", "list", [], "Usernames given the admin role."),
    Key("default_roles", "list", ["user"], "Roles of a new user."),
    Key("role_colors", "list", ["owner:#e67e22", "admin:#e74c3c", "user:#8e9297"],
        "role:#RRGGBB pairs; a user's color is that of their first role listed here."),
    Key("channels", "list", ["general:text", "random:text", "lounge:voice"],
        "Local channels shared by all users, as name:type (type text or voice), in display order."),
    Key("post_content", "int", 2000, "Longest message content accepted (characters).", minimum=1, maximum=100000),
    Key("max_message_size", "size", 64 * 1024,
        "Largest WebSocket message accepted; a larger one closes the connection (code 1009).", minimum=1024),
    Key("max_json_depth", "int", 16, "Deepest JSON nesting accepted in a command.", minimum=2, maximum=64),
    Key("max_invalid", "int", 20, "Malformed or refused frames tolerated per connection before it is closed.",
        minimum=1),
    Key("auth_timeout", "float", 60.0, "Seconds a connection may stay unauthenticated before it is closed.",
        minimum=1.0),
    Key("max_auth_attempts", "int", 5, "Failed auth/login/register attempts per connection before it is closed.",
        minimum=1),
    Key("history_limit", "int", 100, "Messages returned by messages_get when no limit is given.", minimum=1,
        maximum=200),
    Key("rate_limit_per_minute", "int", 60, "message_new/message_edit (and typing, separately) per user per minute.",
        minimum=1),
    Key("rate_limit_burst", "int", 10, "Commands allowed within rate_limit_burst_window seconds.", minimum=1),
    Key("rate_limit_burst_window", "float", 10.0, "Window of the burst limit, seconds.", minimum=0.1),
    Key("rate_limit_cooldown", "float", 30.0, "Seconds a user who hit a limit must wait.", minimum=0.0),
    Key("ping_interval", "float", 30.0, "Seconds between the server's {\"cmd\":\"ping\"} packets.", minimum=0.1),
    Key("ping_timeout", "float", 90.0,
        "Seconds without an answer to a WebSocket-level ping before a connection is dropped; 0 disables.",
        minimum=0.0),
    Key("gateway_auto_register", "bool", True,
        "Register a user without legacy credentials with the gateway at first login (legacy name = username, "
        "no password), so that e.g. the echo backend works at once."),
    Key("legacy_history", "int", 500, "Messages kept per legacy conversation for messages_get.", minimum=0),
]))

CHANNEL_SECTION = declare(Section(
    "websocket-channel",
    "Per local channel settings of the WebSocket frontend, [websocket-channel:NAME] (NAME from [websocket] channels). "
    "Permission values are role lists: a role allows, !role denies, the first rule the user matches wins, "
    "no match denies; the owner role bypasses all.",
    [
        Key("display_name", "str", "", "Name shown instead of NAME."),
        Key("description", "str", "", "Channel description."),
        Key("icon", "str", "", "URL of the channel icon."),
        Key("view", "list", ["user"], "Roles that see the channel and its events."),
        Key("send", "list", ["user"], "Roles that may post."),
        Key("delete", "list", ["admin"], "Roles that may delete anybody's message."),
        Key("delete_own", "list", ["user"], "Roles that may delete their own messages."),
        Key("edit_own", "list", ["user"], "Roles that may edit their own messages."),
        Key("react", "list", ["user"], "Roles that may add and remove reactions."),
    ],
    repeatable=True,
))


def _check(config: Config) -> None:
    section = config["websocket"]
    seen = set()
    for item in section["channels"]:
        name, _, kind = item.partition(":")
        kind = kind or "text"
        if not _valid_channel_name(name) or kind not in ("text", "voice"):
            raise ConfigError(f"[websocket] channels: {item!r} is not name:text or name:voice "
                              "(names: 1-32 of a-z 0-9 _ -)", config.path, config.lines.get(("websocket", "channels")))
        if name in seen:
            raise ConfigError(f"[websocket] channels: {name!r} is listed twice", config.path,
                              config.lines.get(("websocket", "channels")))
        seen.add(name)
    for name in config.instances("websocket-channel"):
        if name not in seen:
            raise ConfigError(f"[websocket-channel:{name}] names no channel of [websocket] channels", config.path)
    path = section["path"].strip("/")
    if not path or not all(c.isascii() and (c.isalnum() or c in "_-.") for c in path):
        raise ConfigError(f"[websocket] path: {section['path']!r} is not one URL path segment (e.g. ws)",
                          config.path, config.lines.get(("websocket", "path")))
    for item in section["role_colors"]:
        role, _, color = item.partition(":")
        if not role or not (len(color) == 7 and color.startswith("#")):
            raise ConfigError(f"[websocket] role_colors: {item!r} is not role:#RRGGBB", config.path,
                              config.lines.get(("websocket", "role_colors")))


def _valid_channel_name(name: str) -> bool:
    return 1 <= len(name) <= 32 and all(c.isascii() and (c.isalnum() and not c.isupper() or c in "_-") for c in name)


add_validator(_check)
