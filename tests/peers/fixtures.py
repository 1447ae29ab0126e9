"""pytest fixtures that start real peers (see tests/peers/*.py)."""
from tests.peers.backends import gateway_factory, main_instance  # noqa: F401
from tests.peers.chatd import make_chatd_stack  # noqa: F401
from tests.peers.ircd import ircd  # noqa: F401
from tests.peers.postgres import *  # noqa: F403
from tests.peers.prosody import prosody_server, xmpp_loop  # noqa: F401
