"""Device identities and the TLS that authenticates them.

A *device* is a key pair with a certificate. Its id is the hex SHA-256 of the
certificate's SubjectPublicKeyInfo (DER), so it survives re-issuing the
certificate for the same key and can be pinned: ``connect_device`` refuses a
peer whose id is not the expected one. An *account CA* optionally vouches for
devices: when one is configured, a device certificate must chain to it (a
self-signed device certificate is then refused).

Both sides present certificates (mutual TLS). Verification happens inside the
TLS handshake (OpenSSL's verify callback), so a refused peer gets a TLS alert
and never reaches the multiplexer. :func:`client_creator` and
:func:`server_creator` build the pyOpenSSL connection creators Twisted's
``TLSMemoryBIOFactory`` takes.

Keys are ECDSA P-256. Files: ``device.key`` (PKCS#8 PEM, mode 0600) and
``device.crt`` (PEM: the device certificate, then its issuer's when issued by a
CA); a CA directory holds ``ca.key`` and ``ca.crt``.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import service_identity
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator
from zope.interface import implementer

PrivateKey = ec.EllipticCurvePrivateKey

KEY_FILE = "device.key"
CERT_FILE = "device.crt"
CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.crt"


def device_id_of(cert: x509.Certificate) -> str:
    """The device id: hex SHA-256 of the certificate's SubjectPublicKeyInfo."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def normalize_device_id(text: str) -> str:
    """A device id as 64 lower-case hex digits (colons and spaces removed); ValueError otherwise."""
    cleaned = text.replace(":", "").replace(" ", "").strip().lower()
    if len(cleaned) != 64 or any(c not in "0123456789abcdef" for c in cleaned):
        raise ValueError(f"not a device id (64 hex digits): {text!r}")
    return cleaned


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(dns_names: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for n in dns_names:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            names.append(x509.DNSName(n))
    return names


def _build_cert(subject: str, public_key: Any, issuer_name: x509.Name, signing_key: PrivateKey, *,
                ca: bool, days: int, dns_names: Iterable[str] = ()) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
        ), critical=True)
    names = _san(dns_names)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


@dataclass
class DeviceIdentity:
    """A device's key and certificate (plus the issuer chain when a CA issued it)."""

    key: PrivateKey
    cert: x509.Certificate
    chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def device_id(self) -> str:
        return device_id_of(self.cert)

    @classmethod
    def generate(cls, name: str = "device", *, issuer: CertificateAuthority | None = None,
                 dns_names: Iterable[str] = (), days: int = 3650) -> DeviceIdentity:
        """A new key; self-signed, or issued by *issuer* (an account CA)."""
        key = ec.generate_private_key(ec.SECP256R1())
        if issuer is None:
            cert = _build_cert(name, key.public_key(), _name(name), key, ca=False, days=days, dns_names=dns_names)
            return cls(key, cert)
        return cls(key, issuer.issue(key.public_key(), name, dns_names=dns_names, days=days), [issuer.cert])

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> DeviceIdentity:
        d = Path(directory)
        key = serialization.load_pem_private_key((d / KEY_FILE).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{d / KEY_FILE}: expected an EC private key")
        certs = x509.load_pem_x509_certificates((d / CERT_FILE).read_bytes())
        return cls(key, certs[0], certs[1:])

    @classmethod
    def load_or_create(cls, directory: str | os.PathLike[str], name: str = "device") -> DeviceIdentity:
        """The identity in *directory*, created (self-signed) when the directory has none."""
        d = Path(directory)
        if (d / KEY_FILE).exists() and (d / CERT_FILE).exists():
            return cls.load(d)
        identity = cls.generate(name)
        identity.save(d)
        return identity

    def save(self, directory: str | os.PathLike[str]) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        _write_private(d / KEY_FILE, self.key)
        (d / CERT_FILE).write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                             for c in [self.cert, *self.chain]))


@dataclass
class CertificateAuthority:
    """An account CA: it issues device certificates."""

    key: PrivateKey
    cert: x509.Certificate

    @classmethod
    def generate(cls, name: str = "account", days: int = 3650) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        return cls(key, _build_cert(name, key.public_key(), _name(name), key, ca=True, days=days))

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> CertificateAuthority:
        d = Path(directory)
        key = serialization.load_pem_private_key((d / CA_KEY_FILE).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{d / CA_KEY_FILE}: expected an EC private key")
        return cls(key, x509.load_pem_x509_certificate((d / CA_CERT_FILE).read_bytes()))

    def save(self, directory: str | os.PathLike[str]) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        _write_private(d / CA_KEY_FILE, self.key)
        (d / CA_CERT_FILE).write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, public_key: Any, name: str, *, dns_names: Iterable[str] = (), days: int = 3650) -> x509.Certificate:
        """A device certificate for *public_key* (the device keeps its key; only the public half travels)."""
        return _build_cert(name, public_key, self.cert.subject, self.key, ca=False, days=days, dns_names=dns_names)


