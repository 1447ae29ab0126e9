"""What a backend announced about itself in TYPE_BACKEND_CONFIG.

The payload is INI text (Spectrum 2's format)::

    [registration]
    needPassword=1
    needRegistration=0
    extraField=server

    [features]
    muc=1
    rawxml=0
    receipts=1
    send_buddies_on_login=0

:func:`parse_backend_config` reads it leniently (a backend's typo must not take
the gateway down): unknown keys are kept in ``extra``, unreadable lines skipped,
the text is bounded by the frame size limit of the link.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BackendFeatures:
    """Capabilities announced by the backends (all ``False``/empty until one announces)."""

    need_password: bool = True
    need_registration: bool = False
    extra_fields: tuple[str, ...] = ()
    muc: bool = False
    rawxml: bool = False
    disable_jid_escaping: bool = False
    receipts: bool = False
    send_buddies_on_login: bool = False
    #: Every ``section.key`` found, as text, including the ones above.
    raw: dict[str, str] = field(default_factory=dict)


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def parse_backend_config(text: str) -> BackendFeatures:
    """Parse a BACKEND_CONFIG payload.

    >>> f = parse_backend_config("[features]\\nmuc=1\\nreceipts=true\\n[registration]\\nneedPassword=0")
    >>> (f.muc, f.receipts, f.need_password, f.rawxml)
    (True, True, False, False)
    """
    raw: dict[str, str] = {}
    extra_fields: list[str] = []
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        raw[f"{section}.{key}"] = value
        if section == "registration" and key == "extraField" and value:
            extra_fields.append(value)

    def flag(name: str, default: bool) -> bool:
        return _truthy(raw[name]) if name in raw else default

    return BackendFeatures(
        need_password=flag("registration.needPassword", True),
        need_registration=flag("registration.needRegistration", False),
        extra_fields=tuple(extra_fields),
        muc=flag("features.muc", False),
        rawxml=flag("features.rawxml", False),
        disable_jid_escaping=flag("features.disable_jid_escaping", False),
        receipts=flag("features.receipts", False),
        send_buddies_on_login=flag("features.send_buddies_on_login", False),
        raw=raw,
    )
