"""The configuration file: ``parse_ini`` and ``load_text`` on arbitrary and on almost-right INI text."""

from __future__ import annotations

import math
from collections.abc import Iterator

from tests.fuzz.script import build, records
from tests.fuzz.targets import target
from transport.config import Config, ConfigError, load_text, parse_ini, sections

# Declared at import so that atheris instruments the settings modules too.
SECTIONS = sections()
NAMES = sorted(SECTIONS) + ["backend", "nope"]
VALUES = ["", "0", "1", "-1", "65535", "65536", "0.5", "1e400", "nan", "inf", "true", "no", "maybe", "1 KiB",
          "16 MiB", "3 GiB", "1 KB", "a, b, c", ",", "tcp:0", "tls:443:privateKey=x", "/tmp/x", "relative/x",
          "(", "[a-z]+", ".*", "ptop://127.0.0.1:1", "ws://x", "debug", "info", "transport=debug", "=", "x" * 300,
          "\u00e9", "0x10", "1_000", "  7  "]

OP_RAW = 0       # a raw line
OP_SECTION = 1   # [section] (payload[0] picks; payload[1] odd: a :NAME instance)
OP_KEY = 2       # key = value in the current section (payload[0] picks the key, payload[1] the value)
OP_OVERRIDE = 3  # a section.key=value override (payload as text)
OP_COMMENT = 4


def _text(payload: bytes) -> str:
    return payload.decode("utf-8", "replace")


def render(data: bytes) -> tuple[str, list[str]]:
    """The INI text and the overrides a script describes."""
    lines: list[str] = []
    overrides: list[str] = []
    section = SECTIONS.get("service")
    for op, payload in records(data):
        kind = op % 5
        if kind == OP_SECTION and payload:
            name = NAMES[payload[0] % len(NAMES)]
            declared = SECTIONS.get(name)
            suffix = f":{_text(payload[2:]) or 'x'}" if len(payload) > 1 and payload[1] & 1 else ""
            if declared is not None and declared.repeatable and not suffix:
                suffix = ":one"
            lines.append(f"[{name}{suffix}]")
            section = declared
        elif kind == OP_KEY and payload and section is not None and section.keys:
            key = section.keys[payload[0] % len(section.keys)]
            value = VALUES[payload[1] % len(VALUES)] if len(payload) > 1 and payload[1] < 0x80 else _text(payload[2:])
            lines.append(f"{key.name} {'=:'[op & 1]} {value}")
        elif kind == OP_OVERRIDE:
            overrides.append(_text(payload))
        elif kind == OP_COMMENT:
            lines.append(("#", ";", "  ", "")[op >> 6] + _text(payload))
        else:
            lines.append(_text(payload))
    return "\n".join(lines) + "\n", overrides


def _seeds() -> Iterator[bytes]:
    yield build([(OP_RAW, b"[service]"), (OP_RAW, b"jid = gw.example.org"), (OP_RAW, b"port = 5347"),
                 (OP_RAW, b"[database]"), (OP_RAW, b"type = sqlite")])
    yield build([(OP_RAW, b"[service]\njid=a\njid=b")])
    yield build([(OP_RAW, b"key = before any section")])
    yield build([(OP_OVERRIDE, b"service.jid=x"), (OP_OVERRIDE, b"nodot")])
    for name, declared in SECTIONS.items():  # every key at its default: a file that loads
        items = [(OP_RAW, f"[{name}{':one' if declared.repeatable else ''}]".encode())]
        for key in declared.keys:
            items.append((OP_RAW, f"{key.name} = {_default_text(key.kind, key.default)}".encode()))
        yield build(items)
    for i, name in enumerate(NAMES):
        items = [(OP_SECTION, bytes([i, 0]))]
        declared = SECTIONS.get(name)
        for k in range(len(declared.keys) if declared else 1):
            items.append((OP_KEY, bytes([k, (k * 7) % len(VALUES)])))
        yield build(items)


@target("config_ini", _seeds)
def config_ini(data: bytes) -> None:
    """``parse_ini`` and ``load_text`` (every declared section, the validators included).

    Contract: both raise only ``ConfigError``, whose line (when given) is a
    line of the text. Invariants: a text that loads loads the same way twice;
    every declared key then has a value of its kind (numbers finite).
    """
    text, overrides = render(data)
    n_lines = len(text.splitlines())
    for source in ((text, []), (text, overrides)):
        try:
            parse_ini(source[0])
            config = load_text(source[0], "fuzz.ini", source[1])
        except ConfigError as e:
            assert e.line is None or 0 <= e.line <= n_lines, (e.line, n_lines)
            continue
        assert isinstance(config, Config)
        again = load_text(source[0], "fuzz.ini", source[1])
        for name, section in SECTIONS.items():
            if section.repeatable:
                continue
            for key in section.keys:
                value = config[name][key.name]
                where = f"[{name}] {key.name}"
                assert value == again[name][key.name] or value != value, where  # (NaN is checked below)
                _check_kind(key.kind, value, where)


def _default_text(kind: str, value: object) -> str:
    if kind == "bool":
        return "true" if value else "false"
    if kind == "list":
        return ", ".join(str(v) for v in value)  # type: ignore[attr-defined]
    return "" if value is None else str(value)


def _check_kind(kind: str, value: object, where: str) -> None:
    expected: dict[str, type | tuple[type, ...]] = {"str": str, "path": str, "choice": str, "int": int,
                                                      "float": (int, float), "bool": bool, "size": int,
                                                      "list": list}
    assert isinstance(value, expected[kind]), f"{where}: {value!r} is not a {kind}"
    if kind == "float":
        assert math.isfinite(value), f"{where} = {value!r} was accepted: a number key must be finite"  # type: ignore
