"""The gateway core's service (being built: see transport.core)."""

from __future__ import annotations

from typing import Any

from twisted.application import service


def make_service(context: Any) -> service.IService:
    return service.MultiService()
