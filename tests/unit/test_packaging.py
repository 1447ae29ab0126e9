"""Every Python package of the checkout is listed in setup.cfg."""

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _listed() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return {line.strip() for line in cfg["options"]["packages"].splitlines() if line.strip()}


def _present() -> set[str]:
    found = set()
    for init in (ROOT / "transport").rglob("__init__.py"):
        found.add(".".join(init.parent.relative_to(ROOT).parts))
    for init in (ROOT / "backends").rglob("__init__.py"):
        if "node_modules" in init.parts:
            continue
        rel = init.parent.relative_to(ROOT / "backends").parts
        found.add(".".join(("transport_backends", *rel)))
    found.add("twisted.plugins")
    return found


def test_every_package_is_installed() -> None:
    assert _present() - _listed() == set()


def test_no_listed_package_is_missing() -> None:
    assert _listed() - _present() == set()
