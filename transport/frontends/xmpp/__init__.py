"""The XMPP frontend: the gateway as an XEP-0114 component of an existing XMPP server.

:mod:`.component` is the link to the server, :mod:`.frontend` routes stanzas and
events, and one module per concern translates (:mod:`.disco`, :mod:`.ping`,
:mod:`.register`, :mod:`.login`, :mod:`.roster`, :mod:`.message`, :mod:`.vcard`,
:mod:`.muc`, :mod:`.commands`); :mod:`.escaping` maps legacy names to JIDs.
User documentation: ``docs/xmpp.md``.
"""
