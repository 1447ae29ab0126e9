"""transport-hosts: the parser (standalone and under transportctl), endpoints, usage errors."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from transport.hosts.cli import EXIT_REFUSED, EXIT_USAGE, UsageError, _listen_to_connect, add_arguments, run
from transport.hosts.protocol import url_to_endpoint


def parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="transport-hosts"))


def test_parse_client_commands() -> None:
    args = parser().parse_args(["--name", "me", "join", "--offer", "hi", "ptop://127.0.0.1:4621", "group"])
    assert (args.hosts_command, args.host, args.type, args.offer, args.name) == (
        "join", "ptop://127.0.0.1:4621", "group", "hi", "me")
    args = parser().parse_args(["search", "chatroom", "--text", "chess", "--network", "tcp:h:1"])
    assert (args.type, args.text, args.network) == ("chatroom", "chess", "tcp:h:1")
    with pytest.raises(SystemExit):
        parser().parse_args(["search", "network"])  # not a user host type


def test_embedded_under_transportctl_keeps_the_parent_config() -> None:
    top = argparse.ArgumentParser(prog="transportctl")
    top.add_argument("-c", "--config")
    sub = top.add_subparsers(dest="command")
    add_arguments(sub.add_parser("hosts"), config_option=False)
    args = top.parse_args(["-c", "/etc/transport.ini", "hosts", "grant", "g", "ab" * 16])
    assert (args.config, args.hosts_command, args.host, args.online_id) == ("/etc/transport.ini", "grant", "g",
                                                                           "ab" * 16)


def test_endpoints() -> None:
    assert url_to_endpoint("ptop://127.0.0.1:4621") == "tcp:host=127.0.0.1:port=4621"
    assert url_to_endpoint("ptop://[::1]:4621") == r"tcp:host=\:\:1:port=4621"
    with pytest.raises(ValueError):
        url_to_endpoint("http://example.org")
    assert _listen_to_connect("tcp:4620:interface=0.0.0.0", None) == "tcp:127.0.0.1:4620"
    assert _listen_to_connect("tcp:port=4620", None) == "tcp:127.0.0.1:4620"
    with pytest.raises(UsageError):
        _listen_to_connect("tcp:0", None)


def test_admin_commands_need_the_configuration() -> None:
    args = parser().parse_args(["pending", "g"])
    assert run(args) == EXIT_USAGE


def test_admin_commands_on_a_database(tmp_path: Path) -> None:
    ini = tmp_path / "t.ini"
    ini.write_text(f"[service]\nstate_dir = {tmp_path / 'state'}\n[hosts]\nenabled = true\nnetwork_host = true\n"
                   "[host:g]\ntitle = G\ndescription = d\n")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "transport.hosts.cli", "-c", str(ini), *args],
                              capture_output=True, text=True, timeout=120)

    peer = "ab" * 16
    assert cli("friend", "g", peer, "friend").returncode == 0
    assert cli("grant", "g", peer).returncode == EXIT_REFUSED  # no request recorded
    assert cli("pending", "g").stdout == ""
    result = cli("friend", "nosuchhost", peer, "friend")
    assert result.returncode == EXIT_USAGE and "no [host:nosuchhost] section" in result.stderr
    assert cli("grant", "g", "zz").returncode == EXIT_USAGE
