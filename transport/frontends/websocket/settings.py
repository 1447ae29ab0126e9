"""Configuration keys of the WebSocket frontend (see transport.config)."""

from transport.config import Key, Section, declare

SECTION = declare(Section("websocket", "The OriginChats-compatible WebSocket frontend and web client on [service] web_port.", [
    Key("enabled", "bool", False, "Run the WebSocket frontend in this process."),
]))
