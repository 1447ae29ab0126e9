"""Reading the configuration file a backend is started with.

The main instance passes the path of its own configuration file as the last
argument of every backend it spawns (Spectrum 2 does the same). A backend reads
two things from it: the ``[service]`` keys that concern it (``ping_interval``,
``max_frame_size``) and its own ``[backend]`` section, which the main instance
does not check and leaves entirely to the backend.

Reading is lenient on purpose: a backend may be handed a Spectrum 2 file full of
keys this project does not know, so unknown keys are kept, not refused. Values of
the ``[service]`` keys this project declares are parsed with their declared type.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transport.config import ConfigError, parse_ini, sections

DEFAULT_PING_INTERVAL = 20.0


@dataclass(frozen=True)
class BackendConfigFile:
    """The sections of a configuration file, as ``{section: {key: value}}``.

    A key given several times keeps its last value in :meth:`get` and all of
    them in :meth:`get_list`.
    """

    path: str | None = None
    values: Mapping[str, Mapping[str, list[str]]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> BackendConfigFile:
        """Read *path*; raises :class:`OSError` or :class:`ConfigError`."""
        text = Path(path).read_text(encoding="utf-8")
        return cls.from_text(text, str(path))

    @classmethod
    def from_text(cls, text: str, path: str | None = None) -> BackendConfigFile:
        raw = parse_ini(text, path or "<string>")
        values = {
            name: {key: [entry.value for entry in entries] for key, entries in section.entries.items()}
            for name, section in raw.items()
        }
        return cls(path, values)

    def section(self, name: str) -> dict[str, str]:
        """All keys of section *name* (empty when absent), last value of each."""
        return {key: values[-1] for key, values in self.values.get(name, {}).items()}

    def get(self, section: str, key: str, default: str | None = None) -> str | None:
        values = self.values.get(section, {}).get(key)
        return values[-1] if values else default

    def get_list(self, section: str, key: str) -> list[str]:
        """Every value of a repeated key, and comma-separated items split."""
        result: list[str] = []
        for value in self.values.get(section, {}).get(key, []):
            result.extend(item.strip() for item in value.split(",") if item.strip())
        return result

    def get_bool(self, section: str, key: str, default: bool = False) -> bool:
        value = self.get(section, key)
        if value is None:
            return default
        return value.strip().lower() in ("1", "true", "yes", "on")

    def get_int(self, section: str, key: str, default: int = 0) -> int:
        value = self.get(section, key)
        if value is None:
            return default
        try:
            return int(value.strip(), 0)
        except ValueError:
            raise ConfigError(f"[{section}] {key}: expected an integer, found {value!r}", self.path) from None

    @property
    def backend(self) -> dict[str, str]:
        """The backend's own ``[backend]`` section."""
        return self.section("backend")

    def service_value(self, key: str) -> Any:
        """A ``[service]`` key parsed with its declared type, or its default."""
        declared = sections()["service"].key(key)
        if declared is None:
            raise KeyError(f"[service] {key} is not a declared key")
        text = self.get("service", key)
        if text is None:
            return declared.default
        try:
            return declared.parse(text)
        except ValueError as e:
            raise ConfigError(f"[service] {key}: expected {e}, found {text!r}", self.path) from None

    @property
    def ping_interval(self) -> float:
        """``[service] ping_interval``: the main instance PINGs this often."""
        return float(self.service_value("ping_interval"))

    @property
    def max_frame_size(self) -> int:
        """``[service] max_frame_size``: the largest frame accepted from the main instance."""
        return int(self.service_value("max_frame_size"))
