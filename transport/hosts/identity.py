"""TLS identities: a key pair and a self-signed certificate per peer, and its online id.

NoLimitConnect encrypts each packet with Blowfish keyed from public values; we
use TLS instead. A peer's **online id** is the first 16 bytes of SHA-256 over
its certificate's SubjectPublicKeyInfo (DER): the key *is* the identity, so
certificates are self-signed and never checked against a CA. The server asks
for a client certificate, accepts any, and reads the client's online id from
it; a client may pin the server's expected online id.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator
from zope.interface import implementer

from transport.hosts.packets import OnlineId

KEY_FILE = "key.pem"
CERT_FILE = "cert.pem"


def online_id_of(certificate: x509.Certificate) -> OnlineId:
    """The online id a certificate stands for."""
    spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    return OnlineId(hashlib.sha256(spki).digest()[:16])


@dataclass(frozen=True)
class Identity:
    """A private key, its self-signed certificate and the online id they give."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def online_id(self) -> OnlineId:
        return online_id_of(self.certificate)

    @classmethod
    def generate(cls, name: str = "transport-hosts") -> Identity:
        """A fresh P-256 key and a self-signed certificate valid for 20 years."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64] or "transport-hosts")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(subject).issuer_name(subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=365 * 20))
                .sign(key, hashes.SHA256()))
        return cls(key, cert)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        key_pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        key_path = directory / KEY_FILE
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        (directory / CERT_FILE).write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    @classmethod
    def load(cls, directory: Path) -> Identity:
        key = serialization.load_pem_private_key((directory / KEY_FILE).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{directory / KEY_FILE}: not an EC private key")
        cert = x509.load_pem_x509_certificate((directory / CERT_FILE).read_bytes())
        return cls(key, cert)

    @classmethod
    def load_or_create(cls, directory: Path, name: str = "transport-hosts") -> Identity:
        """The identity kept in *directory*, generated there on first use."""
        if (directory / KEY_FILE).exists() and (directory / CERT_FILE).exists():
            return cls.load(directory)
        identity = cls.generate(name)
        identity.save(directory)
        return identity

    def _context(self, method: int = SSL.TLS_METHOD) -> SSL.Context:
        ctx = SSL.Context(method)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.use_certificate(self.certificate)
        ctx.use_privatekey(self.key)
        ctx.check_privatekey()
        # Any certificate is acceptable: the identity is the key, checked by online id.
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _accept_any)
        return ctx

    def server_creator(self) -> ServerTLS:
        return ServerTLS(self)

    def client_creator(self) -> ClientTLS:
        return ClientTLS(self)


def _accept_any(conn: Any, cert: Any, errno: int, depth: int, ok: int) -> bool:
    return True


def peer_online_id(tls_transport: Any) -> OnlineId | None:
    """The online id of the peer of a TLS transport (after the handshake), or None."""
    cert = tls_transport.getPeerCertificate()
    if cert is None:
        return None
    return online_id_of(cert.to_cryptography())


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """Server side: our certificate, and a client certificate required (any accepted)."""

    def __init__(self, identity: Identity) -> None:
        self._ctx = identity._context()
        self._ctx.set_session_id(b"transport-hosts")

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        return SSL.Connection(self._ctx, None)


@implementer(IOpenSSLClientConnectionCreator)
class ClientTLS:
    """Client side: our certificate; the server's is checked by online id after the handshake."""

    def __init__(self, identity: Identity) -> None:
        self._ctx = identity._context()

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        conn = SSL.Connection(self._ctx, None)
        conn.set_app_data(tlsProtocol)
        return conn
