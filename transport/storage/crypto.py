"""Encryption at rest for secrets in the database (legacy passwords, room passwords).

The configured secret (``[database] encryption_key``) is stretched with scrypt
and a random per-database salt into a 256-bit AES-GCM key. Every value gets a
fresh 96-bit nonce and is bound (as associated data) to what it belongs to, so
a ciphertext copied to another user's row does not decrypt. Stored form::

    enc1:<base64url(nonce || ciphertext || tag)>

The database also keeps a *check value* (a known text encrypted with the key);
opening it with another key fails with :class:`WrongEncryptionKey` before any
secret is read, instead of returning garbage.

Pure functions and no I/O: the store calls them in its database threads
(scrypt takes tens of milliseconds, never on the reactor).
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

PREFIX = "enc1:"
SALT_BYTES = 16
NONCE_BYTES = 12
CHECK_TEXT = "transport encryption key check"
CHECK_CONTEXT = b"transport:key-check"
# scrypt cost: n=2**15, r=8, p=1 (about 32 MiB and ~50 ms once per start).
SCRYPT_N = 2 ** 15


class EncryptionError(Exception):
    """A stored secret cannot be decrypted, or the key setup is inconsistent."""


class WrongEncryptionKey(EncryptionError):
    """The configured ``encryption_key`` is not the one the database was encrypted with."""


def new_salt() -> bytes:
    """A random per-database salt."""
    return os.urandom(SALT_BYTES)


def is_encrypted(stored: str) -> bool:
    """Whether a stored value is in the encrypted form."""
    return stored.startswith(PREFIX)


class SecretBox:
    """Encrypts and decrypts short texts with a key derived from *secret* and *salt*."""

    def __init__(self, secret: str, salt: bytes, n: int = SCRYPT_N) -> None:
        if not secret:
            raise ValueError("an empty secret gives no protection")
        key = Scrypt(salt=salt, length=32, n=n, r=8, p=1).derive(secret.encode("utf-8"))
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str, context: bytes) -> str:
        """The stored form of *plaintext*, bound to *context* (e.g. the owner's JID)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8", "surrogatepass"), context)
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, stored: str, context: bytes) -> str:
        """The plaintext of a value made by :meth:`encrypt` with the same *context*."""
        if not is_encrypted(stored):
            raise EncryptionError("value is not encrypted")
        try:
            raw = base64.urlsafe_b64decode(stored[len(PREFIX):].encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise EncryptionError("encrypted value is corrupt (bad base64)") from exc
        if len(raw) < NONCE_BYTES + 16:
            raise EncryptionError("encrypted value is corrupt (too short)")
        try:
            data = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context)
        except InvalidTag as exc:
            raise EncryptionError("encrypted value does not decrypt with this key (or was tampered with)") from exc
        return data.decode("utf-8", "surrogatepass")

    def check_value(self) -> str:
        """A value to store so that a later start can verify the key."""
        return self.encrypt(CHECK_TEXT, CHECK_CONTEXT)

    def verify(self, check_value: str) -> None:
        """Raise :class:`WrongEncryptionKey` unless *check_value* was made with this key."""
        try:
            ok = self.decrypt(check_value, CHECK_CONTEXT) == CHECK_TEXT
        except EncryptionError:
            ok = False
        if not ok:
            raise WrongEncryptionKey(
                "[database] encryption_key does not match the key this database's secrets were encrypted with")
