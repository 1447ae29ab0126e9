"""The configuration file: INI with Spectrum 2's key names, strictly checked.

Every key is declared once, in a :class:`Section` - with its type, its default
and one line of documentation. The core's sections are declared here; each side
service and frontend declares its own section in its package's ``settings``
module (listed in :data:`SECTION_MODULES`), so that the package owns its keys.
``docs/configuration.md`` is generated from these declarations
(``python -m transport.config --markdown``) and a test keeps it in step.

Loading is strict: an unknown section or key, a repeated key that is not a list,
or a value of the wrong type stops start-up with ``file:line: what was expected``.
Sections listed in :data:`FREE_SECTIONS` (e.g. ``[backend]``) are not checked:
they belong to backends, which read the same file (it is passed to them as
their last argument, as Spectrum 2 does).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECTION_MODULES = (
    "transport.frontends.xmpp.settings",
    "transport.frontends.websocket.settings",
    "transport.chatd.settings",
    "transport.statusd.settings",
    "transport.hosts.settings",
    "transport.mux.settings",
    "transport.ops.settings",
)

#: Sections read by backends, passed through unchecked.
FREE_SECTIONS = ("backend",)


class ConfigError(Exception):
    """A configuration problem, with the place it was found."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line
        self.message = message


# ---------------------------------------------------------------------------
# value types


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError("a boolean (true/false, yes/no, on/off, 1/0)")


def _parse_int(text: str) -> int:
    try:
        return int(text.strip(), 0)
    except ValueError:
        raise ValueError("an integer") from None


def _parse_float(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError("a number") from None
    if not math.isfinite(value):  # nan passes every bound check; inf makes timers never fire
        raise ValueError("a finite number")
    return value


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2, "g": 1024**3, "gib": 1024**3}


def _parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError("a size in bytes, optionally with a unit (KiB, MiB, GiB)")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]


