"""Encryption at rest (transport.storage.crypto): round-trips, binding, wrong keys."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transport.storage.crypto import (
    PREFIX,
    EncryptionError,
    SecretBox,
    WrongEncryptionKey,
    is_encrypted,
    new_salt,
)

# A cheap scrypt cost keeps the property tests fast; the algorithm is the same.
FAST_N = 2 ** 4
SALT = b"0123456789abcdef"
BOX = SecretBox("correct horse", SALT, n=FAST_N)
OTHER = SecretBox("battery staple", SALT, n=FAST_N)


@settings(max_examples=300, deadline=None)
@given(plaintext=st.text(), context=st.binary(max_size=64))
def test_round_trip(plaintext: str, context: bytes) -> None:
    stored = BOX.encrypt(plaintext, context)
    assert is_encrypted(stored)
    assert stored.isascii()
    assert BOX.decrypt(stored, context) == plaintext
    if len(plaintext) >= 4:
        assert plaintext not in stored


@settings(max_examples=100, deadline=None)
@given(plaintext=st.text(min_size=1), context=st.binary(max_size=16), other=st.binary(max_size=16))
def test_bound_to_context_and_key(plaintext: str, context: bytes, other: bytes) -> None:
    stored = BOX.encrypt(plaintext, context)
    if other != context:
        with pytest.raises(EncryptionError):
            BOX.decrypt(stored, other)
    with pytest.raises(EncryptionError):
        OTHER.decrypt(stored, context)


def test_fresh_nonce_each_time() -> None:
    assert BOX.encrypt("secret", b"c") != BOX.encrypt("secret", b"c")


@settings(max_examples=100, deadline=None)
@given(position=st.integers(min_value=len(PREFIX), max_value=60), char=st.sampled_from("AQgw-_"))
def test_tampering_detected(position: int, char: str) -> None:
    stored = BOX.encrypt("a legacy password", b"ctx")
    position = min(position, len(stored) - 1)
    if stored[position] == char:
        return
    tampered = stored[:position] + char + stored[position + 1:]
    with pytest.raises(EncryptionError):
        BOX.decrypt(tampered, b"ctx")


def test_corrupt_values() -> None:
    with pytest.raises(EncryptionError, match="not encrypted"):
        BOX.decrypt("plain", b"")
    with pytest.raises(EncryptionError, match="too short"):
        BOX.decrypt(PREFIX + "AAAA", b"")
    with pytest.raises(EncryptionError, match="bad base64"):
        BOX.decrypt(PREFIX + "é", b"")


def test_key_check() -> None:
    check = BOX.check_value()
    BOX.verify(check)
    with pytest.raises(WrongEncryptionKey, match="encryption_key does not match"):
        OTHER.verify(check)
    with pytest.raises(WrongEncryptionKey):
        SecretBox("correct horse", b"another salt....", n=FAST_N).verify(check)


def test_salt_and_default_cost() -> None:
    assert len(new_salt()) == 16 and new_salt() != new_salt()
    box = SecretBox("k", new_salt())  # the production scrypt cost works
    assert box.decrypt(box.encrypt("x", b""), b"") == "x"
    with pytest.raises(ValueError):
        SecretBox("", SALT)