def load_ca_certificate(path: str | os.PathLike[str]) -> x509.Certificate:
    """An account CA certificate from a PEM file (or a CA directory holding ca.crt)."""
    p = Path(path)
    if p.is_dir():
        p = p / CA_CERT_FILE
    return x509.load_pem_x509_certificate(p.read_bytes())


def _write_private(path: Path, key: PrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # the mode above applies to a new file only: a key written over an older file stays private
    with os.fdopen(fd, "wb") as f:
        f.write(data)


# --- TLS ------------------------------------------------------------------


class PeerRefused(Exception):
    """The peer's certificate failed verification (wrong device, untrusted, wrong host name)."""


@dataclass
class TrustPolicy:
    """Which peers a side accepts.

    ``account_ca``: when set, the peer's certificate must chain to it.
    ``trusted_devices``: when not None, the peer's device id must be in it.
    ``expected_device`` (client side): the pinned id of the device we dial.
    ``hostname``: when set, the certificate must name it (service_identity).
    """

    account_ca: x509.Certificate | None = None
    trusted_devices: frozenset[str] | None = None
    expected_device: str | None = None
    hostname: str | None = None


@dataclass
class VerifyResult:
    """What the handshake found out about the peer; attached to the TLS connection."""

    device_id: str | None = None
    error: str | None = None


def _make_context(identity: DeviceIdentity, policy: TrustPolicy, result: VerifyResult) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_TICKET)
    ctx.use_certificate(identity.cert)
    for extra in identity.chain:
        ctx.add_extra_chain_cert(extra)
    ctx.use_privatekey(identity.key)
    ctx.check_privatekey()
    if policy.account_ca is not None:
        ctx.get_cert_store().add_cert(crypto.X509.from_cryptography(policy.account_ca))  # type: ignore[union-attr]

    def verify(conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
        if depth > 0:
            if policy.account_ca is not None and not ok:
                result.error = f"certificate chain not issued by the account CA (OpenSSL error {errno})"
                return False
            return True
        leaf = cert.to_cryptography()
        if policy.account_ca is not None and not ok:
            result.error = f"device certificate not issued by the account CA (OpenSSL error {errno})"
            return False
        device = device_id_of(leaf)
        if policy.expected_device is not None and device != policy.expected_device:
            result.error = f"wrong device: expected {policy.expected_device}, got {device}"
            return False
        if policy.trusted_devices is not None and device not in policy.trusted_devices:
            result.error = f"device {device} is not trusted"
            return False
        if policy.hostname is not None:
            try:
                _verify_hostname(leaf, policy.hostname)
            except service_identity.VerificationError as e:
                result.error = f"certificate does not name {policy.hostname}: {e}"
                return False
        result.device_id = device
        return True

    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, verify)
    return ctx


def _verify_hostname(cert: x509.Certificate, hostname: str) -> None:
    import service_identity.cryptography as sic
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        sic.verify_certificate_hostname(cert, hostname)
    else:
        sic.verify_certificate_ip_address(cert, hostname)


#: what each TLS connection's handshake found out (Twisted owns the connection's app data)
_RESULTS: weakref.WeakKeyDictionary[SSL.Connection, VerifyResult] = weakref.WeakKeyDictionary()


def _new_connection(identity: DeviceIdentity, policy: TrustPolicy) -> SSL.Connection:
    """A TLS connection with its own context, whose verify callback records what it found in _RESULTS."""
    result = VerifyResult()
    conn = SSL.Connection(_make_context(identity, policy, result), None)
    _RESULTS[conn] = result
    return conn


@implementer(IOpenSSLClientConnectionCreator)
class _ClientCreator:
    def __init__(self, identity: DeviceIdentity, policy: TrustPolicy) -> None:
        self.identity = identity
        self.policy = policy

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        conn = _new_connection(self.identity, self.policy)
        if self.policy.hostname:
            try:
                ipaddress.ip_address(self.policy.hostname)
            except ValueError:
                conn.set_tlsext_host_name(self.policy.hostname.encode("idna"))
        conn.set_connect_state()
        return conn


@implementer(IOpenSSLServerConnectionCreator)
class _ServerCreator:
    def __init__(self, identity: DeviceIdentity, policy: TrustPolicy) -> None:
        self.identity = identity
        self.policy = policy
        # one context for all connections would be cheaper, but the verify
        # callback records its findings per connection, so each gets its own
        # (a context costs a few microseconds next to the handshake)

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        conn = _new_connection(self.identity, self.policy)
        conn.set_accept_state()
        return conn


def client_creator(identity: DeviceIdentity, policy: TrustPolicy) -> IOpenSSLClientConnectionCreator:
    return _ClientCreator(identity, policy)


def server_creator(identity: DeviceIdentity, policy: TrustPolicy) -> IOpenSSLServerConnectionCreator:
    return _ServerCreator(identity, policy)


def verify_result(tls_connection: SSL.Connection) -> VerifyResult:
    """The :class:`VerifyResult` recorded for a connection made by these creators."""
    return _RESULTS.get(tls_connection) or VerifyResult()
