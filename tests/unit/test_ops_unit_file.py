"""The systemd template unit: shipped twice (docs/ and the package), identical, and verified by systemd."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import transport.ops
from transport import config as configuration

ROOT = Path(__file__).resolve().parents[2]
DOCS_UNIT = ROOT / "docs" / "transport@.service"
PACKAGED_UNIT = Path(transport.ops.__file__).resolve().parent / "transport@.service"


def _twistd() -> str:
    found = Path(sys.executable).parent / "twistd"
    if found.exists():
        return str(found)
    which = shutil.which("twistd")
    assert which, "twistd is not installed"
    return os.path.realpath(which)


def _directives() -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(DOCS_UNIT.read_text())
    return {s: dict(parser[s]) for s in parser.sections()}


def test_the_packaged_unit_is_the_documented_one() -> None:
    assert PACKAGED_UNIT.read_bytes() == DOCS_UNIT.read_bytes()


def test_systemd_analyze_verify_accepts_it(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed (Debian package systemd, scripts/install-test-deps)"
    text = DOCS_UNIT.read_text()
    # the unit names the usual install path; the test copy names the twistd that is installed here
    text, n = re.subn(r"^ExecStart=/usr/local/bin/twistd ", f"ExecStart={_twistd()} ", text, flags=re.M)
    assert n == 1
    unit = tmp_path / "transport@test.service"
    unit.write_text(text)
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # unknown or misspelt options are only warnings for systemd: there must be none
    complaints = [line for line in result.stderr.splitlines() if "transport@test.service" in line]
    assert complaints == [], result.stderr


def test_the_unit_runs_a_notify_service_with_hardening() -> None:
    service = _directives()["Service"]
    assert service["Type"] == "notify"
    assert service["ExecStart"].split()[1:] == ["--nodaemon", "--pidfile=", "transport", "-c",
                                                "/etc/transport/%i.ini"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert service["StateDirectory"] == "transport/%i"
    assert service["KillMode"] == "mixed"
    assert service["User"] == "transport"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "RestrictSUIDSGID"):
        assert service[key] == "yes", key
    assert service["ProtectSystem"] == "strict"
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    # the stop timeout leaves the pool its whole shutdown: EXIT, grace, SIGTERM, grace, SIGKILL
    grace = configuration.load(None).get("service", "shutdown_grace")
    assert float(service["TimeoutStopSec"].rstrip("s")) >= 3 * grace + 10
