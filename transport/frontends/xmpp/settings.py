"""Configuration keys of the XMPP component frontend (see transport.config)."""

from transport.config import Key, Section, declare

SECTION = declare(Section("xmpp", "The XEP-0114 component frontend (connection keys are in [service]).", [
    Key("enabled", "bool", False, "Run the XMPP component frontend in this process."),
    Key("reconnect_initial_delay", "float", 1.0,
        "Seconds before the first reconnection to the XMPP server; doubles per failed attempt.", minimum=0.01),
    Key("reconnect_max_delay", "float", 60.0, "Upper bound of the reconnection delay in seconds.", minimum=0.01),
    Key("reconnect_jitter", "float", 0.2,
        "Random fraction added to each reconnection delay (0.2 = up to 20% more), so gateways do not reconnect "
        "in step.", minimum=0.0, maximum=1.0),
    Key("keepalive_interval", "float", 60.0,
        "Seconds between whitespace keepalives on the component link (keeps NATs open, finds dead links); "
        "0 disables.", minimum=0.0),
    Key("exit_on_auth_failure", "bool", True,
        "Stop the whole process when the XMPP server rejects the component secret (else only the component "
        "stops)."),
    Key("max_pending_stanzas", "int", 5000,
        "Stanzas for users kept while the component is disconnected (sent after it reconnects); beyond it they "
        "are discarded and counted.", minimum=0),
    Key("session_grace", "float", 30.0,
        "Seconds after the component reconnected during which users' resources must show up again (answering "
        "the gateway's presence probe) before their sessions are closed.", minimum=0.0, reloadable=True),
    Key("rejoin_window", "float", 300.0,
        "Rooms a user was in when their resources went offline (client or server restart) are joined again when "
        "they come back within this many seconds; 0 disables.", minimum=0.0, reloadable=True),
    Key("vcard_timeout", "float", 40.0, "Seconds a buddy's vCard may take before the client gets "
        "remote-server-timeout.", minimum=0.1, reloadable=True),
    Key("caps_node", "str", "https://github.com/transport/transport",
        "XEP-0115 node advertised in the transport's presence."),
    Key("max_rooms_listed", "int", 500, "Rooms listed in disco#items on the transport.", minimum=0,
        reloadable=True),
]))
