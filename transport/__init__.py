"""Transport: a gateway framework on Twisted.

A main instance spawns backend processes (Spectrum 2's protocol), presents their
users through frontends (XMPP component, OriginChats WebSocket) and can run the
side services (hosts, chatd/statusd, mux) in the same process.
"""

__version__ = "0.1.0"
