"""docs/configuration.md is the reference generated from the key declarations."""

from pathlib import Path

from transport import config

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_current() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert text == config.markdown(), "regenerate: python -m transport.config --markdown > docs/configuration.md"
