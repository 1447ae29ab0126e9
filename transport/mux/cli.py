"""``transport-mux cert ...``: device identities and the account CA (also ``transport-backend-host cert ...``).

    transport-mux cert ca ./account-ca                      # an account CA (ca.key stays with the admin)
    transport-mux cert device ./host1 [--ca ./account-ca]   # a device key + certificate; prints its id
    transport-mux cert issue ./host1 --ca ./account-ca      # certify an existing device (its key never moves)
    transport-mux cert show ./host1                         # the device id of a directory or certificate file

``issue`` only reads the device's current certificate (its public key) and
writes the new chain next to it, so a device can be certified from a copy of
its ``device.crt``: the id stays the same because the key does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from transport.mux.identity import (
    CA_CERT_FILE,
    CERT_FILE,
    KEY_FILE,
    CertificateAuthority,
    DeviceIdentity,
    device_id_of,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transport-mux", description="Mux device identities.")
    sub = parser.add_subparsers(dest="group", required=True)
    cert = sub.add_parser("cert", help="device certificates and the account CA")
    cmds = cert.add_subparsers(dest="command", required=True)
    ca = cmds.add_parser("ca", help="create an account CA in DIR (ca.key, ca.crt)")
    ca.add_argument("dir")
    ca.add_argument("--name", default="transport account")
    ca.add_argument("--days", type=int, default=3650)
    dev = cmds.add_parser("device", help="create a device identity in DIR (device.key, device.crt)")
    dev.add_argument("dir")
    dev.add_argument("--name", default="transport device")
    dev.add_argument("--ca", help="account CA directory: issue the certificate from it (else self-signed)")
    dev.add_argument("--dns", action="append", default=[], help="host name or address to put in the certificate")
    dev.add_argument("--days", type=int, default=3650)
    dev.add_argument("--force", action="store_true", help="replace an existing identity (its id changes)")
    iss = cmds.add_parser("issue", help="issue a CA certificate for the device in DIR (same key, same id)")
    iss.add_argument("dir")
    iss.add_argument("--ca", required=True, help="account CA directory")
    iss.add_argument("--name", default=None)
    iss.add_argument("--dns", action="append", default=[])
    iss.add_argument("--days", type=int, default=3650)
    show = cmds.add_parser("show", help="print the device id of DIR or of a certificate file")
    show.add_argument("path")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if ns.command == "ca":
            if (Path(ns.dir) / CA_CERT_FILE).exists():
                print(f"{ns.dir}: an account CA exists already", file=sys.stderr)
                return 1
            CertificateAuthority.generate(ns.name, days=ns.days).save(ns.dir)
            print(f"account CA written to {ns.dir}/{CA_CERT_FILE} (keep {ns.dir}/ca.key secret);"
                  f" set account_ca = {Path(ns.dir).resolve() / CA_CERT_FILE}")
        elif ns.command == "device":
            if (Path(ns.dir) / KEY_FILE).exists() and not ns.force:
                print(f"{ns.dir}: a device identity exists already (--force replaces it)", file=sys.stderr)
                return 1
            issuer = CertificateAuthority.load(ns.ca) if ns.ca else None
            identity = DeviceIdentity.generate(ns.name, issuer=issuer, dns_names=ns.dns, days=ns.days)
            identity.save(ns.dir)
            print(identity.device_id)
        elif ns.command == "issue":
            ca = CertificateAuthority.load(ns.ca)
            path = Path(ns.dir) / CERT_FILE
            current = x509.load_pem_x509_certificates(path.read_bytes())[0]
            name = ns.name or current.subject.rfc4514_string().removeprefix("CN=") or "transport device"
            cert = ca.issue(current.public_key(), name, dns_names=ns.dns, days=ns.days)
            from cryptography.hazmat.primitives.serialization import Encoding
            path.write_bytes(cert.public_bytes(Encoding.PEM) + ca.cert.public_bytes(Encoding.PEM))
            print(device_id_of(cert))
        elif ns.command == "show":
            p = Path(ns.path)
            if p.is_dir():
                p = p / CERT_FILE
            print(device_id_of(x509.load_pem_x509_certificates(p.read_bytes())[0]))
    except (OSError, ValueError) as e:
        print(f"transport-mux: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
