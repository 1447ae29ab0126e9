"""Configuration keys of the hosts directory and user hosts (see transport.config)."""

from transport.config import Key, Section, declare

SECTION = declare(Section("hosts", "The network host directory and user hosts.", [
    Key("enabled", "bool", False, "Run the hosts directory and user hosts in this process."),
]))
