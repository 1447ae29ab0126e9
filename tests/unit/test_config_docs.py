"""docs/configuration.md is the reference generated from the key declarations."""

from pathlib import Path

from transport import config

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_current() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert text == config.markdown(), "regenerate: python -m transport.config --markdown > docs/configuration.md"


def test_non_finite_numbers_are_refused_with_the_line() -> None:
    """nan passes every bound check and inf makes timers never fire: both stop start-up."""
    import pytest

    for value in ("nan", "inf", "-inf", "1e999"):
        with pytest.raises(config.ConfigError, match=r"x\.ini:2: .*finite"):
            config.load_text(f"[service]\nping_interval = {value}\n", "x.ini")
