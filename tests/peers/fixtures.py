"""pytest fixtures that start real peers (see tests/peers/*.py)."""
