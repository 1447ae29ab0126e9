"""pytest fixtures that start real peers (see tests/peers/*.py)."""
from tests.peers.backends import gateway_factory, main_instance  # noqa: F401
from tests.peers.chatd import make_chatd_stack  # noqa: F401
from tests.peers.postgres import *  # noqa: F403