def _parse_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@dataclass(frozen=True)
class Key:
    """One configuration key.

    ``kind`` is one of ``str``, ``int``, ``float``, ``bool``, ``size``, ``list``
    (comma-separated, or the key repeated), ``choice`` (one of ``choices``),
    ``path`` (relative paths are taken from the config file's directory).
    ``minimum``/``maximum`` bound numbers. ``reloadable`` marks keys that a
    reload (SIGHUP) may change without a restart.
    """

    name: str
    kind: str
    default: Any
    doc: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    reloadable: bool = False
    secret: bool = False

    def parse(self, text: str) -> Any:
        kind = self.kind
        value: Any
        if kind == "str" or kind == "path":
            value = text.strip()
        elif kind == "int":
            value = _parse_int(text)
        elif kind == "float":
            value = _parse_float(text)
        elif kind == "bool":
            value = _parse_bool(text)
        elif kind == "size":
            value = _parse_size(text)
        elif kind == "list":
            value = _parse_list(text)
        elif kind == "choice":
            value = text.strip()
            if value not in self.choices:
                raise ValueError("one of " + ", ".join(self.choices))
        else:  # pragma: no cover - a declaration error
            raise AssertionError(f"unknown key kind {kind!r}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"a value of at least {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"a value of at most {self.maximum:g}")
        return value

    def describe_default(self) -> str:
        if self.secret and self.default:
            return "(secret)"
        if self.kind == "list":
            return ", ".join(self.default) if self.default else "(empty)"
        if self.kind == "bool":
            return "true" if self.default else "false"
        if self.default is None or self.default == "":
            return "(empty)"
        return str(self.default)


@dataclass
class Section:
    """A ``[name]`` section and the keys it may hold."""

    name: str
    doc: str
    keys: list[Key] = field(default_factory=list)
    #: Sections whose name is ``prefix:anything`` (e.g. ``[hosts:group1]``) use
    #: this declaration; set ``repeatable`` for them.
    repeatable: bool = False

    def key(self, name: str) -> Key | None:
        for k in self.keys:
            if k.name == name:
                return k
        return None


_SECTIONS: dict[str, Section] = {}
_validators: list[Callable[[Config], None]] = []


_ORIGIN: dict[str, str] = {}


def declare(section: Section) -> Section:
    """Register a section declaration (called by the ``settings`` modules)."""
    _SECTIONS[section.name] = section
    _ORIGIN[section.name] = sys._getframe(1).f_globals.get("__name__", "")
    return section


def add_validator(check: Callable[[Config], None]) -> None:
    """Register a cross-key check run after loading; it raises ConfigError."""
    _validators.append(check)


def sections() -> dict[str, Section]:
    """Every declared section, the side services' included."""
    for module in SECTION_MODULES:
        importlib.import_module(module)
    # the core's sections, then each module's in SECTION_MODULES order, whatever the import order was
    rank = {__name__: -1, **{m: i for i, m in enumerate(SECTION_MODULES)}}
    ordered = sorted(_SECTIONS.items(), key=lambda item: rank.get(_ORIGIN.get(item[0], ""), len(rank)))
    return dict(ordered)


# ---------------------------------------------------------------------------
# the core's sections


declare(Section("service", "The main instance: identity, backends and their supervision.", [
    Key("jid", "str", "localhost", "The transport's JID (XMPP component domain); also its name elsewhere."),
    Key("server", "str", "127.0.0.1", "XMPP server to connect the component to."),
    Key("port", "int", 5347, "XMPP server's component port.", minimum=1, maximum=65535),
    Key("password", "str", "", "Component secret shared with the XMPP server.", secret=True),
    Key("protocol", "str", "echo", "Name of the legacy network, shown in disco identity and the web client."),
    Key("backend", "str", "transport-backend-echo",
        "Backend command line (split like a shell would). Spectrum 2's arguments are appended."),
    Key("backend_host", "str", "127.0.0.1", "Address the backend port listens on."),
    Key("backend_port", "int", 0, "Port backends connect to; 0 picks a free one.", minimum=0, maximum=65535),
    Key("portfile", "path", "", "When set, the chosen backend port is written to this file."),
    Key("users_per_backend", "int", 100, "Users assigned to one backend process before another is spawned.",
        minimum=1, reloadable=True),
    Key("ping_interval", "float", 20.0,
        "Seconds between PINGs; a backend that has not answered the previous one is killed.", minimum=0.01),
    Key("max_frame_size", "size", 16 * 1024 * 1024, "Largest backend frame accepted; a larger one closes the link.",
        minimum=64, reloadable=True),
    Key("max_queued_per_user", "int", 500,
        "Messages queued per user while their backend session is (re)starting; beyond it the sender gets an error.",
        minimum=0, reloadable=True),
    Key("login_attempts", "int", 3, "Logins tried per user after backend crashes before giving up.", minimum=1),
    Key("login_retry_delay", "float", 1.0, "First delay before a re-login; doubles per attempt.", minimum=0.0),
    Key("login_timeout", "float", 60.0, "Seconds a backend has to answer LOGIN with CONNECTED or DISCONNECTED.",
        minimum=0.1),
    Key("backend_start_timeout", "float", 30.0, "Seconds a spawned backend has to connect and answer its first PING.",
        minimum=0.1),
    Key("shutdown_grace", "float", 5.0, "Seconds backends get after EXIT before SIGTERM, and again before SIGKILL.",
        minimum=0.0),
    Key("max_backends", "int", 0, "Upper bound on backend processes; 0 = no bound.", minimum=0, reloadable=True),
    Key("start_backends", "int", 1,
        "Backends spawned at start-up, before any login (their BACKEND_CONFIG tells frontends the features).",
        minimum=0),
    Key("backend_log_dir", "path", "", "When set, each backend's output goes to backend-N.log there instead of the log."),
    Key("state_dir", "path", "state", "Directory for the database, identities, the admin socket and other state."),
    Key("admin_socket", "str", "",
        "Admin endpoint (endpoint string); default: a UNIX socket admin.sock in state_dir, mode 0600."),
    Key("admin_token", "str", "", "When set, admin clients must present this token (in addition to socket permissions).",
        secret=True),
    Key("admin_jid", "list", [], "JIDs allowed to use the admin ad-hoc commands."),
    Key("web_port", "str", "tcp:8080:interface=127.0.0.1",
        "Endpoint of the web port (web client, WebSocket, status page, metrics); empty disables it."),
    # Spectrum 2 keys accepted so that its files load; transport.ops warns about each one set.
    Key("user", "str", "", "Spectrum 2 compatibility, ignored: run the service as that user (systemd User=)."),
    Key("group", "str", "", "Spectrum 2 compatibility, ignored: run the service as that group (systemd Group=)."),
    Key("pidfile", "str", "", "Spectrum 2 compatibility, ignored: twistd --pidfile writes the pid file."),
    Key("server_mode", "bool", False,
        "Spectrum 2 compatibility: only false (component mode) is supported; true stops start-up."),
    Key("cert", "str", "", "Spectrum 2 compatibility (server mode certificate), ignored."),
    Key("cert_password", "str", "", "Spectrum 2 compatibility (server mode certificate), ignored.", secret=True),
    Key("admin_password", "str", "", "Spectrum 2 compatibility, ignored: use admin_jid, admin_token and transportctl.",
        secret=True),
    Key("web_directory", "str", "", "Spectrum 2 compatibility (file transfer storage), ignored."),
    Key("web_url", "str", "", "Spectrum 2 compatibility (file transfer URL), ignored."),
]))

declare(Section("identity", "How the gateway presents itself (XEP-0030 identity, web client title).", [
    Key("name", "str", "Transport", "Human-readable name."),
    Key("category", "str", "gateway", "Disco identity category."),
    Key("type", "str", "", "Disco identity type; default: [service] protocol."),
]))

declare(Section("database", "Where registrations, settings, buddies and history are kept.", [
    Key("type", "choice", "sqlite3", "Storage engine.", choices=("sqlite3", "sqlite", "postgresql", "pqxx")),
    Key("database", "str", "transport.sqlite3",
        "SQLite: file (relative to state_dir). PostgreSQL: database name or a full conninfo/URI."),
    Key("server", "str", "", "PostgreSQL host (empty: local socket / conninfo default)."),
    Key("port", "int", 0, "PostgreSQL port (0: default).", minimum=0, maximum=65535),
    Key("user", "str", "", "PostgreSQL user."),
    Key("password", "str", "", "PostgreSQL password.", secret=True),
    Key("prefix", "str", "",
        "Accepted so Spectrum 2 configs load; ignored (tables are named per component). To share one PostgreSQL "
        "database between instances give each its own schema: options=-csearch_path=NAME in the conninfo."),
    Key("encryption_key", "str", "",
        "When set, legacy and room passwords are encrypted at rest (AES-GCM, key derived with scrypt); empty: "
        "stored in plain text. Once set, the database cannot be opened without it.", secret=True),
    Key("pool_size", "int", 4, "PostgreSQL connections in the pool (SQLite always uses one writer).", minimum=1),
]))

declare(Section("registration", "Who may register with the gateway.", [
    Key("enable_public_registration", "bool", True, "Anyone may register (else only auto_register / admins).",
        reloadable=True),
    Key("allowed_usernames", "str", "", "Regular expression legacy names must match (empty: any).", reloadable=True),
    Key("username_mask", "str", "", "Regular expression frontend user ids must match (empty: any).",
        reloadable=True),
    Key("auto_register", "bool", False, "Register users automatically at their first login.", reloadable=True),
    Key("require_password", "bool", False, "Refuse registrations without a legacy password.", reloadable=True),
]))

declare(Section("logging", "Log output.", [
    Key("level", "choice", "info", "Minimum level logged.", choices=("debug", "info", "warn", "error", "critical"),
        reloadable=True),
    Key("format", "choice", "text", "text or json (one JSON object per line).", choices=("text", "json")),
    Key("file", "path", "", "Log file (rotated); empty logs to twistd's log (stdout with -n)."),
    Key("backend_output", "bool", True, "Copy backends' stdout/stderr into the log, tagged with the backend id."),
    Key("levels", "list", [],
        "Per-subsystem levels, NAME:LEVEL (e.g. transport.backend:debug, backend:warn); NAME is a logger "
        "namespace and covers its sub-namespaces (NAME.x) and backend output (NAME-N).", reloadable=True),
    Key("max_size", "size", 10 * 1024 * 1024, "Rotate the log file when it reaches this size; 0 never rotates.",
        minimum=0),
    Key("keep", "int", 5, "Rotated log files kept (FILE.1 is the newest); 0 keeps every one.", minimum=0),
    Key("timestamps", "choice", "auto",
        "Timestamps on text lines; auto omits them when stdout is the systemd journal (JOURNAL_STREAM).",
        choices=("auto", "yes", "no")),
    Key("config", "str", "", "Spectrum 2 compatibility (log4cxx file), ignored: use level, levels and file."),
    Key("backend_config", "str", "",
        "Spectrum 2 compatibility (backends' log4cxx file), ignored: backend output is logged as backend-N."),
]))


# ---------------------------------------------------------------------------
# parsing


@dataclass
class RawEntry:
    value: str
    line: int


@dataclass
class RawSection:
    name: str
    line: int
    entries: dict[str, list[RawEntry]] = field(default_factory=dict)


_SECTION_RE = re.compile(r"^\[\s*([^\]]+?)\s*\]\s*$")
_KEY_RE = re.compile(r"^([A-Za-z0-9_.\-]+)\s*[=:]\s*(.*)$")


def parse_ini(text: str, path: str = "<string>") -> dict[str, RawSection]:
    """Parse INI text into sections with the line of every value.

    Comments start with ``#`` or ``;`` at the beginning of a line. A key may be
    repeated (its values are kept in order). Keys before any section are an error.
    """
    result: dict[str, RawSection] = {}
    current: RawSection | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        m = _SECTION_RE.match(line)
        if m:
            name = m.group(1)
            current = result.get(name)
            if current is None:
                current = result[name] = RawSection(name, number)
            continue
        m = _KEY_RE.match(line)
        if not m:
            raise ConfigError(f"expected '[section]' or 'key = value', found {line[:60]!r}", path, number)
        if current is None:
            raise ConfigError(f"key {m.group(1)!r} before any [section]", path, number)
        current.entries.setdefault(m.group(1), []).append(RawEntry(m.group(2).strip(), number))
    return result


class Config:
    """The loaded configuration: typed values for every declared key.

    ``config.get("service", "ping_interval")`` or ``config["service"]["ping_interval"]``.
    Repeatable sections (``[hosts:NAME]``) are found with :meth:`instances`.
    """

    def __init__(
        self,
        values: dict[str, dict[str, Any]],
        path: str | None,
        lines: dict[tuple[str, str], int],
        free: dict[str, dict[str, str]],
    ) -> None:
        self._values = values
        self.path = path
        self.lines = lines
        self.free = free
        #: ``section.key=value`` overrides given on the command line, after the file.
        self.overrides: tuple[str, ...] = ()

    @property
    def directory(self) -> Path:
        return Path(self.path).resolve().parent if self.path else Path.cwd()

    def __getitem__(self, section: str) -> Mapping[str, Any]:
        return self._values[section]

    def __contains__(self, section: str) -> bool:
        return section in self._values

    def get(self, section: str, key: str) -> Any:
        return self._values[section][key]

    def instances(self, prefix: str) -> dict[str, Mapping[str, Any]]:
        """Repeatable sections ``[prefix:NAME]`` as ``{NAME: values}``."""
        out: dict[str, Mapping[str, Any]] = {}
        for name, values in self._values.items():
            if name.startswith(prefix + ":"):
                out[name.split(":", 1)[1]] = values
        return out

    def replace(self, section: str, key: str, value: Any, line: int | None = None) -> None:
        """Set one value in place (a reload applying a ``reloadable`` key; parts read values live)."""
        self._values[section][key] = value
        if line:
            self.lines[(section, key)] = line
        else:
            self.lines.pop((section, key), None)

    def is_set(self, section: str, key: str) -> bool:
        """Whether the file set the key (rather than the default applying)."""
        return (section, key) in self.lines

    def where(self, section: str, key: str) -> str:
        """``file:line`` of a key, for messages about its value."""
        line = self.lines.get((section, key))
        return f"{self.path or '<defaults>'}:{line}" if line else f"{self.path or '<defaults>'} [{section}] {key}"

    def resolve_path(self, value: str, base: Path | None = None) -> Path:
        """A path value: absolute as is, else relative to *base* or the config file's directory."""
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (base or self.directory) / p

    @property
    def state_dir(self) -> Path:
        return self.resolve_path(self.get("service", "state_dir"))


def _declaration_for(name: str, declared: Mapping[str, Section]) -> Section | None:
    if name in declared:
        return declared[name] if not declared[name].repeatable else None
    prefix = name.split(":", 1)[0]
    if ":" in name and prefix in declared and declared[prefix].repeatable:
        return declared[prefix]
    return None


def load_text(text: str, path: str | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load configuration from INI *text* (with *path* for messages and relative paths).

    *overrides* are ``section.key=value`` strings applied after the file
    (Spectrum 2 accepts such arguments too).
    """
    shown = path or "<string>"
    overrides = tuple(overrides)
    raw = parse_ini(text, shown)
    for item in overrides:
        m = re.fullmatch(r"([^.=]+)\.([^=]+)=(.*)", item)
        if not m:
            raise ConfigError(f"override {item!r} is not section.key=value")
        rsection = raw.setdefault(m.group(1), RawSection(m.group(1), 0))
        rsection.entries[m.group(2)] = [RawEntry(m.group(3), 0)]
    declared = sections()
    values: dict[str, dict[str, Any]] = {}
    lines: dict[tuple[str, str], int] = {}
    free: dict[str, dict[str, str]] = {}
    for name, section in declared.items():
        if not section.repeatable:
            values[name] = {k.name: _copy_default(k.default) for k in section.keys}
    for name, rsec in raw.items():
        if name in FREE_SECTIONS:
            free[name] = {k: v[-1].value for k, v in rsec.entries.items()}
            continue
        decl = _declaration_for(name, declared)
        if decl is None:
            known = ", ".join(sorted(declared))
            raise ConfigError(f"unknown section [{name}]; expected one of: {known}", shown, rsec.line or None)
        target = values.setdefault(name, {k.name: _copy_default(k.default) for k in decl.keys})
        for key_name, entries in rsec.entries.items():
            key = decl.key(key_name)
            if key is None:
                known = ", ".join(k.name for k in decl.keys)
                raise ConfigError(f"unknown key {key_name!r} in [{name}]; expected one of: {known}",
                                  shown, entries[0].line or None)
            if len(entries) > 1 and key.kind != "list":
                raise ConfigError(f"key {key_name!r} repeated in [{name}] (first at line {entries[0].line})",
                                  shown, entries[1].line or None)
            try:
                if key.kind == "list":
                    target[key_name] = [item for e in entries for item in key.parse(e.value)]
                else:
                    target[key_name] = key.parse(entries[0].value)
            except ValueError as e:
                raise ConfigError(f"[{name}] {key_name} = {entries[-1].value!r}: expected {e}",
                                  shown, entries[-1].line or None) from None
            lines[(name, key_name)] = entries[0].line
    config = Config(values, path, lines, free)
    config.overrides = overrides
    for check in list(_validators):
        check(config)
    return config


def load(path: str | os.PathLike[str] | None, overrides: Iterable[str] = ()) -> Config:
    """Load the configuration file at *path* (``None``: every default)."""
    if path is None:
        return load_text("", None, overrides)
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read the configuration file: {e.strerror}", p) from None
    except UnicodeDecodeError:
        raise ConfigError("the configuration file is not UTF-8", p) from None
    return load_text(text, p, overrides)


def _copy_default(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _check_regexes(config: Config) -> None:
    for key in ("allowed_usernames", "username_mask"):
        pattern = config.get("registration", key)
        if pattern:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(f"[registration] {key}: expected a regular expression ({e})",
                                  config.path, config.lines.get(("registration", key))) from None


add_validator(_check_regexes)


def _check_admin_endpoint(config: Config) -> None:
    # The admin commands register and unregister users: only a UNIX socket (mode 0600) is
    # private enough to go without a token.
    endpoint = str(config.get("service", "admin_socket")).strip()
    kind = endpoint.split(":", 1)[0].lower()
    private = kind == "unix" or (kind == "systemd" and "domain=unix" in endpoint.lower())
    if endpoint and not private and not config.get("service", "admin_token"):
        raise ConfigError("[service] admin_socket: a network endpoint needs [service] admin_token",
                          config.path, config.lines.get(("service", "admin_socket")) or None)


add_validator(_check_admin_endpoint)


# ---------------------------------------------------------------------------
# documentation


def markdown() -> str:
    """``docs/configuration.md``, generated from the declarations."""
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m transport.config --markdown > docs/configuration.md`; do not edit. -->",
        "",
        "One INI file, given with `twistd -n transport -c FILE` (without `-c`, every default applies).",
        "Key names follow Spectrum 2 where it has them. An unknown section or key, a repeated key that is",
        "not a list, or a bad value stops start-up with `file:line` and what was expected.",
        "Relative paths are taken from the configuration file's directory. Lists are comma-separated, or",
        "the key repeated. Sizes accept KiB/MiB/GiB. Keys marked *reload* take effect on SIGHUP /",
        "`transportctl reload`; the others need a restart. The section "
        + ", ".join(f"`[{s}]`" for s in FREE_SECTIONS)
        + " is not checked: it belongs to the backends, which receive the file's path.",
        "",
    ]
    for section in sections().values():
        title = f"[{section.name}:NAME]" if section.repeatable else f"[{section.name}]"
        out += [f"## `{title}`", "", section.doc, "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for k in section.keys:
            kind = k.kind if k.kind != "choice" else " / ".join(k.choices)
            if k.minimum is not None or k.maximum is not None:
                lo = "" if k.minimum is None else f"{k.minimum:g}"
                hi = "" if k.maximum is None else f"{k.maximum:g}"
                kind += f" ({lo}…{hi})"
            note = " *reload*" if k.reloadable else ""
            out.append(f"| `{k.name}` | {kind} | `{k.describe_default()}` | {k.doc}{note} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a configuration file, or print the reference.")
    parser.add_argument("file", nargs="?")
    parser.add_argument("--markdown", action="store_true", help="print docs/configuration.md")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown())
        return 0
    try:
        load(args.file)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{args.file or '<defaults>'}: ok")
    return 0


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: the settings
    # modules register their sections with transport.config.
    from transport.config import main as _main

    sys.exit(_main())
