"""Configuration keys of the mux connection manager (see transport.config)."""

from transport.config import Key, Section, declare

SECTION = declare(Section("mux", "Multiplexed channels over TLS and remote backends.", [
    Key("enabled", "bool", False, "Run the mux connection manager in this process."),
]))
