"""pytest fixtures that start real peers (see tests/peers/*.py)."""
from tests.peers.postgres import *  # noqa: F403
