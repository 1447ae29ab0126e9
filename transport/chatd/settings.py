"""Configuration keys of the chatd service (see transport.config)."""

from transport.config import Key, Section, declare

SECTION = declare(Section("chatd", "chatd: real-time room messaging and in-call status.", [
    Key("enabled", "bool", False, "Run the chatd service in this process."),
]))
