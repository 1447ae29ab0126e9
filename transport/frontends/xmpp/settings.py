"""Configuration keys of the XMPP component frontend (see transport.config)."""

from transport.config import Key, Section, declare

SECTION = declare(Section("xmpp", "The XEP-0114 component frontend (connection keys are in [service]).", [
    Key("enabled", "bool", False, "Run the XMPP component frontend in this process."),
]))
