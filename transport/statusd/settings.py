"""Configuration keys of the statusd service (see transport.config)."""

from transport.config import Key, Section, declare

SECTION = declare(Section("statusd", "statusd: presence.", [
    Key("enabled", "bool", False, "Run the statusd service in this process."),
]))
