"""Log level names and the ``[logging] levels`` syntax (``NAME:LEVEL, ...``).

Kept apart from :mod:`transport.ops.settings` so that importing the logging code
does not declare configuration sections (their order in the docs follows
``transport.config.SECTION_MODULES``).
"""

from __future__ import annotations

LEVEL_NAMES = ("debug", "info", "warn", "error", "critical")


def parse_levels(entries: list[str]) -> dict[str, str]:
    """``["transport.backend:debug", ...]`` as ``{namespace: level}``; ValueError names the bad entry."""
    out: dict[str, str] = {}
    for entry in entries:
        name, sep, level = entry.rpartition(":")
        name, level = name.strip(), level.strip().lower()
        if level == "warning":
            level = "warn"
        if not sep or not name or level not in LEVEL_NAMES:
            raise ValueError(f"{entry!r} is not NAME:LEVEL with LEVEL one of {', '.join(LEVEL_NAMES)}")
        out[name] = level
    return out
