"""Authentication shared by the side services (tokens, validators)."""
