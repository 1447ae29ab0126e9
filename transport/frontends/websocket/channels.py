"""Local channels and their role-based permissions.

A channel's permission for an action (``view``, ``send``, ``delete``,
``delete_own``, ``edit_own``, ``react``) is a list of rules. A rule ``role``
allows users holding that role, ``!role`` denies them; the first rule the user
matches decides, and a user matching no rule is denied. The ``owner`` role
bypasses every rule.

>>> perms = Permissions({"send": ("!muted", "user")})
>>> perms.allows("send", ("user",)), perms.allows("send", ("muted", "user")), perms.allows("send", ("guest",))
(True, False, False)
>>> perms.allows("send", ("owner", "muted"))
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ACTIONS = ("view", "send", "delete", "delete_own", "edit_own", "react")
OWNER = "owner"
DEFAULT_RULES: dict[str, tuple[str, ...]] = {
    "view": ("user",), "send": ("user",), "delete": ("admin",), "delete_own": ("user",), "edit_own": ("user",),
    "react": ("user",),
}


@dataclass(frozen=True)
class Permissions:
    """The rules of one channel, per action."""

    rules: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def allows(self, action: str, roles: Iterable[str]) -> bool:
        held = set(roles)
        if OWNER in held:
            return True
        for rule in self.rules.get(action, ()):
            if rule.startswith("!"):
                if rule[1:] in held:
                    return False
            elif rule in held:
                return True
        return False

    def as_json(self) -> dict[str, list[str]]:
        return {action: list(self.rules.get(action, ())) for action in ACTIONS}


@dataclass(frozen=True)
class LocalChannel:
    """A channel configured by the admin, shared by all users of this server."""

    name: str
    type: str = "text"
    display_name: str = ""
    description: str = ""
    icon: str = ""
    permissions: Permissions = field(default_factory=lambda: Permissions(DEFAULT_RULES))

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "display_name": self.display_name or self.name,
                               "description": self.description, "permissions": self.permissions.as_json()}
        if self.icon:
            out["icon"] = self.icon
        return out


def channels_from_config(config: Any) -> list[LocalChannel]:
    """The ``[websocket] channels`` list with their ``[websocket-channel:NAME]`` settings, in order."""
    extra = config.instances("websocket-channel")
    out = []
    for item in config["websocket"]["channels"]:
        name, _, kind = item.partition(":")
        settings = extra.get(name)
        if settings is None:
            out.append(LocalChannel(name, kind or "text"))
            continue
        rules = {action: tuple(settings[action]) for action in ACTIONS}
        out.append(LocalChannel(name, kind or "text", settings["display_name"], settings["description"],
                                settings["icon"], Permissions(rules)))
    return out
