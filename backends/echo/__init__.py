"""The echo backend (placeholder until the SDK lands)."""


def main() -> None:
    raise SystemExit("not yet")
