"""Mux configuration checks, the service factory and the certificate CLI."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from twisted.internet import task

from transport import config as configuration
from transport.mux import cli
from transport.mux.identity import CertificateAuthority, DeviceIdentity, device_id_of, load_ca_certificate
from transport.mux.service import MuxService, make_service

ID = "ab" * 32


def load(tmp_path: Path, *overrides: str) -> configuration.Config:
    return configuration.load_text("", None, [f"service.state_dir={tmp_path}", *overrides])


def test_listening_without_trust_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(configuration.ConfigError, match="trusts nobody"):
        load(tmp_path, "mux.enabled=true")
    load(tmp_path, "mux.enabled=true", f"mux.trusted_devices={ID}")
    load(tmp_path, "mux.enabled=true", "mux.listen=", )  # not listening: nothing to trust


def test_device_ids_are_checked(tmp_path: Path) -> None:
    with pytest.raises(configuration.ConfigError, match="not a device id"):
        load(tmp_path, "mux.enabled=true", "mux.trusted_devices=abc")
    with pytest.raises(configuration.ConfigError, match="not a device id"):
        load(tmp_path, "backend_host.main_device=zz")
    load(tmp_path, f"backend_host.main_device={ID.upper()}")


def test_make_service_creates_and_keeps_the_identity(tmp_path: Path) -> None:
    config = load(tmp_path, "mux.enabled=true", f"mux.trusted_devices={ID}", "mux.beacon_timeout=1.5")
    context = SimpleNamespace(config=config, reactor=task.Clock(), registry={})
    svc = make_service(context)
    assert isinstance(svc, MuxService)
    manager = context.registry["mux"]
    assert manager.beacon_timeout == 1.5 and manager.trusted_devices == frozenset({ID})
    assert (tmp_path / "mux" / "device.key").stat().st_mode & 0o777 == 0o600
    again = make_service(SimpleNamespace(config=config, reactor=task.Clock(), registry={}))
    assert again.manager.device_id == manager.device_id  # type: ignore[attr-defined]


def test_cert_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca_dir, dev_dir, plain_dir = tmp_path / "ca", tmp_path / "dev", tmp_path / "plain"
    assert cli.main(["cert", "ca", str(ca_dir)]) == 0
    assert cli.main(["cert", "ca", str(ca_dir)]) == 1  # never overwritten
    capsys.readouterr()
    assert cli.main(["cert", "device", str(dev_dir), "--ca", str(ca_dir), "--dns", "host1.example"]) == 0
    dev_id = capsys.readouterr().out.strip()
    identity = DeviceIdentity.load(dev_dir)
    assert identity.device_id == dev_id and len(identity.chain) == 1
    ca = CertificateAuthority.load(ca_dir)
    assert identity.cert.issuer == ca.cert.subject
    assert load_ca_certificate(ca_dir) == ca.cert
    # a self-signed device, then certified by the CA: same key, same id
    assert cli.main(["cert", "device", str(plain_dir)]) == 0
    plain_id = capsys.readouterr().out.strip()
    assert cli.main(["cert", "device", str(plain_dir)]) == 1  # refuses to replace
    capsys.readouterr()
    assert cli.main(["cert", "issue", str(plain_dir), "--ca", str(ca_dir)]) == 0
    assert capsys.readouterr().out.strip() == plain_id
    reissued = DeviceIdentity.load(plain_dir)
    assert reissued.cert.issuer == ca.cert.subject and device_id_of(reissued.cert) == plain_id
    assert cli.main(["cert", "show", str(plain_dir)]) == 0
    assert capsys.readouterr().out.strip() == plain_id
    assert cli.main(["cert", "show", str(tmp_path / "missing")]) == 1


def test_backend_host_needs_main_and_delegates_cert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from transport.mux import backend_host

    with pytest.raises(configuration.ConfigError, match="required"):
        backend_host.make_host(load(tmp_path), task.Clock())
    host = backend_host.make_host(load(tmp_path, "backend_host.main=tcp:127.0.0.1:1", f"backend_host.main_device={ID}",
                                       "backend_host.backends=3", "backend_host.name=h9"), task.Clock())
    assert host.count == 3 and host.name == "h9" and host.main_device == ID
    assert (tmp_path / "backend-host" / "device.crt").exists()
    with pytest.raises(SystemExit) as exit_info:
        backend_host.main(["cert", "show", str(tmp_path / "backend-host")])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == host.manager.device_id


def test_a_key_written_over_an_older_file_is_private(tmp_path: Path) -> None:
    # `transport-mux cert device --force` writes a new key over the old file: O_CREAT's mode does not apply then
    (tmp_path / "device.key").write_bytes(b"old")
    (tmp_path / "device.key").chmod(0o644)
    DeviceIdentity.generate("dev").save(tmp_path)
    assert (tmp_path / "device.key").stat().st_mode & 0o777 == 0o600
    CertificateAuthority.generate("ca").save(tmp_path / "ca")
    (tmp_path / "ca" / "ca.key").chmod(0o666)
    CertificateAuthority.generate("ca").save(tmp_path / "ca")
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
