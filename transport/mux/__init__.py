"""Multiplexed channels over TLS (seed 002: Jami's ConnectionManager, as refined by dhtnet).

Layers, bottom up:

* :mod:`transport.mux.codec` - frames ``length u16 | channel u16 | body`` and the msgpack control messages;
* :mod:`transport.mux.multiplexer` - the sans-I/O state machine of one connection (ids, requests, EOF, beacons);
* :mod:`transport.mux.channel` - :class:`ChannelSocket`, a channel as a Twisted transport with flow control;
* :mod:`transport.mux.protocol` - :class:`MultiplexedSocket`, the Twisted protocol inside the TLS connection;
* :mod:`transport.mux.identity` - device keys and certificates, device ids, the account CA, TLS verification;
* :mod:`transport.mux.manager` - :class:`ConnectionManager`: ``connect_device``, one connection per device;
* :mod:`transport.mux.service` / :mod:`transport.mux.backend_host` - remote backends over mux channels.

See ``docs/mux.md``.
"""
