"""Backends bundled with Transport; each is also a console script."""
