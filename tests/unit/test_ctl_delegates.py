"""``transportctl NAME ...`` reaches the side services' own command lines with the same -c."""

from __future__ import annotations

from pathlib import Path

import pytest

from transport import config as configuration
from transport.cli import ctl
from transport.frontends.websocket.tokens import load_secret, verify_token


def test_websocket_token_through_transportctl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = tmp_path / "transport.ini"
    ini.write_text(f"[service]\nstate_dir = {tmp_path / 'state'}\n")
    assert ctl.main(["-c", str(ini), "websocket", "token", "bob"]) == 0
    token = capsys.readouterr().out.strip()
    secret = load_secret(configuration.load(str(ini)))
    assert verify_token(secret, token) == "bob"


def test_not_a_delegate_goes_to_the_admin_endpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = tmp_path / "transport.ini"
    ini.write_text(f"[service]\nstate_dir = {tmp_path / 'state'}\n")
    # no main instance runs: the admin query fails as "unreachable", it is not taken for a side service
    assert ctl.main(["-c", str(ini), "--timeout", "2", "status"]) == ctl.EXIT_UNREACHABLE
    assert "cannot reach" in capsys.readouterr().err


def test_delegate_parsing() -> None:
    assert ctl._delegate(["status"]) is None
    assert ctl._delegate(["-c", "x.ini", "online_users"]) is None
